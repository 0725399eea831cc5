"""Register maps and windows: validation, access rules, W1C, fields, processes, a model.

Emulated windows live in /dev/shm; every test removes what it created (the ``name``
fixture checks that nothing is left). Children are forked where speed matters and a
fresh interpreter attaches by name where nothing may be inherited.
"""

from __future__ import annotations

import enum
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from qpuos.errors import ClosedResourceError, MmioError, UsageError
from qpuos.kernel.mmio import (
    Access,
    Field,
    MmioWindow,
    Register,
    RegisterMap,
    unlink_window,
)

FORK = mp.get_context("fork")


class Mode(enum.IntEnum):
    IDLE = 0
    RUN = 1
    HALT = 3


REGS = RegisterMap("qpu_test", [
    Register("ID", 0x00, access=Access.RO, reset=0x51505501),
    Register("CTRL", 0x04, fields=(Field("ENABLE", 0), Field("MODE", 1, 2, Mode),
                                   Field("PRIO", 4, 4))),
    Register("STATUS", 0x08, access=Access.RO, fields=(Field("STATE", 0, 2, Mode),)),
    Register("IRQ", 0x0C, access=Access.W1C),
    Register("DOORBELL", 0x10, access=Access.WO, fields=(Field("RING", 0, 8),)),
    Register("B8", 0x14, width=8),
    Register("B8B", 0x15, width=8, reset=0xA5),
    Register("H16", 0x16, width=16),
    Register("CYCLES", 0x18, width=64, access=Access.RO),
    Register("SCRATCH", 0x20, width=64, reset=(1 << 64) - 1),
    Register("IRQ64", 0x28, width=64, access=Access.W1C),
    Register("COUNT", 0x30, width=64),
])
MASK = {r.name: (1 << r.width) - 1 for r in REGS}


@pytest.fixture
def name() -> Iterator[str]:
    """A fresh window name; fails the test if the window is still there at the end."""
    n = f"qpuos-test-mmio-{uuid.uuid4().hex[:12]}"
    yield n
    left = Path("/dev/shm", n).exists()
    unlink_window(n)
    assert not left, f"window {n} was left in /dev/shm"


@pytest.fixture
def pair(name: str) -> Iterator[tuple[MmioWindow, MmioWindow]]:
    """(device, host) views of one emulated window."""
    with MmioWindow.create(REGS, name=name) as device, \
            MmioWindow.attach(REGS, name) as host:
        yield device, host


# -- register maps -----------------------------------------------------------------------

def test_default_size_is_the_end_of_the_last_register_rounded_to_a_page() -> None:
    assert RegisterMap("a", [Register("X", 0)]).size == 4096
    assert RegisterMap("b", [Register("X", 4096, width=64)]).size == 8192
    assert RegisterMap("c", [Register("X", 0)], size=8).size == 8
    assert [r.name for r in RegisterMap("d", [Register("Y", 8), Register("X", 0)])] == \
        ["X", "Y"]


@pytest.mark.parametrize(("registers", "size", "message"), [
    ([Register("A", 0), Register("B", 2, width=16), Register("C", 3, width=8)], None,
     r"registers 'A' \(0x0\.\.0x3\) and 'B' \(at 0x2\) overlap in map 'm'; move one of "
     r"them"),
    ([Register("A", 2)], None,
     r"register 'A' in map 'm' at offset 2 is misaligned: a 32-bit register needs an "
     r"offset that is a multiple of 4"),
    ([Register("A", 4, width=64)], None,
     r"register 'A' in map 'm' at offset 4 is misaligned: a 64-bit register needs an "
     r"offset that is a multiple of 8"),
    ([Register("A", 0), Register("A", 4)], None,
     r"register map 'm' has two registers named 'A'; rename one"),
    ([Register("A", 0, fields=(Field("F", 30, 3),))], None,
     r"field 'F' of register 'A' in map 'm' spans bits 30\.\.32, outside the 32-bit "
     r"register; shrink the field or widen the register"),
    ([Register("A", 0, fields=(Field("F", 0, 4), Field("G", 3)))], None,
     r"field 'G' of register 'A' in map 'm' \(bits 3\.\.3\) overlaps another field of the "
     r"register; fields must not share bits"),
    ([Register("A", 0, fields=(Field("F", 0), Field("F", 1)))], None,
     r"register 'A' in map 'm' has two fields named 'F'; rename one"),
    ([Register("A", 0, fields=(Field("F", 0, 1, Mode),))], None,
     r"field 'F' of register 'A' in map 'm' is 1 bits wide but Mode members HALT do not "
     r"fit in it"),
    ([Register("A", 0, width=24)], None,
     r"register 'A' in map 'm' is 24 bits wide; use 8, 16, 32 or 64"),
    ([Register("A", 0, width=8, reset=256)], None,
     r"register 'A' in map 'm' has reset value 256, which does not fit 8 bits"),
    ([Register("A", 0, fields=(Field("F", -1),))], None,
     r"field 'F' of register 'A' in map 'm' has lsb -1 and width 1; lsb must be >= 0 and "
     r"width >= 1"),
    ([Register("bad name", 0)], None,
     r"register name 'bad name' in map 'm' is not an identifier; use letters, digits "
     r"and _"),
    ([Register("A", 0), Register("B", 8, width=64)], 12,
     r"register map 'm' has size 12 but its registers end at byte 16; give size >= 16 "
     r"or leave it out"),
    ([], None, r"register map 'm' has no registers; give at least one"),
    (["A"], None, r"register map 'm' got 'A'; give Register objects"),
    ([Register("A", 0, access="rw")], None,
     r"register 'A' in map 'm' has access 'rw'; use an Access member"),
])
def test_invalid_maps_are_refused_with_a_clear_message(registers: list[Any],
                                                       size: int | None,
                                                       message: str) -> None:
    with pytest.raises(MmioError, match=f"^(?:{message})$"):
        RegisterMap("m", registers, size=size)


def test_unknown_names_get_suggestions() -> None:
    with pytest.raises(MmioError, match=r"^no register 'STATSU' in register map "
                       r"'qpu_test'; did you mean 'STATUS'\?$"):
        REGS["STATSU"]
    with pytest.raises(MmioError, match=r"^no register 'zzz' in register map 'qpu_test'; "
                       r"known registers: ID, CTRL, STATUS, .*$"):
        REGS["zzz"]
    with pytest.raises(MmioError, match=r"^no field 'MOED' in register 'CTRL' of map "
                       r"'qpu_test'; did you mean 'MODE'\?$"):
        REGS.field_spec("CTRL", "MOED")
    with pytest.raises(MmioError, match=r"^no field 'X' in register 'IRQ' of map "
                       r"'qpu_test'; it has no fields$"):
        REGS.field_spec("IRQ", "X")


def test_describe_lists_every_register_with_its_fields() -> None:
    text = REGS.describe()
    rows = {line.split()[1]: line for line in text.splitlines()[2:]}
    assert set(rows) ^ {r.name for r in REGS} == set()
    assert re.match(r"^0x0004  CTRL +32  rw +0x00000000 +ENABLE\[0\], MODE\[2:1\] \(Mode\), "
                    r"PRIO\[7:4\]$", rows["CTRL"])
    assert re.match(r"^0x0028  IRQ64 +64  w1c +0x0{16}$", rows["IRQ64"])


# -- access rules ------------------------------------------------------------------------

def test_reset_values_are_in_place(pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    assert {r.name: host.read(r.name) for r in REGS if r.access is not Access.WO} == \
        {r.name: r.reset for r in REGS if r.access is not Access.WO}
    assert {r.name: device.read(r.name) for r in REGS} == {r.name: r.reset for r in REGS}


def test_host_cannot_write_read_only_registers(pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    with pytest.raises(MmioError, match=r"^register 'STATUS' of map 'qpu_test' is "
                       r"read-only \(ro\); the host cannot write it$"):
        host.write("STATUS", 1)
    with pytest.raises(MmioError, match=r"^set_bits\(\) needs a read-write register from "
                       r"the host; register 'CYCLES' of map 'qpu_test' is ro$"):
        host.set_bits("CYCLES", 1)
    with pytest.raises(MmioError, match=r"^write_field\(\) needs a read-write register"):
        host.write_field("STATUS", "STATE", Mode.RUN)
    device.write("STATUS", 2)  # the device owns its status
    device.write_field("STATUS", "STATE", Mode.HALT)
    assert host.read("STATUS") == 3
    assert host.read_field("STATUS", "STATE") is Mode.HALT


def test_host_cannot_read_write_only_registers(pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    host.write("DOORBELL", 0xBEEF)
    with pytest.raises(MmioError, match=r"^register 'DOORBELL' of map 'qpu_test' is "
                       r"write-only \(wo\); the host cannot read it: .*$"):
        host.read("DOORBELL")
    with pytest.raises(MmioError, match=r"^register 'DOORBELL' .* write-only"):
        host.read_field("DOORBELL", "RING")
    assert device.read("DOORBELL") == 0xBEEF  # the device sees the doorbell ring


def test_w1c_clears_only_the_bits_written_as_one(
        pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    assert device.set_bits("IRQ", 0b1011) == 0
    assert device.set_bits("IRQ", 0b0100) == 0b1011
    host.write("IRQ", 0b0010)
    assert host.read("IRQ") == 0b1101
    host.write("IRQ", 0)
    assert host.read("IRQ") == 0b1101
    host.write("IRQ", 0b1000_0000_0001)  # a 1 where no bit is set changes nothing
    assert host.read("IRQ") == 0b1100
    device.set_bits("IRQ64", 1 << 63 | 1)
    host.write("IRQ64", 1 << 63)
    assert host.read("IRQ64") == 1
    with pytest.raises(MmioError, match=r"^clear_bits\(\) needs a read-write register "
                       r"from the host; .* is w1c; write 1s with write\(\) to clear W1C "
                       r"bits$"):
        host.clear_bits("IRQ", 1)
    device.write("IRQ", 0b11)  # the device itself stores plainly
    assert host.read("IRQ") == 0b11


def test_values_must_fit_the_register(pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    for reg, value in [("CTRL", 1 << 32), ("B8", 256), ("H16", -1), ("SCRATCH", 1 << 64),
                       ("IRQ", 1 << 32), ("COUNT", 1.5)]:
        bits = REGS[reg].width
        with pytest.raises(MmioError, match=rf"^value {re.escape(repr(value))} does not "
                           rf"fit {bits}-bit register '{reg}' of map 'qpu_test' "
                           rf"\(0\.\.{MASK[reg]:#x}\); mask it to the register's width$"):
            host.write(reg, value)
    with pytest.raises(MmioError, match=r"^value -1 does not fit 8-bit register 'B8'"):
        device.set_bits("B8", -1)
    assert {r: device.read(r) for r in ("CTRL", "B8", "H16", "SCRATCH", "IRQ", "COUNT")} \
        == {"CTRL": 0, "B8": 0, "H16": 0, "SCRATCH": MASK["SCRATCH"], "IRQ": 0, "COUNT": 0}


def test_unknown_register_names_the_map(pair: tuple[MmioWindow, MmioWindow]) -> None:
    _, host = pair
    for op in (lambda: host.read("CTLR"), lambda: host.write("CTLR", 1),
               lambda: host.set_bits("CTLR", 1), lambda: host.read_field("CTLR", "MODE")):
        with pytest.raises(MmioError, match=r"^no register 'CTLR' in register map "
                           r"'qpu_test'; did you mean 'CTRL'\?$"):
            op()


def test_narrow_registers_leave_their_neighbours_alone(
        pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    host.write("B8", 0xFF)
    host.write("H16", 0x1234)
    assert (host.read("B8"), host.read("B8B"), host.read("H16"), host.read("CTRL")) == \
        (0xFF, 0xA5, 0x1234, 0)
    assert host.set_bits("B8", 0x0F) == 0xFF
    assert host.clear_bits("H16", 0x0F0F) == 0x1234
    assert (host.read("B8"), host.read("B8B"), host.read("H16"), device.read("IRQ")) == \
        (0xFF, 0xA5, 0x1030, 0)


def test_64_bit_registers_round_trip(pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    for value in (0, 1, 1 << 32, (1 << 63) + 5, (1 << 64) - 1):
        host.write("COUNT", value)
        assert host.read("COUNT") == value
    host.write("COUNT", 0)
    assert host.set_bits("COUNT", 1 << 63) == 0
    assert host.set_bits("COUNT", 1 << 40) == 1 << 63
    assert host.clear_bits("COUNT", 1 << 63) == 1 << 63 | 1 << 40
    assert host.read("COUNT") == 1 << 40
    device.write("CYCLES", (1 << 64) - 2)
    assert host.read("CYCLES") == (1 << 64) - 2


def test_fields_with_enums_round_trip(pair: tuple[MmioWindow, MmioWindow]) -> None:
    device, host = pair
    host.write_field("CTRL", "MODE", Mode.RUN)
    host.write_field("CTRL", "PRIO", 9)
    host.write_field("CTRL", "ENABLE", 1)
    assert host.read("CTRL") == 0b1001_0_01_1
    assert host.read_field("CTRL", "MODE") is Mode.RUN
    assert (host.read_field("CTRL", "PRIO"), host.read_field("CTRL", "ENABLE")) == (9, 1)
    host.write_field("CTRL", "MODE", Mode.HALT)
    assert host.read("CTRL") == 0b1001_0_11_1
    device.write("CTRL", 0b100)  # encoding 2 is reserved in Mode: read back as a plain int
    value = host.read_field("CTRL", "MODE")
    assert (value, type(value)) == (2, int)
    with pytest.raises(MmioError, match=r"^value 2 does not fit field 'MODE' of register "
                       r"'CTRL' in map 'qpu_test'; allowed: IDLE=0, RUN=1, HALT=3$"):
        host.write_field("CTRL", "MODE", 2)
    with pytest.raises(MmioError, match=r"^value 16 does not fit field 'PRIO' .* allowed: "
                       r"0\.\.15$"):
        host.write_field("CTRL", "PRIO", 16)
    with pytest.raises(MmioError, match=r"^no field 'MODES' in register 'CTRL' of map "
                       r"'qpu_test'; did you mean 'MODE'\?$"):
        host.write_field("CTRL", "MODES", 1)


def test_every_access_reaches_the_file(pair: tuple[MmioWindow, MmioWindow],
                                       name: str) -> None:
    """Stores land in the shared file at the register's offset, little-endian and exactly
    its width; a change made behind the window's back is seen by the next load."""
    _, host = pair
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    try:
        host.write("H16", 0xBEEF)
        host.write("COUNT", 0x0102030405060708)
        assert os.pread(fd, 4, 0x14) == bytes([0, 0xA5, 0xEF, 0xBE])
        assert os.pread(fd, 8, 0x30) == bytes(range(8, 0, -1))
        os.pwrite(fd, (0xCAFE).to_bytes(4, "little"), 0x04)
        assert host.read("CTRL") == 0xCAFE
    finally:
        os.close(fd)


def test_fenced_access_path_gives_the_same_results(
        pair: tuple[MmioWindow, MmioWindow]) -> None:
    """Machines that are not TSO fence after every access; force that path here."""
    device, host = pair
    host._fenced = device._fenced = True
    host.write("COUNT", 77)
    host.write_field("CTRL", "PRIO", 3)
    device.set_bits("IRQ", 0b11)
    host.write("IRQ", 0b01)
    assert (device.read("COUNT"), host.read("CTRL"), host.read("IRQ")) == (77, 0x30, 0b10)


# -- lifetime ----------------------------------------------------------------------------

def test_close_is_idempotent_and_use_after_close_fails(name: str) -> None:
    device = MmioWindow.create(REGS, name=name)
    host = MmioWindow.attach(REGS, name)
    host.close()
    host.close()
    for op in (lambda: host.read("ID"), lambda: host.write("CTRL", 1),
               lambda: host.set_bits("CTRL", 1), lambda: host.clear_bits("CTRL", 1),
               lambda: host.read_field("CTRL", "MODE"),
               lambda: host.write_field("CTRL", "MODE", 1), host.barrier):
        with pytest.raises(ClosedResourceError, match=rf"^register window '{name}' is "
                           r"closed; open it again \(MmioWindow\.attach or open_path\)$"):
            op()
    assert device.read("ID") == 0x51505501  # the other side is unaffected
    with MmioWindow.attach(REGS, name) as again:
        assert again.read("ID") == 0x51505501
    device.close()
    assert not Path("/dev/shm", name).exists(), "the creator's close unlinks the name"
    with pytest.raises(MmioError, match=rf"^no register window named '{name}' "
                       rf"\(/dev/shm/{name} does not exist\); was it unlinked by its "
                       r"creator, or is the name wrong\?$"):
        MmioWindow.attach(REGS, name)


def test_unlink_rules(name: str) -> None:
    with MmioWindow.create(REGS, name=name, unlink_on_close=False) as device:
        pass
    assert device.emulated and Path("/dev/shm", name).exists()
    host = MmioWindow.attach(REGS, name)
    host.unlink()  # any side may remove the name; its mapping stays valid
    host.unlink()
    assert host.read("ID") == 0x51505501
    host.close()
    assert unlink_window(name) is False
    with MmioWindow.create(REGS, name=name) as device:
        kid = FORK.Process(target=_close_and_exit, args=(device,))
        kid.start()
        kid.join(60)
        assert kid.exitcode == 0
        assert Path("/dev/shm", name).exists(), "a forked child's close must not unlink"


def _close_and_exit(window: MmioWindow) -> None:
    window.close()
    os._exit(0)


def test_names_and_maps_are_checked(name: str) -> None:
    with pytest.raises(UsageError, match=r"^register window name 'a/b' is not valid"):
        MmioWindow.create(REGS, name="a/b")
    with pytest.raises(UsageError, match=r"^window role 'driver' is not valid; use "
                       r"'host' or 'device'$"):
        MmioWindow.create(REGS, name=name, role="driver")
    with MmioWindow.create(REGS, name=name):
        with pytest.raises(UsageError, match=rf"^a register window named '{name}' "
                           r"already exists"):
            MmioWindow.create(REGS, name=name)
        other = RegisterMap("other", [Register(r.name, r.offset, r.width) for r in REGS])
        with pytest.raises(MmioError, match=rf"^window '{name}' was created for register "
                           r"map 'qpu_test' \(fingerprint 0x[0-9a-f]{16}\), not for 'other' "
                           r"\(fingerprint 0x[0-9a-f]{16}\); attach with the map its "
                           r"creator used$"):
            MmioWindow.attach(other, name)
        bigger = RegisterMap("qpu_test", list(REGS), size=8192)
        with pytest.raises(MmioError, match=rf"^/dev/shm/{name} has 8192 bytes, not the "
                           r"12288 of a window of register map 'qpu_test'"):
            MmioWindow.attach(bigger, name)
    # an auto-generated name is a valid, removable window name
    with MmioWindow.create(REGS) as anon:
        assert anon.role == "device" and anon.name.startswith("qpuos-mmio-")
    assert not Path("/dev/shm", anon.name).exists()


# -- processes ---------------------------------------------------------------------------

_CHILD = """
import sys
sys.path.insert(0, {here!r})
from test_mmio import REGS
from qpuos.kernel.mmio import MmioWindow

with MmioWindow.attach(REGS, sys.argv[1], role="device") as dev:
    dev.write("STATUS", dev.read("CTRL") + 1)       # answer what the host wrote
    for _ in range(50_000_000):                      # wait for the doorbell
        if dev.read("DOORBELL") == 7:
            break
    else:
        sys.exit("no doorbell")
    dev.set_bits("IRQ", 1 << 5)
"""


def test_a_second_process_attaches_by_name(name: str) -> None:
    with MmioWindow.create(REGS, name=name, role="host") as host:
        host.write("CTRL", 0x1234)
        code = _CHILD.format(here=str(Path(__file__).parent))
        kid = subprocess.Popen([sys.executable, "-c", code, name], stderr=subprocess.PIPE,
                               text=True)
        deadline = time.monotonic() + 120  # a guard against hanging, not a timing check
        try:
            while host.read("STATUS") != 0x1235:
                assert kid.poll() is None, f"the device exited: {kid.communicate()[1]}"
                assert time.monotonic() < deadline, "the device never answered"
            host.write("DOORBELL", 7)
            _, err = kid.communicate(timeout=120)
        finally:
            kid.kill()
        assert kid.returncode == 0, err
        assert host.read("IRQ") == 1 << 5


def _toggle_own_bits(name: str, bits: list[int], rounds: int, start: Any) -> None:
    """Child: set and clear its own bits of COUNT; the old values it gets back show
    whether the other child ever undid one of its updates. Exits with the count seen."""
    lost = 0
    with MmioWindow.attach(REGS, name, role="device") as w:
        start.wait(60)
        for _ in range(rounds):
            for b in bits:
                lost += bool(w.set_bits("COUNT", 1 << b) & 1 << b)
                lost += not w.clear_bits("COUNT", 1 << b) & 1 << b
        for b in bits:
            w.set_bits("COUNT", 1 << b)
    os._exit(min(lost, 100))


def test_concurrent_set_bits_from_two_processes_lose_no_bit(
        pair: tuple[MmioWindow, MmioWindow], name: str) -> None:
    device, _ = pair
    halves = [list(range(0, 64, 2)), list(range(1, 64, 2))]
    start = FORK.Barrier(2)
    kids = [FORK.Process(target=_toggle_own_bits, args=(name, h, 4000, start))
            for h in halves]
    for k in kids:
        k.start()
    for k in kids:
        k.join(120)
    assert [k.exitcode for k in kids] == [0, 0], "a child saw its own bit changed"
    assert device.read("COUNT") == MASK["COUNT"]


def _raise_interrupts(name: str, count: int) -> None:
    """Child (the device): raise ``count`` interrupts, each on a bit the host has acked."""
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing check
    with MmioWindow.attach(REGS, name, role="device") as w:
        for i in range(count):
            bit = 1 << (i % 64)
            while w.read("IRQ64") & bit:
                os.sched_yield()  # the host may share this CPU: let it run
                if time.monotonic() > deadline:
                    os._exit(2)
            w.set_bits("IRQ64", bit)
        w.write("COUNT", count)
    os._exit(0)


def test_w1c_acknowledgements_race_no_interrupt_away(
        pair: tuple[MmioWindow, MmioWindow], name: str) -> None:
    """The device raises bits while the host clears what it saw: every raised bit is
    seen exactly once (an acknowledgement never clears a bit raised after the read)."""
    _, host = pair
    count = 5_000
    kid = FORK.Process(target=_raise_interrupts, args=(name, count))
    kid.start()
    acked = 0
    while True:
        done = host.read("COUNT")
        pending = host.read("IRQ64")
        if pending:
            host.write("IRQ64", pending)
            acked += pending.bit_count()
        elif done == count or not kid.is_alive():
            break
        else:
            os.sched_yield()
    kid.join(60)
    assert (kid.exitcode, acked) == (0, count)


def _flip(name: str, reg: str, rounds: int) -> None:
    with MmioWindow.attach(REGS, name, role="device") as w:
        ones = MASK[reg]
        for _ in range(rounds):
            w.write(reg, ones)
            w.write(reg, 0)
    os._exit(0)


@pytest.mark.parametrize("reg", ["CTRL", "COUNT"])
def test_wide_accesses_do_not_tear(pair: tuple[MmioWindow, MmioWindow], name: str,
                                   reg: str) -> None:
    _, host = pair
    kid = FORK.Process(target=_flip, args=(name, reg, 100_000))
    kid.start()
    seen: set[int] = set()
    while kid.is_alive() and len(seen) < 3:
        for _ in range(1000):
            seen.add(host.read(reg))
    kid.join(60)
    assert kid.exitcode == 0
    assert seen - {0, MASK[reg]} == set()


# -- real device paths -------------------------------------------------------------------

def test_open_path_maps_a_file_standing_in_for_a_device(tmp_path: Path) -> None:
    node = tmp_path / "resource0"
    node.write_bytes(bytes(3 * 4096))
    offset = 4096 + 24  # not page-aligned: the window starts inside a page
    with MmioWindow.open_path(REGS, node, offset=offset) as bar:
        assert (bar.role, bar.emulated, bar.name) == ("host", False, str(node))
        bar.write("COUNT", 0x1122334455667788)
        bar.write("IRQ", 0b101)  # W1C on hardware: a plain store, the device clears
        with pytest.raises(MmioError, match=r"read-only \(ro\)"):
            bar.write("ID", 1)
        bar.unlink()  # no name to remove: the file stays
        with open(node, "rb") as f:
            f.seek(offset)
            raw = f.read(0x38)
        assert raw[0x30:0x38] == (0x1122334455667788).to_bytes(8, "little")
        assert raw[0x0C:0x10] == (0b101).to_bytes(4, "little")
        with open(node, "r+b") as f:
            f.seek(offset + 0x08)
            f.write((3).to_bytes(4, "little"))
        assert bar.read_field("STATUS", "STATE") is Mode.HALT
    assert node.exists()


def test_open_path_refuses_bad_windows(tmp_path: Path) -> None:
    node = tmp_path / "short"
    node.write_bytes(bytes(4096))
    with pytest.raises(MmioError, match=rf"^{re.escape(str(node))} has 4096 bytes; a "
                       r"4096-byte window at offset 0x8 needs 4104; check the offset"):
        MmioWindow.open_path(REGS, node, offset=8)
    with pytest.raises(MmioError, match=r"^window offset 4 into .* is not a non-negative "
                       r"multiple of 8; registers must stay aligned$"):
        MmioWindow.open_path(REGS, node, offset=4)
    with pytest.raises(MmioError, match=r"^cannot open register window .*/missing: No "
                       r"such file or directory; check the path"):
        MmioWindow.open_path(REGS, tmp_path / "missing")


@pytest.mark.skipif(not os.path.exists("/dev/mem"),
                    reason="no /dev/mem on this machine (CONFIG_DEVMEM off)")
def test_dev_mem_reads_match_pread() -> None:
    """Read-only: the legacy BIOS area (0xF0000) through a window and through pread."""
    rom = RegisterMap("bios", [Register("W0", 0x0, access=Access.RO),
                               Register("Q1", 0x8, width=64, access=Access.RO)])
    try:
        window = MmioWindow.open_path(rom, "/dev/mem", offset=0xF0000)
    except MmioError as exc:
        pytest.skip(f"/dev/mem is present but refuses this mapping: {exc}")
    with window, open("/dev/mem", "rb", buffering=0) as mem:
        mem.seek(0xF0000)
        raw = mem.read(16)
        assert (window.read("W0"), window.read("Q1")) == \
            (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[8:], "little"))


# -- without numpy and numba (the boot image's case) -------------------------------------

_NO_NUMPY = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numpy", "numba", "llvmlite"):
            raise ImportError(f"{name} is made unimportable by this test")
        return None

sys.meta_path.insert(0, Refuse())
import types
import qpuos
# as the boot image's /init does: qpuos.kernel's __init__ re-exports mheap (numpy)
kernel = sys.modules["qpuos.kernel"] = qpuos.kernel = types.ModuleType("qpuos.kernel")
kernel.__path__ = [qpuos.__path__[0] + "/kernel"]
from qpuos.kernel.mmio import Access, MmioWindow, Register, RegisterMap

regs = RegisterMap("bar", [Register("ID", 0x0, access=Access.RO),
                           Register("DATA", 0x8, width=64),
                           Register("IRQ", 0x10, access=Access.W1C),
                           Register("BELL", 0x14, width=16, access=Access.WO)])
with MmioWindow.open_path(regs, sys.argv[1]) as bar:
    bar.write("DATA", 0x0102030405060708)
    bar.write("IRQ", 0b101)
    bar.write("BELL", 0xBEEF)
    print(hex(bar.read("ID")), hex(bar.read("DATA")), hex(bar.read("IRQ")))
    try:
        bar.set_bits("DATA", 1)
    except Exception as exc:
        print(type(exc).__name__, exc)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "numba")))
"""


def test_open_path_needs_neither_numpy_nor_numba(tmp_path: Path) -> None:
    """What the boot image relies on: plain accesses import neither; atomics say why."""
    bar = tmp_path / "resource0"
    bar.write_bytes(b"\xed\x00\x00\x01" + bytes(4092))
    out = subprocess.run([sys.executable, "-c", _NO_NUMPY, str(bar)], capture_output=True,
                         text=True, check=True, timeout=120).stdout.splitlines()
    assert out[0] == "0x10000ed 0x102030405060708 0x5"   # a real W1C is a plain store
    assert re.match(r"^MmioError atomic register operations \(set_bits, .*\) need numba: "
                    r"numpy is made unimportable by this test; install numba", out[1])
    assert out[2] == "[]"
    raw = bar.read_bytes()
    assert raw[0x8:0x10] == bytes.fromhex("0807060504030201")
    assert raw[0x14:0x16] == bytes.fromhex("efbe")


# -- the window against a model ----------------------------------------------------------

_NAMES = [r.name for r in REGS]


class WindowModel(RuleBasedStateMachine):
    """Random accesses from both roles against a dict of register values."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"qpuos-test-mmio-{uuid.uuid4().hex[:12]}"
        self.device = MmioWindow.create(REGS, name=self.name)
        self.host = MmioWindow.attach(REGS, self.name)
        self.model = {r.name: r.reset for r in REGS}

    def teardown(self) -> None:
        self.host.close()
        self.device.close()

    @rule(reg=st.sampled_from(_NAMES), data=st.data())
    def device_writes(self, reg: str, data: st.DataObject) -> None:
        value = data.draw(st.integers(0, MASK[reg]))
        self.device.write(reg, value)
        self.model[reg] = value

    @rule(reg=st.sampled_from(_NAMES), data=st.data())
    def host_writes(self, reg: str, data: st.DataObject) -> None:
        value = data.draw(st.integers(0, MASK[reg]))
        access = REGS[reg].access
        if access is Access.RO:
            with pytest.raises(MmioError):
                self.host.write(reg, value)
            return
        self.host.write(reg, value)
        self.model[reg] = self.model[reg] & ~value if access is Access.W1C else value

    @rule(reg=st.sampled_from(_NAMES), data=st.data(), setting=st.booleans())
    def device_sets_or_clears(self, reg: str, data: st.DataObject, setting: bool) -> None:
        mask = data.draw(st.integers(0, MASK[reg]))
        op = self.device.set_bits if setting else self.device.clear_bits
        assert op(reg, mask) == self.model[reg]
        self.model[reg] = self.model[reg] | mask if setting else self.model[reg] & ~mask

    @rule(data=st.data())
    def host_writes_a_field(self, data: st.DataObject) -> None:
        field = data.draw(st.sampled_from(["ENABLE", "MODE", "PRIO"]))
        lsb, mask, values = REGS.field_spec("CTRL", field)
        value = data.draw(st.sampled_from(list(values)) if values else st.integers(0, mask))
        self.host.write_field("CTRL", field, value)
        self.model["CTRL"] = self.model["CTRL"] & ~(mask << lsb) | value << lsb

    @rule(reg=st.sampled_from(_NAMES))
    def host_reads(self, reg: str) -> None:
        if REGS[reg].access is Access.WO:
            with pytest.raises(MmioError):
                self.host.read(reg)
        else:
            assert self.host.read(reg) == self.model[reg]

    @invariant()
    def device_sees_the_model(self) -> None:
        seen = {n: self.device.read(n) for n in _NAMES}
        assert {n for n in _NAMES if seen[n] != self.model[n]} == set()


WindowModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestWindowModel = WindowModel.TestCase

"""Ring lifecycle, names and unlink rules, errors and messages, waiting, numpy, arena."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qpuos.errors import (
    ClosedResourceError,
    RingCorrupted,
    RingEmpty,
    RingError,
    RingFull,
    RingTimeout,
    UsageError,
    WouldBlock,
)
from qpuos.ipc import MpmcRing, RecordRing, SpscRing, unlink_ring

FACTORIES: dict[str, Any] = {
    "spsc": lambda **kw: SpscRing.create(slot_size=8, capacity=4, **kw),
    "records": lambda **kw: RecordRing.create(capacity=64, **kw),
    "mpmc": lambda **kw: MpmcRing.create(slot_size=8, capacity=4, **kw),
}
CLASSES: dict[str, Any] = {"spsc": SpscRing, "records": RecordRing, "mpmc": MpmcRing}


@pytest.fixture(params=sorted(FACTORIES))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- names, ownership, unlink --------------------------------------------------------


def test_creator_unlinks_on_close_attacher_does_not(kind: str) -> None:
    ring = FACTORIES[kind]()
    path = Path("/dev/shm") / ring.name
    peer = CLASSES[kind].attach(ring.name)
    assert path.exists() and ring.owner and not peer.owner
    peer.close()
    assert path.exists()
    ring.send(b"8 bytes!")     # the creator still works after its peer left
    ring.close()
    assert not path.exists()
    assert not Path(f"{path}.data").exists() and not Path(f"{path}.space").exists()
    with pytest.raises(RingError, match=r"^no ring named 'qpuos-ring-\w+' \(/dev/shm/"):
        CLASSES[kind].attach(ring.name)


def test_peers_keep_working_after_the_creator_unlinks() -> None:
    ring = SpscRing.create(slot_size=8, capacity=4, blocking=False)
    peer = SpscRing.attach(ring.name)
    ring.unlink()
    assert not Path("/dev/shm", ring.name).exists()
    ring.send(b"still ok")
    assert peer.recv(timeout=0) == b"still ok"
    peer.close()
    ring.close()   # the name is already gone: nothing to do, no error


def test_unlink_on_close_false_keeps_the_name_until_unlink_ring() -> None:
    ring = SpscRing.create(slot_size=8, name="qpuos-test-keep", unlink_on_close=False)
    try:
        ring.close()
        assert Path("/dev/shm/qpuos-test-keep").exists()
        with SpscRing.attach("qpuos-test-keep") as again:
            assert again.slot_size == 8 and again.capacity == 1024
    finally:
        assert unlink_ring("qpuos-test-keep") is True
    assert unlink_ring("qpuos-test-keep") is False


def test_a_taken_name_is_refused_and_left_alone() -> None:
    with SpscRing.create(slot_size=8, name="qpuos-test-taken") as ring:
        with pytest.raises(UsageError, match=r"^a ring named 'qpuos-test-taken' already "
                                              r"exists \(/dev/shm/qpuos-test-taken\); "):
            SpscRing.create(slot_size=8, name="qpuos-test-taken")
        ring.send(b"12345678")
        assert ring.recv(timeout=0) == b"12345678"


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "x" * 201, "sp ace"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match=r"^ring name .* is not valid; use 1-200"):
        SpscRing.create(slot_size=8, name=name)


@pytest.fixture
def shm_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths under /dev/shm this test creates (other xdist workers make their own)."""
    made: list[str] = []
    real_open, real_mkfifo = os.open, os.mkfifo

    def record_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if str(path).startswith("/dev/shm/") and flags & os.O_CREAT:
            made.append(str(path))
        return real_open(path, flags, *args, **kw)

    def record_mkfifo(path: Any, *args: Any, **kw: Any) -> None:
        made.append(str(path))
        real_mkfifo(path, *args, **kw)

    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "mkfifo", record_mkfifo)
    return made


def test_anonymous_ring_is_reachable_through_proc_and_leaves_no_file(
        kind: str, shm_files: list[str]) -> None:
    ring = FACTORIES[kind](anonymous=True)
    assert ring.name.startswith(f"/proc/{os.getpid()}/fd/")
    peer = CLASSES[kind].attach(ring.name)
    peer.send(b"anon-rec")
    assert ring.recv(timeout=1.0) == b"anon-rec"
    peer.close()
    ring.close()
    assert shm_files == []


def test_blocking_rings_create_their_doorbells_and_spinning_rings_do_not() -> None:
    with SpscRing.create(slot_size=8, blocking=True) as a, \
            SpscRing.create(slot_size=8, blocking=False) as b:
        assert Path(f"/dev/shm/{a.name}.data").exists()
        assert not Path(f"/dev/shm/{b.name}.data").exists()
        assert a.blocking and not b.blocking


# -- header checks -----------------------------------------------------------------


def test_attaching_with_the_wrong_class_names_the_right_one() -> None:
    with SpscRing.create(slot_size=8) as ring:
        with pytest.raises(RingCorrupted, match=r"is a SpscRing; open it with that class, "
                                                r"not MpmcRing$"):
            MpmcRing.attach(ring.name)
        with pytest.raises(RingCorrupted, match=r"not RecordRing$"):
            RecordRing.attach(ring.name)


def test_a_file_that_is_not_a_ring_is_refused() -> None:
    path = Path("/dev/shm/qpuos-test-garbage")
    try:
        path.write_bytes(b"\x07" * 8192)
        with pytest.raises(RingCorrupted, match=r"is not a qpuos ring of layout version 1"):
            SpscRing.attach(path.name)
        path.write_bytes(b"tiny")
        with pytest.raises(RingCorrupted, match=r"has 4 bytes, less than a ring header"):
            SpscRing.attach(path.name)
    finally:
        path.unlink()


# -- closed ------------------------------------------------------------------------


def test_close_is_idempotent_and_every_use_after_it_says_closed(kind: str) -> None:
    ring = FACTORIES[kind]()
    with ring as entered:
        assert entered is ring
    ring.close()
    assert ring.closed and "closed" in repr(ring)
    cls = type(ring).__mro__[0].__name__.lstrip("_").replace("Fenced", "")
    pattern = rf"^{cls} '{ring.name}' is closed; attach it again to use it$"
    calls = [lambda: ring.send(b"12345678"), lambda: ring.recv(timeout=0),
             lambda: len(ring), ring.reset, ring.release]
    if kind == "records":
        calls += [lambda: ring.claim(3), ring.peek, lambda: ring.recv_many(2)]
    elif kind == "spsc":
        calls += [lambda: ring.claim(1), lambda: ring.peek(1), lambda: ring.publish(1)]
    else:
        calls += [ring.claim, ring.peek, ring.recover]
    for call in calls:
        with pytest.raises(ClosedResourceError, match=pattern):
            call()


def test_views_handed_out_survive_close_without_error() -> None:
    ring = SpscRing.create(slot_size=8, capacity=4)
    ring.send(b"abcdefgh")
    view = ring.peek(1)
    arr = np.frombuffer(view, dtype=np.uint8)
    ring.close()                 # the mapping stays until the caller drops its views
    assert bytes(arr) == b"abcdefgh"
    del arr, view


# -- arguments and messages ----------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 1, 3, 1000])
def test_capacity_must_be_a_power_of_two(capacity: int) -> None:
    with pytest.raises(UsageError, match=rf"^capacity={capacity} slots is not a power of "
                                         r"two in 2..2\*\*32; use \d+ or \d+$"):
        SpscRing.create(slot_size=8, capacity=capacity)


def test_wait_mode_is_checked_before_anything_is_created(shm_files: list[str]) -> None:
    with pytest.raises(UsageError, match=r"^wait='block' needs blocking=True"):
        SpscRing.create(slot_size=8, blocking=False, wait="block")
    with pytest.raises(UsageError, match=r"^wait='nap' is not a wait mode"):
        MpmcRing.create(slot_size=8, wait="nap")  # type: ignore[arg-type]
    assert shm_files == []


@pytest.mark.parametrize("bad", [b"short", b"far too long!", 42])
def test_fixed_records_must_be_exactly_one_slot(bad: Any) -> None:
    for cls in (SpscRing, MpmcRing):
        with cls.create(slot_size=8, capacity=4) as ring:
            with pytest.raises(UsageError, match=r"^a record of .* is exactly 8 bytes; got "):
                ring.send(bad)
            ring.send(b"8 bytes!")    # nothing half-sent: the ring still works
            assert ring.recv(timeout=0) == b"8 bytes!"


def test_record_larger_than_the_ring_is_refused_with_the_limit() -> None:
    with RecordRing.create(capacity=64) as ring:
        assert ring.max_record == 24
        with pytest.raises(UsageError, match=r"^a record of 25 bytes does not fit .* \(max "
                                             r"24\); use a larger capacity or pass arena="):
            ring.send(b"x" * 25)
        ring.send(b"y" * 24)
        assert ring.recv(timeout=0) == b"y" * 24


def test_full_and_empty_are_would_block_errors(kind: str) -> None:
    with FACTORIES[kind]() as ring:
        with pytest.raises(RingEmpty) as empty:
            ring.recv(timeout=0)
        assert isinstance(empty.value, WouldBlock)
        with pytest.raises(RingFull) as full:
            for _ in range(100):
                ring.send(b"12345678", timeout=0)
        assert isinstance(full.value, WouldBlock)


def test_timeouts_raise_ring_timeout(kind: str) -> None:
    with FACTORIES[kind](wait="yield") as ring:
        with pytest.raises(RingTimeout, match=r"^nothing arrived on .* within 0.02 s$"):
            ring.recv(timeout=0.02)
        with pytest.raises(RingTimeout, match=r"within 0.02 s"):
            for _ in range(100):
                ring.send(b"12345678", timeout=0.02)
        assert isinstance(RingTimeout("x"), TimeoutError)


def test_claim_and_peek_refuse_to_nest() -> None:
    with SpscRing.create(slot_size=8, capacity=4) as ring:
        ring.claim(1)
        with pytest.raises(UsageError, match=r"^publish\(\) the claimed slots before"):
            ring.send(b"12345678")
        with pytest.raises(UsageError, match=r"^publish\(\) the claimed slots before"):
            ring.claim(1)
        with pytest.raises(UsageError, match=r"^publish\(n=2\) but 1 slot\(s\) are claimed$"):
            ring.publish(2)
        ring.publish(0)            # give it back unpublished
        ring.send(b"12345678")
        ring.peek(1)
        with pytest.raises(UsageError, match=r"^release\(\) the records from peek\(\)"):
            ring.peek(1)
        ring.release()
        assert len(ring) == 0


def test_mpmc_claim_dropped_by_close_becomes_a_tombstone() -> None:
    ring = MpmcRing.create(slot_size=8, capacity=4)
    peer = MpmcRing.attach(ring.name)
    view = peer.claim()
    view[:4] = b"half"
    peer.close()                   # never publishes the half-written record...
    ring.send(b"complete")
    assert ring.recv(timeout=0) == b"complete"   # ...and nobody ever reads it
    with pytest.raises(RingEmpty):
        ring.recv(timeout=0)
    ring.close()


# -- numpy -------------------------------------------------------------------------

INSTR = np.dtype([("t_ns", "<u8"), ("opcode", "<u2"), ("qubits", "<u2", (2,)),
                  ("param", "<f4"), ("pad", "u1", (4,))])


def test_structured_arrays_go_straight_into_slots() -> None:
    with SpscRing.create(slot_size=INSTR.itemsize, capacity=16) as ring:
        out = ring.claim_array(10, INSTR)
        out["t_ns"] = np.arange(10) * 20
        out["opcode"] = 3
        out["qubits"] = [[i, i + 1] for i in range(10)]
        out["param"] = 0.5
        ring.publish()
        del out
        got = ring.peek_array(10, INSTR)
        assert got["t_ns"].tolist() == list(range(0, 200, 20))
        assert got["qubits"][9].tolist() == [9, 10]
        assert not got.flags.writeable
        del got
        ring.release()
        batch = np.zeros(20, INSTR)
        batch["opcode"] = np.arange(20)
        sent = ring.send_many(batch[:12])
        back = np.zeros(12, INSTR)
        assert (sent, ring.recv_into(back)) == (12, 12)
        assert back["opcode"].tolist() == list(range(12))


def test_dtype_must_match_the_slot() -> None:
    with SpscRing.create(slot_size=8) as ring, pytest.raises(
            UsageError, match=rf"^dtype itemsize {INSTR.itemsize} != slot_size 8$"):
        ring.claim_array(1, INSTR)


# -- waiting -----------------------------------------------------------------------


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # surfaced by the test
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


@pytest.mark.parametrize("cls", [SpscRing, MpmcRing])
def test_a_sleeping_consumer_is_woken_by_a_send(cls: Any) -> None:
    with cls.create(slot_size=8, capacity=4, wait="block", spin_s=0.0) as ring:
        t, box = _in_thread(lambda: ring.recv(timeout=10.0))
        # let it reach its sleep (not required for correctness: a send before it
        # sleeps must be seen by its re-check)
        threading.Event().wait(0.05)
        ring.send(b"wake up!")
        t.join(15.0)
        assert box == [b"wake up!"]


def test_a_sleeping_producer_is_woken_when_room_appears() -> None:
    with SpscRing.create(slot_size=8, capacity=2, wait="block", spin_s=0.0) as ring:
        ring.send(b"first..."), ring.send(b"second..")
        t, box = _in_thread(lambda: ring.send(b"third...", timeout=10.0))
        threading.Event().wait(0.05)
        assert ring.recv(timeout=0) == b"first..."
        t.join(15.0)
        assert box == [None]
        assert [ring.recv(timeout=0), ring.recv(timeout=0)] == [b"second..", b"third..."]


@pytest.mark.parametrize("wait", ["spin", "yield", "block"])
def test_every_wait_mode_hands_over_between_threads(wait: str) -> None:
    n = 30 if wait == "spin" else 300   # two spinning threads trade the GIL every 5 ms
    ring = RecordRing.create(capacity=64, wait=wait, spin_s=0.0)   # type: ignore[arg-type]
    back = RecordRing.create(capacity=64, wait=wait, spin_s=0.0)   # type: ignore[arg-type]
    with ring, back:
        def echo() -> int:
            for _ in range(n):
                back.send(ring.recv(timeout=10.0), timeout=10.0)
            return n

        t, box = _in_thread(echo)
        for i in range(n):
            ring.send(i.to_bytes(4, "little"), timeout=10.0)
            assert back.recv(timeout=10.0) == i.to_bytes(4, "little")
        t.join(15.0)
        assert box == [n]


# -- variable-length records -------------------------------------------------------


def test_every_record_size_at_every_offset_near_the_wrap() -> None:
    """Each size 0..max at each 8-byte offset of the area: pads, exact fits, overruns."""
    cap = 256
    with RecordRing.create(capacity=cap, blocking=False) as ring:
        for offset in range(0, cap, 8):
            for size in range(ring.max_record + 1):
                ring.reset()
                moved = 0
                while moved < offset:                    # move head and tail to offset
                    step = min(offset - moved, 128)
                    ring.send(b"f" * (step - 8), timeout=0)
                    assert ring.recv(timeout=0) == b"f" * (step - 8)
                    moved += step
                rec = bytes((size + i) % 256 for i in range(size))
                ring.send(rec, timeout=0)
                assert ring.recv(timeout=0) == rec, (offset, size)
                ring.send(b"after", timeout=0)
                assert ring.recv(timeout=0) == b"after", (offset, size)
                assert len(ring) == 0


def test_records_keep_their_boundaries_across_many_laps() -> None:
    with RecordRing.create(capacity=256) as ring:
        sent = []
        for i in range(2000):
            rec = bytes([i % 251]) * (i * 7 % 57)
            ring.send(rec, timeout=0)
            sent.append(rec)
            if i % 3 == 2:
                got = ring.recv_many(3, timeout=0)
                assert got == sent[:len(got)]
                del sent[:len(got)]


class _Arena:
    """A stand-in for the [heap] arena: bump allocation over a bytearray."""

    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.next = 0
        self.live: dict[int, int] = {}

    def alloc(self, nbytes: int) -> int:
        off = self.next
        self.next += (nbytes + 63) // 64 * 64
        self.live[off] = nbytes
        return off

    def view(self, offset: int) -> memoryview:
        return memoryview(self.buf)[offset:offset + self.live[offset] + 40]  # rounded up

    def free(self, offset: int) -> None:
        del self.live[offset]


def test_large_payloads_travel_by_reference_through_an_arena_hook() -> None:
    arena = _Arena()
    with RecordRing.create(capacity=128, arena=arena, inline_max=32) as ring:
        big = bytes(range(256)) * 4
        ring.send(big)
        ring.send(b"small")
        assert len(ring) == 8 + 16 + 8 + 8          # a reference, not the payload
        assert ring.recv(timeout=0) == big
        assert ring.recv(timeout=0) == b"small"
        assert arena.live == {}
        ring.send(big)
        view = ring.peek(timeout=0)
        assert bytes(view) == big and list(arena.live) == [1024]
        ring.release()
        assert arena.live == {}
        with RecordRing.attach(ring.name) as no_arena:
            ring.send(big)
            with pytest.raises(UsageError, match=r"by reference to an arena block, and "
                                                 r"this side has no arena; attach with "):
                no_arena.recv(timeout=0)


def test_len_and_repr() -> None:
    with SpscRing.create(slot_size=8, capacity=4, name="qpuos-test-repr") as ring:
        ring.send(b"12345678")
        assert len(ring) == 1
        assert repr(ring) == ("<SpscRing 'qpuos-test-repr' capacity=4 slot_size=8 "
                              "1 queued>")


def test_a_role_stays_registered_until_the_last_handle_of_this_process_closes() -> None:
    ring = SpscRing.create(slot_size=8, capacity=4)
    second = SpscRing.attach(ring.name)
    observer = SpscRing.attach(ring.name)
    ring.send(b"from one"), second.send(b"from two")      # one producer: this process
    assert observer.recv(timeout=0) == b"from one"
    second.close()
    assert not observer._peer_word(0) >> 63                # still a live producer
    ring.close()
    assert observer._peer_word(0) >> 63                    # now it has closed its end
    assert observer.recv(timeout=0) == b"from two"
    observer.close()


def test_no_shared_word_is_written_with_struct_pack_into() -> None:
    """struct.pack_into zeroes its field before writing it: a peer could read 0."""
    import qpuos.ipc

    package = Path(qpuos.ipc.__file__).parent
    offenders = {p.name for p in package.glob("*.py")
                 if ".pack_into(" in p.read_text() or "import struct" in p.read_text()}
    assert offenders == set()


def test_a_creator_that_exits_without_closing_leaves_nothing_in_dev_shm() -> None:
    import subprocess
    import sys

    code = ("from qpuos.ipc import SpscRing, MpmcRing, RecordRing\n"
            "rings = [SpscRing.create(slot_size=8), MpmcRing.create(slot_size=8),\n"
            "         RecordRing.create(blocking=False)]\n"
            "print(' '.join(r.name for r in rings))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    names = out.stdout.split()
    assert len(names) == 3 and out.stderr == ""
    left = {p.name for n in names for p in Path("/dev/shm").glob(n + "*")}
    assert left == set()

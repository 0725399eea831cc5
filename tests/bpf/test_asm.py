"""The assembler: encodings checked against <linux/bpf.h>, labels, maps, helpers, errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.bpf import asm
from qpuos.bpf._helpers import helper_id
from qpuos.bpf.asm import (
    R0,
    R1,
    R2,
    R6,
    R10,
    Label,
    add,
    and_,
    arsh,
    assemble,
    atomic_add,
    call,
    div,
    endian,
    exit_,
    ja,
    jeq,
    jge,
    jgt,
    jle,
    jlt,
    jne,
    jset,
    jsge,
    jsgt,
    jsle,
    jslt,
    ld_imm64,
    ld_map_fd,
    ld_map_value,
    load,
    lsh,
    mod,
    mov,
    mul,
    neg,
    or_,
    rsh,
    store,
    sub,
    xor,
)
from qpuos.errors import UsageError


def _one(insn: asm.Insn) -> str:
    return assemble([insn]).hex()


@pytest.mark.parametrize(("insn", "encoded"), [
    # opcode, dst|src<<4, off (le16), imm (le32): values from <linux/bpf.h> classes/ops
    (mov(R0, 0), "b700000000000000"),
    (mov(R6, R1), "bf16000000000000"),
    (add(R2, -4), "07020000fcffffff"),
    (add(R2, -4, width=32), "04020000fcffffff"),
    (sub(R1, R2), "1f21000000000000"),
    (mul(R1, 3), "2701000003000000"),
    (div(R1, 3), "3701000003000000"),
    (or_(R1, 1), "4701000001000000"),
    (and_(R1, 0xFF), "57010000ff000000"),
    (lsh(R1, 2), "6701000002000000"),
    (rsh(R0, 32), "7700000020000000"),
    (neg(R1), "8701000000000000"),
    (mod(R1, 7), "9701000007000000"),
    (xor(R1, R1), "af11000000000000"),
    (arsh(R1, 1), "c701000001000000"),
    (endian(R1, 16), "dc01000010000000"),
    (endian(R1, 32, big=False), "d401000020000000"),
    (call("get_current_pid_tgid"), "850000000e000000"),
    (call(5), "8500000005000000"),
    (exit_(), "9500000000000000"),
    (load(R1, R6, 8), "7961080000000000"),
    (load(R1, R6, -2, size=2), "6961feff00000000"),
    (load(R1, R6, 1, size=1), "7161010000000000"),
    (load(R1, R6, 4, size=4), "6161040000000000"),
    (store(R10, -4, R1, size=4), "631afcff00000000"),
    (store(R10, -8, 7), "7a0af8ff07000000"),
    (atomic_add(R0, 0, R1), "db10000000000000"),
    (atomic_add(R0, 0, R1, size=4), "c310000000000000"),
    (ja(2), "0500020000000000"),
    (jeq(R1, 0, 1), "1501010000000000"),
    (jgt(R1, R2, 1), "2d21010000000000"),
    (jge(R1, 5, 1), "3501010005000000"),
    (jset(R1, 5, 1), "4501010005000000"),
    (jne(R0, 42, -1), "5500ffff2a000000"),
    (jsgt(R1, 5, 1), "6501010005000000"),
    (jsge(R1, 5, 1), "7501010005000000"),
    (jlt(R1, 5, 1), "a501010005000000"),
    (jle(R1, 5, 1), "b501010005000000"),
    (jslt(R1, 5, 1), "c501010005000000"),
    (jsle(R1, 5, 1), "d501010005000000"),
    (jeq(R1, 5, 1, width=32), "1601010005000000"),
    (ld_imm64(R1, 0x1122334455667788), "1801000088776655" "0000000044332211"),
    (ld_imm64(R1, -1), "18010000ffffffff" "00000000ffffffff"),
    (ld_map_fd(R1, 7), "1811000007000000" "0000000000000000"),
    (ld_map_value(R1, 7, 16), "1821000007000000" "0000000010000000"),
])
def test_encodings_match_the_instruction_set(insn: asm.Insn, encoded: str) -> None:
    assert _one(insn) == encoded


def test_labels_resolve_forward_and_backward_counting_wide_slots() -> None:
    prog = [Label("top"), ld_imm64(R1, 1), jeq(R1, 0, "end"), ja("top"), Label("end"),
            exit_()]
    words = [struct.unpack_from("<BBhi", assemble(prog), 8 * i) for i in range(5)]
    assert words[2][2] == 1                  # slot 2 -> "end" at slot 4
    assert words[3][2] == -4                 # slot 3 -> "top" at slot 0


def test_maps_resolve_by_name_object_or_fd() -> None:
    class FakeMap:
        fd = 9

    named = assemble([ld_map_fd(R1, "counts")], maps={"counts": 5})
    by_obj = assemble([ld_map_fd(R1, FakeMap())])
    via_name_obj = assemble([ld_map_value(R1, "m", 8)], maps={"m": FakeMap()})
    assert struct.unpack_from("<i", named, 4)[0] == 5
    assert struct.unpack_from("<i", by_obj, 4)[0] == 9
    assert struct.unpack_from("<ii", via_name_obj[4:]) == (9, 0)
    assert struct.unpack_from("<i", via_name_obj, 12)[0] == 8


def test_mistakes_raise_usage_errors_naming_them() -> None:
    with pytest.raises(UsageError, match=r"^jump to undefined label 'nowhere'; defined: "
                                         r"here$"):
        assemble([Label("here"), ja("nowhere")])
    with pytest.raises(UsageError, match=r"^label 'x' is defined twice$"):
        assemble([Label("x"), Label("x")])
    with pytest.raises(UsageError, match=r"^instruction refers to map 'm' but assemble\(\) "
                                         r"got maps \[\]; pass maps="):
        assemble([ld_map_fd(R1, "m")])
    with pytest.raises(UsageError, match=r"^no eBPF helper named 'map_lookup'; close: "
                                         r"map_lookup_elem"):
        call("map_lookup")
    with pytest.raises(UsageError, match=r"^mov immediate 4294967296 does not fit 32 bits"):
        mov(R1, 1 << 32)
    with pytest.raises(UsageError, match=r"^offset 40000 does not fit the signed 16-bit"):
        load(R1, R2, 40000)
    with pytest.raises(UsageError, match=r"^memory access size must be 1, 2, 4 or 8 bytes, "
                                         r"got 3$"):
        load(R1, R2, 0, size=3)
    with pytest.raises(UsageError, match=r"^mov's destination must be a register R0\.\.R10,"
                                         r" got 1$"):
        mov(1, 2)  # type: ignore[arg-type]
    far = [jeq(R1, 0, "end"), *([mov(R0, 0)] * 40000), Label("end"), exit_()]
    with pytest.raises(UsageError, match=r"^jump to 'end' spans 40000 slots"):
        assemble(far)


def test_helper_names_take_an_optional_prefix() -> None:
    assert helper_id("bpf_ringbuf_output") == helper_id("ringbuf_output") == 130


def _decode_targets(code: bytes) -> dict[int, int]:
    """slot of each jump -> slot it lands on (decoding what assemble wrote)."""
    out, slot = {}, 0
    while slot * 8 < len(code):
        op, _, off, _ = struct.unpack_from("<BBhi", code, slot * 8)
        if op & 0x07 in (asm.JMP, asm.JMP32) and op & 0xF0 not in (0x80, 0x90):
            out[slot] = slot + 1 + off
        slot += 2 if op == 0x18 else 1
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["mov", "wide", "jump", "label"]),
                          st.integers(0, 5)), min_size=1, max_size=40))
def test_every_jump_lands_on_its_label(spec: list[tuple[str, int]]) -> None:
    """Property: after assembly, each jump's target slot is its label's slot."""
    labels = [f"L{i}" for i in range(6)]
    prog: list[asm.Insn | Label] = [Label(name) for name in labels[:1]]
    for what, k in spec:
        if what == "mov":
            prog.append(mov(R1, k))
        elif what == "wide":
            prog.append(ld_imm64(R2, k << 40))
        elif what == "jump":
            prog.append(jne(R1, k, labels[k]))
        elif labels[k] not in {i.name for i in prog if isinstance(i, Label)}:
            prog.append(Label(labels[k]))
    prog += [Label(n) for n in labels if n not in {i.name for i in prog
                                                   if isinstance(i, Label)}]
    prog.append(exit_())
    where, slot, expected = {}, 0, {}
    for item in prog:
        if isinstance(item, Label):
            where[item.name] = slot
        else:
            slot += item.slots
    slot = 0
    for item in prog:
        if isinstance(item, asm.Insn):
            if item.target is not None:
                expected[slot] = item.target
            slot += item.slots
    got = _decode_targets(assemble(prog))
    assert {s: t for s, t in got.items() if where[expected[s]] != t} == {}
    assert set(got) == set(expected)

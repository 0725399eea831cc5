"""The instruction format: layout, round trips over random schedules, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import IsaError
from qpuos.quantum.circuit import Circuit, Condition
from qpuos.quantum.compile import compile_circuit
from qpuos.quantum.device import load_device
from qpuos.quantum.gates import GATES
from qpuos.quantum.isa import (
    FLAG_TERMINAL,
    NO_CLBIT,
    NO_QUBIT,
    OPCODE_OF,
    RECORD,
    VERSION,
    Opcode,
    decode,
    encode,
    num_params,
)
from qpuos.quantum.qasm import parse_qasm
from qpuos.quantum.timing import DurationModel, Schedule, ScheduledOp, schedule

ENCODABLE = sorted(n for n, s in GATES.items() if s.num_qubits <= 2 and n in OPCODE_OF)


def test_record_layout_is_the_documented_one() -> None:
    offsets = {name: RECORD.fields[name][1] for name in RECORD.names}
    assert RECORD.itemsize == 64
    assert offsets == {"seq": 0, "opcode": 4, "version": 5, "flags": 6, "q0": 8, "q1": 10,
                       "clbit": 12, "start_ns": 16, "duration_ns": 24, "params": 32}
    assert all(RECORD.fields[n][0].byteorder in "<|=" for n in RECORD.names)


def test_every_standard_gate_on_two_qubits_or_fewer_has_an_opcode() -> None:
    missing = {n for n, s in GATES.items() if s.num_qubits <= 2} - set(OPCODE_OF)
    assert missing == set()
    assert len(set(OPCODE_OF.values())) == len(OPCODE_OF)
    assert all(num_params(n) == GATES[n].num_params for n in ENCODABLE)


@st.composite
def circuits(draw: st.DrawFn) -> Circuit:
    n = draw(st.integers(2, 6))
    m = draw(st.integers(0, 3))
    c = Circuit.with_registers([("q", n)], [("c", m)] if m else [])
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["gate", "gate", "gate", "measure", "reset",
                                     "barrier"]))
        if kind == "measure" and m:
            c.append("measure", [draw(st.integers(0, n - 1))],
                     clbits=[draw(st.integers(0, m - 1))])
        elif kind == "reset":
            c.append("reset", [draw(st.integers(0, n - 1))])
        elif kind == "barrier":
            c.append("barrier", draw(st.lists(st.integers(0, n - 1), min_size=1,
                                              max_size=n, unique=True)))
        else:
            name = draw(st.sampled_from(ENCODABLE))
            spec = GATES[name]
            qs = draw(st.lists(st.integers(0, n - 1), min_size=spec.num_qubits,
                               max_size=spec.num_qubits, unique=True))
            ps = draw(st.lists(st.floats(-7, 7), min_size=spec.num_params,
                               max_size=spec.num_params))
            c.append(name, qs, ps)
    return c


@settings(max_examples=60, deadline=None)
@given(circuits(), st.sampled_from(["asap", "alap"]))
def test_round_trip_keeps_every_operation_in_a_dependency_order(c: Circuit,
                                                                 policy: str) -> None:
    s = schedule(c, DurationModel(), policy=policy)  # type: ignore[arg-type]
    recs = encode(s)
    back = decode(recs)
    assert [r.seq for r in back] == list(range(len(c.instructions) + 1))
    assert back[-1].name == "end" and back[-1].start_ns == s.makespan_ns
    want = sorted((op.start_ns, op.index) for op in s.ops)
    for (start, index), r in zip(want, back, strict=False):
        inst = c.instructions[index]
        assert (r.name, r.start_ns, r.duration_ns) == (inst.name, start,
                                                      s.ops[index].duration_ns)
        assert r.qubits == (() if inst.name == "barrier" else inst.qubits)
        assert r.params == inst.params
        assert r.clbit == (inst.clbits[0] if inst.name == "measure" else None)
    # issue order never puts an operation before one it depends on (same qubit)
    last_start: dict[int, float] = {}
    for r in back[:-1]:
        for q in r.qubits:
            assert last_start.get(q, -math.inf) <= r.start_ns
            last_start[q] = r.start_ns
    # encoding the decoded records again gives the same bytes
    assert encode(s).tobytes() == recs.tobytes()


def test_terminal_measurements_are_flagged_and_mid_circuit_ones_are_not() -> None:
    c = Circuit.with_registers([("q", 2)], [("c", 2)])
    c.append("measure", [0], clbits=[0])
    c.append("x", [0])
    c.append("measure", [0], clbits=[1])
    c.append("measure", [1], clbits=[0])
    got = {(r.qubits, r.clbit, r.flags) for r in decode(encode(schedule(c, DurationModel())))
           if r.name == "measure"}
    assert got == {((0,), 0, 0), ((0,), 1, FLAG_TERMINAL), ((1,), 0, FLAG_TERMINAL)}


def test_compiled_circuit_encodes_on_physical_qubits() -> None:
    src = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[4]; creg c[4]; h q[0]; '
           'cx q[0],q[1]; cx q[0],q[2]; cx q[0],q[3]; measure q -> c;')
    r = compile_circuit(parse_qasm(src), load_device("ibm_falcon_27"))
    recs = encode(r.schedule)
    edges = {frozenset(e) for e in r.device.edges}
    pairs = {frozenset(x.qubits) for x in decode(recs) if len(x.qubits) == 2}
    assert pairs - edges == set()
    assert int(recs["version"].min()) == VERSION == int(recs["version"].max())


def test_unused_fields_hold_their_sentinels() -> None:
    c = Circuit(num_qubits=2)
    c.append("h", [1])
    recs = encode(schedule(c, DurationModel()))
    assert (int(recs["q1"][0]), int(recs["clbit"][0])) == (NO_QUBIT, NO_CLBIT)
    assert int(recs["opcode"][1]) == Opcode.END


def test_refusals_name_the_instruction() -> None:
    c = Circuit.with_registers([("q", 3)], [("c", 1)])
    c.append("ccx", [0, 1, 2])
    timed = Schedule(c, (ScheduledOp(0, 0.0, 900.0),), 900.0, "asap")
    with pytest.raises(IsaError, match=r"^instruction 0 \(ccx on \[0, 1, 2\]\): no opcode"):
        encode(timed)
    c = Circuit.with_registers([("q", 2)], [("c", 1)])
    c.append("x", [1], condition=Condition("c", 1))
    with pytest.raises(IsaError, match=r"conditional operations cannot be encoded"):
        encode(schedule(c, DurationModel()))
    c = Circuit(num_qubits=3)
    c.append("x", [2])
    with pytest.raises(IsaError, match=r"qubit\(s\) \[2\] beyond the register of 2 qubits"):
        encode(schedule(c, DurationModel()), num_qubits=2)


def test_decode_refuses_bad_records() -> None:
    c = Circuit(num_qubits=1)
    c.append("x", [0])
    recs = encode(schedule(c, DurationModel()))
    bad = recs.copy()
    bad["version"][0] = VERSION + 1
    with pytest.raises(IsaError, match=rf"^record 0 has format version {VERSION + 1}"):
        decode(bad)
    bad = recs.copy()
    bad["opcode"][0] = 0
    with pytest.raises(IsaError, match=r"^record 0 has unknown opcode 0x00$"):
        decode(bad)
    bad = recs.copy()
    bad["opcode"][0] = Opcode.CX
    with pytest.raises(IsaError, match=r"^record 0 \(cx\) names 1 qubit\(s\), 'cx' takes 2$"):
        decode(bad)
    with pytest.raises(IsaError, match=r"not the 64-byte RECORD"):
        decode(np.zeros(2, dtype=np.int64))

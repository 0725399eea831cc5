"""The boot image's executor against the host's simulator: same probabilities for any
compiled program; refusals name what they refuse; the self-test step fails on a wrong
expectation."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qpuos.device.guest_exec import execute
from qpuos.device.guest_program import prepare_program
from qpuos.errors import IsaError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.gates import GATES
from qpuos.quantum.isa import OPCODE_OF, Opcode, encode, num_params
from qpuos.quantum.statevector import simulate
from qpuos.quantum.timing import DurationModel, schedule

# every gate the ISA has an opcode for, with its arity
_ISA_GATES = sorted((n, GATES[n].num_qubits) for n in OPCODE_OF if n in GATES)


@st.composite
def circuits(draw: st.DrawFn, *, max_qubits: int = 4, max_gates: int = 14) -> Circuit:
    """Random circuits over the whole ISA gate set, each qubit measured at the end."""
    n = draw(st.integers(2, max_qubits))
    c = Circuit(num_qubits=n, num_clbits=n)
    for _ in range(draw(st.integers(1, max_gates))):
        name, arity = draw(st.sampled_from(_ISA_GATES))
        qubits = draw(st.permutations(range(n)))[:arity]
        params = [draw(st.floats(-math.pi, math.pi)) for _ in range(num_params(name))]
        c.append(name, qubits, params)
    for q, b in enumerate(draw(st.permutations(range(n)))):
        c.append("measure", [q], clbits=[b])
    return c


def _host_probabilities(c: Circuit) -> list[float]:
    """Outcome probabilities by qpuos.quantum.statevector (measures all terminal)."""
    unitary = Circuit(num_qubits=c.num_qubits)
    reads = {}
    for inst in c.instructions:
        if inst.name == "measure":
            reads[inst.clbits[0]] = inst.qubits[0]
        else:
            unitary.append(inst.name, inst.qubits, inst.params)
    flat = np.abs(simulate(unitary).reshape(-1)) ** 2
    out = np.zeros(1 << c.num_clbits)
    n = c.num_qubits
    for index, p in enumerate(flat):
        out[sum(((index >> (n - 1 - q)) & 1) << b for b, q in reads.items())] += p
    return out.tolist()


@settings(max_examples=60, deadline=None)
@given(circuits())
def test_every_isa_gate_runs_as_the_host_simulator_does(c: Circuit) -> None:
    data = encode(schedule(c, DurationModel())).tobytes()
    got = execute(data)
    assert np.allclose(got.probabilities, _host_probabilities(c), rtol=0, atol=1e-9)
    assert got.records == len(c.instructions) + 1
    assert got.measured == tuple(sorted((i.qubits[0], i.clbits[0]) for i in c.instructions
                                        if i.name == "measure"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits(max_qubits=4, max_gates=8), st.sampled_from(["line:4", "line:5", "ring:5"]))
def test_compiled_programs_agree_with_the_host(c: Circuit, device: str) -> None:
    """Compiled and routed (SWAPs, measurements moved by routing), then encoded."""
    qasm = _to_qasm(c)
    program = prepare_program(qasm=qasm, device=device, label="random")
    got = execute(program.records)
    want = program.expected["probabilities"]
    assert max(abs(a - b) for a, b in zip(got.probabilities, want, strict=True)) < 1e-9
    # and both are the logical circuit's distribution: routing kept the meaning
    assert np.allclose(got.probabilities, _host_probabilities(c), rtol=0, atol=1e-9)


def _to_qasm(c: Circuit) -> str:
    lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', f"qreg q[{c.num_qubits}];",
             f"creg c[{c.num_clbits}];"]
    for inst in c.instructions:
        if inst.name == "measure":
            lines.append(f"measure q[{inst.qubits[0]}] -> c[{inst.clbits[0]}];")
            continue
        args = f"({', '.join(repr(p) for p in inst.params)})" if inst.params else ""
        lines.append(f"{inst.name}{args} {', '.join(f'q[{q}]' for q in inst.qubits)};")
    return "\n".join(lines) + "\n"


def _record(seq: int, op: int, q0: int = 0xFFFF, q1: int = 0xFFFF, *,
            clbit: int = 0xFFFFFFFF, flags: int = 0, version: int = 1) -> bytes:
    return struct.pack("<IBBHHHIdd4d", seq, op, version, flags, q0, q1, clbit, 0.0, 0.0,
                       0.0, 0.0, 0.0, 0.0)


def test_the_struct_layout_is_the_numpy_record() -> None:
    c = Circuit(num_qubits=3, num_clbits=1)
    c.append("cu", [2, 0], [0.1, 0.2, 0.3, 0.4])
    c.append("measure", [0], clbits=[0])
    recs = encode(schedule(c, DurationModel()))
    fields = struct.unpack("<IBBHHHIdd4d", recs[:1].tobytes())
    assert fields == (0, int(Opcode.CU), 1, 0, 2, 0, 0xFFFFFFFF,
                      float(recs["start_ns"][0]), float(recs["duration_ns"][0]),
                      0.1, 0.2, 0.3, 0.4)


@pytest.mark.parametrize(("stream", "message"), [
    (_record(0, Opcode.RESET, 0) + _record(1, Opcode.END),
     r"^record 0 \(seq 0\) has opcode 0x05 \(reset\), which the guest executor does not "
     r"run"),
    (_record(0, 0x3F, 0) + _record(1, Opcode.END),
     r"^record 0 \(seq 0\) has opcode 0x3f \(unknown\)"),
    (_record(0, Opcode.H, 0, version=2) + _record(1, Opcode.END),
     r"^record 0 \(seq 0\) has format version 2; this executor reads version 1"),
    (_record(0, Opcode.CX, 0) + _record(1, Opcode.END),
     r"^record 0 \(cx\) names 1 qubit\(s\); 'cx' takes 2$"),
    (_record(0, Opcode.H, 0), r"^the stream must end with exactly one END record"),
    (_record(0, Opcode.END)[:60], r"^an instruction stream of 60 bytes is not a whole "),
    (_record(0, Opcode.MEASURE, 0, clbit=16, flags=1) + _record(1, Opcode.END),
     r"^record 0 \(seq 0\) measures qubit 0 into clbit 16; the guest executor keeps "
     r"classical bits 0\.\.15$"),
])
def test_refusals_name_what_they_refuse(stream: bytes, message: str) -> None:
    with pytest.raises(IsaError, match=message):
        execute(stream)


def test_a_mid_circuit_measurement_reads_the_qubit_at_that_point() -> None:
    # x q0; measure q0 -> c0 (not terminal); x q0; measure q0 -> c1: reads 1 then 0
    stream = (_record(0, Opcode.X, 0) + _record(1, Opcode.MEASURE, 0, clbit=0)
              + _record(2, Opcode.X, 0) + _record(3, Opcode.MEASURE, 0, clbit=1, flags=1)
              + _record(4, Opcode.END))
    got = execute(stream)
    assert got.probabilities == (0.0, 1.0, 0.0, 0.0) and got.measured == ((0, 0), (0, 1))

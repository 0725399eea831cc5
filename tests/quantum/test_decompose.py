"""Tests for qpuos.quantum.decompose: expanding gates on three or more qubits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.decompose import decompose_multiqubit, standard_definitions
from qpuos.quantum.gates import GATES, gate_matrix
from qpuos.quantum.qasm import load_qasm

BENCH = Path("/work/shared/bench/quantum/circuits")
MULTI = sorted(name for name, spec in GATES.items() if spec.num_qubits >= 3)


def unitary(ops: Sequence[Instruction], n: int) -> np.ndarray:
    """Tiny dense builder: first qubit most significant, as in gates.py."""
    u = np.eye(2**n, dtype=np.complex128)
    for op in ops:
        if op.name == "barrier":
            continue
        m, k, qs = gate_matrix(op.name, op.params), len(op.qubits), list(op.qubits)
        t = np.moveaxis(u.reshape([2] * n + [2**n]), qs, list(range(k)))
        shape = t.shape
        t = (m @ t.reshape(2**k, -1)).reshape(shape)
        u = np.moveaxis(t, list(range(k)), qs).reshape(2**n, 2**n)
    return u


def wide_gates(c: Circuit) -> set[tuple[str, tuple[int, ...]]]:
    return {(i.name, i.qubits) for i in c if i.is_gate and len(i.qubits) > 2}


def test_the_multiqubit_gates_are_the_expected_ones() -> None:
    assert MULTI == ["c3sqrtx", "c3x", "c4x", "ccx", "cswap", "rc3x", "rccx"]


@pytest.mark.parametrize("name", MULTI)
def test_each_multiqubit_gate_decomposes_exactly(name: str) -> None:
    n = GATES[name].num_qubits
    order = list(range(n))[::-1]  # on reversed qubits, to exercise the mapping
    c = Circuit(num_qubits=n)
    c.append(name, order)
    out = decompose_multiqubit(c)
    assert wide_gates(out) == set()
    assert {i.name for i in out} - set(GATES) == set()
    got = unitary(out.instructions, n)
    if GATES[name].matrix is not None:
        want = unitary([Instruction(name, tuple(order))], n)
        np.testing.assert_allclose(got, want, atol=1e-9)  # exact: no global phase either
    else:  # rccx, rc3x: defined by their qelib1.inc body
        body = standard_definitions()[name].instantiate(order)
        np.testing.assert_allclose(got, unitary(body, n), atol=1e-9)
        np.testing.assert_allclose(got @ got.conj().T, np.eye(2**n), atol=1e-9)


def test_small_gates_and_directives_are_kept_as_they_are() -> None:
    c = Circuit(num_qubits=5, num_clbits=1)
    c.append("h", [0])
    c.append("cu3", [1, 0], [0.1, 0.2, 0.3])
    c.append("barrier", [0, 1, 2, 3, 4])
    c.append("measure", [2], clbits=[0])
    c.append("reset", [3], condition=Condition("c", 1))
    out = decompose_multiqubit(c)
    assert out.instructions == c.instructions
    assert out.instructions is not c.instructions
    assert (out.qregs, out.cregs) == (c.qregs, c.cregs)


def test_conditions_are_carried_to_every_piece() -> None:
    c = Circuit.with_registers([("a", 2), ("b", 3)], [("m", 2)])
    c.append("x", [0])
    c.append("c4x", [4, 3, 2, 1, 0], condition=Condition("m", 2))
    c.append("cswap", [1, 2, 3])
    out = decompose_multiqubit(c)
    assert wide_gates(out) == set()
    assert out.instructions[0] == c.instructions[0]
    pieces = out.instructions[1:]
    conditional = [i for i in pieces if i.condition is not None]
    assert {i.condition for i in conditional} == {Condition("m", 2)}
    assert len(conditional) == len(decompose_multiqubit(_single("c4x")))
    assert all(i.condition is None for i in pieces[len(conditional):])


def _single(name: str) -> Circuit:
    c = Circuit(num_qubits=GATES[name].num_qubits)
    c.append(name, range(GATES[name].num_qubits))
    return c


def test_toffoli_costs() -> None:
    counts = {name: decompose_multiqubit(_single(name)).num_two_qubit_gates for name in MULTI}
    assert counts == {"ccx": 6, "cswap": 8, "rccx": 3, "rc3x": 6, "c3x": 14, "c3sqrtx": 14,
                      "c4x": 30}


def test_standard_definitions_are_read_only_and_cached() -> None:
    defs = standard_definitions()
    assert defs["ccx"] is standard_definitions()["ccx"]
    with pytest.raises(TypeError):
        defs["ccx"] = defs["cx"]  # type: ignore[index]
    assert [op[0] for op in defs["cswap"].body] == ["cx", "ccx", "cx"]


def test_unknown_wide_operation_is_a_usage_error() -> None:
    c = Circuit(num_qubits=3)
    c.instructions.append(Instruction("mystery", (0, 1, 2)))
    with pytest.raises(UsageError, match=r"^gate 'mystery' on 3 qubits has no definition"):
        decompose_multiqubit(c)


def test_bench_files_with_toffolis_decompose_to_the_same_unitary() -> None:
    c = load_qasm(BENCH / "qasmbench_adder_n10.qasm")
    gates_only = Circuit(c.num_qubits, 0, list(c.qregs), [],
                         [i for i in c if i.is_gate])
    out = decompose_multiqubit(gates_only)
    assert wide_gates(out) == set() and "ccx" in c.count_ops()
    np.testing.assert_allclose(unitary(out.instructions, c.num_qubits),
                               unitary(gates_only.instructions, c.num_qubits), atol=1e-8)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_mixed_circuits_keep_their_unitary(data: st.DataObject) -> None:
    n = 5
    c = Circuit(num_qubits=n)
    names = sorted(g for g, s in GATES.items() if s.matrix is not None or g in MULTI)
    for _ in range(data.draw(st.integers(1, 8))):
        name = data.draw(st.sampled_from(names))
        spec = GATES[name]
        qubits = data.draw(st.permutations(range(n)))[:spec.num_qubits]
        params = [data.draw(st.floats(-math.pi, math.pi)) for _ in range(spec.num_params)]
        c.append(name, qubits, params)
    out = decompose_multiqubit(c)
    assert wide_gates(out) == set()
    expanded = [p for i in c for p in (standard_definitions()[i.name].instantiate(
        i.qubits, i.params) if i.name in ("rccx", "rc3x") else [i])]
    np.testing.assert_allclose(unitary(out.instructions, n), unitary(expanded, n), atol=1e-8)

"""The peephole passes, against dense unitaries built independently here.

Circuits with measures, resets, barriers and conditions are compared by turning every
such instruction into a fixed random unitary on its qubits (the same one in the input
and the output, matched by position among the non-plain instructions): a pass that only
drops, merges or moves plain gates past operations on other qubits keeps that unitary,
and one that moved a gate across a directive on the same qubit does not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.gates import GATES, gate_matrix
from qpuos.quantum.optimize import (
    cancel_inverses,
    consolidate_blocks,
    fuse_single_qubit_runs,
    merge_swaps,
    optimize_logical,
    optimize_physical,
    remove_identities,
)
from qpuos.quantum.statevector import fidelity, random_state, simulate
from qpuos.quantum.timing import DurationModel

Matrix = NDArray[np.complex128]
PASSES = {
    "remove_identities": remove_identities,
    "cancel_inverses": cancel_inverses,
    "fuse_single_qubit_runs": fuse_single_qubit_runs,
    "merge_swaps": merge_swaps,
    "consolidate_blocks": consolidate_blocks,
    "optimize_logical": optimize_logical,
    "optimize_physical": optimize_physical,
}
ONE_QUBIT = ("h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg", "rz", "rx", "u", "p",
             "id", "u2")
TWO_QUBIT = ("cx", "cx", "cz", "swap", "swap", "cp", "ch", "crz", "rzz", "cy", "rxx")
ANGLES = (0.0, 1e-15, math.pi / 2, -math.pi / 2, math.pi, 0.3, -1.2)


def build(n: int, *ops: tuple[object, ...], clbits: int = 0) -> Circuit:
    c = Circuit.with_registers([("q", n)], [("c", clbits)] if clbits else [])
    for op in ops:
        c.append(*op)  # type: ignore[arg-type]
    return c


def is_plain(inst: Instruction) -> bool:
    return inst.is_gate and inst.condition is None


def _apply(u: Matrix, m: Matrix, qubits: tuple[int, ...], n: int) -> Matrix:
    """``m`` on ``qubits`` times ``u`` (qubit 0 the most significant index bit)."""
    k = len(qubits)
    t = u.reshape((2,) * n + (-1,))
    t = np.tensordot(m.reshape((2,) * (2 * k)), t, axes=(list(range(k, 2 * k)), list(qubits)))
    t = np.moveaxis(t, list(range(k)), list(qubits))
    return t.reshape(2**n, -1)


def _marker(index: int, k: int) -> Matrix:
    rng = np.random.default_rng(1000 + index)
    z = rng.standard_normal((2**k, 2**k)) + 1j * rng.standard_normal((2**k, 2**k))
    q, r = np.linalg.qr(z)
    return np.asarray(q * (np.diag(r) / abs(np.diag(r))), dtype=np.complex128)


def unitary(c: Circuit) -> Matrix:
    """Dense unitary; the i-th non-plain instruction becomes ``_marker(i, its width)``."""
    n = c.num_qubits
    u = np.eye(2**n, dtype=np.complex128)
    marks = 0
    for inst in c.instructions:
        if is_plain(inst):
            m = gate_matrix(inst.name, inst.params)
        else:
            m = _marker(marks, len(inst.qubits))
            marks += 1
        u = _apply(u, m, inst.qubits, n)
    return u


def same_up_to_phase(a: Matrix, b: Matrix, atol: float = 1e-8) -> bool:
    overlap = np.vdot(b.reshape(-1), a.reshape(-1))
    if abs(overlap) < 1e-12:
        return False
    phase = overlap / abs(overlap)
    return bool(np.allclose(a, phase * b, atol=atol))


def native_two_qubit_gates(c: Circuit) -> int:
    return sum(DurationModel.two_qubit_cost(i.name)[0] for i in c.instructions
               if i.is_two_qubit_gate)


def non_plain(c: Circuit) -> list[Instruction]:
    return [i for i in c.instructions if not is_plain(i)]


def plain_1q_between_others(c: Circuit) -> dict[int, list[int]]:
    """Per wire, the longest run of plain one-qubit gates between other operations."""
    run = dict.fromkeys(range(c.num_qubits), 0)
    worst = dict.fromkeys(range(c.num_qubits), 0)
    for inst in c.instructions:
        if is_plain(inst) and len(inst.qubits) == 1:
            q = inst.qubits[0]
            run[q] += 1
            worst[q] = max(worst[q], run[q])
        else:
            for q in inst.qubits:
                run[q] = 0
    return {q: [w] for q, w in worst.items() if w > 1}


@st.composite
def circuits(draw: st.DrawFn, *, max_qubits: int = 4, directives: bool = False) -> Circuit:
    """Random circuits rich in cancellations: gates are often repeated or inverted."""
    n = draw(st.integers(1, max_qubits))
    c = Circuit.with_registers([("q", n)], [("c", 2)])
    qubit = st.integers(0, n - 1)
    kinds = ["1q", "2q", "again"] + (["measure", "reset", "barrier", "if"] if directives
                                      else [])
    for _ in range(draw(st.integers(0, 24))):
        kind = draw(st.sampled_from(kinds))
        if kind in ("2q", "if") and n < 2:
            kind = "1q"
        if kind == "again" and c.instructions:
            prev = c.instructions[-1]
            if is_plain(prev):  # repeat it, its inverse-by-name, or its reverse
                inverse = {"s": "sdg", "sdg": "s", "t": "tdg", "tdg": "t", "sx": "sxdg",
                           "sxdg": "sx"}.get(prev.name, prev.name)
                params = tuple(-p for p in prev.params) if prev.name in (
                    "rz", "rx", "p", "cp", "crz", "rzz", "rxx") else prev.params
                qs = prev.qubits[::-1] if draw(st.booleans()) else prev.qubits
                c.add(Instruction(inverse, qs, params))
                continue
            kind = "1q"
        if kind in {"1q", "again"}:
            name = draw(st.sampled_from(ONE_QUBIT))
            params = [draw(st.sampled_from(ANGLES)) for _ in range(GATES[name].num_params)]
            c.append(name, [draw(qubit)], params)
        elif kind == "2q":
            name = draw(st.sampled_from(TWO_QUBIT))
            params = [draw(st.sampled_from(ANGLES)) for _ in range(GATES[name].num_params)]
            c.append(name, draw(st.lists(qubit, min_size=2, max_size=2, unique=True)), params)
        elif kind == "measure":
            c.append("measure", [draw(qubit)], [], [draw(st.integers(0, 1))])
        elif kind == "reset":
            c.append("reset", [draw(qubit)])
        elif kind == "barrier":
            c.append("barrier", draw(st.lists(qubit, min_size=1, max_size=n, unique=True)))
        else:
            name = draw(st.sampled_from(("x", "rz", "cx", "swap")))
            k = GATES[name].num_qubits
            c.append(name, draw(st.lists(qubit, min_size=k, max_size=k, unique=True)),
                     [0.0] * GATES[name].num_params, [], Condition("c", draw(st.integers(0, 3))))
    return c


# --- every pass keeps the unitary ---------------------------------------------------


@pytest.mark.parametrize("name", list(PASSES))
@settings(max_examples=80, deadline=None)
@given(c=circuits())
def test_pass_keeps_the_unitary(name: str, c: Circuit) -> None:
    out = PASSES[name](c)
    assert out is not c
    assert (out.num_qubits, out.num_clbits, out.qregs, out.cregs) == (
        c.num_qubits, c.num_clbits, c.qregs, c.cregs)
    assert same_up_to_phase(unitary(out), unitary(c)), (c.instructions, out.instructions)
    assert native_two_qubit_gates(out) <= native_two_qubit_gates(c)


@pytest.mark.parametrize("name", list(PASSES))
@settings(max_examples=60, deadline=None)
@given(c=circuits(directives=True))
def test_pass_keeps_directives_in_order_and_the_marked_unitary(name: str, c: Circuit) -> None:
    out = PASSES[name](c)
    assert non_plain(out) == non_plain(c)
    assert same_up_to_phase(unitary(out), unitary(c)), (c.instructions, out.instructions)


@settings(max_examples=40, deadline=None)
@given(circuits(max_qubits=6), st.integers(0, 2**32 - 1))
def test_optimisers_agree_with_the_simulator_on_random_states(c: Circuit, seed: int) -> None:
    psi = random_state(c.num_qubits, np.random.default_rng(seed))
    want = simulate(c, psi)
    for name in ("optimize_logical", "optimize_physical"):
        got = simulate(PASSES[name](c), psi)
        assert fidelity(want, got) == pytest.approx(1.0, abs=1e-9), name


@settings(max_examples=60, deadline=None)
@given(circuits(directives=True))
def test_fused_circuit_has_at_most_one_one_qubit_gate_between_other_operations(
        c: Circuit) -> None:
    out = fuse_single_qubit_runs(c)
    assert plain_1q_between_others(out) == {}
    assert fuse_single_qubit_runs(out).instructions == out.instructions  # idempotent


@settings(max_examples=60, deadline=None)
@given(circuits(directives=True))
def test_cancel_and_remove_are_idempotent(c: Circuit) -> None:
    for p in (remove_identities, cancel_inverses):
        once = p(c)
        assert p(once).instructions == once.instructions


# --- remove_identities ----------------------------------------------------------------


def test_remove_identities_drops_gates_equal_to_the_identity() -> None:
    c = build(2, ("rz", [0], [0.0]), ("cp", [0, 1], [1e-15]), ("u", [1], [0, 0, 0]),
              ("id", [0]), ("p", [1], [2 * math.pi]), ("rz", [0], [2 * math.pi]),
              ("rzz", [0, 1], [0.0]), ("rz", [1], [0.1]), ("cp", [1, 0], [1e-3]))
    out = remove_identities(c)
    assert [(i.name, i.params) for i in out] == [("rz", (0.1,)), ("cp", (1e-3,))]


def test_remove_identities_keeps_conditional_gates_and_directives() -> None:
    c = build(1, ("rz", [0], [0.0], [], Condition("c", 1)), ("barrier", [0]),
              ("measure", [0], [], [0]), ("reset", [0]), clbits=1)
    assert remove_identities(c).instructions == c.instructions


def test_remove_identities_tolerance_is_an_option() -> None:
    c = build(1, ("rz", [0], [1e-3]))
    assert len(remove_identities(c, max_infidelity=1e-6)) == 0
    assert len(remove_identities(c)) == 1


@pytest.mark.parametrize("angle", [1e-5, -5e-5])
def test_remove_identities_keeps_gates_above_the_infidelity_bound(angle: float) -> None:
    """rz(1e-5) has process infidelity ~2.5e-11, above the default bound of 1e-12."""
    for name, qubits in (("rz", [0]), ("cp", [0, 1]), ("p", [1])):
        c = build(2, (name, qubits, [angle]))
        assert len(remove_identities(c)) == 1, name


@pytest.mark.parametrize("angle", [1e-7, -1e-6])
def test_remove_identities_drops_rotations_below_the_infidelity_bound(angle: float) -> None:
    for name, qubits in (("rz", [0]), ("cp", [0, 1]), ("p", [1])):
        c = build(2, (name, qubits, [angle]))
        assert len(remove_identities(c)) == 0, name


# --- cancel_inverses ----------------------------------------------------------------


@pytest.mark.parametrize("ops", [
    [("cx", [0, 1]), ("cx", [0, 1])],
    [("h", [0]), ("h", [0])],
    [("s", [1]), ("sdg", [1])],
    [("t", [0]), ("tdg", [0])],
    [("sx", [0]), ("sxdg", [0])],
    [("swap", [0, 1]), ("swap", [1, 0])],
    [("cz", [0, 1]), ("cz", [1, 0])],
    [("rz", [0], [0.4]), ("rz", [0], [-0.4])],
    [("cp", [0, 1], [0.4]), ("cp", [1, 0], [-0.4])],
], ids=lambda ops: "-".join(op[0] for op in ops))
def test_cancel_inverses_removes_a_gate_and_its_inverse(ops: list[tuple[object, ...]]) -> None:
    assert len(cancel_inverses(build(2, *ops))) == 0


def test_cancel_inverses_unwinds_nested_pairs() -> None:
    c = build(2, ("h", [0]), ("cx", [0, 1]), ("x", [1]), ("x", [1]), ("cx", [0, 1]), ("h", [0]))
    assert len(cancel_inverses(c)) == 0


def test_cancel_inverses_keeps_nearly_inverse_pairs() -> None:
    """rz(0.4) rz(-0.4 + 1e-6) is rz(1e-6): not the identity to 1e-9."""
    c = build(1, ("rz", [0], [0.4]), ("rz", [0], [-0.4 + 1e-6]))
    assert cancel_inverses(c).instructions == c.instructions


def test_cancel_inverses_sees_through_gates_on_other_qubits() -> None:
    c = build(3, ("cx", [0, 1]), ("h", [2]), ("cx", [0, 1]))
    assert [i.name for i in cancel_inverses(c)] == ["h"]


@pytest.mark.parametrize("ops", [
    [("cx", [0, 1]), ("barrier", [0, 1]), ("cx", [0, 1])],
    [("cx", [0, 1]), ("barrier", [1]), ("cx", [0, 1])],
    [("h", [0]), ("measure", [0], [], [0]), ("h", [0])],
    [("h", [0]), ("reset", [0]), ("h", [0])],
    [("cx", [0, 1]), ("cx", [1, 0])],
    [("cx", [0, 1]), ("h", [1]), ("cx", [0, 1])],
    [("s", [0]), ("s", [0])],
    [("x", [0]), ("x", [0], [], [], Condition("c", 1))],
    [("rz", [0], [0.4]), ("rz", [0], [0.4])],
], ids=lambda ops: "-".join(op[0] for op in ops))
def test_cancel_inverses_keeps_pairs_that_do_not_cancel(ops: list[tuple[object, ...]]) -> None:
    c = build(2, *ops, clbits=1)
    assert cancel_inverses(c).instructions == c.instructions


# --- fuse_single_qubit_runs -----------------------------------------------------------


def test_fuse_turns_a_diagonal_run_into_one_rz() -> None:
    c = build(1, ("t", [0]), ("s", [0]), ("rz", [0], [0.2]))
    out = fuse_single_qubit_runs(c)
    assert [i.name for i in out] == ["rz"]
    assert same_up_to_phase(unitary(out), unitary(c))


def test_fuse_drops_a_run_equal_to_the_identity() -> None:
    c = build(1, ("h", [0]), ("s", [0]), ("sdg", [0]), ("h", [0]))
    assert len(fuse_single_qubit_runs(c)) == 0


def test_fuse_merges_a_run_across_a_conditional_on_another_qubit() -> None:
    """``x q[1] if c==0`` does not touch qubit 0, so ``h q[0]; h q[0]`` around it is one run."""
    c = build(2, ("h", [0]), ("x", [1], [], [], Condition("c", 0)), ("h", [0]), clbits=1)
    out = fuse_single_qubit_runs(c)
    assert [(i.name, i.qubits) for i in out] == [("x", (1,))]


def test_fuse_keeps_a_lone_gate_by_name() -> None:
    c = build(2, ("sx", [0]), ("cx", [0, 1]), ("h", [0]))
    assert fuse_single_qubit_runs(c).instructions == c.instructions


def test_fuse_stops_at_two_qubit_gates_and_directives() -> None:
    c = build(2, ("h", [0]), ("t", [0]), ("cx", [0, 1]), ("h", [0]), ("x", [0]),
              ("measure", [0], [], [0]), ("h", [0]), ("x", [0], [], [], Condition("c", 1)),
              ("s", [0]), ("h", [0]), clbits=1)
    out = fuse_single_qubit_runs(c)
    assert [i.name for i in out] == ["u", "cx", "u", "measure", "h", "x", "u"]
    assert out.instructions[5].condition == Condition("c", 1)


# --- merge_swaps ----------------------------------------------------------------------


@pytest.mark.parametrize("ops", [
    [("cx", [0, 1]), ("swap", [0, 1])],
    [("cx", [0, 1]), ("swap", [1, 0])],
    [("swap", [0, 1]), ("cx", [0, 1])],
    [("swap", [1, 0]), ("cx", [0, 1])],
    [("swap", [0, 1]), ("cx", [1, 0])],
], ids=lambda ops: "-".join(f"{n}{q[0]}{q[1]}" for n, q in ops))
def test_merge_swaps_turns_cx_and_swap_into_two_cx(ops: list[tuple[str, list[int]]]) -> None:
    c = build(2, *ops)
    out = merge_swaps(c)
    assert [i.name for i in out] == ["cx", "cx"]
    assert {i.qubits for i in out} == {(0, 1), (1, 0)}
    assert np.allclose(unitary(out), unitary(c), atol=1e-12)  # exact, not up to phase


def test_merge_swaps_leaves_a_swap_separated_from_its_cx() -> None:
    for ops in ([("cx", [0, 1]), ("h", [0]), ("swap", [0, 1])],
                [("cx", [0, 1]), ("swap", [1, 2])],
                [("cz", [0, 1]), ("swap", [0, 1])],
                [("cx", [0, 1]), ("swap", [0, 1], [], [], Condition("c", 0))]):
        c = build(3, *ops, clbits=1)
        assert merge_swaps(c).instructions == c.instructions, ops


def test_merge_swaps_uses_each_cx_once() -> None:
    c = build(2, ("swap", [0, 1]), ("cx", [0, 1]), ("swap", [0, 1]))
    out = merge_swaps(c)
    assert out.count_ops() == {"cx": 2, "swap": 1}
    assert np.allclose(unitary(out), unitary(c), atol=1e-12)


def test_consolidate_blocks_resynthesises_a_block_with_fewer_cx() -> None:
    c = build(2, ("cx", [0, 1]), ("h", [1]), ("cx", [0, 1]), ("h", [1]), ("cx", [0, 1]))
    out = consolidate_blocks(c)
    assert native_two_qubit_gates(out) < 3
    assert same_up_to_phase(unitary(out), unitary(c))


def test_consolidate_blocks_keeps_blocks_that_are_already_minimal() -> None:
    c = build(2, ("h", [0]), ("cx", [0, 1]), ("rz", [1], [0.3]), ("cx", [0, 1]))
    assert consolidate_blocks(c).instructions == c.instructions


def test_optimize_physical_saves_a_cx_per_merge() -> None:
    c = build(3, ("cx", [0, 1]), ("swap", [0, 1]), ("cx", [1, 2]), ("cx", [1, 2]))
    out = optimize_physical(c)
    assert out.count_ops() == {"cx": 2}
    assert same_up_to_phase(unitary(out), unitary(c))

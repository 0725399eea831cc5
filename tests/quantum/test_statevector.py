"""The state-vector simulator against dense matrices built independently here."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import UsageError
from qpuos.quantum import statevector as sv
from qpuos.quantum.circuit import Circuit, Condition
from qpuos.quantum.gates import GATES, gate_matrix
from qpuos.quantum.statevector import (
    apply_gate,
    fidelity,
    permute_qubits,
    random_state,
    simulate,
    zero,
)

MATRIX_GATES = sorted(name for name, spec in GATES.items() if spec.matrix is not None)


def dense(matrix: np.ndarray, qubits: tuple[int, ...], n: int) -> np.ndarray:
    """The 2**n x 2**n operator: ``matrix (x) I`` on the order ``qubits + rest``, conjugated
    by the permutation that brings ``qubits`` to the front. Qubit 0 is the top bit."""
    k = len(qubits)
    order = list(qubits) + [q for q in range(n) if q not in qubits]
    big = np.kron(matrix, np.eye(2 ** (n - k)))
    perm = np.zeros((2**n, 2**n))
    for old in range(2**n):
        bits = [(old >> (n - 1 - q)) & 1 for q in range(n)]
        new = sum(bits[q] << (n - 1 - j) for j, q in enumerate(order))
        perm[new, old] = 1
    return perm.T @ big @ perm


def params_for(name: str, rng: np.random.Generator) -> list[float]:
    return list(rng.uniform(-math.pi, math.pi, GATES[name].num_params))


def test_bell_state() -> None:
    c = Circuit(num_qubits=2)
    c.append("h", [0])
    c.append("cx", [0, 1])
    np.testing.assert_allclose(simulate(c).reshape(-1), [2**-0.5, 0, 0, 2**-0.5], atol=1e-12)


def test_ghz_state_on_scattered_qubits() -> None:
    c = Circuit(num_qubits=5)
    c.append("h", [3])
    c.append("cx", [3, 0])
    c.append("cx", [0, 4])
    out = simulate(c)
    want = np.zeros((2,) * 5, dtype=complex)
    want[0, 0, 0, 0, 0] = want[1, 0, 0, 1, 1] = 2**-0.5
    np.testing.assert_allclose(out, want, atol=1e-12)


@pytest.mark.parametrize("name", MATRIX_GATES)
def test_every_gate_matches_dense_matrix_in_every_qubit_order(name: str) -> None:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    k = GATES[name].num_qubits
    m = gate_matrix(name, params_for(name, rng))
    for n in sorted({k, max(k, 3), max(k, 4)}):
        psi = random_state(n, rng)
        for qubits in itertools.permutations(range(n), k):
            got = apply_gate(psi.copy(), m, qubits)
            want = dense(m, qubits, n) @ psi.reshape(-1)
            np.testing.assert_allclose(got.reshape(-1), want, atol=1e-12,
                                       err_msg=f"{name} on {qubits} of {n}")


def random_monomial(k: int, rng: np.random.Generator, *, diagonal: bool) -> np.ndarray:
    perm = np.arange(2**k) if diagonal else rng.permutation(2**k)
    m = np.zeros((2**k, 2**k), dtype=complex)
    m[np.arange(2**k), perm] = np.exp(1j * rng.uniform(0, 2 * math.pi, 2**k))
    return m


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("diagonal", [True, False])
def test_diagonal_and_monomial_fast_paths_equal_the_generic_path(k: int, diagonal: bool) -> None:
    rng = np.random.default_rng(k)
    n = 4
    for qubits in itertools.permutations(range(n), k):
        m = random_monomial(k, rng, diagonal=diagonal)
        psi = random_state(n, rng)
        generic = psi.copy()
        sv._apply_tensordot(generic, m, qubits)
        fast = apply_gate(psi.copy(), m, qubits)
        np.testing.assert_allclose(fast, generic, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_dense_kernels_equal_the_generic_path_on_large_strides(k: int) -> None:
    rng = np.random.default_rng(7)
    n = 14  # wide enough that the kernels split work into several chunks
    m = np.linalg.qr(rng.normal(size=(2**k, 2**k)) + 1j * rng.normal(size=(2**k, 2**k)))[0]
    psi = random_state(n, rng)
    for qubits in [(0, 13), (13, 0), (6, 7), (12, 1)]:
        qs = qubits[:k]
        generic = psi.copy()
        sv._apply_tensordot(generic, m, qs)
        np.testing.assert_allclose(apply_gate(psi.copy(), m, qs), generic, atol=1e-12)


@st.composite
def circuits(draw: st.DrawFn, max_qubits: int = 5) -> Circuit:
    n = draw(st.integers(1, max_qubits))
    c = Circuit(num_qubits=n)
    names = [g for g in MATRIX_GATES if GATES[g].num_qubits <= n]
    for _ in range(draw(st.integers(0, 25))):
        name = draw(st.sampled_from(names))
        spec = GATES[name]
        qubits = draw(st.permutations(range(n)))[: spec.num_qubits]
        params = [draw(st.floats(-7, 7)) for _ in range(spec.num_params)]
        c.append(name, qubits, params)
    return c


def dense_unitary(c: Circuit) -> np.ndarray:
    u = np.eye(2**c.num_qubits, dtype=complex)
    for inst in c:
        u = dense(gate_matrix(inst.name, inst.params), inst.qubits, c.num_qubits) @ u
    return u


@settings(max_examples=150, deadline=None)
@given(circuits(), st.integers(0, 2**32 - 1))
def test_random_circuits_match_dense_reference(c: Circuit, seed: int) -> None:
    psi = random_state(c.num_qubits, np.random.default_rng(seed))
    before = psi.copy()
    out = simulate(c, psi)
    np.testing.assert_array_equal(psi, before)  # the input is not modified
    np.testing.assert_allclose(out.reshape(-1), dense_unitary(c) @ psi.reshape(-1), atol=1e-10)
    assert abs(np.linalg.norm(out) - 1) < 1e-10


@settings(max_examples=50, deadline=None)
@given(circuits(max_qubits=4))
def test_gate_by_gate_equals_fused_simulation(c: Circuit) -> None:
    state = zero(c.num_qubits)
    for inst in c:
        apply_gate(state, gate_matrix(inst.name, inst.params), inst.qubits)
    np.testing.assert_allclose(state, simulate(c), atol=1e-10)


def test_swaps_and_fused_pairs_in_both_orders() -> None:
    c = Circuit(num_qubits=3)
    c.append("h", [0])
    c.append("cx", [0, 1])
    c.append("rz", [1], [0.3])
    c.append("swap", [1, 2])
    c.append("cx", [2, 0])  # same pair as the first cx after the swap, other order
    c.append("sx", [2])
    c.append("cp", [0, 2], [1.1])
    c.append("barrier", [0, 1, 2])
    c.append("swap", [0, 1])
    c.append("ry", [0], [0.7])
    np.testing.assert_allclose(simulate(c).reshape(-1), dense_unitary(
        Circuit(num_qubits=3, instructions=[i for i in c if i.name != "barrier"]))[:, 0],
        atol=1e-12)


def test_zero_and_random_state() -> None:
    assert zero(3).shape == (2, 2, 2)
    assert zero(3).reshape(-1)[0] == 1 and np.count_nonzero(zero(3)) == 1
    a = random_state(4, np.random.default_rng(5))
    b = random_state(4, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.complex128 and a.flags.c_contiguous
    assert abs(np.vdot(a, a) - 1) < 1e-12


def test_permute_qubits_moves_qubit_i_to_perm_i() -> None:
    psi = zero(3)
    apply_gate(psi, gate_matrix("x"), [0])  # |100>
    out = permute_qubits(psi, [2, 0, 1])  # qubit 0 -> 2
    assert out[0, 0, 1] == 1
    with pytest.raises(UsageError, match=r"^perm \[0, 0, 1\] is not a permutation of 0\.\.2$"):
        permute_qubits(psi, [0, 0, 1])


def test_fidelity_ignores_global_phase() -> None:
    psi = random_state(3, np.random.default_rng(1))
    assert fidelity(psi, np.exp(0.7j) * psi) == pytest.approx(1.0)
    assert fidelity(zero(2), apply_gate(zero(2), gate_matrix("x"), [1])) == 0.0
    with pytest.raises(UsageError, match=r"^states have different shapes"):
        fidelity(zero(2), zero(3))


@pytest.mark.parametrize(("inst", "message"), [
    (("measure", [0], [], [0], None),
     r"^instruction 1 'measure' is not unitary; the simulator runs unitary circuits only "
     r"\(strip measurements and resets first\)$"),
    (("reset", [0], [], [], None), r"^instruction 1 'reset' is not unitary; .*$"),
    (("x", [0], [], [], Condition("c", 1)),
     r"^instruction 1 'x' is conditioned on c==1; the simulator runs unitary circuits only$"),
    (("rccx", [0, 1, 2], [], [], None),
     r"^instruction 1 'rccx' has no closed-form matrix; decompose it into standard gates "
     r"first$"),
])
def test_non_unitary_instructions_are_refused(inst: tuple[Any, ...], message: str) -> None:
    c = Circuit.with_registers([("q", 3)], [("c", 1)])
    c.append("h", [0])
    c.append(*inst)
    with pytest.raises(UsageError, match=message):
        simulate(c)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match=r"^qubits \[0, 0\] must be distinct and within 0\.\.1$"):
        apply_gate(zero(2), gate_matrix("cx"), [0, 0])
    with pytest.raises(UsageError, match=r"^a gate on 2 qubits needs a 4x4 matrix, got shape "
                                         r"\(2, 2\)$"):
        apply_gate(zero(2), gate_matrix("h"), [0, 1])
    with pytest.raises(UsageError, match=r"^a state must have shape \(2,\) \* n, got \(4,\); "):
        apply_gate(np.zeros(4, dtype=complex), gate_matrix("h"), [0])
    with pytest.raises(UsageError, match=r"^a state must be a complex128 numpy array, got "
                                         r"float64$"):
        apply_gate(np.zeros((2, 2)), gate_matrix("h"), [0])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^state has 2 qubits but the circuit has 3$"):
        simulate(Circuit(num_qubits=3), zero(2))

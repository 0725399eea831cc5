"""Tests for qpuos.quantum.synthesis: two-qubit unitaries into CX and one-qubit gates."""

from __future__ import annotations

import doctest
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import UsageError
from qpuos.quantum import synthesis
from qpuos.quantum.circuit import Instruction
from qpuos.quantum.gates import gate_matrix
from qpuos.quantum.synthesis import cx_count, synthesize_two_qubit

PI = math.pi
XX = np.kron(gate_matrix("x"), gate_matrix("x"))
YY = np.kron(gate_matrix("y"), gate_matrix("y"))
ZZ = np.kron(gate_matrix("z"), gate_matrix("z"))
SEEDS = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------- helpers


def unitary(ops: Sequence[Instruction], qubits: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The 4x4 unitary of ``ops``; ``qubits[0]`` is the most significant bit (gates.py)."""
    u = np.eye(4, dtype=np.complex128)
    for op in ops:
        m = gate_matrix(op.name, op.params)
        if len(op.qubits) == 1:
            m = np.kron(m, np.eye(2)) if op.qubits[0] == qubits[0] else np.kron(np.eye(2), m)
        elif op.qubits == (qubits[1], qubits[0]):
            m = m.reshape(2, 2, 2, 2).transpose(1, 0, 3, 2).reshape(4, 4)
        else:
            assert op.qubits == qubits
        u = m @ u
    return u


def phase_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - e^{iφ} b| for the best global phase φ."""
    overlap = np.vdot(b, a)
    return float(np.abs(a - overlap / abs(overlap) * b).max())


def haar(rng: np.random.Generator, n: int = 4) -> np.ndarray:
    z = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def canonical(a: float, b: float, c: float) -> np.ndarray:
    """exp(i(a XX + b YY + c ZZ)); the three terms commute."""
    h = a * XX + b * YY + c * ZZ
    w, v = np.linalg.eigh(h)
    return (v * np.exp(1j * w)) @ v.conj().T


def dressed(core: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``core`` between random local unitaries."""
    left = np.kron(haar(rng, 2), haar(rng, 2))
    right = np.kron(haar(rng, 2), haar(rng, 2))
    return left @ core @ right


def invariant_count(u: np.ndarray, tol: float = 1e-7) -> int:
    """CX count from gamma(U) = U YY U^T YY (Shende, Markov & Bullock 2004), not from KAK."""
    su = u / np.linalg.det(u) ** 0.25
    g = su @ YY @ su.T @ YY
    tr = np.trace(g)
    if min(np.abs(g - np.eye(4)).max(), np.abs(g + np.eye(4)).max()) <= tol:
        return 0
    if abs(tr) <= tol and np.abs(g @ g + np.eye(4)).max() <= tol:
        return 1
    return 2 if abs(tr.imag) <= tol else 3


def check(u: np.ndarray, qubits: tuple[int, int] = (0, 1), *, cx: int | None = None,
          tol: float = 1e-9) -> list[Instruction]:
    """Synthesise ``u`` and check every promise of the API; return the circuit."""
    out = synthesize_two_qubit(u, qubits)
    names = {i.name for i in out}
    assert names - {"cx", "u", "rz"} == set()
    assert {i.qubits for i in out if i.name == "cx"} - {qubits, qubits[::-1]} == set()
    assert {i.qubits for i in out if i.name != "cx"} - {(qubits[0],), (qubits[1],)} == set()
    n_cx = sum(i.name == "cx" for i in out)
    assert n_cx == cx_count(u)
    if cx is not None:
        assert n_cx == cx
    # At most one one-qubit gate per wire between consecutive CX gates.
    seen: set[int] = set()
    for inst in out:
        if inst.name == "cx":
            seen = set()
        else:
            assert inst.qubits[0] not in seen, out
            seen.add(inst.qubits[0])
    # No identity pieces; diagonal pieces are rz.
    for inst in out:
        if inst.name == "rz":
            assert abs(math.remainder(inst.params[0], 2 * PI)) > 1e-13
        if inst.name == "u":
            assert abs(math.sin(inst.params[0] / 2)) > 1e-13
    assert phase_distance(unitary(out, qubits), u) <= tol
    return out


# ---------------------------------------------------------------- generic inputs


@settings(max_examples=200, deadline=None)
@given(SEEDS)
def test_haar_random_unitaries_need_three_cx(seed: int) -> None:
    u = haar(np.random.default_rng(seed))
    check(u, cx=3)
    assert invariant_count(u) == 3


@settings(max_examples=50, deadline=None)
@given(SEEDS)
def test_local_products_need_no_cx(seed: int) -> None:
    rng = np.random.default_rng(seed)
    u = np.kron(haar(rng, 2), haar(rng, 2)) * np.exp(1j * rng.uniform(0, 2 * PI))
    out = check(u, cx=0)
    assert len(out) <= 2


@settings(max_examples=50, deadline=None)
@given(SEEDS, st.booleans())
def test_local_cx_local_needs_one_cx(seed: int, flipped: bool) -> None:
    rng = np.random.default_rng(seed)
    cx = unitary([Instruction("cx", (1, 0) if flipped else (0, 1))])
    check(dressed(cx, rng), cx=1)


def random_u(rng: np.random.Generator, q: int) -> Instruction:
    theta, phi, lam = rng.uniform(-PI, PI, size=3)
    return Instruction("u", (q,), (float(theta), float(phi), float(lam)))


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.lists(st.booleans(), min_size=2, max_size=2))
def test_random_two_cx_circuits_need_two_cx(seed: int, flips: list[bool]) -> None:
    rng = np.random.default_rng(seed)
    ops: list[Instruction] = []
    for flipped in flips:
        ops += [random_u(rng, 0), random_u(rng, 1), Instruction("cx", (1, 0) if flipped
                                                                else (0, 1))]
    ops += [random_u(rng, 0), random_u(rng, 1)]
    check(unitary(ops), cx=2)  # generic one-qubit gates: exactly two


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.lists(st.sampled_from(["u0", "u1", "rz0", "rz1", "cx01", "cx10"]),
                       max_size=12))
def test_circuits_with_at_most_two_cx_never_need_more(seed: int, ops_spec: list[str]) -> None:
    rng = np.random.default_rng(seed)
    ops: list[Instruction] = []
    for spec in ops_spec:
        if spec.startswith("cx"):
            if sum(i.name == "cx" for i in ops) < 2:
                ops.append(Instruction("cx", (int(spec[2]), int(spec[3]))))
        elif spec.startswith("u"):
            ops.append(random_u(rng, int(spec[1])))
        else:
            ops.append(Instruction("rz", (int(spec[2]),), (float(rng.uniform(-PI, PI)),)))
    u = unitary(ops)
    out = check(u)
    assert sum(i.name == "cx" for i in out) <= sum(i.name == "cx" for i in ops)
    assert cx_count(u) == invariant_count(u)


# ---------------------------------------------------------------- named gates


ISWAP = np.array([[1, 0, 0, 0], [0, 0, 1j, 0], [0, 1j, 0, 0], [0, 0, 0, 1]], dtype=complex)


@pytest.mark.parametrize(("name", "u", "want"), [
    ("cx", gate_matrix("cx"), 1),
    ("cz", gate_matrix("cz"), 1),
    ("cy", gate_matrix("cy"), 1),
    ("ch", gate_matrix("ch"), 1),
    ("swap", gate_matrix("swap"), 3),
    ("iswap", ISWAP, 2),
    ("iswap·cz", ISWAP @ gate_matrix("cz"), 3),
    ("sqrt-iswap", canonical(PI / 8, PI / 8, 0), 2),
    ("cp(0.3)", gate_matrix("cp", [0.3]), 2),
    ("cp(pi)", gate_matrix("cp", [PI]), 1),
    ("cp(-pi)", gate_matrix("cp", [-PI]), 1),
    ("cp(2pi)", gate_matrix("cp", [2 * PI]), 0),
    ("crz(1.1)", gate_matrix("crz", [1.1]), 2),
    ("crx(pi)", gate_matrix("crx", [PI]), 1),
    ("csx", gate_matrix("csx"), 2),
    ("cu3", gate_matrix("cu3", [0.4, 0.5, 0.6]), 2),
    ("rzz(0.7)", gate_matrix("rzz", [0.7]), 2),
    ("rzz(pi/2)", gate_matrix("rzz", [PI / 2]), 1),
    ("rzz(pi)", gate_matrix("rzz", [PI]), 0),
    ("rxx(-2.9)", gate_matrix("rxx", [-2.9]), 2),
    ("cx·cx", gate_matrix("cx") @ gate_matrix("cx"), 0),
    ("swap·cx", gate_matrix("swap") @ gate_matrix("cx"), 2),
    ("cx·swap", gate_matrix("cx") @ gate_matrix("swap"), 2),
    ("swap·swap", gate_matrix("swap") @ gate_matrix("swap"), 0),
    ("bell", gate_matrix("cx") @ np.kron(gate_matrix("h"), np.eye(2)), 1),
])
def test_named_gates(name: str, u: np.ndarray, want: int) -> None:
    check(u, cx=want)
    assert invariant_count(u) == want, name


@pytest.mark.parametrize("theta", [0.1, 1.0, 2.0, -0.5, 3.0, 5.5])
def test_generic_cp_and_rzz_need_two(theta: float) -> None:
    check(gate_matrix("cp", [theta]), cx=2)
    check(gate_matrix("rzz", [theta]), cx=2)


def test_cx_with_control_on_the_second_qubit() -> None:
    u = unitary([Instruction("cx", (1, 0))])
    assert not np.allclose(u, gate_matrix("cx"))
    check(u, cx=1)
    # On other physical qubits, listed in decreasing order.
    u52 = unitary([Instruction("cx", (2, 5))], qubits=(5, 2))
    out = check(u52, (5, 2), cx=1)
    assert {i.qubits for i in out} - {(5,), (2,), (5, 2)} == set()


# ---------------------------------------------------------------- degenerate inputs


def test_identity_gives_an_empty_circuit() -> None:
    assert synthesize_two_qubit(np.eye(4), (0, 1)) == []
    assert synthesize_two_qubit(np.exp(0.73j) * np.eye(4), (0, 1)) == []
    assert synthesize_two_qubit(-1j * np.eye(4), (0, 1)) == []
    assert cx_count(np.eye(4, dtype=np.float64)) == 0


@settings(max_examples=50, deadline=None)
@given(SEEDS)
def test_diagonal_unitaries(seed: int) -> None:
    rng = np.random.default_rng(seed)
    u = np.diag(np.exp(1j * rng.uniform(-PI, PI, size=4)))
    out = check(u, cx=2)  # a generic diagonal has a ZZ part and nothing else
    assert out
    local = np.diag(np.exp(1j * np.array([0.2, 0.9, 0.5, 1.2])))  # rz ⊗ rz · phase
    out = check(local, cx=0)
    assert {i.name for i in out} == {"rz"}


@settings(max_examples=50, deadline=None)
@given(SEEDS, st.sampled_from(["identity", "local", "cx", "swap"]))
def test_near_special_perturbations(seed: int, base: str) -> None:
    rng = np.random.default_rng(seed)
    core = {"identity": np.eye(4), "local": np.kron(haar(rng, 2), haar(rng, 2)),
            "cx": gate_matrix("cx"), "swap": gate_matrix("swap")}[base]
    h = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    w, v = np.linalg.eigh(1e-12 * (h + h.conj().T))
    u = core @ ((v * np.exp(1j * w)) @ v.conj().T)
    check(u, cx={"identity": 0, "local": 0, "cx": 1, "swap": 3}[base])


SPECIAL = [0.0, PI / 4, -PI / 4, PI / 2, PI, 3 * PI / 4]


@st.composite
def weyl_point(draw: st.DrawFn) -> tuple[list[float], int]:
    """Coordinates, some special (0 or pi/4 up to symmetry), with the CX count they need."""
    coords: list[float] = []
    zeros = quarters = 0
    for _ in range(3):
        if draw(st.booleans()):
            x = draw(st.sampled_from(SPECIAL))
            zeros += math.remainder(x, PI / 2) == 0
            quarters += math.remainder(x, PI / 2) != 0
        else:
            x = draw(st.floats(0.05, 0.7)) * draw(st.sampled_from([1, -1]))
            x += draw(st.integers(-2, 2)) * PI / 2
        coords.append(x)
    want = 0 if zeros == 3 else 1 if (zeros, quarters) == (2, 1) else 2 if zeros else 3
    return coords, want


@settings(max_examples=300, deadline=None)
@given(weyl_point(), SEEDS, st.booleans())
def test_canonical_gates_between_random_locals(point: tuple[list[float], int], seed: int,
                                               bare: bool) -> None:
    (a, b, c), want = point
    core = canonical(a, b, c)
    u = core if bare else dressed(core, np.random.default_rng(seed))
    check(u, cx=want)
    assert invariant_count(u) == want


@pytest.mark.parametrize("coords", [
    (0.3, 0.3, 0.3), (0.3, 0.3, -0.3), (PI / 4, PI / 4, 0.2), (PI / 4, 0.3, 0.3),
    (0.5, 0.5, 0.0), (0.2, 0.2 + 1e-11, 0.1), (PI / 4 - 1e-12, 0.0, 0.0),
    (PI / 4, PI / 4, PI / 4), (PI / 4, PI / 4, -PI / 4), (0.1, 1e-12, -1e-12),
])
def test_repeated_and_nearly_repeated_eigenvalues(coords: tuple[float, float, float]) -> None:
    rng = np.random.default_rng(7)
    for u in (canonical(*coords), dressed(canonical(*coords), rng)):
        check(u)
        assert cx_count(u) == invariant_count(u)


def test_output_is_deterministic() -> None:
    u = haar(np.random.default_rng(11))
    assert synthesize_two_qubit(u, (0, 1)) == synthesize_two_qubit(u.copy(), (0, 1))


# ---------------------------------------------------------------- errors and surface


def test_bad_inputs_raise_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"^expected a 4x4 unitary, got an array of shape "
                                         r"\(2, 2\)$"):
        cx_count(np.eye(2))
    with pytest.raises(UsageError, match=r"^the 4x4 matrix is not unitary \(max \|U†U - I\| "
                                         r"= 3 > 1e-08\); pass a unitary matrix$"):
        synthesize_two_qubit(2 * np.eye(4), (0, 1))
    with pytest.raises(UsageError, match=r"^the 4x4 matrix has NaN or infinite entries; "
                                         r"pass a unitary$"):
        cx_count(np.full((4, 4), np.nan))
    with pytest.raises(UsageError, match=r"^synthesize_two_qubit needs two distinct qubits, "
                                         r"got \(3, 3\)$"):
        synthesize_two_qubit(np.eye(4), (3, 3))
    with pytest.raises(UsageError, match=r"^atol must be a finite number >= 0, got -1\.0$"):
        cx_count(np.eye(4), atol=-1.0)


def test_atol_decides_what_counts_as_special() -> None:
    u = canonical(0.4, 1e-6, 0.3)
    assert cx_count(u) == 3
    assert cx_count(u, atol=1e-5) == 2
    check(u, cx=3)
    out = synthesize_two_qubit(u, (0, 1), atol=1e-5)
    assert sum(i.name == "cx" for i in out) == 2
    assert phase_distance(unitary(out), u) <= 4e-5


def test_public_surface() -> None:
    assert synthesis.__all__ == ["cx_count", "synthesize_two_qubit"]


def test_doctests() -> None:
    result = doctest.testmod(synthesis)
    assert result.attempted > 0
    assert result.failed == 0

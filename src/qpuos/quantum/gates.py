"""The standard gate set: names, arities and unitary matrices.

These are the gates of OpenQASM 2.0's ``qelib1.inc`` plus the built-ins ``U`` and
``CX``. A gate keeps its name through parsing, routing and writing; only gates on three or
more qubits are expanded (by their ``qelib1.inc`` definitions) before routing.

Matrix convention: a k-qubit gate applied to ``(q0, q1, ...)`` acts on the basis index
``b(q0) * 2**(k-1) + b(q1) * 2**(k-2) + ...``, the first qubit being the most
significant. For ``cx`` the first qubit is the control.

Matrices are exact (controlled gates include no stray relative phase), so a circuit and
its conversion to Qiskit describe the same unitary.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DIRECTIVES",
    "GATES",
    "GateSpec",
    "gate_matrix",
    "is_diagonal_on",
]

Matrix = NDArray[np.complex128]

#: Operations that are not unitary gates. ``barrier`` orders, ``measure`` and ``reset``
#: act on a qubit irreversibly.
DIRECTIVES = frozenset({"barrier", "measure", "reset"})


def _u(theta: float, phi: float, lam: float) -> Matrix:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array(
        [[c, -cmath.exp(1j * lam) * s], [cmath.exp(1j * phi) * s, cmath.exp(1j * (phi + lam)) * c]],
        dtype=np.complex128,
    )


def _phase(lam: float) -> Matrix:
    return np.array([[1, 0], [0, cmath.exp(1j * lam)]], dtype=np.complex128)


def _rx(theta: float) -> Matrix:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -1j * s], [-1j * s, c]], dtype=np.complex128)


def _ry(theta: float) -> Matrix:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -s], [s, c]], dtype=np.complex128)


def _rz(theta: float) -> Matrix:
    return np.array(
        [[cmath.exp(-0.5j * theta), 0], [0, cmath.exp(0.5j * theta)]], dtype=np.complex128
    )


def _controlled(u: Matrix) -> Matrix:
    """Block-diagonal ``diag(I, u)``: the first qubit controls ``u`` on the rest."""
    n = u.shape[0]
    out = np.eye(2 * n, dtype=np.complex128)
    out[n:, n:] = u
    return out


_I2 = np.eye(2, dtype=np.complex128)
_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
_Z = np.diag([1, -1]).astype(np.complex128)
_H = np.array([[1, 1], [1, -1]], dtype=np.complex128) / math.sqrt(2)
_SX = 0.5 * np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]], dtype=np.complex128)
_SWAP = np.array(
    [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.complex128
)


def _rxx(theta: float) -> Matrix:
    xx = np.kron(_X, _X)
    return np.asarray(
        math.cos(theta / 2) * np.eye(4) - 1j * math.sin(theta / 2) * xx, dtype=np.complex128
    )


def _rzz(theta: float) -> Matrix:
    a, b = cmath.exp(-0.5j * theta), cmath.exp(0.5j * theta)
    return np.diag([a, b, b, a]).astype(np.complex128)


def _mcx(num_controls: int) -> Matrix:
    n = 2 ** (num_controls + 1)
    out = np.eye(n, dtype=np.complex128)
    out[[n - 2, n - 1], :] = out[[n - 1, n - 2], :]
    return out


def _c3sqrtx() -> Matrix:
    out = np.eye(16, dtype=np.complex128)
    out[14:, 14:] = _SX
    return out


def _cswap() -> Matrix:
    return _controlled(_SWAP)


@dataclass(frozen=True, slots=True)
class GateSpec:
    """One standard gate: its arity, its parameter count and how to build its matrix.

    Attributes:
        name: the OpenQASM name (lower case, except the built-ins ``U`` and ``CX``).
        num_qubits: how many qubits it acts on.
        num_params: how many real parameters it takes.
        matrix: builds the unitary from the parameters; ``None`` for gates known only by
            their ``qelib1.inc`` definition (the relative-phase Toffolis).
        diagonal_on: per qubit, whether the gate is diagonal in Z on that qubit (it
            commutes with every other Z-diagonal action there). Routing and verification
            use it for commutation.
    """

    name: str
    num_qubits: int
    num_params: int
    matrix: Callable[..., Matrix] | None
    diagonal_on: tuple[bool, ...]


def _spec(name: str, nq: int, npar: int, fn: Callable[..., Matrix] | None,
          diag: tuple[bool, ...] | None = None) -> GateSpec:
    return GateSpec(name, nq, npar, fn, diag if diag is not None else (False,) * nq)


_D1 = (True,)
_CTRL = (True, False)
_DIAG2 = (True, True)

GATES: dict[str, GateSpec] = {
    s.name: s
    for s in (
        _spec("U", 1, 3, _u),
        _spec("CX", 2, 0, lambda: _controlled(_X), _CTRL),
        _spec("u3", 1, 3, _u),
        _spec("u", 1, 3, _u),
        _spec("u2", 1, 2, lambda phi, lam: _u(math.pi / 2, phi, lam)),
        _spec("u1", 1, 1, _phase, _D1),
        _spec("p", 1, 1, _phase, _D1),
        _spec("u0", 1, 1, lambda _gamma: _I2.copy(), _D1),
        _spec("id", 1, 0, _I2.copy, _D1),
        _spec("x", 1, 0, _X.copy),
        _spec("y", 1, 0, _Y.copy),
        _spec("z", 1, 0, _Z.copy, _D1),
        _spec("h", 1, 0, _H.copy),
        _spec("s", 1, 0, lambda: _phase(math.pi / 2), _D1),
        _spec("sdg", 1, 0, lambda: _phase(-math.pi / 2), _D1),
        _spec("t", 1, 0, lambda: _phase(math.pi / 4), _D1),
        _spec("tdg", 1, 0, lambda: _phase(-math.pi / 4), _D1),
        _spec("rx", 1, 1, _rx),
        _spec("ry", 1, 1, _ry),
        _spec("rz", 1, 1, _rz, _D1),
        _spec("sx", 1, 0, _SX.copy),
        _spec("sxdg", 1, 0, _SX.conj().T.copy),
        _spec("cx", 2, 0, lambda: _controlled(_X), _CTRL),
        _spec("cy", 2, 0, lambda: _controlled(_Y), _CTRL),
        _spec("cz", 2, 0, lambda: _controlled(_Z), _DIAG2),
        _spec("ch", 2, 0, lambda: _controlled(_H), _CTRL),
        _spec("swap", 2, 0, _SWAP.copy),
        _spec("crx", 2, 1, lambda t: _controlled(_rx(t)), _CTRL),
        _spec("cry", 2, 1, lambda t: _controlled(_ry(t)), _CTRL),
        _spec("crz", 2, 1, lambda t: _controlled(_rz(t)), _DIAG2),
        _spec("cu1", 2, 1, lambda lam: _controlled(_phase(lam)), _DIAG2),
        _spec("cp", 2, 1, lambda lam: _controlled(_phase(lam)), _DIAG2),
        _spec("cu3", 2, 3, lambda t, p, lam: _controlled(_u(t, p, lam)), _CTRL),
        _spec("csx", 2, 0, lambda: _controlled(_SX), _CTRL),
        _spec("cu", 2, 4,
              lambda t, p, lam, g: _controlled(cmath.exp(1j * g) * _u(t, p, lam)), _CTRL),
        _spec("rxx", 2, 1, _rxx),
        _spec("rzz", 2, 1, _rzz, _DIAG2),
        _spec("ccx", 3, 0, lambda: _mcx(2), (True, True, False)),
        _spec("cswap", 3, 0, _cswap, (True, False, False)),
        _spec("rccx", 3, 0, None),
        _spec("c3x", 4, 0, lambda: _mcx(3), (True, True, True, False)),
        _spec("rc3x", 4, 0, None),
        _spec("c3sqrtx", 4, 0, _c3sqrtx, (True, True, True, False)),
        _spec("c4x", 5, 0, lambda: _mcx(4), (True, True, True, True, False)),
    )
}


def gate_matrix(name: str, params: Sequence[float] = ()) -> Matrix:
    """Return the unitary of a standard gate (a fresh, writable array).

    Raises:
        KeyError: ``name`` is not a standard gate.
        ValueError: the gate has no closed-form matrix or the parameter count is wrong.
    """
    return _cached_matrix(name, tuple(float(p) for p in params)).copy()


@lru_cache(maxsize=4096)
def _cached_matrix(name: str, params: tuple[float, ...]) -> Matrix:
    spec = GATES[name]
    if spec.matrix is None:
        raise ValueError(f"gate {name!r} has no closed-form matrix; decompose it first")
    if len(params) != spec.num_params:
        raise ValueError(f"gate {name!r} takes {spec.num_params} parameters, got {len(params)}")
    m = spec.matrix(*params)
    m.setflags(write=False)
    return m


def is_diagonal_on(name: str, index: int) -> bool:
    """Whether gate ``name`` is Z-diagonal on its ``index``-th qubit (False if unknown)."""
    spec = GATES.get(name)
    return spec is not None and spec.diagonal_on[index]

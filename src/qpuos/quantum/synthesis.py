"""Exact synthesis of a two-qubit unitary into CX and one-qubit gates (KAK decomposition).

Every 4x4 unitary factors, up to global phase, as
``U = (A1 ⊗ B1) · N(a, b, c) · (A2 ⊗ B2)`` with ``N(a, b, c) = exp(i(a XX + b YY + c ZZ))``
(Khaneja & Glaser 2001; Kraus & Cirac 2001). The Weyl coordinates ``(a, b, c)`` fix the
fewest CX gates any circuit for ``U`` needs (Vidal & Dawson 2004; Shende, Markov &
Bullock 2004): 0 for ``(0, 0, 0)``, 1 for ``(pi/4, 0, 0)``, 2 when one coordinate is 0,
3 otherwise, each read after reduction into the Weyl chamber.

Design notes:

* Magic basis. In the basis ``B`` below, ``SU(2) ⊗ SU(2)`` is exactly ``SO(4)`` and
  ``XX``, ``YY``, ``ZZ`` are diagonal. With ``Up = B† U B`` (``det U`` scaled to 1),
  ``M = Up^T Up`` is symmetric and unitary, so its real and imaginary parts are commuting
  real symmetric matrices sharing a real orthonormal eigenbasis ``P``. ``eigh`` of a
  generic real mix of the two finds it; a mix that happens to split an eigenspace of
  ``M`` wrongly is caught by checking that ``P^T M P`` is diagonal, and another mix is
  tried. A closed-form eigen solver was rejected: degenerate spectra (identity, CZ,
  SWAP) are exactly the common inputs.
* Coordinates are reduced, not canonicalised in full: each is brought into
  ``[-pi/4, pi/4]`` (a shift by ``pi/2`` is the local ``XX``, ``YY`` or ``ZZ``), then
  permuted by local Cliffords applied to both qubits so that ``|a|`` is the largest and
  ``|b|`` the smallest. The counts above only need these absolute values, and the
  templates below accept any signs, so the remaining chamber symmetries are never used.
* Templates, all with the control on the first qubit, derived from
  ``CX·XX·CX = XI``, ``CX·ZZ·CX = IZ``, ``YY = -XX·ZZ`` and ``CZ·XI·CZ = XZ``::

      N(±pi/4, 0, 0) ∝ (H S∓ ⊗ H S∓ H) · CX · (H ⊗ I)
      N(a, 0, c)     = CX · (e^{iaX} ⊗ e^{icZ}) · CX
      N(a, b, c)     ∝ CX · (e^{iaX} ⊗ e^{icZ} H) · CX · (e^{-ibX} S ⊗ H S) · CX · (I ⊗ S†)

  The last is the 3-CX circuit of Vatan & Williams (2004) in another gauge. Dropping a
  coordinate below ``atol`` (or rounding ``|a|`` to ``pi/4``) changes the unitary by at
  most about ``atol``, which is why the final check allows ``max(1e-8, 4 * atol)``.
* Every circuit is multiplied out from its emitted parameters and compared with the
  input before it is returned; a mismatch raises ``QpuosInternalError``.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qpuos.errors import QpuosInternalError, UsageError
from qpuos.quantum.circuit import Instruction

__all__ = ["cx_count", "synthesize_two_qubit"]

Matrix = NDArray[np.complex128]

_SQ2 = 1 / math.sqrt(2)
#: Columns are the magic states; ``B† (A ⊗ B) B`` is real orthogonal for A, B in SU(2).
_B = np.array(
    [[1, 0, 0, 1j], [0, 1j, 1, 0], [0, 1j, -1, 0], [1, 0, 0, -1j]], dtype=np.complex128
) * _SQ2
_BH = _B.conj().T
_I2 = np.eye(2, dtype=np.complex128)
_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
_Z = np.diag([1, -1]).astype(np.complex128)
_H = np.array([[1, 1], [1, -1]], dtype=np.complex128) * _SQ2
_S = np.diag([1, 1j]).astype(np.complex128)
_SDG = _S.conj().T
_RX90 = np.array([[1, -1j], [-1j, 1]], dtype=np.complex128) * _SQ2  # exp(-i pi/4 X)
_CX = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.complex128)
_PAULIS = (_X, _Y, _Z)
#: Swapping coordinates i and j: ``N(c) = (L† ⊗ L†) N(c with i, j swapped) (L ⊗ L)``.
_SWAPPERS = {(0, 1): _S, (0, 2): _H, (1, 2): _RX90}
#: Real mixes ``(x, y)`` of ``Re M`` and ``Im M`` tried in turn; fixed, so results repeat.
_MIXES = np.random.default_rng(0x5EED).normal(size=(16, 2))
_DIAG_GOOD = 1e-13  # off-diagonal left in P^T M P by an accurate eigenbasis
_DIAG_ATOL = 1e-10  # ... and by the best one we settle for
_ONE_Q_ATOL = 1e-12  # a one-qubit piece this close to diagonal / identity is emitted so
_UNITARY_ATOL = 1e-8
_VERIFY_ATOL = 1e-8
_QUARTER_PI = math.pi / 4
_HALF_PI = math.pi / 2


@dataclass(frozen=True, slots=True)
class _Kak:
    """``U ∝ (a1 ⊗ b1) · N(coords) · (a2 ⊗ b2)``, coordinates reduced and ordered."""

    a1: Matrix
    b1: Matrix
    coords: tuple[float, float, float]
    a2: Matrix
    b2: Matrix
    count: int


def cx_count(u: NDArray[np.complexfloating] | NDArray[np.floating], *,
             atol: float = 1e-9) -> int:
    """Return the fewest CX gates (0..3) that implement ``u`` with one-qubit gates around.

    Args:
        u: a 4x4 unitary, first qubit most significant (as in ``gates.py``).
        atol: tolerance on the Weyl coordinates: a coordinate within ``atol`` of 0 (or
            of ``pi/4`` for the one-CX class) counts as equal to it.

    Returns:
        0, 1, 2 or 3; ``synthesize_two_qubit`` uses exactly this many.

    Raises:
        UsageError: ``u`` is not a 4x4 unitary or ``atol`` is negative.

    >>> import numpy as np
    >>> from qpuos.quantum.gates import gate_matrix
    >>> cx_count(gate_matrix("swap")), cx_count(gate_matrix("cz")), cx_count(np.eye(4))
    (3, 1, 0)
    """
    return _analyse(_check_unitary(u), _check_atol(atol)).count


def synthesize_two_qubit(u: NDArray[np.complexfloating] | NDArray[np.floating],
                         qubits: tuple[int, int], *, atol: float = 1e-9) -> list[Instruction]:
    """Return a circuit of ``cx``, ``u`` and ``rz`` gates equal to ``u`` up to global phase.

    Steps: (1) KAK-decompose ``u`` in the magic basis; (2) reduce and order the Weyl
    coordinates, folding the local corrections into the outer one-qubit factors;
    (3) pick the template for ``cx_count(u)`` CX gates; (4) merge the outer factors into
    its one-qubit layers and convert each piece to ``u``/``rz`` (ZYZ), dropping
    identities; (5) multiply the circuit out and check it against ``u``. The result is
    deterministic.

    Args:
        u: a 4x4 unitary on ``qubits``, ``qubits[0]`` the most significant bit.
        qubits: the two distinct qubits the gates act on.
        atol: tolerance on the Weyl coordinates, as in ``cx_count``.

    Returns:
        Instructions in time order: at most one one-qubit gate per wire between
        consecutive CX gates, and exactly ``cx_count(u, atol=atol)`` CX gates, all with
        ``qubits[0]`` as control.

    Raises:
        UsageError: ``u`` is not a 4x4 unitary, the qubits are not distinct, or ``atol``
            is negative.
        QpuosInternalError: the circuit does not reproduce ``u`` (a bug).

    >>> from qpuos.quantum.gates import gate_matrix
    >>> circuit = synthesize_two_qubit(gate_matrix("cz"), (3, 5))
    >>> [i.qubits for i in circuit if i.name == "cx"]
    [(3, 5)]
    """
    m = _check_unitary(u)
    tol = _check_atol(atol)
    q0, q1 = qubits
    if q0 == q1:
        raise UsageError(f"synthesize_two_qubit needs two distinct qubits, got {qubits}")
    kak = _analyse(m, tol)  # steps 1 and 2
    layers = _template(kak)  # step 3
    # 4. Fold the outer factors into the first and last layers, then emit.
    first = layers[0]
    layers[0] = (first[0] @ kak.a2, first[1] @ kak.b2)
    last = layers[-1]
    layers[-1] = (kak.a1 @ last[0], kak.b1 @ last[1])
    out: list[Instruction] = []
    for k, (pa, pb) in enumerate(layers):
        if k:
            out.append(Instruction("cx", (q0, q1)))
        for piece, q in ((pa, q0), (pb, q1)):
            inst = _one_qubit(piece, q)
            if inst is not None:
                out.append(inst)
    # 5. Never hand back a wrong circuit.
    dev = _deviation(out, (q0, q1), m)
    if not dev <= max(_VERIFY_ATOL, 4 * tol):
        raise QpuosInternalError(
            f"two-qubit synthesis produced a circuit {dev:.3g} away from its input "
            f"(Weyl coordinates {kak.coords}, {kak.count} CX); this is a bug, please report "
            "it with the input matrix")
    return out


def _check_unitary(u: NDArray[np.complexfloating] | NDArray[np.floating]) -> Matrix:
    m = np.asarray(u, dtype=np.complex128)
    if m.shape != (4, 4):
        raise UsageError(f"expected a 4x4 unitary, got an array of shape {m.shape}")
    if not np.isfinite(m).all():
        raise UsageError("the 4x4 matrix has NaN or infinite entries; pass a unitary")
    err = float(np.abs(m.conj().T @ m - np.eye(4)).max())
    if not err <= _UNITARY_ATOL:
        raise UsageError(f"the 4x4 matrix is not unitary (max |U†U - I| = {err:.3g} > "
                         f"{_UNITARY_ATOL:g}); pass a unitary matrix")
    return m


def _check_atol(atol: float) -> float:
    if not (math.isfinite(atol) and atol >= 0):
        raise UsageError(f"atol must be a finite number >= 0, got {atol!r}")
    return float(atol)


def _analyse(u: Matrix, atol: float) -> _Kak:
    # 1. KAK in the magic basis.
    us = u * np.linalg.det(u) ** -0.25
    up = _BH @ us @ _B
    m = up.T @ up
    p, d = _real_eigenbasis(m)
    if np.linalg.det(p) < 0:
        p[:, 0] = -p[:, 0]
    theta = np.angle(d) / 2
    k1 = (up @ p) * np.exp(-1j * theta)
    if np.linalg.det(k1).real < 0:  # sum(theta) is pi off: take the other root once
        theta[0] += math.pi
        k1[:, 0] = -k1[:, 0]
    a1, b1 = _kron_factors(_B @ k1 @ _BH)
    a2, b2 = _kron_factors(_B @ p.T @ _BH)
    # diag(e^{i theta}) = e^{ig} B† N(a, b, c) B with XX, YY, ZZ = diag(1,1,-1,-1),
    # diag(-1,1,-1,1), diag(1,-1,-1,1) in this basis.
    t0, t1, t2, t3 = (float(t) for t in theta)
    coords = [(t0 + t1 - t2 - t3) / 4, (-t0 + t1 - t2 + t3) / 4, (t0 - t1 - t2 + t3) / 4]
    # 2. Reduce each coordinate into [-pi/4, pi/4]: N(c + pi/2 on axis P) = N(c)·(i PP).
    for axis, pauli in enumerate(_PAULIS):
        k = round(coords[axis] / _HALF_PI)
        coords[axis] -= k * _HALF_PI
        if k % 2:
            a2, b2 = pauli @ a2, pauli @ b2
    # Order |a| >= |c| >= |b| with local Clifford swaps on both qubits.
    for i, j in ((0, 1), (0, 2), (2, 1)):
        if abs(coords[i]) < abs(coords[j]):
            lo, hi = min(i, j), max(i, j)
            sw = _SWAPPERS[lo, hi]
            coords[lo], coords[hi] = coords[hi], coords[lo]
            a1, b1 = a1 @ sw.conj().T, b1 @ sw.conj().T
            a2, b2 = sw @ a2, sw @ b2
    a, b, c = coords
    if abs(a) <= atol:
        count = 0
    elif abs(b) <= atol and abs(c) <= atol and abs(abs(a) - _QUARTER_PI) <= atol:
        count = 1
    elif abs(b) <= atol:
        count = 2
    else:
        count = 3
    return _Kak(a1, b1, (a, b, c), a2, b2, count)


def _real_eigenbasis(m: Matrix) -> tuple[NDArray[np.float64], Matrix]:
    """A real orthogonal ``P`` and the diagonal ``d`` with ``P^T m P = diag(d)``."""
    re, im = m.real, m.imag
    best: tuple[float, NDArray[np.float64], Matrix] | None = None
    for x, y in _MIXES:
        _, p = np.linalg.eigh(x * re + y * im)
        d = p.T @ m @ p
        diag = d.diagonal().copy()
        off = float(np.abs(d - np.diag(diag)).max())
        if off <= _DIAG_GOOD:
            return p, diag
        # A mix whose eigenvalues nearly collide where M's do not gives a basis that is
        # only roughly right (off ~ 1e-11); keep it in reserve and try the next mix.
        if best is None or off < best[0]:
            best = (off, p, diag)
    if best is not None and best[0] <= _DIAG_ATOL:
        return best[1], best[2]
    raise QpuosInternalError(
        f"no real eigenbasis found for the symmetric unitary M in {len(_MIXES)} tries "
        f"(best off-diagonal {best[0] if best else math.inf:.3g}); this is a bug, please "
        "report it with the input")


def _kron_factors(k: Matrix) -> tuple[Matrix, Matrix]:
    """``(A, B)`` with ``A ⊗ B = k`` for a 4x4 ``k`` that is a Kronecker product."""
    # k[2i+j, 2k+l] = A[i,k] B[j,l]; rearranged, r[2i+k, 2j+l] = A[i,k] B[j,l] has rank one.
    r = k.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    flat = int(np.argmax(np.abs(r)))
    row, col = divmod(flat, 4)
    return r[:, col].reshape(2, 2) / r[row, col], r[row, :].reshape(2, 2)


def _template(kak: _Kak) -> list[tuple[Matrix, Matrix]]:
    """One-qubit layers ``[L0, ..., Ln]`` with ``N ∝ Ln · CX · ... · CX · L0``."""
    a, b, c = kak.coords
    if kak.count == 0:
        return [(_I2, _I2)]
    if kak.count == 1:
        s = _SDG if a > 0 else _S
        return [(_H, _I2), (_H @ s, _H @ s @ _H)]
    eax, ecz = _exp_pauli(a, _X), _exp_pauli(c, _Z)
    if kak.count == 2:
        return [(_I2, _I2), (eax, ecz), (_I2, _I2)]
    return [(_I2, _SDG), (_exp_pauli(-b, _X) @ _S, _H @ _S), (eax, ecz @ _H), (_I2, _I2)]


def _exp_pauli(t: float, pauli: Matrix) -> Matrix:
    return math.cos(t) * _I2 + (1j * math.sin(t)) * pauli


def _wrap(angle: float) -> float:
    """``angle`` moved into (-pi, pi]."""
    w = math.remainder(angle, 2 * math.pi)
    return math.pi if w == -math.pi else w


def _one_qubit(m: Matrix, q: int) -> Instruction | None:
    """``u``/``rz`` for a 2x2 unitary up to phase; ``None`` for the identity.

    With ``m / sqrt(det m) = [[x, -y*], [y, x*]]`` and ``u(θ, φ, λ) ∝ [[e^{-i(φ+λ)/2} c,
    .], [e^{i(φ-λ)/2} s, .]]``: ``θ = 2 atan2(|y|, |x|)``, ``φ ± λ`` from the phases of
    ``x`` and ``y``. Using the SU(2) entries (not ``φ+λ = arg m11 - arg m00``) keeps a
    tiny ``x`` or ``y`` from spoiling the angle that multiplies the large entry.
    """
    m00, m01, m10, m11 = complex(m[0, 0]), complex(m[0, 1]), complex(m[1, 0]), complex(m[1, 1])
    r = cmath.sqrt(m00 * m11 - m01 * m10)
    x, y = m00 / r, m10 / r
    p = -cmath.phase(x)
    if abs(y) <= _ONE_Q_ATOL * abs(x):
        lam = _wrap(2 * p)
        return None if abs(lam) <= _ONE_Q_ATOL else Instruction("rz", (q,), (lam,))
    qq = cmath.phase(y)
    theta = 2 * math.atan2(abs(y), abs(x))
    return Instruction("u", (q,), (theta, _wrap(p + qq), _wrap(p - qq)))


def _u_matrix(theta: float, phi: float, lam: float) -> Matrix:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -cmath.exp(1j * lam) * s],
                     [cmath.exp(1j * phi) * s, cmath.exp(1j * (phi + lam)) * c]],
                    dtype=np.complex128)


def _kron(a: Matrix, b: Matrix) -> Matrix:
    """``np.kron`` for 2x2 factors, without its generic-shape overhead (hot path)."""
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(4, 4)


def _deviation(circuit: list[Instruction], qubits: tuple[int, int], u: Matrix) -> float:
    """Max entry-wise distance between the circuit's unitary and ``e^{iφ} u``, best φ."""
    total = np.eye(4, dtype=np.complex128)
    pending = [_I2, _I2]
    for inst in circuit:
        if inst.name == "cx":
            if inst.qubits != qubits:  # the templates only use this orientation
                return math.inf
            total = _CX @ _kron(pending[0], pending[1]) @ total
            pending = [_I2, _I2]
            continue
        wire = qubits.index(inst.qubits[0])
        if inst.name == "u":
            g = _u_matrix(*inst.params)
        elif inst.name == "rz":
            h = 0.5 * inst.params[0]
            g = np.array([[cmath.exp(-1j * h), 0], [0, cmath.exp(1j * h)]], dtype=np.complex128)
        else:
            return math.inf
        pending[wire] = g @ pending[wire]
    total = _kron(pending[0], pending[1]) @ total
    overlap = complex(np.vdot(u, total))  # tr(u† total)
    if abs(overlap) == 0:
        return math.inf
    return float(np.abs(total - (overlap / abs(overlap)) * u).max())

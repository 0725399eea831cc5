"""A state-vector simulator for the standard gate set.

Design notes:

* A state on ``n`` qubits is a C-contiguous ``complex128`` array of shape ``(2,) * n``;
  axis ``i`` is qubit ``i``. In the flat (C-order) view qubit ``i`` is bit ``n - 1 - i``
  of the amplitude index, so its *stride* is ``2 ** (n - 1 - i)``.
* Gates are applied in place; no ``2**n x 2**n`` matrix is ever built. One- and
  two-qubit gates go to numba kernels that visit each amplitude once: a dense kernel,
  and a cheaper one for *monomial* matrices (one nonzero per row: diagonal gates, ``x``,
  ``cx``, ``cz``, ...), which only moves and rephases amplitudes. Gates on three or more
  qubits use ``np.tensordot`` on their axes: they are rare (routing decomposes them).
  ``np.einsum``/``tensordot`` for every gate was rejected: each call allocates a new
  state, 2-3x slower at 20 qubits than an in-place kernel.
* ``simulate`` first *fuses* the circuit: ``swap`` gates only relabel axes (one
  transpose at the end), one-qubit gates are multiplied into the next two-qubit gate on
  their qubit, and consecutive two-qubit gates on the same pair are multiplied
  together. A routed 20-qubit circuit then costs about one kernel pass per two-qubit
  gate that is not a swap.
* Kernels are serial. ``numba.prange`` versions ran 1.8x faster on an idle 2-core
  machine but 3x (20 qubits) to 40x (16 qubits) slower than serial while other
  processes kept the cores busy, and gain nothing on the controller's pinned CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numpy.typing import NDArray

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.gates import GATES, gate_matrix

__all__ = [
    "State",
    "apply_gate",
    "fidelity",
    "kernel_1q",
    "kernel_2q",
    "permute_qubits",
    "random_state",
    "simulate",
    "zero",
]

#: An n-qubit state: complex128, shape ``(2,) * n``, axis ``i`` = qubit ``i``.
State = NDArray[np.complex128]
_Matrix = NDArray[np.complex128]

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(fn: _F) -> _F:
    # nogil so the emulated controller can simulate beside its event loop.
    return cast(_F, numba.njit(cache=True, nogil=True)(fn))


# ---------------------------------------------------------------------------------------
# Kernels. Each walks the amplitude groups in chunks of at most _CHUNK groups that are
# contiguous in memory (good for the prefetcher) and updates the state in place. A
# group is the 2 (or 4) amplitudes a gate mixes; group ``p`` starts at ``p`` with a zero
# bit inserted at each gate qubit's stride (bit operations, not ``//`` and ``%``: with
# neighbouring qubits a chunk is one group, and an integer division per group cost 3x).
# ``s0`` is the stride of the gate's first qubit (the matrix's most significant bit).

_CHUNK = 4096


@_jit
def _k1(psi: Any, s0: int, m00: complex, m01: complex,
        m10: complex, m11: complex) -> None:
    chunk = min(s0, _CHUNK)
    mask = s0 - 1
    for t in range(psi.size // 2 // chunk):
        f = t * chunk
        start = ((f & ~mask) << 1) | (f & mask)
        for j in range(start, start + chunk):
            a = psi[j]
            b = psi[j + s0]
            psi[j] = m00 * a + m01 * b
            psi[j + s0] = m10 * a + m11 * b


@_jit
def _k1_mono(psi: Any, s0: int, o0: int, o1: int,
             d0: complex, d1: complex) -> None:
    # Monomial gate (one nonzero per row): new[r] = d[r] * old[src(r)], ``o_r`` being
    # the offset of ``src(r)``. A diagonal gate has ``o_r`` = offset of ``r``.
    chunk = min(s0, _CHUNK)
    mask = s0 - 1
    for t in range(psi.size // 2 // chunk):
        f = t * chunk
        start = ((f & ~mask) << 1) | (f & mask)
        for j in range(start, start + chunk):
            a = psi[j + o0]
            b = psi[j + o1]
            psi[j] = d0 * a
            psi[j + s0] = d1 * b


@_jit
def _k2(psi: Any, s0: int, s1: int, m: Any) -> None:
    hi = max(s0, s1)
    lo = min(s0, s1)
    chunk = min(lo, _CHUNK)
    mlo, mhi = lo - 1, hi - 1
    m00, m01, m02, m03 = m[0, 0], m[0, 1], m[0, 2], m[0, 3]
    m10, m11, m12, m13 = m[1, 0], m[1, 1], m[1, 2], m[1, 3]
    m20, m21, m22, m23 = m[2, 0], m[2, 1], m[2, 2], m[2, 3]
    m30, m31, m32, m33 = m[3, 0], m[3, 1], m[3, 2], m[3, 3]
    for t in range(psi.size // 4 // chunk):
        f = t * chunk
        x = ((f & ~mlo) << 1) | (f & mlo)
        start = ((x & ~mhi) << 1) | (x & mhi)
        for i0 in range(start, start + chunk):
            i1 = i0 + s1
            i2 = i0 + s0
            i3 = i2 + s1
            v0 = psi[i0]
            v1 = psi[i1]
            v2 = psi[i2]
            v3 = psi[i3]
            psi[i0] = m00 * v0 + m01 * v1 + m02 * v2 + m03 * v3
            psi[i1] = m10 * v0 + m11 * v1 + m12 * v2 + m13 * v3
            psi[i2] = m20 * v0 + m21 * v1 + m22 * v2 + m23 * v3
            psi[i3] = m30 * v0 + m31 * v1 + m32 * v2 + m33 * v3


@_jit
def _k2_mono(psi: Any, s0: int, s1: int, o: Any, d: Any) -> None:
    hi = max(s0, s1)
    lo = min(s0, s1)
    chunk = min(lo, _CHUNK)
    mlo, mhi = lo - 1, hi - 1
    o0, o1, o2, o3 = o[0], o[1], o[2], o[3]
    d0, d1, d2, d3 = d[0], d[1], d[2], d[3]
    for t in range(psi.size // 4 // chunk):
        f = t * chunk
        x = ((f & ~mlo) << 1) | (f & mlo)
        start = ((x & ~mhi) << 1) | (x & mhi)
        for i0 in range(start, start + chunk):
            v0 = psi[i0 + o0]
            v1 = psi[i0 + o1]
            v2 = psi[i0 + o2]
            v3 = psi[i0 + o3]
            psi[i0] = d0 * v0
            psi[i0 + s1] = d1 * v1
            psi[i0 + s0] = d2 * v2
            psi[i0 + s0 + s1] = d3 * v3


@_jit
def kernel_1q(psi: Any, s0: int, m: Any) -> None:
    """Apply the 2x2 matrix ``m`` in place to the qubit of stride ``s0`` of the flat
    state ``psi`` (numba, callable from other numba code: the emulated controller
    executes one instruction with it, no Python in between)."""
    _k1(psi, s0, m[0, 0], m[0, 1], m[1, 0], m[1, 1])


@_jit
def kernel_2q(psi: Any, s0: int, s1: int, m: Any) -> None:
    """Apply the 4x4 matrix ``m`` in place to the qubits of strides ``s0`` (the matrix's
    most significant bit) and ``s1`` of the flat state ``psi`` (numba, like
    :func:`kernel_1q`)."""
    _k2(psi, s0, s1, m)


# ---------------------------------------------------------------------------------------
# Dispatch. A monomial matrix (permutation x phases) is described by ``src``: the column
# of the nonzero in each row; ``src`` is None for a dense matrix.


def _monomial_sources(m: _Matrix) -> NDArray[np.int64] | None:
    nz = m != 0  # exact: products of monomial matrices stay exactly monomial
    if not (nz.sum(axis=1) == 1).all():
        return None
    src: NDArray[np.int64] = np.argmax(nz, axis=1).astype(np.int64)
    return src


def _apply_tensordot(state: State, matrix: _Matrix, qubits: Sequence[int]) -> None:
    """The general path: contract the gate with its axes, then put the axes back."""
    k = len(qubits)
    t = matrix.reshape((2,) * (2 * k))
    res = np.tensordot(t, state, axes=(list(range(k, 2 * k)), list(qubits)))
    state[...] = np.moveaxis(res, list(range(k)), list(qubits))


def _apply_diag_broadcast(state: State, diag: NDArray[np.complex128],
                          qubits: Sequence[int]) -> None:
    k = len(qubits)
    order = sorted(range(k), key=lambda j: qubits[j])
    shape = [1] * state.ndim
    for q in qubits:
        shape[q] = 2
    state *= diag.reshape((2,) * k).transpose(order).reshape(shape)


def _apply(state: State, matrix: _Matrix, qubits: Sequence[int],
           src: NDArray[np.int64] | None) -> None:
    """Unchecked in-place application; ``matrix`` must be C-contiguous."""
    n = state.ndim
    k = len(qubits)
    psi = state.reshape(-1)
    if k == 1:
        s0 = 1 << (n - 1 - qubits[0])
        if src is None:
            _k1(psi, s0, matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1])
        else:
            o0, o1 = int(src[0]) * s0, int(src[1]) * s0
            _k1_mono(psi, s0, o0, o1, matrix[0, src[0]], matrix[1, src[1]])
    elif k == 2:
        s0 = 1 << (n - 1 - qubits[0])
        s1 = 1 << (n - 1 - qubits[1])
        if src is None:
            _k2(psi, s0, s1, matrix)
        else:
            offsets = (src >> 1) * s0 + (src & 1) * s1
            _k2_mono(psi, s0, s1, offsets, matrix[np.arange(4), src])
    elif src is not None and (src == np.arange(len(src))).all():
        _apply_diag_broadcast(state, np.diagonal(matrix), qubits)
    else:
        _apply_tensordot(state, matrix, qubits)


def _check_state(state: object) -> State:
    if not isinstance(state, np.ndarray) or state.dtype != np.complex128:
        got = getattr(state, "dtype", type(state).__name__)
        raise UsageError(f"a state must be a complex128 numpy array, got {got}")
    if any(d != 2 for d in state.shape):
        raise UsageError(f"a state must have shape (2,) * n, got {state.shape}; "
                         "reshape a flat vector with .reshape((2,) * n)")
    if not state.flags.c_contiguous or not state.flags.writeable:
        raise UsageError("a state must be a writable C-contiguous array; "
                         "pass np.ascontiguousarray(state) or a copy")
    return cast(State, state)


def apply_gate(state: State, matrix: NDArray[Any], qubits: Sequence[int]) -> State:
    """Apply a ``k``-qubit unitary to ``qubits`` of ``state``, in place.

    The matrix follows the convention of ``gates.py``: ``qubits[0]`` is the most
    significant bit of the matrix index. Diagonal matrices are applied as phases.

    Args:
        state: a writable C-contiguous complex128 array of shape ``(2,) * n``.
        matrix: a ``2**k x 2**k`` matrix (unitarity is not checked).
        qubits: ``k`` distinct qubits of ``state``, in the gate's argument order.

    Returns:
        ``state`` itself, updated.

    Raises:
        UsageError: the state, matrix or qubits do not fit together.

    >>> psi = apply_gate(zero(2), gate_matrix("h"), [0])
    >>> psi = apply_gate(psi, gate_matrix("cx"), [0, 1])
    >>> np.round(psi.reshape(-1).real, 3).tolist()
    [0.707, 0.0, 0.0, 0.707]
    """
    st = _check_state(state)
    n = st.ndim
    qs = [int(q) for q in qubits]
    k = len(qs)
    if len(set(qs)) != k or any(not 0 <= q < n for q in qs):
        raise UsageError(f"qubits {qs} must be distinct and within 0..{n - 1}")
    m = np.ascontiguousarray(matrix, dtype=np.complex128)
    if m.shape != (1 << k, 1 << k):
        raise UsageError(f"a gate on {k} qubits needs a {1 << k}x{1 << k} matrix, "
                         f"got shape {m.shape}")
    if k:
        _apply(st, m, qs, _monomial_sources(m))
    return st


# ---------------------------------------------------------------------------------------
# States.


def zero(n: int) -> State:
    """The state ``|0...0>`` on ``n`` qubits.

    >>> zero(2).reshape(-1).tolist()
    [(1+0j), 0j, 0j, 0j]
    """
    if n < 0:
        raise UsageError(f"number of qubits must be >= 0, got {n}")
    out = np.zeros((2,) * n, dtype=np.complex128)
    out.reshape(-1)[0] = 1.0
    return out


def random_state(n: int, rng: np.random.Generator) -> State:
    """A random normalised state: i.i.d. complex Gaussian amplitudes (Haar distributed).

    >>> psi = random_state(3, np.random.default_rng(0))
    >>> round(float(np.vdot(psi, psi).real), 12)
    1.0
    """
    if n < 0:
        raise UsageError(f"number of qubits must be >= 0, got {n}")
    shape = (2,) * n
    out = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    out /= np.linalg.norm(out)
    return np.asarray(out, dtype=np.complex128, order="C")


def permute_qubits(state: State, perm: Sequence[int]) -> State:
    """Move qubit ``i`` of ``state`` to qubit ``perm[i]`` of a new state.

    >>> psi = apply_gate(zero(2), gate_matrix("x"), [0])   # |10>
    >>> int(np.argmax(abs(permute_qubits(psi, [1, 0]).reshape(-1))))  # |01>
    1
    """
    n = state.ndim
    p = [int(x) for x in perm]
    if sorted(p) != list(range(n)):
        raise UsageError(f"perm {p} is not a permutation of 0..{n - 1}")
    inverse = [0] * n
    for i, target in enumerate(p):
        inverse[target] = i
    return np.transpose(state, inverse).copy(order="C")


def fidelity(a: State, b: State) -> float:
    """``|<a|b>|**2`` for normalised states (global phase is ignored).

    >>> fidelity(zero(1), 1j * zero(1))
    1.0
    """
    if a.shape != b.shape:
        raise UsageError(f"states have different shapes {a.shape} and {b.shape}")
    return float(abs(np.vdot(a, b)) ** 2)


# ---------------------------------------------------------------------------------------
# Circuits.


@lru_cache(maxsize=8192)
def _matrix(name: str, params: tuple[float, ...]) -> _Matrix:
    m = gate_matrix(name, params)
    m.setflags(write=False)
    return m


def _gate_of(index: int, inst: Instruction) -> _Matrix:
    """The matrix of one instruction, or a ``UsageError`` saying why it has none."""
    if inst.name in {"measure", "reset"}:
        raise UsageError(f"instruction {index} {inst.name!r} is not unitary; the simulator "
                         "runs unitary circuits only (strip measurements and resets first)")
    if inst.condition is not None:
        raise UsageError(f"instruction {index} {inst.name!r} is conditioned on "
                         f"{inst.condition.creg}=={inst.condition.value}; the simulator runs "
                         "unitary circuits only")
    spec = GATES.get(inst.name)
    if spec is None:
        raise UsageError(f"instruction {index}: unknown gate {inst.name!r}")
    if spec.matrix is None:
        raise UsageError(f"instruction {index} {inst.name!r} has no closed-form matrix; "
                         "decompose it into standard gates first")
    return _matrix(inst.name, inst.params)


_Op = tuple[_Matrix, tuple[int, ...]]


def _fuse(circuit: Circuit) -> tuple[list[_Op], list[int]]:
    """Turn a circuit into fewer, larger ops with the same product.

    1. ``swap`` gates cost nothing: they exchange which state axis holds which circuit
       qubit (``axis``); the caller transposes once at the end.
    2. One-qubit gates accumulate per axis (``pending``) until a wider gate needs it.
    3. A two-qubit gate absorbs the pending one-qubit gates of its axes, and joins
       the previous op if that op is on the same pair and nothing touched it since.
    4. Anything left pending is flushed at the end.

    Returns:
        The ops on state axes, and ``axis``: circuit qubit ``q`` ends on axis ``axis[q]``.
    """
    ops: list[_Op] = []
    pending: dict[int, _Matrix] = {}
    last: dict[int, int] = {}  # axis -> index in ops of the last op touching it
    axis = list(range(circuit.num_qubits))

    def flush(q: int) -> None:
        m = pending.pop(q, None)
        if m is not None:
            last[q] = len(ops)
            ops.append((m, (q,)))

    for index, inst in enumerate(circuit.instructions):
        if inst.name == "barrier":
            continue
        m = _gate_of(index, inst)
        if inst.name == "swap":  # step 1
            a, b = inst.qubits
            axis[a], axis[b] = axis[b], axis[a]
            continue
        qs = tuple(axis[q] for q in inst.qubits)
        if len(qs) == 1:  # step 2
            prev = pending.get(qs[0])
            pending[qs[0]] = m if prev is None else m @ prev
        elif len(qs) == 2:  # step 3
            a, b = qs
            pa, pb = pending.pop(a, None), pending.pop(b, None)
            if pa is not None or pb is not None:
                eye = np.eye(2, dtype=np.complex128)
                m = m @ np.kron(eye if pa is None else pa, eye if pb is None else pb)
            j = last.get(a)
            if j is not None and j == last.get(b) and len(ops[j][1]) == 2:
                prev_m, prev_q = ops[j]
                if prev_q != qs:  # same pair, other order: swap the matrix's bits
                    m = _SWAP @ m @ _SWAP
                ops[j] = (m @ prev_m, prev_q)
            else:
                last[a] = last[b] = len(ops)
                ops.append((m, qs))
        else:
            for q in qs:
                flush(q)
            for q in qs:
                last[q] = len(ops)
            ops.append((m, qs))
    for q in sorted(pending):  # step 4
        flush(q)
    return ops, axis


_SWAP = gate_matrix("swap")


def simulate(circuit: Circuit, state: State | None = None) -> State:
    """Run every unitary gate of ``circuit`` and return the final state.

    Barriers are skipped. Measurements, resets and conditional gates are not unitary
    and are refused, as are gates with no closed-form matrix (``rccx``, ``rc3x``).

    Args:
        circuit: the circuit to run.
        state: the input state on ``circuit.num_qubits`` qubits (not modified);
            ``|0...0>`` when omitted.

    Returns:
        A new state array.

    Raises:
        UsageError: the circuit holds a non-unitary or matrix-less instruction, or
            ``state`` does not have ``circuit.num_qubits`` qubits.

    >>> c = Circuit(num_qubits=3)
    >>> c.append("h", [0]); c.append("cx", [0, 1]); c.append("cx", [1, 2])
    >>> np.round(abs(simulate(c).reshape(-1)) ** 2, 3).tolist()
    [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    """
    n = circuit.num_qubits
    if state is None:
        out = zero(n)
    else:
        st = _check_state(np.asarray(state, order="C"))
        if st.ndim != n:
            raise UsageError(f"state has {st.ndim} qubits but the circuit has {n}")
        out = st.copy()
    fused, axis = _fuse(circuit)
    ops = [(np.ascontiguousarray(m), qs, _monomial_sources(m)) for m, qs in fused]
    # Hot loop: one kernel call per fused op.
    for m, qs, src in ops:
        _apply(out, m, qs, src)
    if axis != list(range(n)):
        out = np.transpose(out, axis).copy(order="C")
    return out

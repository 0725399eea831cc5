"""The controller's execution engine: numba loops over instruction records.

Design: the controller's Python code only moves batches (peek a run of records from the
ring, call :func:`run_batch`, release what it consumed); everything per instruction
happens here, in one numba call per batch: check the record, wait for its dilated
timestamp (busy-wait on CLOCK_MONOTONIC, read through :func:`now_ns`), build the gate's
matrix from the opcode and parameters, apply it to the state vector in place
(``statevector.kernel_1q``/``kernel_2q``), record the issue lateness. A batch stops
early when the next timestamp is further than ``horizon_ns`` away, so the Python side
can sleep (and run the GC guard's idle hook) instead of spinning through long gaps.

Faults are codes, not exceptions (``registers.FaultCode`` mirrors them): the loop stops
at the faulting record and leaves the code and the record index in ``status``.

Measurements: a *terminal* measurement (``FLAG_TERMINAL``) is deferred: the final state
is sampled once per shot. Any other measurement or a reset collapses the state with a
random draw; such a program is "trajectory" mode, and the remaining shots replay it
untimed from ``|0...0>`` (:func:`replay_shot`).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from qpuos.quantum.statevector import kernel_1q, kernel_2q

# Fault codes (registers.FaultCode has the same values).
F_NONE, F_BAD_VERSION, F_BAD_OPCODE, F_BAD_QUBIT, F_NOT_COUPLED, F_BAD_CLBIT, F_BAD_SEQ = (
    0, 1, 2, 3, 4, 5, 6)
# status words
S_FAULT, S_FAULT_INDEX, S_ENDED, S_TRAJECTORY, S_EXECUTED, S_BITS = 0, 1, 2, 3, 4, 5
STATUS_WORDS = 8

_TERMINAL = 1
_NO_QUBIT = 0xFFFF


@intrinsic
def _clock_monotonic_ns(typingctx: Any) -> Any:
    """``clock_gettime(CLOCK_MONOTONIC)`` in ns, called from numba code (vDSO, ~20 ns).

    An LLVM call to libc's symbol, not ctypes: numba can cache the compiled function
    (a ctypes function pointer would make every caller uncacheable).
    """
    sig = types.int64()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i32, i64 = ir.IntType(32), ir.IntType(64)
        ts_t = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(i32, [i32, ts_t.as_pointer()])
        fn = cg.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cg.alloca_once(builder, ts_t)
        builder.call(fn, [ir.Constant(i32, 1), ts])  # 1 = CLOCK_MONOTONIC
        sec = builder.load(cg.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cg.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


# Typed as Any: numba's stubs leave cgutils untyped and type an intrinsic's call as
# taking its typing context too.
cg: Any = cgutils
_now: Any = _clock_monotonic_ns
_jit = numba.njit(cache=True, nogil=True)


@_jit
def now_ns() -> int:
    """CLOCK_MONOTONIC in ns (same clock as ``time.monotonic_ns``)."""
    t: int = _now()
    return t


@_jit
def seed(value: int) -> None:
    """Seed numba's random generator (measurement draws and shot sampling)."""
    np.random.seed(value)


@_jit
def _u(m: Any, theta: float, phi: float, lam: float) -> None:
    c = math.cos(theta / 2)
    s = math.sin(theta / 2)
    m[0, 0] = c
    m[0, 1] = -np.exp(1j * lam) * s
    m[1, 0] = np.exp(1j * phi) * s
    m[1, 1] = np.exp(1j * (phi + lam)) * c


@_jit
def _diag(m: Any, a: complex, b: complex) -> None:
    m[0, 0] = a
    m[0, 1] = 0
    m[1, 0] = 0
    m[1, 1] = b


@_jit
def matrix_1q(op: int, p: Any, m: Any) -> bool:
    """Fill ``m`` (2x2) with the gate of one-qubit opcode ``op``; False if unknown."""
    r = 1 / math.sqrt(2.0)
    if op in (0x10, 0x11, 0x12):  # U, u3, u
        _u(m, p[0], p[1], p[2])
    elif op == 0x13:  # u2
        _u(m, math.pi / 2, p[0], p[1])
    elif op in (0x14, 0x15):  # u1, p
        _diag(m, 1, np.exp(1j * p[0]))
    elif op in (0x16, 0x17):  # u0, id
        _diag(m, 1, 1)
    elif op == 0x18:  # x
        _diag(m, 0, 0)
        m[0, 1] = 1
        m[1, 0] = 1
    elif op == 0x19:  # y
        _diag(m, 0, 0)
        m[0, 1] = -1j
        m[1, 0] = 1j
    elif op == 0x1A:  # z
        _diag(m, 1, -1)
    elif op == 0x1B:  # h
        m[0, 0] = r
        m[0, 1] = r
        m[1, 0] = r
        m[1, 1] = -r
    elif op == 0x1C:  # s
        _diag(m, 1, 1j)
    elif op == 0x1D:  # sdg
        _diag(m, 1, -1j)
    elif op == 0x1E:  # t
        _diag(m, 1, np.exp(0.25j * math.pi))
    elif op == 0x1F:  # tdg
        _diag(m, 1, np.exp(-0.25j * math.pi))
    elif op == 0x20:  # rx
        c, s = math.cos(p[0] / 2), math.sin(p[0] / 2)
        m[0, 0] = c
        m[0, 1] = -1j * s
        m[1, 0] = -1j * s
        m[1, 1] = c
    elif op == 0x21:  # ry
        c, s = math.cos(p[0] / 2), math.sin(p[0] / 2)
        m[0, 0] = c
        m[0, 1] = -s
        m[1, 0] = s
        m[1, 1] = c
    elif op == 0x22:  # rz
        _diag(m, np.exp(-0.5j * p[0]), np.exp(0.5j * p[0]))
    elif op == 0x23:  # sx
        m[0, 0] = 0.5 + 0.5j
        m[0, 1] = 0.5 - 0.5j
        m[1, 0] = 0.5 - 0.5j
        m[1, 1] = 0.5 + 0.5j
    elif op == 0x24:  # sxdg
        m[0, 0] = 0.5 - 0.5j
        m[0, 1] = 0.5 + 0.5j
        m[1, 0] = 0.5 + 0.5j
        m[1, 1] = 0.5 - 0.5j
    else:
        return False
    return True


# Two-qubit opcode -> the one-qubit opcode it controls (0: not a controlled gate).
_CONTROLLED = np.zeros(0x50, dtype=np.int64)
for _op2, _op1 in ((0x40, 0x18), (0x41, 0x18), (0x42, 0x19), (0x43, 0x1A), (0x44, 0x1B),
                   (0x46, 0x20), (0x47, 0x21), (0x48, 0x22), (0x49, 0x14), (0x4A, 0x15),
                   (0x4B, 0x11), (0x4C, 0x23), (0x4D, 0x11)):
    _CONTROLLED[_op2] = _op1


@_jit
def matrix_2q(op: int, p: Any, m: Any, m1: Any) -> bool:
    """Fill ``m`` (4x4; first qubit most significant) with the gate of two-qubit opcode
    ``op``, using ``m1`` (2x2) as scratch; False if unknown."""
    if not 0x40 <= op < 0x50:
        return False
    m[:, :] = 0
    target = _CONTROLLED[op]
    if target:
        matrix_1q(target, p, m1)
        phase = np.exp(1j * p[3]) if op == 0x4D else 1.0 + 0j  # cu's global phase
        m[0, 0] = 1
        m[1, 1] = 1
        for i in range(2):
            for j in range(2):
                m[2 + i, 2 + j] = phase * m1[i, j]
        return True
    if op == 0x45:  # swap
        m[0, 0] = 1
        m[1, 2] = 1
        m[2, 1] = 1
        m[3, 3] = 1
    elif op == 0x4E:  # rxx
        c, s = math.cos(p[0] / 2), -1j * math.sin(p[0] / 2)
        for i in range(4):
            m[i, i] = c
            m[i, 3 - i] = s
    elif op == 0x4F:  # rzz
        a, b = np.exp(-0.5j * p[0]), np.exp(0.5j * p[0])
        m[0, 0] = a
        m[1, 1] = b
        m[2, 2] = b
        m[3, 3] = a
    else:
        return False
    return True


@_jit
def _collapse(psi: Any, s0: int, rand: float) -> int:
    """Measure the qubit of stride ``s0``: pick an outcome, project, renormalise."""
    p1 = 0.0
    n = psi.size
    for j in range(n):
        if j & s0:
            p1 += psi[j].real ** 2 + psi[j].imag ** 2
    outcome = 1 if rand < p1 else 0
    norm = math.sqrt(p1 if outcome else 1.0 - p1)
    if norm == 0.0:
        norm = 1.0
    for j in range(n):
        if ((j & s0) != 0) == (outcome == 1):
            psi[j] /= norm
        else:
            psi[j] = 0
    return outcome


@_jit
def exec_one(op: int, flags: int, q0: int, q1: int, clbit: int, p: Any, psi: Any,
             nq: int, local_of: Any, adj: Any, meas: Any, status: Any, m1: Any,
             m2: Any) -> int:
    """Execute one record on ``psi`` (``nq`` local qubits); returns a fault code.

    ``local_of[q]`` is physical qubit ``q``'s local axis (-1: not allocated); ``adj``
    the coupling map as a matrix; ``meas`` collects deferred (local qubit, clbit)
    pairs, its count in ``meas[0, 0]`` rows from 1; ``status[S_BITS]`` holds the bits
    the collapsing measurements wrote.
    """
    if op in (0x01, 0x02):  # END, BARRIER
        return F_NONE
    ndev = local_of.size
    if q0 >= ndev or local_of[q0] < 0:
        return F_BAD_QUBIT
    l0 = local_of[q0]
    s0 = 1 << (nq - 1 - l0)
    if op == 0x03:  # DELAY
        return F_NONE
    if op == 0x04:  # MEASURE
        if clbit >= 64:
            return F_BAD_CLBIT
        if flags & _TERMINAL:
            k = meas[0, 0] + 1
            meas[k, 0] = l0
            meas[k, 1] = clbit
            meas[0, 0] = k
            return F_NONE
        status[S_TRAJECTORY] = 1
        bit = np.int64(1) << clbit
        if _collapse(psi, s0, np.random.random()):
            status[S_BITS] |= bit
        else:
            status[S_BITS] &= ~bit
        return F_NONE
    if op == 0x05:  # RESET
        status[S_TRAJECTORY] = 1
        if _collapse(psi, s0, np.random.random()):
            _diag(m1, 0, 0)
            m1[0, 1] = 1
            m1[1, 0] = 1
            kernel_1q(psi, s0, m1)
        return F_NONE
    if 0x10 <= op < 0x40:
        if not matrix_1q(op, p, m1):
            return F_BAD_OPCODE
        kernel_1q(psi, s0, m1)
        return F_NONE
    if 0x40 <= op < 0x50:
        if q1 >= ndev or local_of[q1] < 0 or q1 == q0:
            return F_BAD_QUBIT
        if not adj[q0, q1]:
            return F_NOT_COUPLED
        if not matrix_2q(op, p, m2, m1):
            return F_BAD_OPCODE
        kernel_2q(psi, s0, 1 << (nq - 1 - local_of[q1]), m2)
        return F_NONE
    return F_BAD_OPCODE


@_jit
def run_batch(recs: Any, psi: Any, nq: int, local_of: Any, adj: Any, t0: int,
              factor: float, horizon_ns: int, expect_seq: int, lateness: Any, meas: Any,
              status: Any, m1: Any, m2: Any) -> int:
    """Issue records at their dilated timestamps until END, a fault, the batch's end,
    or a timestamp more than ``horizon_ns`` ahead; returns how many were consumed.

    ``recs`` is an array of ``isa.RECORD`` (whole records, not field views: a field
    view's layout depends on the batch length and would make numba compile again).
    Record ``i`` is due at ``t0 + start_ns * factor`` (CLOCK_MONOTONIC ns); its
    lateness (actual issue - due) goes to ``lateness[seq]``.
    """
    # HOT LOOP: one iteration per instruction.
    for i in range(recs.size):
        rec = recs[i]
        s = rec.seq
        if rec.version != 1:
            status[S_FAULT] = F_BAD_VERSION
            status[S_FAULT_INDEX] = s
            return i
        if s != expect_seq + i or s >= lateness.size:
            status[S_FAULT] = F_BAD_SEQ
            status[S_FAULT_INDEX] = s
            return i
        due = t0 + np.int64(rec.start_ns * factor)
        now = _now()
        if due - now > horizon_ns:
            return i
        while now < due:
            now = _now()
        lateness[s] = now - due
        op = rec.opcode
        fault = exec_one(op, rec.flags, rec.q0, rec.q1, rec.clbit, rec.params, psi, nq,
                         local_of, adj, meas, status, m1, m2)
        if fault:
            status[S_FAULT] = fault
            status[S_FAULT_INDEX] = s
            return i
        status[S_EXECUTED] += 1
        if op == 0x01:
            status[S_ENDED] = 1
            return i + 1
    return len(recs)


@_jit
def sample(psi: Any, nq: int, meas: Any, shots: int, base_bits: int, out: Any,
           first: int) -> None:
    """Draw ``shots`` outcomes of the deferred measurements from ``psi`` into
    ``out[first:first + shots]`` (each a word of clbits over ``base_bits``)."""
    n = psi.size
    cdf = np.empty(n)
    acc = 0.0
    for j in range(n):
        acc += psi[j].real ** 2 + psi[j].imag ** 2
        cdf[j] = acc
    k = meas[0, 0]
    for s in range(shots):
        idx = np.searchsorted(cdf, np.random.random() * acc, side="right")
        if idx >= n:
            idx = n - 1
        word = base_bits
        for r in range(1, k + 1):
            bit = np.int64(1) << meas[r, 1]
            if (idx >> (nq - 1 - meas[r, 0])) & 1:
                word |= bit
            else:
                word &= ~bit
        out[first + s] = word


@_jit
def replay_shot(prog: Any, psi: Any, nq: int, local_of: Any, adj: Any, meas: Any,
                status: Any, m1: Any, m2: Any) -> int:
    """Run a validated program once, untimed, from ``|0...0>``; returns the shot's word."""
    psi[:] = 0
    psi[0] = 1
    meas[0, 0] = 0
    status[S_BITS] = 0
    for i in range(prog.size):
        rec = prog[i]
        exec_one(rec.opcode, rec.flags, rec.q0, rec.q1, rec.clbit, rec.params, psi, nq,
                 local_of, adj, meas, status, m1, m2)
    out = np.zeros(1, dtype=np.int64)
    sample(psi, nq, meas, 1, status[S_BITS], out, 0)
    word: int = out[0]
    return word

"""Planning a circuit for a sharded register: which data moves, and when.

A register of ``n`` qubits over ``2**k`` shards keeps *physical positions* ``0..k-1``
global (they select the shard) and ``k..n-1`` local (they index inside a shard). Each
logical qubit sits at one position; ``pos[q]`` says where. The plan is a list of steps:

- a *segment*: gates that every shard runs on its own amplitudes, no data moving. A gate
  may touch a global position if it does not mix that position's two values (diagonal
  gates, controls): each shard then runs the sub-block its own global bits select.
- a *swap*: global position ``g`` and local position ``l`` exchange their qubits. Shard
  pairs that differ only in ``g`` trade half of their amplitudes: each shard moves half
  of its bytes, so a swap moves half the register.

A gate that mixes a global qubit needs that qubit local first. The two ways:

1. *exchange*: swap it in, run the gate, swap it back: half-shards go out and come back
   (the whole register's bytes), the layout is unchanged.
2. *swap*: swap it in and leave it there (half the register's bytes); the evicted
   local qubit (the *victim*) is now global.

The planner swaps when that moves fewer bytes over the gates to come: the victim is the
local qubit whose next mixing use is furthest away (Belady), and a swap is kept unless
the victim is needed again before the gate's qubit is, in which case it would have to be
swapped back (the same bytes as an exchange, which keeps the layout). ``swap`` gates of
the circuit move no data: they relabel ``pos``.

Gates are fused where no data moves (a circuit's run of one-qubit gates multiplies into
one matrix; in a segment, one-qubit gates on local positions join the next two-qubit gate
there), as the single-process simulator does.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.gates import GATES, gate_matrix

__all__ = ["LocalOp", "Plan", "SwapStep", "plan_circuit", "split_measurements"]

_Matrix = NDArray[np.complex128]
_TOL = 1e-13  # entries below this count as zero when deciding whether a gate mixes


@dataclass(frozen=True, slots=True)
class LocalOp:
    """A gate on physical positions that every shard can run without moving data."""

    matrix: _Matrix
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SwapStep:
    """Global position ``glob`` and local position ``loc`` exchange their qubits."""

    glob: int
    loc: int


Step = tuple[LocalOp, ...] | SwapStep


@dataclass(frozen=True, slots=True)
class Plan:
    """What the shards run, in order, and what it costs in data movement.

    Attributes:
        num_qubits: register width.
        shard_bits: ``k``: ``2**k`` shards.
        steps: segments (tuples of ``LocalOp``) and ``SwapStep``s.
        final_positions: logical qubit ``q`` ends at physical position
            ``final_positions[q]``.
        global_gates: gates that mixed a global qubit (they moved data).
        free_global_gates: gates on a global qubit that moved no data (diagonal there).
        swaps: ``SwapStep`` count (each moves half the register's bytes).
        exchanges: qubits swapped in for one gate and swapped back after it.
    """

    num_qubits: int
    shard_bits: int
    steps: tuple[Step, ...]
    final_positions: tuple[int, ...]
    global_gates: int
    free_global_gates: int
    swaps: int
    exchanges: int


def split_measurements(circuit: Circuit) -> tuple[Circuit, tuple[tuple[int, int], ...]]:
    """Separate terminal measurements from the unitary part of ``circuit``.

    Returns:
        The circuit without its measurements, and ``(qubit, clbit)`` per measurement.

    Raises:
        UsageError: a reset, a conditional gate, or a gate after a measurement of its
            qubit (the sharded simulator runs unitary circuits and samples at the end).

    >>> c = Circuit(num_qubits=1, num_clbits=1)
    >>> c.append("h", [0]); c.append("measure", [0], clbits=[0])
    >>> body, meas = split_measurements(c)
    >>> len(body), meas
    (1, ((0, 0),))
    """
    body = circuit.copy_empty()
    measured: list[tuple[int, int]] = []
    done: set[int] = set()
    for index, inst in enumerate(circuit.instructions):
        if inst.name == "measure":
            measured.append((inst.qubits[0], inst.clbits[0]))
            done.add(inst.qubits[0])
            continue
        if inst.name == "reset" or inst.condition is not None:
            raise UsageError(f"instruction {index} {inst.name!r} is a reset or conditional; "
                             "the sharded simulator runs unitary circuits with terminal "
                             "measurements only")
        if inst.name != "barrier" and done.intersection(inst.qubits):
            raise UsageError(f"instruction {index} {inst.name!r} acts on a measured qubit; "
                             "only terminal measurements are supported")
        body.add(inst)
    return body, tuple(measured)


def _matrix_of(index: int, inst: Instruction) -> _Matrix:
    if inst.name in {"measure", "reset"} or inst.condition is not None:
        raise UsageError(f"instruction {index} {inst.name!r} is not unitary; strip "
                         "measurements first (split_measurements)")
    spec = GATES.get(inst.name)
    if spec is None or spec.matrix is None:
        raise UsageError(f"instruction {index}: gate {inst.name!r} has no closed-form "
                         "matrix; decompose it into standard gates first")
    return gate_matrix(inst.name, inst.params)


def _mixes(matrix: _Matrix) -> tuple[bool, ...]:
    """Per gate qubit: whether the matrix mixes that qubit's two values."""
    dim = matrix.shape[0]
    m = dim.bit_length() - 1
    r = np.arange(dim)[:, None]
    c = np.arange(dim)[None, :]
    big = np.abs(matrix) > _TOL
    return tuple(bool((big & (((r ^ c) >> (m - 1 - t)) & 1).astype(bool)).any())
                 for t in range(m))


# A logical op: a gate (matrix, logical qubits, mixes) or a relabel (the circuit's swap).
_Gate = tuple[_Matrix, tuple[int, ...], tuple[bool, ...]]
_Relabel = tuple[int, int]


def _logical_ops(circuit: Circuit) -> list[_Gate | _Relabel]:
    """Circuit to ops; runs of one-qubit gates on a qubit become one matrix."""
    ops: list[_Gate | _Relabel] = []
    pending: dict[int, _Matrix] = {}

    def flush(q: int) -> None:
        m = pending.pop(q, None)
        if m is not None:
            ops.append((m, (q,), _mixes(m)))

    for index, inst in enumerate(circuit.instructions):
        if inst.name == "barrier":
            continue
        m = _matrix_of(index, inst)
        if inst.name == "swap":
            a, b = inst.qubits
            flush(a)
            flush(b)
            ops.append((a, b))
        elif len(inst.qubits) == 1:
            q = inst.qubits[0]
            prev = pending.get(q)
            pending[q] = m if prev is None else m @ prev
        else:
            for q in inst.qubits:
                flush(q)
            ops.append((m, inst.qubits, _mixes(m)))
    for q in sorted(pending):
        flush(q)
    return ops


_SWAP = gate_matrix("swap")
_EYE = np.eye(2, dtype=np.complex128)


def _fuse_segment(ops: list[LocalOp], k: int) -> tuple[LocalOp, ...]:
    """One-qubit gates join the next two-qubit gate on local positions; neighbouring
    two-qubit gates on the same pair multiply (the simulator's fusion, layout-aware)."""
    out: list[LocalOp] = []
    pending: dict[int, _Matrix] = {}
    last: dict[int, int] = {}

    def flush(p: int) -> None:
        m = pending.pop(p, None)
        if m is not None:
            last[p] = len(out)
            out.append(LocalOp(m, (p,)))

    for op in ops:
        ps = op.positions
        if len(ps) == 1:
            prev = pending.get(ps[0])
            pending[ps[0]] = op.matrix if prev is None else op.matrix @ prev
        elif len(ps) == 2 and min(ps) >= k:
            a, b = ps
            pa, pb = pending.pop(a, None), pending.pop(b, None)
            m = op.matrix
            if pa is not None or pb is not None:
                m = m @ np.kron(_EYE if pa is None else pa, _EYE if pb is None else pb)
            j = last.get(a)
            if j is not None and j == last.get(b) and len(out[j].positions) == 2:
                prev_op = out[j]
                if prev_op.positions != ps:
                    m = _SWAP @ m @ _SWAP
                out[j] = LocalOp(np.ascontiguousarray(m @ prev_op.matrix), prev_op.positions)
            else:
                last[a] = last[b] = len(out)
                out.append(LocalOp(np.ascontiguousarray(m), ps))
        else:
            for p in ps:
                flush(p)
            for p in ps:
                last[p] = len(out)
            out.append(op)
    for p in sorted(pending):
        flush(p)
    return tuple(LocalOp(np.ascontiguousarray(o.matrix), o.positions) for o in out)


def plan_circuit(circuit: Circuit, shard_bits: int) -> Plan:
    """Plan a unitary circuit for ``2**shard_bits`` shards (see the module docstring).

    Args:
        circuit: gates and barriers only (``split_measurements`` removes measurements).
        shard_bits: ``k``; the top ``k`` qubits select the shard.

    Returns:
        The plan: segments and swaps, the final layout and the data-movement counts.

    Raises:
        UsageError: a non-unitary instruction, or a gate that needs more local qubits
            than the register has (use fewer shards).

    >>> c = Circuit(num_qubits=3)
    >>> c.append("h", [0]); c.append("cx", [0, 2])
    >>> p = plan_circuit(c, 1)
    >>> p.swaps, p.global_gates, [type(s).__name__ for s in p.steps]
    (1, 1, ['SwapStep', 'tuple'])
    """
    n, k = circuit.num_qubits, shard_bits
    if not 0 <= k <= n:
        raise UsageError(f"shard_bits must be within 0..{n} for {n} qubits, got {k}")
    ops = _logical_ops(circuit)
    uses: list[list[int]] = [[] for _ in range(n)]  # op indices where a qubit mixes
    for i, op in enumerate(ops):
        if len(op) == 3:
            for q, mx in zip(op[1], op[2], strict=True):
                if mx:
                    uses[q].append(i)

    def next_use(q: int, i: int) -> float:
        j = bisect.bisect_right(uses[q], i)
        return uses[q][j] if j < len(uses[q]) else math.inf

    pos = list(range(n))   # logical -> physical
    at = list(range(n))    # physical -> logical
    steps: list[Step] = []
    seg: list[LocalOp] = []
    counts = {"global": 0, "free": 0, "swaps": 0, "exchanges": 0}

    def swap(gp: int, lp: int) -> None:
        if seg:
            steps.append(_fuse_segment(seg, k))
            seg.clear()
        steps.append(SwapStep(gp, lp))
        counts["swaps"] += 1
        a, b = at[gp], at[lp]
        at[gp], at[lp] = b, a
        pos[a], pos[b] = lp, gp

    for i, op in enumerate(ops):
        if len(op) == 2:  # a swap gate: relabel, no data moves
            a, b = op
            pos[a], pos[b] = pos[b], pos[a]
            at[pos[a]], at[pos[b]] = a, b
            continue
        matrix, qubits, mix = op
        moving = [q for q, mx in zip(qubits, mix, strict=True) if mx and pos[q] < k]
        undo: list[tuple[int, int]] = []
        if moving:
            counts["global"] += 1
            candidates = [at[p] for p in range(k, n) if at[p] not in qubits]
            if len(candidates) < len(moving):
                raise UsageError(
                    f"a {len(qubits)}-qubit gate must bring {len(moving)} global qubit(s) "
                    f"local but only {len(candidates)} of the {n - k} local qubits can give "
                    f"way ({n} qubits over {1 << k} shards); use fewer shards")
            for g in moving:
                v = max(candidates, key=lambda q: (next_use(q, i), -pos[q]))
                candidates.remove(v)
                gp, vp = pos[g], pos[v]
                swap(gp, vp)
                if next_use(v, i) < next_use(g, i):
                    undo.append((gp, vp))
        elif any(pos[q] < k for q in qubits):
            counts["free"] += 1
        seg.append(LocalOp(matrix, tuple(pos[q] for q in qubits)))
        counts["exchanges"] += len(undo)
        for gp, vp in reversed(undo):
            swap(gp, vp)
    if seg:
        steps.append(_fuse_segment(seg, k))
    return Plan(n, k, tuple(steps), tuple(pos), counts["global"], counts["free"],
                counts["swaps"], counts["exchanges"])

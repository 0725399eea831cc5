"""Exact peephole optimisation, before and after routing.

Passes (each returns a new circuit; none changes the unitary by more than 1e-9 per
rewrite, ``remove_identities`` by more than its stated infidelity per gate):

- ``remove_identities``: gates within 1e-12 process infidelity of the identity
  (``rz(0)``, ``cp(1e-9)``, ``u(0, 0, 0)``...). Deep QFTs carry hundreds of controlled
  phases far below any hardware's resolution that still cost real time.
- ``cancel_inverses``: a gate directly followed, on all of its qubits, by its inverse on
  the same qubits (``cx cx``, ``h h``, ``s sdg``, ``swap swap``...).
- ``fuse_single_qubit_runs``: each run of one-qubit gates on a wire becomes one gate
  (dropped if the identity, ``rz`` if diagonal, else ``u``).
- ``merge_swaps``: a routing SWAP directly next to a CX on the same pair becomes two CX
  (``cx · swap = cx(b,a) · cx(a,b)``), saving a CX per merge.
- ``consolidate_blocks``: a run of gates on one pair is resynthesised with the fewest CX
  its unitary needs (KAK, ``synthesis``) when that is fewer than it has.

Every rewrite of the last three is checked on the spot: the unitary of the replaced
window is compared with its replacement (at most two qubits, so a 4x4 product); a
mismatch raises ``QpuosInternalError`` instead of returning a wrong circuit.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from qpuos.errors import QpuosInternalError
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.dag import pair_blocks
from qpuos.quantum.gates import GATES, gate_matrix
from qpuos.quantum.synthesis import cx_count, synthesize_two_qubit
from qpuos.quantum.timing import DurationModel

__all__ = [
    "cancel_inverses",
    "consolidate_blocks",
    "fuse_single_qubit_runs",
    "merge_swaps",
    "optimize_logical",
    "optimize_physical",
    "remove_identities",
]

Matrix = NDArray[np.complex128]
_ATOL = 1e-9
_SWAP = gate_matrix("swap")


def _equal_up_to_phase(a: Matrix, b: Matrix, atol: float = _ATOL) -> bool:
    """Whether ``a = e^{i t} b`` for some t."""
    k = int(np.argmax(np.abs(b)))
    bk = b.flat[k]
    if abs(bk) < 1e-12:
        return bool(np.allclose(a, b, rtol=0.0, atol=atol))
    phase = a.flat[k] / bk
    if abs(abs(phase) - 1.0) > 1e-6:
        return False
    return bool(np.allclose(a, phase * b, rtol=0.0, atol=atol))


def _is_plain_gate(inst: Instruction) -> bool:
    spec = GATES.get(inst.name)
    return (inst.condition is None and spec is not None and spec.matrix is not None
            and len(inst.qubits) <= 2)


def _window_unitary(insts: Sequence[Instruction], pair: tuple[int, ...]) -> Matrix:
    """Unitary of gates on at most two qubits, ``pair[0]`` the most significant."""
    dim = 2 ** len(pair)
    u = np.eye(dim, dtype=np.complex128)
    for inst in insts:
        m = gate_matrix(inst.name, inst.params)
        full: Matrix
        if len(pair) == 1:
            full = m
        elif len(inst.qubits) == 2:
            full = m if inst.qubits == pair else _SWAP @ m @ _SWAP
        elif inst.qubits[0] == pair[0]:
            full = np.kron(m, np.eye(2)).astype(np.complex128)
        else:
            full = np.kron(np.eye(2), m).astype(np.complex128)
        u = full @ u
    return u


def _check(old: Sequence[Instruction], new: Sequence[Instruction], pair: tuple[int, ...]
           ) -> None:
    if not _equal_up_to_phase(_window_unitary(new, pair), _window_unitary(old, pair)):
        raise QpuosInternalError(
            f"optimiser rewrite changed the unitary of {[i.name for i in old]} on {pair}; "
            "this is a bug in qpuos")


def remove_identities(circuit: Circuit, *, max_infidelity: float = 1e-12) -> Circuit:
    """Drop unconditional gates within ``max_infidelity`` of the identity.

    The measure is the process infidelity ``1 - |Tr U|^2 / d^2``, which ignores global
    phase. The default, 1e-12, removes only rotations below about 2e-6 rad (a deep QFT's
    ``cp(pi / 2**22)``...), orders of magnitude below any hardware's resolution and below
    what the state-vector verification could tell apart.
    """
    out = circuit.copy_empty()
    for inst in circuit.instructions:
        if _is_plain_gate(inst):
            u = gate_matrix(inst.name, inst.params)
            d = u.shape[0]
            if 1.0 - abs(np.trace(u)) ** 2 / d**2 <= max_infidelity:
                continue
        out.instructions.append(inst)
    return out


def cancel_inverses(circuit: Circuit) -> Circuit:
    """Remove pairs ``g, g^-1`` that touch the same qubits with nothing between them."""
    insts = circuit.instructions
    alive = [True] * len(insts)
    last: list[list[int]] = [[] for _ in range(circuit.num_qubits)]
    for i, inst in enumerate(insts):
        qs = inst.qubits
        if _is_plain_gate(inst):
            tops = {last[q][-1] if last[q] else -1 for q in qs}
            if len(tops) == 1 and (j := tops.pop()) >= 0:
                prev = insts[j]
                if (_is_plain_gate(prev) and set(prev.qubits) == set(qs)
                        and _equal_up_to_phase(_window_unitary([prev, inst], qs),
                                               np.eye(2 ** len(qs), dtype=np.complex128))):
                    alive[j] = False
                    alive[i] = False
                    for q in qs:
                        last[q].pop()
                    continue
        for q in qs:
            last[q].append(i)
    out = circuit.copy_empty()
    out.instructions = [inst for inst, keep in zip(insts, alive, strict=True) if keep]
    return out


def _zyz(u: Matrix) -> tuple[float, float, float]:
    """Angles ``(theta, phi, lam)`` with ``u(theta, phi, lam)`` equal to ``u`` up to phase."""
    c = abs(u[0, 0])
    s = abs(u[1, 0])
    theta = 2.0 * math.atan2(s, c)
    if s < 1e-12:
        return 0.0, 0.0, cmath.phase(u[1, 1]) - cmath.phase(u[0, 0])
    if c < 1e-12:
        return theta, 0.0, cmath.phase(-u[0, 1]) - cmath.phase(u[1, 0])
    alpha = cmath.phase(u[0, 0])
    return theta, cmath.phase(u[1, 0]) - alpha, cmath.phase(-u[0, 1]) - alpha


def _wrap(angle: float) -> float:
    return math.remainder(angle, 2 * math.pi)


def _single_gate_for(u: Matrix, qubit: int) -> list[Instruction]:
    """The cheapest one standard gate for a one-qubit unitary (none for the identity)."""
    theta, phi, lam = _zyz(u)
    if abs(theta) < 1e-12:
        lam = _wrap(phi + lam)
        return [] if abs(lam) < 1e-12 else [Instruction("rz", (qubit,), (lam,))]
    return [Instruction("u", (qubit,), (_wrap(theta), _wrap(phi), _wrap(lam)))]


def fuse_single_qubit_runs(circuit: Circuit) -> Circuit:
    """Replace each run of unconditional one-qubit gates on a wire by at most one gate."""
    out = circuit.copy_empty()
    pending: dict[int, list[Instruction]] = {}

    def flush(q: int) -> None:
        run = pending.pop(q, [])
        if not run:
            return
        new = _single_gate_for(_window_unitary(run, (q,)), q)
        if len(run) == 1 and new:
            new = run  # a lone gate keeps its own name
        _check(run, new, (q,))
        out.instructions.extend(new)

    for inst in circuit.instructions:
        if len(inst.qubits) == 1 and _is_plain_gate(inst):
            pending.setdefault(inst.qubits[0], []).append(inst)
            continue
        for q in inst.qubits:
            flush(q)
        out.instructions.append(inst)
    for q in sorted(pending):
        flush(q)
    return out


def merge_swaps(circuit: Circuit) -> Circuit:
    """Merge each ``swap`` with a directly adjacent ``cx`` on the same pair into two CX."""
    insts = list(circuit.instructions)
    alive = [True] * len(insts)
    replace: dict[int, list[Instruction]] = {}
    last: dict[int, int] = {}
    for i, inst in enumerate(insts):
        qs = inst.qubits
        prev = {last.get(q, -1) for q in qs}
        if len(qs) == 2 and len(prev) == 1 and (j := prev.pop()) >= 0 and alive[j] \
                and j not in replace:
            first = insts[j]
            pair = (first.qubits[0], first.qubits[1])
            if set(first.qubits) == set(qs) and first.condition is None \
                    and inst.condition is None and {first.name, inst.name} == {"cx", "swap"}:
                cx = first if first.name == "cx" else inst
                c, t = cx.qubits
                if first.name == "cx":  # cx then swap  ==  cx(t,c) then cx(c,t)
                    new = [Instruction("cx", (t, c)), Instruction("cx", (c, t))]
                else:  # swap then cx  ==  cx(c,t) then cx(t,c)
                    new = [Instruction("cx", (c, t)), Instruction("cx", (t, c))]
                _check([first, inst], new, pair)
                alive[j] = False
                replace[i] = new
                for q in qs:
                    last[q] = i
                continue
        for q in qs:
            last[q] = i
    out = circuit.copy_empty()
    for i, inst in enumerate(insts):
        if alive[i]:
            out.instructions.extend(replace.get(i, [inst]))
    return out


def consolidate_blocks(circuit: Circuit) -> Circuit:
    """Resynthesise each two-qubit block that needs fewer CX than it has.

    Blocks are ``dag.pair_blocks``: runs of gates on one pair with the one-qubit gates
    between them. A block is replaced by its minimal CX form (``synthesis``) when that
    saves native two-qubit gates; a routing SWAP next to a two-qubit gate on the same
    pair often merges away entirely (a generic block plus a SWAP is still three CX).
    """
    out = circuit.copy_empty()
    insts = circuit.instructions
    for block in pair_blocks(circuit):
        members = [insts[i] for i in block]
        two = [m for m in members if len(m.qubits) == 2]
        if len(two) >= 2 and all(_is_plain_gate(m) for m in members):
            pair = (two[0].qubits[0], two[0].qubits[1])
            have = sum(DurationModel.two_qubit_cost(m.name)[0] for m in two)
            u = _window_unitary(members, pair)
            if cx_count(u) < have:
                new = synthesize_two_qubit(u, pair)
                _check(members, new, pair)
                out.instructions.extend(new)
                continue
        out.instructions.extend(members)
    return out


def optimize_logical(circuit: Circuit) -> Circuit:
    """Before routing: fewer gates to route (identities, then inverse pairs)."""
    return cancel_inverses(remove_identities(circuit))


def optimize_physical(circuit: Circuit) -> Circuit:
    """After routing: merge SWAPs and resynthesise blocks, cancel, fuse one-qubit runs."""
    c = merge_swaps(circuit)
    c = consolidate_blocks(c)
    c = cancel_inverses(c)
    return fuse_single_qubit_runs(c)

"""The independent check every compiled (routed) circuit goes through.

It shares no code with the router: it re-derives the qubit placement from the routed
circuit alone and compares the result with the input in two ways.

1. Coupling: every two-qubit gate sits on a device edge; nothing acts on three or more.
2. Equivalence.

   a. Structural (any size): follow the ``swap`` gates to map each routed instruction
      back onto logical qubits, then require, wire by wire, the same instructions in the
      same order as the input, except that a run of instructions that are all
      Z-diagonal on that wire may come in any order (they commute there). The placement
      tracked at the end must equal the reported final layout.
   b. Statevector (small circuits): simulate both on random inputs and compare the
      outputs up to the final placement.

Unconditional ``swap`` gates of the *input* are followed as relabellings too, so a
router may either execute them physically or absorb them into its layout.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

import numpy as np

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.gates import is_diagonal_on
from qpuos.quantum.statevector import State, fidelity, permute_qubits, random_state, simulate, zero

__all__ = ["VerifyReport", "verify_routed"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify_routed``.

    Attributes:
        ok: every check that ran passed.
        method: ``"statevector"`` when the simulation ran, else ``"structural"`` (or
            ``"coupling"`` when only the coupling check was asked for).
        coupling_violations: physical pairs used by gates but not device edges, sorted
            (all pairs of a gate on three or more qubits count).
        detail: what was checked, or the first problem found.
        fidelity: the lowest fidelity over the random trials (statevector method only).
        seconds: wall time of the whole verification.
    """

    ok: bool
    method: str
    coupling_violations: tuple[tuple[int, int], ...]
    detail: str
    fidelity: float | None
    seconds: float


def verify_routed(original: Circuit, routed: Circuit, *, edges: Iterable[tuple[int, int]],
                  initial_layout: Sequence[int], final_layout: Sequence[int],
                  seed: int = 0, trials: int = 2, max_sim_qubits: int = 20,
                  atol: float = 1e-6, structural: bool = True, statevector: bool = True
                  ) -> VerifyReport:
    """Check that ``routed`` runs ``original`` on a device with ``edges``.

    A failed check is reported, never raised.

    Args:
        original: the input circuit on ``n`` logical qubits (gates on at most 2 qubits).
        routed: the same operations on the device's physical qubits, plus ``swap`` gates.
        edges: the device's undirected coupling edges.
        initial_layout: ``initial_layout[i]`` is the physical qubit holding logical
            qubit ``i`` at the start; other physical qubits start in ``|0>``.
        final_layout: the physical qubit holding logical qubit ``i`` at the end.
        seed: seed of the random input states.
        trials: how many random input states the statevector check tries.
        max_sim_qubits: simulate only if the routed circuit touches at most this many
            physical qubits.
        atol: the statevector check requires fidelity ``>= 1 - atol``.
        structural: run the structural check (off when ``routed`` was optimised after
            routing, so its gates no longer match the input one for one).
        statevector: run the statevector check where the size allows.

    Returns:
        A ``VerifyReport``; ``detail`` names the first problem when ``ok`` is False.

    Raises:
        UsageError: a layout has the wrong length, repeats or leaves the device, or an
            option is out of range.

    >>> orig = Circuit(num_qubits=2); orig.append("cx", [0, 1])
    >>> routed = Circuit(num_qubits=3); routed.append("swap", [0, 1])
    >>> routed.append("cx", [1, 2])
    >>> r = verify_routed(orig, routed, edges=[(0, 1), (1, 2)],
    ...                   initial_layout=[0, 2], final_layout=[1, 2])
    >>> r.ok, r.method
    (True, 'statevector')
    """
    t0 = time.perf_counter()
    n, num_phys = original.num_qubits, routed.num_qubits
    init = _check_layout("initial_layout", initial_layout, n, num_phys)
    final = _check_layout("final_layout", final_layout, n, num_phys)
    edge_set = _check_edges(edges)
    if trials < 1:
        raise UsageError(f"trials must be >= 1, got {trials}")
    if not 0 <= atol < 1:
        raise UsageError(f"atol must be in [0, 1), got {atol}")

    def report(ok: bool, method: str, detail: str, fid: float | None = None) -> VerifyReport:
        return VerifyReport(ok, method, violations, detail, fid, time.perf_counter() - t0)

    # 1. Coupling.
    violations, problem = _coupling(routed, edge_set)
    # 2a. Structural.
    base = "structural" if structural else "coupling"
    if problem is None and structural:
        problem = _structural(original, routed, init, final)
    if problem is not None:
        return report(False, base, problem)
    checked = (f"{len(routed)} routed instructions: every 2-qubit gate on a device edge"
               + (", logical order and final layout match the input" if structural else ""))
    # 2b. Statevector, when the circuits are unitary but for final measurements.
    skip = _not_simulable(original)
    orig_u = [i for i in original.instructions if i.name not in ("measure", "barrier")]
    routed_u = [i for i in routed.instructions if i.name not in ("measure", "barrier")]
    touched = sorted({q for i in routed_u for q in i.qubits} | set(init) | set(final))
    if not statevector:
        return report(True, base, checked)
    if skip is None and len(touched) > max_sim_qubits:
        skip = (f"it touches {len(touched)} physical qubits, more than "
                f"max_sim_qubits={max_sim_qubits}")
    if skip is not None:
        return report(True, base, f"{checked}; statevector skipped: {skip}")
    fid, problem = _statevector(orig_u, n, routed_u, touched=touched, init=init, final=final,
                                rng=np.random.default_rng(seed), trials=trials, atol=atol)
    if problem is not None:
        return report(False, "statevector", problem, fid)
    return report(True, "statevector",
                  f"{checked}; statevector fidelity {fid:.9f} >= {1 - atol:.6g} over "
                  f"{trials} random inputs on {len(touched)} qubits", fid)


# ---------------------------------------------------------------------------------------
# Argument checks.


def _check_layout(what: str, layout: Sequence[int], n: int, num_phys: int) -> list[int]:
    out = [int(p) for p in layout]
    if len(out) != n:
        raise UsageError(f"{what} has {len(out)} entries but the input circuit has {n} "
                         "qubits; give one physical qubit per logical qubit")
    seen: dict[int, int] = {}
    for i, p in enumerate(out):
        if not 0 <= p < num_phys:
            raise UsageError(f"{what}[{i}] = {p} is not a physical qubit of the routed "
                             f"circuit (0..{num_phys - 1})")
        if p in seen:
            raise UsageError(f"{what} puts logical qubits {seen[p]} and {i} both on "
                             f"physical qubit {p}")
        seen[p] = i
    return out


def _check_edges(edges: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for e in edges:
        if len(e) != 2:
            raise UsageError(f"an edge is a pair of physical qubits, got {e!r}")
        a, b = int(e[0]), int(e[1])
        out.add((min(a, b), max(a, b)))
    return out


# ---------------------------------------------------------------------------------------
# 1. Coupling.


def _coupling(routed: Circuit, edge_set: set[tuple[int, int]]
              ) -> tuple[tuple[tuple[int, int], ...], str | None]:
    bad: set[tuple[int, int]] = set()
    first: str | None = None
    for index, inst in enumerate(routed.instructions):
        if not inst.is_gate or len(inst.qubits) < 2:
            continue
        if len(inst.qubits) > 2:
            bad.update((min(a, b), max(a, b)) for a, b in combinations(inst.qubits, 2))
            first = first or (f"gate {index} {inst.name!r} acts on {len(inst.qubits)} "
                              f"physical qubits {inst.qubits}; the device couples pairs only")
            continue
        a, b = inst.qubits
        pair = (min(a, b), max(a, b))
        if pair not in edge_set:
            bad.add(pair)
            first = first or (f"gate {index} {inst.name!r} on physical {inst.qubits} is not "
                              "a device edge")
    return tuple(sorted(bad)), first


# ---------------------------------------------------------------------------------------
# 2a. Structural.


class _Entry(NamedTuple):
    key: tuple[object, ...]  # (name, logical qubits, params, clbits, condition)
    at: int  # index of the instruction in its own circuit
    diagonal: bool  # Z-diagonal on this wire


def _wire_entries(circuit: Circuit, inst: Instruction, index: int, logical: tuple[int, ...],
                  *, qwires: list[list[_Entry]], cwires: list[list[_Entry]]) -> None:
    key = (inst.name, logical, inst.params, inst.clbits, inst.condition)
    for j, lq in enumerate(logical):
        qwires[lq].append(_Entry(key, index, is_diagonal_on(inst.name, j)))
    bits = list(inst.clbits)
    if inst.condition is not None:
        bits += circuit.creg(inst.condition.creg).bits
    for b in dict.fromkeys(bits):
        cwires[b].append(_Entry(key, index, False))


def _describe(key: tuple[object, ...]) -> str:
    name, logical, params, clbits, condition = key
    text = f"'{name}{params if params else ''}' on logical {logical}"
    if clbits:
        text += f" -> clbits {clbits}"
    return text + (f" if {condition}" if condition is not None else "")


def _segments(entries: list[_Entry]) -> list[list[_Entry]]:
    """Split a wire into maximal runs of Z-diagonal entries and single other entries."""
    out: list[list[_Entry]] = []
    for e in entries:
        if e.diagonal and out and out[-1][0].diagonal:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def _compare_wire(wire: str, want: list[_Entry], got: list[_Entry],
                  num_routed: int) -> tuple[int, str] | None:
    """The first difference on one wire, keyed by where it shows in the routed circuit.

    Walks the routed entries through the input's segments: a single entry must match
    exactly, a diagonal run must be matched as a multiset before the next segment starts.
    """
    segments = _segments(want)
    s = 0
    left: Counter[tuple[object, ...]] = Counter()  # what the current segment still needs
    need = 0  # total of ``left``
    for r in got:
        if not need and s < len(segments):
            left = Counter(e.key for e in segments[s])
            need = len(segments[s])
            s += 1
        if not need:
            return r.at, f"{wire}: instruction {r.at} {r.key[0]!r} is not in the input"
        if left[r.key] > 0:
            left[r.key] -= 1
            need -= 1
            continue
        o = next(e for e in segments[s - 1] if left[e.key] > 0)
        if o.key[0] != r.key[0]:
            return r.at, (f"{wire}: instruction {r.at} is {r.key[0]!r} but the input has "
                          f"{o.key[0]!r} there")
        return r.at, (f"{wire}: instruction {r.at} is {_describe(r.key)} but the input "
                       f"has {_describe(o.key)} there")
    rest = [e for e in segments[s - 1] if left[e.key] > 0] if need else []
    rest += [e for seg in segments[s:] for e in seg]
    if rest:
        return num_routed + rest[0].at, (
            f"{wire}: input instruction {rest[0].at} {rest[0].key[0]!r} is missing from "
            "the routed circuit")
    return None


def _structural(original: Circuit, routed: Circuit, init: list[int],
                final: list[int]) -> str | None:
    regs_o = [(r.name, r.size) for r in original.cregs]
    regs_r = [(r.name, r.size) for r in routed.cregs]
    if regs_o != regs_r or original.num_clbits != routed.num_clbits:
        return f"classical registers differ: input has {regs_o}, routed circuit has {regs_r}"
    n, nc = original.num_qubits, original.num_clbits
    # Input: follow its own unconditional swaps as relabellings (see the module notes).
    label = list(range(n))  # wire position -> logical label it holds
    want_q: list[list[_Entry]] = [[] for _ in range(n)]
    want_c: list[list[_Entry]] = [[] for _ in range(nc)]
    for index, inst in enumerate(original.instructions):
        if inst.name == "swap" and inst.condition is None:
            a, b = inst.qubits
            label[a], label[b] = label[b], label[a]
            continue
        logical = tuple(label[q] for q in inst.qubits)
        _wire_entries(original, inst, index, logical, qwires=want_q, cwires=want_c)
    # Routed: follow every unconditional swap, starting from the initial layout.
    holder = [-1] * routed.num_qubits  # physical qubit -> logical label, -1 = ancilla
    for i, p in enumerate(init):
        holder[p] = i
    got_q: list[list[_Entry]] = [[] for _ in range(n)]
    got_c: list[list[_Entry]] = [[] for _ in range(nc)]
    for index, inst in enumerate(routed.instructions):
        if inst.name == "swap" and inst.condition is None:
            a, b = inst.qubits
            holder[a], holder[b] = holder[b], holder[a]
            continue
        logical = tuple(holder[p] for p in inst.qubits)
        if -1 in logical:
            p = inst.qubits[logical.index(-1)]
            return (f"instruction {index} {inst.name!r} on physical {inst.qubits} touches "
                    f"physical qubit {p}, which holds no logical qubit")
        _wire_entries(routed, inst, index, logical, qwires=got_q, cwires=got_c)
    # Compare wire by wire; report the difference that shows first in the routed circuit.
    diffs = [d for lq in range(n) if (d := _compare_wire(
        f"logical qubit {lq}", want_q[lq], got_q[lq], len(routed))) is not None]
    diffs += [d for b in range(nc) if (d := _compare_wire(
        f"clbit {b}", want_c[b], got_c[b], len(routed))) is not None]
    if diffs:
        return min(diffs)[1]
    where = {lab: p for p, lab in enumerate(holder) if lab >= 0}
    for i in range(n):
        tracked = where[label[i]]
        if tracked != final[i]:
            return f"final layout differs at logical {i}: tracked {tracked}, reported {final[i]}"
    return None


# ---------------------------------------------------------------------------------------
# 2b. Statevector.


def _not_simulable(original: Circuit) -> str | None:
    """Why the input's unitary part is not all there is, or None if it is."""
    measured: set[int] = set()
    for index, inst in enumerate(original.instructions):
        if inst.condition is not None or inst.name == "reset":
            return f"input instruction {index} {inst.name!r} is not unitary"
        if inst.name == "measure":
            measured.update(inst.qubits)
        elif inst.name != "barrier" and measured.intersection(inst.qubits):
            return f"input instruction {index} {inst.name!r} follows a measurement"
    return None


def _embed(state: State, positions: list[int], k: int) -> State:
    """``state`` with qubit ``i`` on ``positions[i]`` of ``k`` qubits, the rest ``|0>``."""
    full = np.multiply.outer(state, zero(k - state.ndim))
    rest = sorted(set(range(k)) - set(positions))
    return permute_qubits(full, positions + rest)


def _statevector(orig_u: list[Instruction], n: int, routed_u: list[Instruction], *,
                 touched: list[int], init: list[int], final: list[int],
                 rng: np.random.Generator, trials: int,
                 atol: float) -> tuple[float, str | None]:
    """Lowest fidelity over ``trials`` random inputs, and the first failure if any.

    ``orig_u`` and ``routed_u`` are unitary instruction lists; ``touched`` lists every
    physical qubit that ``routed_u`` or the layouts mention, which are renumbered
    compactly so the simulation is only as wide as it needs to be.
    """
    compact = {p: i for i, p in enumerate(touched)}
    k = len(touched)
    orig_c = Circuit(num_qubits=n, instructions=list(orig_u))
    routed_c = Circuit(num_qubits=k, instructions=[
        i.with_qubits([compact[p] for p in i.qubits]) for i in routed_u])
    lowest = 1.0
    for trial in range(trials):
        psi = random_state(n, rng)
        want = _embed(simulate(orig_c, psi), [compact[p] for p in final], k)
        got = simulate(routed_c, _embed(psi, [compact[p] for p in init], k))
        f = fidelity(want, got)
        lowest = min(lowest, f)
        if f < 1 - atol:
            return lowest, f"fidelity {f:.6g} < {1 - atol:.6g} on trial {trial}"
    return lowest, None

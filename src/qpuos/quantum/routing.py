"""SWAP routing: the SABRE-class router with bidirectional layout refinement.

:class:`SabreRouter` maps a circuit of one- and two-qubit gates onto a device:

1. Blocks. Runs of gates on one qubit pair move as one node (``dag.pair_blocks``), so
   the lookahead sees the next pair to bring together, not the rest of a placed block.
2. Layout. The trivial layout if it is already perfect, else a perfect layout found by
   subgraph monomorphism (``layout.find_perfect_layout``), else a SABRE layout search:
   informed starts (``layout.heuristic_layouts``) plus random ones, each refined by
   ``iterations`` forward and backward routing passes (the final layout of one pass seeds
   the next: SABRE's reverse-traversal trick), then routed ``routing_trials`` times with
   different tie-break seeds. Trials cycle through three lookahead weights, and are split
   between a plain and a commutation-aware dependency DAG: no single setting is best for
   every circuit (commutation helps fan-outs, hurts QFT-like ladders).
3. Routing. The best trial (fewest SWAPs, then shortest estimated makespan; or the reverse
   with ``objective="makespan"``) is routed once more, recording every SWAP.

Cost of a candidate SWAP (``_kernels.route_pass``; SABRE, arXiv 1809.02573, with the
relative scoring and layer lookahead of LightSABRE, arXiv 2409.08368): the summed distance
of the front layer plus ``lookahead / P`` times the summed distance of the next layer
(the two-qubit gates that become ready once the front has run), times the larger decay of
the two qubits. Distances are hop counts, or - when the device has per-edge durations or
error rates and ``noise_aware`` is on - shortest paths weighted by each edge's SWAP cost,
so the router prefers fast, good couplers. Ties go to the SWAP whose qubits are free
earliest in a running schedule estimate. A release valve undoes fruitless SWAPs and walks
the closest front gate together after ``max(10 n, 3 x diameter)`` SWAPs without progress.

Deterministic: a given circuit, device, options and seed give the same result on every
machine, whatever the thread count (trials use their own generators).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from qpuos.errors import RoutingError, TopologyError, UsageError
from qpuos.quantum import _kernels
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.dag import DAG, pair_blocks
from qpuos.quantum.device import Device
from qpuos.quantum.gates import is_diagonal_on
from qpuos.quantum.layout import (
    find_perfect_layout,
    heuristic_layouts,
    interaction_graph,
    is_trivial_layout_perfect,
)
from qpuos.quantum.timing import DurationModel

__all__ = ["RoutedCircuit", "RoutingOptions", "SabreRouter", "warm_up"]

Objective = Literal["swaps", "makespan"]


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """Knobs of :class:`SabreRouter`; the defaults are what ``qpuos compile`` uses.

    Attributes:
        seed: seeds every random choice; same seed, same result.
        layout_trials: random starting layouts tried by the layout search (besides the
            informed ones of ``layout.heuristic_layouts``); ``None`` picks by circuit
            size: 200 for small circuits down to 20 for large ones.
        iterations: forward+backward refinement rounds per starting layout.
        routing_trials: routings per refined layout, each with its own tie-break seed.
        lookahead: weight of the next layer: each of its gates counts ``lookahead / P``
            of a front-layer gate (trials also try a quarter and four times this).
        ext_size: at most this many gates of the next layer are looked at.
        decay_delta, decay_reset: SABRE decay step, and the SWAP count that resets it.
        objective: what picks the winning trial: ``"swaps"`` (then makespan) or
            ``"makespan"`` (then swaps).
        tie_time: among equally scored SWAPs prefer the one whose qubits are free
            earliest in the running time estimate (shorter schedules, same SWAP count).
        merge_bonus: score credit for a SWAP on a pair that just shared a two-qubit gate,
            which the optimiser merges into that gate's block (a cheaper SWAP); ``None``
            means 1.0 for the makespan objective and 0 for the SWAP objective (where the
            credit costs SWAPs).
        noise_aware: weight distances by per-edge durations and error rates if known.
        commutation: also search with a commutation-aware DAG (Z-diagonal gates on a
            shared qubit in any order); the trials are split between both DAGs and the
            best result wins, as commutation helps fan-out circuits and hurts QFT-like ones.
        perfect_layout_calls: search budget for the perfect-layout search.
    """

    seed: int = 0
    layout_trials: int | None = None
    iterations: int = 3
    routing_trials: int = 8
    lookahead: float = 2.0
    ext_size: int = 20
    decay_delta: float = 0.001
    decay_reset: int = 5
    objective: Objective = "swaps"
    tie_time: bool = True
    merge_bonus: float | None = None
    noise_aware: bool = True
    commutation: bool = True
    perfect_layout_calls: int = 200_000

    def __post_init__(self) -> None:
        for name in ("layout_trials", "iterations", "routing_trials", "ext_size",
                     "decay_reset"):
            value = getattr(self, name)
            if value is not None and value < (0 if name in ("iterations", "ext_size") else 1):
                raise UsageError(f"routing option {name}={getattr(self, name)} is too small")
        if self.objective not in ("swaps", "makespan"):
            raise UsageError(f"unknown objective {self.objective!r}; use 'swaps' or 'makespan'")
        if self.seed < 0:
            raise UsageError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True, slots=True)
class RoutedCircuit:
    """A circuit placed on physical qubits.

    Attributes:
        circuit: over the device's physical qubits (one register ``q``), SWAPs as ``swap``.
        initial_layout: ``initial_layout[i]`` is the physical qubit of logical ``i`` at
            the start.
        final_layout: the same at the end, after all SWAPs.
        swaps: SWAPs inserted.
        layout_method: ``"trivial"``, ``"perfect"``, ``"sabre"`` or ``"given"``.
        estimated_makespan_ns: the router's own running-time estimate of the winner.
        layout_trials: random starting layouts the SABRE search tried (0 when the layout
            was trivial, perfect or given).
    """

    circuit: Circuit
    initial_layout: tuple[int, ...]
    final_layout: tuple[int, ...]
    swaps: int
    layout_method: str
    estimated_makespan_ns: float
    layout_trials: int = 0


@dataclass(frozen=True, slots=True)
class _DeviceArrays:
    """A device as the kernels want it, built once per router."""

    dist: NDArray[np.float64]
    hops: NDArray[np.float64]
    adj: NDArray[np.bool_]
    nbr_ptr: NDArray[np.int64]
    nbr_idx: NDArray[np.int64]
    edge_dur: NDArray[np.float64]
    valve: int


def _all_pairs(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Floyd-Warshall over a dense weight matrix (inf where no edge)."""
    d = weights.copy()
    np.fill_diagonal(d, 0.0)
    for k in range(d.shape[0]):
        np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :], out=d)
    return d


def _edge_weights(device: Device, model: DurationModel, noise_aware: bool
                  ) -> dict[tuple[int, int], float]:
    """Relative SWAP cost per edge: 1.0 on average, more on slow or noisy couplers."""
    edges = list(device.edges)
    weights = dict.fromkeys(edges, 1.0)
    if not noise_aware or not edges:
        return weights
    durs = [model.native_two_qubit_ns(a, b) for a, b in edges]
    errs = [device.two_qubit_error(a, b) for a, b in edges]
    parts: list[list[float]] = []
    if len(set(durs)) > 1:
        parts.append(durs)
    if all(e is not None for e in errs) and len({e for e in errs}) > 1:
        parts.append([-math.log(max(1e-12, 1.0 - float(e or 0.0))) for e in errs])
    if not parts:
        return weights
    for i, e in enumerate(edges):
        weights[e] = sum(p[i] / (sum(p) / len(p)) for p in parts) / len(parts)
    return weights


def _device_arrays(device: Device, model: DurationModel, noise_aware: bool) -> _DeviceArrays:
    P = device.num_qubits
    hop_w = np.full((P, P), np.inf)
    cost_w = np.full((P, P), np.inf)
    adj = np.zeros((P, P), dtype=np.bool_)
    edge_dur = np.zeros((P, P))
    nbrs: list[list[int]] = [[] for _ in range(P)]
    for (a, b), w in _edge_weights(device, model, noise_aware).items():
        hop_w[a, b] = hop_w[b, a] = 1.0
        cost_w[a, b] = cost_w[b, a] = w
        adj[a, b] = adj[b, a] = True
        edge_dur[a, b] = edge_dur[b, a] = model.native_two_qubit_ns(a, b)
        nbrs[a].append(b)
        nbrs[b].append(a)
    hops = _all_pairs(hop_w)
    dist = hops if np.array_equal(cost_w, hop_w) else _all_pairs(cost_w)
    nbr_ptr = np.zeros(P + 1, dtype=np.int64)
    for p in range(P):
        nbr_ptr[p + 1] = nbr_ptr[p] + len(nbrs[p])
    nbr_idx = np.array([x for lst in nbrs for x in sorted(lst)], dtype=np.int64)
    finite = hops[np.isfinite(hops)]
    diameter = int(finite.max()) if finite.size else 0
    return _DeviceArrays(dist, hops, adj, nbr_ptr, nbr_idx, edge_dur,
                         valve=max(10, 3 * diameter))


def _stand_in(circuit: Circuit, block: list[int]) -> Instruction:
    """One instruction that routes like the whole block.

    A multi-gate block becomes a standard gate with the same commutation class: ``cz``
    if the block is Z-diagonal on both qubits, ``cx`` (control first) if on one, ``swap``
    if on neither; the DAG then orders it correctly among its neighbours.
    """
    insts = circuit.instructions
    if len(block) == 1:
        return insts[block[0]]
    a, b = insts[block[0]].qubits

    def diagonal_on(q: int) -> bool:
        return all(is_diagonal_on(insts[j].name, insts[j].qubits.index(q))
                   for j in block if q in insts[j].qubits)

    da, db = diagonal_on(a), diagonal_on(b)
    if da and db:
        return Instruction("cz", (a, b))
    if da or db:
        return Instruction("cx", (a, b) if da else (b, a))
    return Instruction("swap", (a, b))


@cache
def warm_up() -> None:
    """Compile (or load from numba's cache) the routing kernels, once per process.

    ``compile_circuit`` calls this before it starts its clock, so ``compile_seconds``
    measures routing, not LLVM. The first run after installing takes some seconds here.
    """
    from qpuos.quantum.device import line_device

    triangle = Circuit(num_qubits=3)
    for a, b in ((0, 1), (1, 2), (0, 2)):
        triangle.append("cx", [a, b])
    SabreRouter(line_device(3), RoutingOptions(layout_trials=1, routing_trials=1)).route(
        triangle)


def _auto_trials(num_two_qubit_gates: int) -> int:
    """Layout trials for a circuit: many for small ones (cheap), at least 20 for any."""
    return int(min(200, max(20, 20_000 // max(1, num_two_qubit_gates))))


@dataclass(frozen=True, slots=True)
class _Problem:
    """One DAG of the stand-in circuit, forward and reversed, as kernel arrays."""

    succ_ptr: NDArray[np.int64]
    succ_idx: NDArray[np.int64]
    pred_ptr: NDArray[np.int64]
    pred_idx: NDArray[np.int64]
    indeg: NDArray[np.int64]
    outdeg: NDArray[np.int64]
    q0: NDArray[np.int64]
    q1: NDArray[np.int64]

    @classmethod
    def build(cls, stand_ins: Circuit, commutation: bool) -> _Problem:
        a = DAG(stand_ins, commutation=commutation).to_arrays()
        return cls(a.succ_ptr, a.succ_idx, a.pred_ptr, a.pred_idx, np.diff(a.pred_ptr),
                   np.diff(a.succ_ptr), a.q0, a.q1)


class SabreRouter:
    """Place and route circuits on one device (see the module docstring for the method).

    Args:
        device: the coupling graph and its figures.
        options: routing knobs; ``RoutingOptions()`` by default.

    >>> from qpuos.quantum.device import line_device
    >>> c = Circuit(num_qubits=3)
    >>> c.append("cx", [0, 2]); c.append("cx", [0, 1]); c.append("cx", [1, 2])
    >>> r = SabreRouter(line_device(3)).route(c)
    >>> r.swaps, r.layout_method
    (1, 'sabre')
    """

    def __init__(self, device: Device, options: RoutingOptions | None = None) -> None:
        self.device = device
        self.options = options or RoutingOptions()
        self.model = DurationModel.from_device(device, device.edges)
        if not device.is_connected():
            raise TopologyError(f"device {device.name!r} is not connected; routing needs a "
                                "connected coupling graph")
        self._arrays = _device_arrays(device, self.model, self.options.noise_aware)
        bonus = self.options.merge_bonus
        self._merge_bonus = (bonus if bonus is not None
                             else 1.0 if self.options.objective == "makespan" else 0.0)

    def route(self, circuit: Circuit, *, initial_layout: Sequence[int] | None = None
              ) -> RoutedCircuit:
        """Route ``circuit`` (gates on at most two qubits) onto the device.

        Args:
            circuit: the logical circuit.
            initial_layout: keep this layout (``initial_layout[i]`` = physical qubit of
                logical ``i``) instead of searching one; only the routing trials run.

        Raises:
            TopologyError: the circuit has more qubits than the device.
            UsageError: the circuit still has gates on three or more qubits, or the
                given layout is not a placement of its qubits.
        """
        P = self.device.num_qubits
        n = circuit.num_qubits
        if n > P:
            raise TopologyError(f"circuit uses {n} qubits but device {self.device.name!r} has "
                                f"{P}; pick a larger device (`qpuos devices`)")
        for inst in circuit.instructions:
            if inst.is_gate and len(inst.qubits) > 2:
                raise UsageError(f"gate {inst.name!r} acts on {len(inst.qubits)} qubits; "
                                 "decompose it before routing (decompose_multiqubit)")
        opts = self.options
        blocks = pair_blocks(circuit)
        stand_ins = circuit.copy_empty()
        stand_ins.instructions = [_stand_in(circuit, b) for b in blocks]
        node_dur, node_n2q = self._node_costs(circuit, blocks)
        pairs = interaction_graph(circuit)
        modes = [_Problem.build(stand_ins, c) for c in
                 ((True, False) if opts.commutation else (False,))]
        valve = max(self._arrays.valve, 10 * n)
        costs = (node_dur, node_n2q, valve)

        # 1. layout: trivial, else perfect, else the SABRE search in every DAG mode
        method = "sabre"
        start: NDArray[np.int64] | None = None
        seed, mode, lookahead = opts.seed, modes[-1], opts.lookahead
        trials = 0
        best_key: tuple[float, float] | None = None
        if initial_layout is not None:
            method, start = "given", self._complete(self._check_layout(initial_layout, n))
            for m_index, problem in enumerate(modes):
                key, _, sd, la = self._search(problem, start[None, :], costs,
                                              opts.seed + m_index, iterations=0)
                if best_key is None or key < best_key:
                    best_key, seed, mode, lookahead = key, sd, problem, la
        elif is_trivial_layout_perfect(pairs, n, self.device.edges, P):
            method, start = "trivial", np.arange(P, dtype=np.int64)
        else:
            found = find_perfect_layout(pairs, n, self.device.edges, P,
                                        call_limit=opts.perfect_layout_calls)
            if found is not None:
                method, start = "perfect", self._complete(found)
        if start is None:
            trials = opts.layout_trials or _auto_trials(circuit.num_two_qubit_gates)
            informed = np.array(heuristic_layouts(pairs, n, self.device.edges, P,
                                                  self._arrays.hops.tolist()), dtype=np.int64)
            for m_index, problem in enumerate(modes):
                share = max(1, trials // len(modes))
                layouts = np.vstack([informed, _kernels.random_layouts(
                    P, share, opts.seed * 7 + m_index)])
                key, lay, sd, la = self._search(problem, layouts, costs, opts.seed + m_index)
                if best_key is None or key < best_key:
                    best_key, start, seed, mode, lookahead = key, lay, sd, problem, la
        assert start is not None

        # 2. route the winner, recording
        d = self._arrays
        nswaps, final, span, ev_node, ev_a, ev_b, nev = _kernels.route_pass(
            mode.succ_ptr, mode.succ_idx, mode.indeg, mode.q0, mode.q1, node_dur, node_n2q,
            d.dist, d.hops, d.adj, d.nbr_ptr, d.nbr_idx, d.edge_dur, start, seed,
            lookahead, opts.ext_size, opts.decay_delta, opts.decay_reset, valve, True,
            opts.tie_time, self._merge_bonus)
        routed = self._build(circuit, blocks, start, ev_node[:nev], ev_a[:nev], ev_b[:nev])
        if routed.num_two_qubit_gates - circuit.num_two_qubit_gates != nswaps:
            raise RoutingError("router event log and SWAP count disagree; this is a bug")
        return RoutedCircuit(routed, tuple(int(x) for x in start[:n]),
                             tuple(int(x) for x in final[:n]), int(nswaps), method,
                             float(span), trials)

    def _check_layout(self, layout: Sequence[int], n: int) -> list[int]:
        out = [int(p) for p in layout]
        P = self.device.num_qubits
        if len(out) != n or len(set(out)) != n or any(not 0 <= p < P for p in out):
            raise UsageError(f"initial_layout must place the {n} logical qubits on distinct "
                             f"physical qubits 0..{P - 1}, got {out}")
        return out

    def _search(self, problem: _Problem, layouts: NDArray[np.int64],
                costs: tuple[NDArray[np.float64], NDArray[np.float64], int], seed: int,
                *, iterations: int | None = None
                ) -> tuple[tuple[float, float], NDArray[np.int64], int, float]:
        """Run the layout search; return (key, refined layout, routing seed, lookahead)."""
        opts, d = self.options, self._arrays
        node_dur, node_n2q, valve = costs
        seeds = np.arange(len(layouts), dtype=np.int64) + seed * 1_000_003
        swaps, spans, tseeds, refined, weights = _kernels.layout_search(
            problem.succ_ptr, problem.succ_idx, problem.indeg, problem.pred_ptr,
            problem.pred_idx, problem.outdeg, problem.q0, problem.q1, node_dur, node_n2q,
            d.dist, d.hops, d.adj, d.nbr_ptr, d.nbr_idx, d.edge_dur, layouts, seeds,
            opts.iterations if iterations is None else iterations, opts.routing_trials,
            opts.lookahead, opts.ext_size,
            opts.decay_delta, opts.decay_reset, valve, opts.objective == "makespan",
            opts.tie_time, self._merge_bonus)
        if opts.objective == "makespan":
            keys = [(float(m), float(s), i) for i, (s, m) in enumerate(zip(swaps, spans,
                                                                           strict=True))]
        else:
            keys = [(float(s), float(m), i) for i, (s, m) in enumerate(zip(swaps, spans,
                                                                           strict=True))]
        best = min(keys)
        return ((best[0], best[1]), refined[best[2]], int(tseeds[best[2]]),
                float(weights[best[2]]))

    def _complete(self, layout: list[int]) -> NDArray[np.int64]:
        """Extend a layout of the logical qubits to a permutation of all physical ones."""
        used = set(layout)
        rest = [p for p in range(self.device.num_qubits) if p not in used]
        return np.array(layout + rest, dtype=np.int64)

    def _node_costs(self, circuit: Circuit, blocks: list[list[int]]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per block: duration besides its native two-qubit gates (ns), and their count."""
        m = self.model
        dur = np.zeros(len(blocks))
        n2q = np.zeros(len(blocks))
        for i, block in enumerate(blocks):
            for j in block:
                inst = circuit.instructions[j]
                if inst.is_two_qubit_gate:
                    k, layers = m.two_qubit_cost(inst.name)
                    n2q[i] += k
                    dur[i] += layers * m.sx_ns
                elif len(inst.qubits) == 1:
                    dur[i] += m.duration_ns(inst)
        return dur, n2q

    def _build(self, circuit: Circuit, blocks: list[list[int]], start: NDArray[np.int64],
               ev_node: NDArray[np.int64], ev_a: NDArray[np.int64], ev_b: NDArray[np.int64]
               ) -> Circuit:
        """Replay the router's events into a circuit over physical qubits."""
        out = circuit.copy_empty(num_qubits=self.device.num_qubits)
        l2p = [int(x) for x in start]
        p2l = [0] * len(l2p)
        for lq, pq in enumerate(l2p):
            p2l[pq] = lq
        insts = circuit.instructions
        emitted = out.instructions
        for v, a, b in zip(ev_node.tolist(), ev_a.tolist(), ev_b.tolist(), strict=True):
            if v >= 0:
                for j in blocks[v]:
                    emitted.append(insts[j].with_qubits([l2p[q] for q in insts[j].qubits]))
            else:
                emitted.append(Instruction("swap", (a, b)))
                la, lb = p2l[a], p2l[b]
                p2l[a], p2l[b] = lb, la
                l2p[la], l2p[lb] = b, a
        if int(np.count_nonzero(ev_node >= 0)) != len(blocks):
            raise RoutingError(f"router executed {int(np.count_nonzero(ev_node >= 0))} of "
                               f"{len(blocks)} blocks; this is a bug")
        return out

"""Initial layouts: the trivial one, and a perfect-layout search by subgraph monomorphism.

A *perfect* layout places the logical qubits so that every pair that shares a two-qubit
gate sits on a device edge; routing then needs no SWAP at all. Finding one is subgraph
monomorphism (NP-complete in general), done here VF2-style: logical qubits are taken in an
order where each is adjacent to as many already placed ones as possible, candidates for
the next are the free device neighbours of an already placed neighbour's image, and
degrees prune early. A call budget bounds the search; when it runs out the caller falls
back to the SABRE layout search, so the budget trades only time, never correctness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from qpuos.quantum.circuit import Circuit

__all__ = [
    "find_perfect_layout",
    "heuristic_layouts",
    "interaction_graph",
    "is_trivial_layout_perfect",
    "long_path",
]


def interaction_graph(circuit: Circuit) -> dict[tuple[int, int], int]:
    """How many two-qubit gates act on each unordered logical pair ``(a, b)``, a < b."""
    counts: dict[tuple[int, int], int] = {}
    for inst in circuit.instructions:
        if inst.is_two_qubit_gate:
            a, b = inst.qubits
            key = (a, b) if a < b else (b, a)
            counts[key] = counts.get(key, 0) + 1
    return counts


def is_trivial_layout_perfect(pairs: Iterable[tuple[int, int]], num_logical: int,
                              edges: Iterable[tuple[int, int]], num_physical: int) -> bool:
    """Whether logical qubit i on physical qubit i already satisfies every pair."""
    if num_logical > num_physical:
        return False
    edge_set = {(min(a, b), max(a, b)) for a, b in edges}
    return all(p in edge_set for p in pairs)


def _search_order(adj: Sequence[set[int]], nodes: Sequence[int]) -> list[int]:
    """Most-constrained-first order: each next node has the most placed neighbours."""
    order: list[int] = []
    placed: set[int] = set()
    remaining = set(nodes)
    links = dict.fromkeys(nodes, 0)
    while remaining:
        # a new component starts at its highest-degree node
        frontier = [v for v in remaining if links[v] > 0]
        pool = frontier or list(remaining)
        v = max(pool, key=lambda x: (links[x], len(adj[x]), -x))
        order.append(v)
        placed.add(v)
        remaining.discard(v)
        for w in adj[v]:
            if w in remaining:
                links[w] += 1
    return order


def find_perfect_layout(pairs: Mapping[tuple[int, int], int] | Iterable[tuple[int, int]],
                        num_logical: int, edges: Sequence[tuple[int, int]],
                        num_physical: int, *, call_limit: int = 200_000,
                        ) -> list[int] | None:
    """Search for a layout putting every interacting pair on a device edge.

    Args:
        pairs: the logical pairs that share a two-qubit gate.
        num_logical: number of logical qubits.
        edges: device edges (undirected).
        num_physical: number of physical qubits.
        call_limit: search steps before giving up.

    Returns:
        ``layout[logical] = physical`` for every logical qubit (idle ones on free
        physical qubits, lowest index first), or ``None`` when no perfect layout exists
        or none was found within the budget.
    """
    if num_logical > num_physical:
        return None
    ladj: list[set[int]] = [set() for _ in range(num_logical)]
    for a, b in pairs:
        ladj[a].add(b)
        ladj[b].add(a)
    padj: list[set[int]] = [set() for _ in range(num_physical)]
    for a, b in edges:
        padj[a].add(b)
        padj[b].add(a)
    active = [v for v in range(num_logical) if ladj[v]]
    num_pairs = sum(len(s) for s in ladj) // 2
    if num_pairs > sum(len(s) for s in padj) // 2:
        return None
    if active and max(len(ladj[v]) for v in active) > max(len(s) for s in padj):
        return None
    order = _search_order(ladj, active)
    pdeg = [len(s) for s in padj]
    by_degree = sorted(range(num_physical), key=lambda p: -pdeg[p])
    mapping: dict[int, int] = {}
    used: set[int] = set()
    budget = [call_limit]

    def candidates(v: int) -> Iterable[int]:
        anchors = [mapping[w] for w in ladj[v] if w in mapping]
        if not anchors:
            return (p for p in by_degree if p not in used and pdeg[p] >= len(ladj[v]))
        first = min(anchors, key=lambda p: pdeg[p])
        return (p for p in sorted(padj[first]) if p not in used and pdeg[p] >= len(ladj[v])
                and all(a in padj[p] for a in anchors))

    def extend(depth: int) -> bool:
        if depth == len(order):
            return True
        v = order[depth]
        for p in candidates(v):
            budget[0] -= 1
            if budget[0] < 0:
                return False
            mapping[v] = p
            used.add(p)
            if extend(depth + 1):
                return True
            del mapping[v]
            used.discard(p)
        return False

    if not extend(0):
        return None
    free = iter(p for p in range(num_physical) if p not in used)
    return [mapping[v] if v in mapping else next(free) for v in range(num_logical)]


def _complete(partial: Sequence[int], num_physical: int) -> list[int]:
    """A full permutation of the physical qubits that starts with ``partial``."""
    used = set(partial)
    return list(partial) + [p for p in range(num_physical) if p not in used]


@lru_cache(maxsize=32)
def long_path(edges: tuple[tuple[int, int], ...], num_physical: int, *,
              budget: int = 20_000, starts: int = 8) -> tuple[int, ...]:
    """A long simple path through the coupling graph (cached per device).

    Depth-first search from the lowest-degree qubits, trying first the neighbour with the
    fewest free neighbours of its own (Warnsdorff's rule, which hugs the boundary and
    leaves few dead ends), backtracking within a step budget; the longest path seen wins.
    On the 127-qubit heavy-hex device it finds 109 of the 112 qubits of the longest ring.
    """
    padj: list[set[int]] = [set() for _ in range(num_physical)]
    for a, b in edges:
        padj[a].add(b)
        padj[b].add(a)
    best: list[int] = []
    for start in sorted(range(num_physical), key=lambda p: (len(padj[p]), p))[:starts]:
        path, on = [start], {start}

        def options(p: int, on: set[int] = on) -> list[int]:
            free = [q for q in padj[p] if q not in on]
            return sorted(free, key=lambda q: (sum(1 for r in padj[q] if r not in on), q))

        stack = [options(start)]
        for _ in range(budget):
            if not stack:
                break
            if len(path) > len(best):
                best = list(path)
                if len(best) == num_physical:
                    return tuple(best)
            if stack[-1]:
                q = stack[-1].pop(0)
                path.append(q)
                on.add(q)
                stack.append(options(q))
            else:
                stack.pop()
                on.discard(path.pop())
    return tuple(best)


def _bandwidth_order(ladj: Sequence[set[int]], weights: Mapping[tuple[int, int], int],
                     num_logical: int) -> list[int]:
    """Logical qubits in a line that keeps heavy interactions close (Cuthill-McKee style)."""
    order: list[int] = []
    placed: set[int] = set()
    strength = [0] * num_logical
    for (a, b), w in weights.items():
        strength[a] += w
        strength[b] += w
    for root in sorted(range(num_logical), key=lambda v: (len(ladj[v]), -strength[v])):
        if root in placed:
            continue
        queue = [root]
        placed.add(root)
        while queue:
            v = queue.pop(0)
            order.append(v)
            nxt = sorted((w for w in ladj[v] if w not in placed),
                         key=lambda w: (-weights.get((min(v, w), max(v, w)), 0), len(ladj[w])))
            for w in nxt:
                placed.add(w)
                queue.append(w)
    return order


def _greedy_placement(weights: Mapping[tuple[int, int], int], num_logical: int,
                      dist: Sequence[Sequence[float]], padj: Sequence[set[int]]) -> list[int]:
    """Place heavy interactors first, each where its placed partners are nearest."""
    partners: list[dict[int, int]] = [{} for _ in range(num_logical)]
    for (a, b), w in weights.items():
        partners[a][b] = w
        partners[b][a] = w
    num_physical = len(padj)
    layout = [-1] * num_logical
    free = set(range(num_physical))
    order = sorted(range(num_logical), key=lambda v: -sum(partners[v].values()))
    centre = min(range(num_physical), key=lambda p: (sum(dist[p]), p))
    for v in order:
        placed = [(layout[u], w) for u, w in partners[v].items() if layout[u] >= 0]
        if not placed:
            spot = min(free, key=lambda p: (dist[centre][p], p))
        else:
            spot = min(free, key=lambda p: (sum(w * dist[p][q] for q, w in placed), p))
        layout[v] = spot
        free.discard(spot)
    return layout


def heuristic_layouts(pairs: Mapping[tuple[int, int], int], num_logical: int,
                      edges: Sequence[tuple[int, int]], num_physical: int,
                      dist: Sequence[Sequence[float]]) -> list[list[int]]:
    """Informed starting layouts for the SABRE layout search (full permutations).

    Random starts scatter a small circuit over a large device; these start compact:
    identity and reversed identity; the logical qubits laid along a long path of the
    device, in index order and in a bandwidth-reducing order (good for QFT-like and
    nearest-neighbour circuits); and a greedy placement that puts each qubit where its
    heaviest partners already are.
    """
    padj: list[set[int]] = [set() for _ in range(num_physical)]
    for a, b in edges:
        padj[a].add(b)
        padj[b].add(a)
    ladj: list[set[int]] = [set() for _ in range(num_logical)]
    for a, b in pairs:
        ladj[a].add(b)
        ladj[b].add(a)
    out = [list(range(num_physical)), list(range(num_physical))[::-1]]
    path = long_path(tuple(sorted((min(a, b), max(a, b)) for a, b in edges)), num_physical)
    if len(path) >= num_logical:
        out.append(_complete(path[:num_logical], num_physical))
        order = _bandwidth_order(ladj, pairs, num_logical)
        along = [0] * num_logical
        for i, v in enumerate(order):
            along[v] = path[i]
        out.append(_complete(along, num_physical))
    out.append(_complete(_greedy_placement(pairs, num_logical, dist, padj), num_physical))
    unique: list[list[int]] = []
    for lay in out:
        if lay not in unique:
            unique.append(lay)
    return unique

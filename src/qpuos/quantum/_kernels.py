"""Numba kernels of the SABRE-class router: plain integer arrays in, integers out.

Design (read before editing):
- A *pass* routes one DAG (given as CSR successor arrays and in-degrees) from one initial
  layout. The backward pass of layout refinement is the same kernel run on the reversed
  DAG (predecessor arrays, out-degrees).
- Layouts are permutations over all P physical qubits: logical qubits ``0..n-1`` are the
  circuit's, ``n..P-1`` are idle placeholders, so a SWAP may move a real qubit onto a
  free physical qubit like any other.
- Randomness comes from a per-pass xorshift generator seeded by the caller, never from a
  global state, so the result of a seed is the same on every machine and under ``prange``.
- Cost: for a candidate SWAP, the summed distance of the front layer plus
  ``lookahead / P`` times the summed distance of the next layer (two-qubit gates that
  become ready once the front has run), times the larger decay of the two qubits (SABRE,
  arXiv 1809.02573). Only gates on the two swapped qubits change, so each candidate is
  scored from per-qubit partner lists in O(degree) (relative scoring, as in LightSABRE,
  arXiv 2409.08368). ``dist`` may be hop counts or duration/error weighted. Ties go to
  the SWAP whose qubits are free earliest in the running time estimate, then to the
  generator.
- Release valve: after ``valve`` SWAPs without executing a gate, the SWAPs since the last
  progress are undone and the closest front gate is routed along a shortest path.
- Every pass also keeps a per-qubit busy-until estimate (ns) from node durations, so
  trials can be ranked by makespan as well as by SWAP count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_MULT = np.uint64(2685821657736338717)


@njit(cache=True, inline="always")
def _rng_next(state: np.ndarray) -> np.uint64:
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return x * _MULT


@njit(cache=True)
def _rng_seed(seed: int) -> np.ndarray:
    st = np.empty(1, dtype=np.uint64)
    st[0] = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)
    if st[0] == 0:
        st[0] = np.uint64(88172645463325252)
    for _ in range(4):
        _rng_next(st)
    return st


@njit(cache=True)
def _rng_below(state: np.ndarray, n: int) -> int:
    return int(_rng_next(state) >> np.uint64(33)) % n


@njit(cache=True)
def random_layouts(num_physical: int, count: int, seed: int) -> np.ndarray:
    """``count`` random permutations of ``0..num_physical-1`` (Fisher-Yates)."""
    st = _rng_seed(seed)
    out = np.empty((count, num_physical), dtype=np.int64)
    for t in range(count):
        for i in range(num_physical):
            out[t, i] = i
        for i in range(num_physical - 1, 0, -1):
            j = _rng_below(st, i + 1)
            tmp = out[t, i]
            out[t, i] = out[t, j]
            out[t, j] = tmp
    return out


@njit(cache=True)
def _swap_layout(l2p: np.ndarray, p2l: np.ndarray, a: int, b: int) -> None:
    la = p2l[a]
    lb = p2l[b]
    p2l[a] = lb
    p2l[b] = la
    l2p[la] = b
    l2p[lb] = a


@njit(cache=True)
def _partners(nodes, count, q0, q1, ptr, idx, cur):
    """Per logical qubit, the partners it must meet in ``nodes`` (CSR into ptr/idx)."""
    ptr[:] = 0
    for i in range(count):
        ptr[q0[nodes[i]] + 1] += 1
        ptr[q1[nodes[i]] + 1] += 1
    for q in range(ptr.shape[0] - 1):
        ptr[q + 1] += ptr[q]
    cur[:] = ptr[:-1]
    for i in range(count):
        a = q0[nodes[i]]
        b = q1[nodes[i]]
        idx[cur[a]] = b
        cur[a] += 1
        idx[cur[b]] = a
        cur[b] += 1


@njit(cache=True, inline="always")
def _delta(la, lb, a, b, ptr, idx, l2p, dist):
    """Change of the summed distance of one gate set if physical a and b swap contents."""
    total = 0.0
    for k in range(ptr[la], ptr[la + 1]):
        c = idx[k]
        if c != lb:
            pc = l2p[c]
            total += dist[b, pc] - dist[a, pc]
    for k in range(ptr[lb], ptr[lb + 1]):
        c = idx[k]
        if c != la:
            pc = l2p[c]
            total += dist[a, pc] - dist[b, pc]
    return total


@njit(cache=True)
def _open_block(partner, a, b):
    """Note that physical a and b just shared a two-qubit gate (closing older blocks)."""
    for p in (a, b):
        old = partner[p]
        if old >= 0 and old != a and old != b and partner[old] == p:  # noqa: PLR1714
            partner[old] = -1
    partner[a] = b
    partner[b] = a


@njit(cache=True)
def _record(ev_node, ev_a, ev_b, nev, v, a, b):
    """Append one event, growing the arrays when full; returns the (maybe new) arrays."""
    if nev == ev_node.shape[0]:
        cap = 2 * nev + 16
        ev_node = _grow(ev_node, cap)
        ev_a = _grow(ev_a, cap)
        ev_b = _grow(ev_b, cap)
    ev_node[nev] = v
    ev_a[nev] = a
    ev_b[nev] = b
    return ev_node, ev_a, ev_b


@njit(cache=True)
def route_pass(succ_ptr, succ_idx, indeg0, q0, q1, node_dur, node_n2q,
               dist, hops, adj, nbr_ptr, nbr_idx, edge_dur,
               layout, seed, lookahead, ext_size, decay_delta, decay_reset, valve,
               record, tie_time, merge_bonus):
    """Route one DAG from one layout.

    Returns:
        ``(swaps, final_layout, makespan_ns, ev_node, ev_a, ev_b, n_events)``. Events are
        recorded only when ``record``: ``ev_node[i] >= 0`` executes that node, ``-1`` is
        a SWAP of physical ``ev_a[i]`` and ``ev_b[i]``.
    """
    n = q0.shape[0]
    P = layout.shape[0]
    rng = _rng_seed(seed)
    l2p = layout.copy()
    p2l = np.empty(P, dtype=np.int64)
    for i in range(P):
        p2l[l2p[i]] = i
    indeg = indeg0.copy()
    stack = np.empty(n, dtype=np.int64)
    sp = 0
    for i in range(n - 1, -1, -1):
        if indeg[i] == 0:
            stack[sp] = i
            sp += 1
    front = np.empty(n, dtype=np.int64)
    nf = 0
    ext = np.empty(max(ext_size, 1), dtype=np.int64)
    ne = 0
    f_ptr = np.zeros(P + 1, dtype=np.int64)
    f_idx = np.empty(2 * n + 2, dtype=np.int64)
    e_ptr = np.zeros(P + 1, dtype=np.int64)
    e_idx = np.empty(2 * ext.shape[0] + 2, dtype=np.int64)
    cur = np.empty(P, dtype=np.int64)
    bfs = np.empty(n, dtype=np.int64)
    touched = np.empty(succ_idx.shape[0] + 1, dtype=np.int64)
    active = np.zeros(P, dtype=np.int64)
    stamp = 0
    cand_a = np.empty(nbr_idx.shape[0] + 1, dtype=np.int64)
    cand_b = np.empty(nbr_idx.shape[0] + 1, dtype=np.int64)
    decay = np.ones(P)
    busy = np.zeros(P)
    busy_mark = np.zeros(P)
    partner = np.full(P, -1, dtype=np.int64)  # last two-qubit partner, if still "open"
    hist_a = np.empty(valve + 1, dtype=np.int64)
    hist_b = np.empty(valve + 1, dtype=np.int64)
    nhist = 0
    ev_node = np.empty(n + 16 if record else 1, dtype=np.int64)
    ev_a = np.empty(ev_node.shape[0], dtype=np.int64)
    ev_b = np.empty(ev_node.shape[0], dtype=np.int64)
    nev = 0
    swaps = 0
    since_reset = 0
    ext_weight = lookahead / P
    while True:
        # 1. execute everything executable; blocked two-qubit gates join the front
        changed = False
        while sp > 0:
            sp -= 1
            v = stack[sp]
            if q1[v] >= 0:
                pa = l2p[q0[v]]
                pb = l2p[q1[v]]
                if not adj[pa, pb]:
                    front[nf] = v
                    nf += 1
                    changed = True
                    continue
                t = max(busy[pa], busy[pb]) + node_dur[v] + node_n2q[v] * edge_dur[pa, pb]
                busy[pa] = t
                busy[pb] = t
                _open_block(partner, pa, pb)
                changed = True
            elif q0[v] >= 0:
                busy[l2p[q0[v]]] += node_dur[v]
            if record:
                ev_node, ev_a, ev_b = _record(ev_node, ev_a, ev_b, nev, v, -1, -1)
                nev += 1
            for k in range(succ_ptr[v], succ_ptr[v + 1]):
                s = succ_idx[k]
                indeg[s] -= 1
                if indeg[s] == 0:
                    stack[sp] = s
                    sp += 1
        if nf == 0:
            break
        if changed:
            # 2. the front changed: rebuild partner lists and the lookahead layer (the
            #    two-qubit gates that become ready once the whole front has run)
            nhist = 0
            decay[:] = 1.0
            busy_mark[:] = busy
            _partners(front, nf, q0, q1, f_ptr, f_idx, cur)
            ne = 0
            head = 0
            tail = 0
            nt = 0
            for i in range(nf):
                bfs[tail] = front[i]
                tail += 1
            while head < tail and ne < ext_size:
                u = bfs[head]
                head += 1
                for k in range(succ_ptr[u], succ_ptr[u + 1]):
                    s = succ_idx[k]
                    indeg[s] -= 1
                    touched[nt] = s
                    nt += 1
                    if indeg[s] != 0:
                        continue
                    if q1[s] >= 0:
                        if ne < ext_size:
                            ext[ne] = s
                            ne += 1
                        continue  # one layer: what lies past it waits for it
                    bfs[tail] = s
                    tail += 1
            for k in range(nt):
                indeg[touched[k]] += 1
            _partners(ext, ne, q0, q1, e_ptr, e_idx, cur)
        # 3. candidate SWAPs: each device edge touching a front qubit, once
        stamp += 1
        for lq in range(P):
            if f_ptr[lq + 1] > f_ptr[lq]:
                active[l2p[lq]] = stamp
        nc = 0
        for lq in range(P):
            if f_ptr[lq + 1] == f_ptr[lq]:
                continue
            p = l2p[lq]
            for k in range(nbr_ptr[p], nbr_ptr[p + 1]):
                x = nbr_idx[k]
                if x > p or active[x] != stamp:
                    cand_a[nc] = p
                    cand_b[nc] = x
                    nc += 1
        # 4. score them (hot loop): relative change of the front and lookahead sums
        abs_f = 0.0
        for i in range(nf):
            abs_f += dist[l2p[q0[front[i]]], l2p[q1[front[i]]]]
        abs_e = 0.0
        for i in range(ne):
            abs_e += dist[l2p[q0[ext[i]]], l2p[q1[ext[i]]]]
        base = abs_f + ext_weight * abs_e
        best = np.inf
        best_t = np.inf
        best_i = -1
        nties = 0
        for c in range(nc):
            a = cand_a[c]
            b = cand_b[c]
            la = p2l[a]
            lb = p2l[b]
            score = base + _delta(la, lb, a, b, f_ptr, f_idx, l2p, dist)
            if ne > 0:
                score += ext_weight * _delta(la, lb, a, b, e_ptr, e_idx, l2p, dist)
            score *= max(decay[a], decay[b])
            if partner[a] == b and partner[b] == a:
                score -= merge_bonus
            t_free = max(busy[a], busy[b]) if tie_time else 0.0
            if score < best - 1e-10:
                best = score
                best_t = t_free
                best_i = c
                nties = 1
            elif score <= best + 1e-10:
                if t_free < best_t - 1e-9:
                    best_t = t_free
                    best_i = c
                    nties = 1
                elif t_free <= best_t + 1e-9:
                    nties += 1
                    if _rng_below(rng, nties) == 0:
                        best_i = c
        # 5. apply it, or pull the release valve
        if nhist >= valve:
            for k in range(nhist - 1, -1, -1):
                _swap_layout(l2p, p2l, hist_a[k], hist_b[k])
            swaps -= nhist
            if record:
                nev -= nhist
            busy[:] = busy_mark
            nhist = 0
            closest = 0
            for i in range(1, nf):
                if (hops[l2p[q0[front[i]]], l2p[q1[front[i]]]]
                        < hops[l2p[q0[front[closest]]], l2p[q1[front[closest]]]]):
                    closest = i
            f = front[closest]
            side = 0
            while hops[l2p[q0[f]], l2p[q1[f]]] > 1:
                # walk both ends toward each other, alternating, along a shortest path
                pa = l2p[q0[f]] if side == 0 else l2p[q1[f]]
                pb = l2p[q1[f]] if side == 0 else l2p[q0[f]]
                side = 1 - side
                nxt = pa
                for k in range(nbr_ptr[pa], nbr_ptr[pa + 1]):
                    if hops[nbr_idx[k], pb] < hops[pa, pb]:
                        nxt = nbr_idx[k]
                        break
                t = max(busy[pa], busy[nxt]) + 3.0 * edge_dur[pa, nxt]
                busy[pa] = t
                busy[nxt] = t
                _open_block(partner, pa, nxt)
                _swap_layout(l2p, p2l, pa, nxt)
                swaps += 1
                if record:
                    ev_node, ev_a, ev_b = _record(ev_node, ev_a, ev_b, nev, -1,
                                                  min(pa, nxt), max(pa, nxt))
                    nev += 1
        else:
            a = cand_a[best_i]
            b = cand_b[best_i]
            # a SWAP right after a gate on the same pair merges into it (at most 3 CX)
            merged = partner[a] == b and partner[b] == a
            t = max(busy[a], busy[b]) + (1.0 if merged else 3.0) * edge_dur[a, b]
            busy[a] = t
            busy[b] = t
            _open_block(partner, a, b)
            _swap_layout(l2p, p2l, a, b)
            swaps += 1
            hist_a[nhist] = a
            hist_b[nhist] = b
            nhist += 1
            if record:
                ev_node, ev_a, ev_b = _record(ev_node, ev_a, ev_b, nev, -1, min(a, b),
                                              max(a, b))
                nev += 1
            since_reset += 1
            if since_reset >= decay_reset:
                since_reset = 0
                decay[:] = 1.0
            else:
                decay[a] += decay_delta
                decay[b] += decay_delta
        # 6. front gates the SWAP(s) made adjacent go back to the stack
        i = 0
        while i < nf:
            g = front[i]
            if adj[l2p[q0[g]], l2p[q1[g]]]:
                stack[sp] = g
                sp += 1
                nf -= 1
                front[i] = front[nf]
            else:
                i += 1
    makespan = 0.0
    for p in range(P):
        makespan = max(makespan, busy[p])
    return swaps, l2p, makespan, ev_node, ev_a, ev_b, nev


@njit(cache=True)
def _grow(arr, cap):
    out = np.empty(cap, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@njit(cache=True, parallel=True)
def layout_search(fwd_ptr, fwd_idx, fwd_indeg, bwd_ptr, bwd_idx, bwd_indeg,
                  q0, q1, node_dur, node_n2q, dist, hops, adj, nbr_ptr, nbr_idx, edge_dur,
                  layouts, seeds, iterations, routing_trials, lookahead, ext_size,
                  decay_delta, decay_reset, valve, by_makespan, tie_time, merge_bonus):
    """Refine each starting layout by forward/backward passes, then route it several times.

    Trial ``t`` starts from ``layouts[t]``; its passes use seeds derived from
    ``seeds[t]`` and a lookahead weight that cycles through ``lookahead`` times 1, 1/4
    and 4, so the trials also differ in how far ahead they look (no single weight is
    best for every circuit). Returns per trial ``(swaps, makespan, routing seed, initial
    layout, lookahead)`` of its best routing, best meaning fewest SWAPs then shortest
    makespan (or the reverse when ``by_makespan``).
    """
    T = layouts.shape[0]
    P = layouts.shape[1]
    out_swaps = np.empty(T, dtype=np.int64)
    out_span = np.empty(T)
    out_seed = np.empty(T, dtype=np.int64)
    out_layout = np.empty((T, P), dtype=np.int64)
    out_la = np.empty(T)
    for t in prange(T):
        lay = layouts[t].copy()
        base = seeds[t] * 7919
        la = lookahead * (1.0 if t % 3 == 0 else (0.25 if t % 3 == 1 else 4.0))
        for it in range(iterations):
            r = route_pass(fwd_ptr, fwd_idx, fwd_indeg, q0, q1, node_dur, node_n2q, dist,
                           hops, adj, nbr_ptr, nbr_idx, edge_dur, lay, base + 2 * it,
                           la, ext_size, decay_delta, decay_reset, valve, False, tie_time,
                           merge_bonus)
            r2 = route_pass(bwd_ptr, bwd_idx, bwd_indeg, q0, q1, node_dur, node_n2q, dist,
                            hops, adj, nbr_ptr, nbr_idx, edge_dur, r[1], base + 2 * it + 1,
                            la, ext_size, decay_delta, decay_reset, valve, False, tie_time,
                           merge_bonus)
            lay = r2[1]
        best_s = -1
        best_m = np.inf
        best_seed = 0
        for k in range(routing_trials):
            sd = base + 1000003 + k
            r = route_pass(fwd_ptr, fwd_idx, fwd_indeg, q0, q1, node_dur, node_n2q, dist,
                           hops, adj, nbr_ptr, nbr_idx, edge_dur, lay, sd, la,
                           ext_size, decay_delta, decay_reset, valve, False, tie_time, merge_bonus)
            s = r[0]
            m = r[2]
            if by_makespan:
                better = best_s < 0 or m < best_m - 1e-9 or (m <= best_m + 1e-9 and s < best_s)
            else:
                better = best_s < 0 or s < best_s or (s == best_s and m < best_m - 1e-9)
            if better:
                best_s = s
                best_m = m
                best_seed = sd
        out_swaps[t] = best_s
        out_span[t] = best_m
        out_seed[t] = best_seed
        out_layout[t] = lay
        out_la[t] = la
    return out_swaps, out_span, out_seed, out_layout, out_la

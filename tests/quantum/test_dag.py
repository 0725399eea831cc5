"""The dependency DAG and pair blocks, against wire orders computed independently here."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.dag import DAG, pair_blocks
from qpuos.quantum.gates import GATES
from qpuos.quantum.statevector import fidelity, random_state, simulate

# Gates drawn by the random circuits: Z-diagonal ones, non-diagonal ones and mixed ones
# (diagonal on the control only), so commutation runs of every shape appear.
ONE_QUBIT = ("h", "x", "rz", "s", "t", "sx", "u", "ry", "z", "id")
TWO_QUBIT = ("cx", "cz", "cp", "swap", "rzz", "crx", "ch", "cy", "crz", "rxx")


def build(n: int, *ops: tuple[object, ...], clbits: int = 0) -> Circuit:
    c = Circuit.with_registers([("q", n)], [("c", clbits)] if clbits else [])
    for op in ops:
        c.append(*op)  # type: ignore[arg-type]
    return c


@st.composite
def circuits(draw: st.DrawFn, *, max_qubits: int = 5, max_ops: int = 25,
             directives: bool = True) -> Circuit:
    """Random circuits of standard gates, with measures, resets, barriers and conditions."""
    n = draw(st.integers(1, max_qubits))
    c = Circuit.with_registers([("q", n)], [("c", 2), ("d", 1)])
    qubit = st.integers(0, n - 1)
    for _ in range(draw(st.integers(0, max_ops))):
        kind = draw(st.sampled_from(
            ("1q", "2q", "2q", "measure", "reset", "barrier", "cond")
            if directives else ("1q", "2q", "2q")))
        if kind == "2q" and n < 2:
            kind = "1q"
        if kind == "1q":
            name = draw(st.sampled_from(ONE_QUBIT))
            c.append(name, [draw(qubit)], [0.3] * GATES[name].num_params)
        elif kind == "2q":
            name = draw(st.sampled_from(TWO_QUBIT))
            qs = draw(st.lists(qubit, min_size=2, max_size=2, unique=True))
            c.append(name, qs, [0.7] * GATES[name].num_params)
        elif kind == "measure":
            c.append("measure", [draw(qubit)], [], [draw(st.integers(0, 2))])
        elif kind == "reset":
            c.append("reset", [draw(qubit)])
        elif kind == "barrier":
            qs = draw(st.lists(qubit, min_size=1, max_size=n, unique=True))
            c.append("barrier", qs)
        else:
            name = draw(st.sampled_from(("rz", "x", "cx", "cz")))
            if GATES[name].num_qubits == 2 and n < 2:
                name = "rz"
            qs = draw(st.lists(qubit, min_size=GATES[name].num_qubits,
                               max_size=GATES[name].num_qubits, unique=True))
            cond = Condition(draw(st.sampled_from(("c", "d"))), draw(st.integers(0, 1)))
            c.append(name, qs, [0.2] * GATES[name].num_params, [], cond)
    return c


def _clbits_touched(c: Circuit, inst: Instruction) -> list[int]:
    bits = list(inst.clbits)
    if inst.condition is not None:
        bits += list(c.creg(inst.condition.creg).bits)
    return bits


def _diag(inst: Instruction, k: int) -> bool:
    spec = GATES.get(inst.name)
    return (inst.condition is None and spec is not None and spec.diagonal_on[k])


def wire_pairs(c: Circuit) -> set[tuple[int, int]]:
    """Consecutive instructions on every qubit and clbit wire (the plain DAG's edges)."""
    edges: set[tuple[int, int]] = set()
    last_q: dict[int, int] = {}
    last_c: dict[int, int] = {}
    for i, inst in enumerate(c.instructions):
        for q in inst.qubits:
            if q in last_q:
                edges.add((last_q[q], i))
            last_q[q] = i
        for b in _clbits_touched(c, inst):
            if b in last_c:
                edges.add((last_c[b], i))
            last_c[b] = i
    return edges


def must_order(c: Circuit, *, commutation: bool = True) -> set[tuple[int, int]]:
    """Pairs ``i < j`` that must stay ordered: they share a clbit, or a qubit on which one
    of them, or something between them, is not Z-diagonal (every shared qubit counts
    without ``commutation``)."""
    out: set[tuple[int, int]] = set()
    on_q: dict[int, list[tuple[int, bool]]] = {}
    on_c: dict[int, list[int]] = {}
    for i, inst in enumerate(c.instructions):
        for k, q in enumerate(inst.qubits):
            on_q.setdefault(q, []).append((i, commutation and inst.is_gate and _diag(inst, k)))
        for b in _clbits_touched(c, inst):
            on_c.setdefault(b, []).append(i)
    for seq in on_q.values():
        for x in range(len(seq)):
            for y in range(x + 1, len(seq)):
                if not all(d for _, d in seq[x:y + 1]):
                    out.add((seq[x][0], seq[y][0]))
    for nodes in on_c.values():
        out.update((a, b) for k, a in enumerate(nodes) for b in nodes[k + 1:])
    return out


def edges_of(dag: DAG) -> set[tuple[int, int]]:
    return {(u, v) for u in range(dag.num_nodes) for v in dag.successors(u)}


def reachable(dag: DAG) -> list[int]:
    """Per node, a bitmask of every node reachable from it (instruction order is a
    topological order, checked separately)."""
    reach = [0] * dag.num_nodes
    for u in range(dag.num_nodes - 1, -1, -1):
        for v in dag.successors(u):
            reach[u] |= (1 << v) | reach[v]
    return reach


def flatten(blocks: Iterable[list[int]]) -> list[int]:
    return [i for b in blocks for i in b]


# --- hand-built cases -------------------------------------------------------------


def test_without_commutation_edges_follow_each_wire_in_order() -> None:
    c = build(3, ("cx", [0, 1]), ("cx", [0, 2]), ("h", [0]), ("rz", [1], [0.1]))
    dag = DAG(c, commutation=False)
    assert dag.front_layer() == [0]
    assert [dag.predecessors(v) for v in range(4)] == [[], [0], [1], [0]]
    assert [dag.successors(v) for v in range(4)] == [[1, 3], [2], [], []]
    assert dag.instruction(2) is c.instructions[2]


def test_shared_control_cx_pair_is_one_run_and_the_next_gate_waits_for_both() -> None:
    c = build(3, ("cx", [0, 1]), ("cx", [0, 2]), ("h", [0]))
    dag = DAG(c, commutation=True)
    assert dag.front_layer() == [0, 1]
    assert sorted(dag.predecessors(2)) == [0, 1]
    assert list(dag.layers()) == [[0, 1], [2]]


def test_shared_target_cx_pair_stays_ordered() -> None:
    c = build(3, ("cx", [0, 2]), ("cx", [1, 2]))
    assert DAG(c, commutation=True).front_layer() == [0]


def test_diagonal_run_of_mixed_gates_has_no_inner_order() -> None:
    c = build(2, ("h", [0]), ("rz", [0], [0.3]), ("cz", [0, 1]), ("t", [0]), ("cp", [1, 0], [0.5]),
              ("sx", [0]))
    dag = DAG(c, commutation=True)
    for member in (1, 2, 3, 4):
        assert dag.predecessors(member) == [0], member
    assert sorted(dag.predecessors(5)) == [1, 2, 3, 4]


def test_rz_h_rz_is_a_chain() -> None:
    c = build(1, ("rz", [0], [0.1]), ("h", [0]), ("rz", [0], [0.2]))
    for commutation in (True, False):
        dag = DAG(c, commutation=commutation)
        assert [dag.predecessors(v) for v in range(3)] == [[], [0], [1]]


def test_conditional_diagonal_gate_is_not_relaxed() -> None:
    c = build(1, ("rz", [0], [0.1]), ("rz", [0], [0.2], [], Condition("c", 1)),
              ("t", [0]), clbits=1)
    dag = DAG(c, commutation=True)
    assert [dag.predecessors(v) for v in range(3)] == [[], [0], [1]]


@pytest.mark.parametrize("commutation", [True, False])
def test_measure_then_conditional_on_its_register_is_ordered(commutation: bool) -> None:
    c = build(2, ("measure", [0], [], [1]), ("x", [1], [], [], Condition("c", 2)),
              clbits=2)
    dag = DAG(c, commutation=commutation)
    assert dag.front_layer() == [0]
    assert dag.predecessors(1) == [0]


@pytest.mark.parametrize("commutation", [True, False])
def test_clbit_wires_order_writes_and_reads(commutation: bool) -> None:
    c = build(3, ("measure", [0], [], [0]), ("measure", [1], [], [0]),
              ("rz", [2], [0.1], [], Condition("c", 0)),
              ("rz", [2], [0.2], [], Condition("c", 1)), clbits=1)
    dag = DAG(c, commutation=commutation)
    assert [dag.predecessors(v) for v in range(4)] == [[], [0], [1], [2]]


def test_barrier_orders_its_qubits_and_to_arrays_marks_it() -> None:
    c = build(3, ("rz", [0], [0.1]), ("barrier", [0, 1]), ("rz", [0], [0.2]),
              ("barrier", [0, 1, 2]), ("cx", [2, 1]), ("measure", [1], [], [0]), clbits=1)
    dag = DAG(c, commutation=True)
    assert dag.predecessors(1) == [0]
    assert dag.predecessors(2) == [1]
    arrays = dag.to_arrays()
    assert arrays.q0.tolist() == [0, -1, 0, -1, 2, 1]
    assert arrays.q1.tolist() == [-1, -1, -1, -1, 1, -1]


def test_empty_circuit() -> None:
    dag = DAG(Circuit(num_qubits=2))
    assert dag.num_nodes == 0
    assert dag.front_layer() == []
    assert list(dag.layers()) == []
    arrays = dag.to_arrays()
    assert arrays.succ_ptr.tolist() == [0]
    assert arrays.succ_idx.size == 0


def test_pair_blocks_by_hand() -> None:
    c = build(3, ("cx", [0, 1]), ("h", [1]), ("cz", [1, 0]), ("cx", [1, 2]), ("t", [0]),
              ("rz", [2], [0.1]), ("measure", [2], [], [0]), ("x", [1]),
              ("x", [1], [], [], Condition("c", 1)), clbits=1)
    # t on 0 still joins the first block: nothing else touched qubit 0 after it
    assert pair_blocks(c) == [[0, 1, 2, 4], [3, 5, 7], [6], [8]]


def test_pair_blocks_end_at_a_conditional_on_the_pair() -> None:
    c = build(2, ("cx", [0, 1]), ("cx", [0, 1], [], [], Condition("c", 1)), ("cx", [0, 1]),
              clbits=1)
    assert pair_blocks(c) == [[0], [1], [2]]


# --- properties -------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(circuits())
def test_plain_dag_edges_are_exactly_the_wire_orders(c: Circuit) -> None:
    dag = DAG(c, commutation=False)
    want = wire_pairs(c)
    got = edges_of(dag)
    assert got - want == set()
    assert want - got == set()


@settings(max_examples=120, deadline=None)
@given(circuits(), st.booleans())
def test_every_non_commuting_pair_is_ordered(c: Circuit, commutation: bool) -> None:
    dag = DAG(c, commutation=commutation)
    edges = edges_of(dag)
    assert {(u, v) for u, v in edges if u >= v} == set()  # instruction order is topological
    reach = reachable(dag)
    required = must_order(c, commutation=commutation)
    assert {(a, b) for a, b in required if not reach[a] >> b & 1} == set()


@settings(max_examples=120, deadline=None)
@given(circuits(), st.booleans())
def test_layers_cover_every_node_once_and_respect_edges(c: Circuit, commutation: bool) -> None:
    dag = DAG(c, commutation=commutation)
    layers = list(dag.layers())
    flat = [v for layer in layers for v in layer]
    assert sorted(flat) == list(range(dag.num_nodes))
    assert dag.topological_order() == flat
    level = {v: k for k, layer in enumerate(layers) for v in layer}
    assert {(u, v) for u, v in edges_of(dag) if level[u] >= level[v]} == set()
    assert all(layer == sorted(layer) for layer in layers)
    if layers:
        assert layers[0] == dag.front_layer()
    # each node sits in the earliest layer its predecessors allow
    assert {v for v in flat
            if level[v] != max((level[p] + 1 for p in dag.predecessors(v)), default=0)} == set()


@settings(max_examples=120, deadline=None)
@given(circuits(), st.booleans())
def test_to_arrays_csr_matches_successors_and_predecessors(c: Circuit,
                                                           commutation: bool) -> None:
    dag = DAG(c, commutation=commutation)
    a = dag.to_arrays()
    n = dag.num_nodes
    for arr in (a.succ_ptr, a.succ_idx, a.pred_ptr, a.pred_idx, a.q0, a.q1):
        assert arr.dtype == np.int64
    assert a.succ_ptr.shape == (n + 1,) and a.pred_ptr.shape == (n + 1,)
    assert a.succ_ptr[0] == 0 and a.pred_ptr[0] == 0
    assert bool(np.all(np.diff(a.succ_ptr) >= 0)) and bool(np.all(np.diff(a.pred_ptr) >= 0))
    assert a.succ_ptr[-1] == a.succ_idx.size == a.pred_ptr[-1] == a.pred_idx.size
    for v in range(n):
        assert a.succ_idx[a.succ_ptr[v]:a.succ_ptr[v + 1]].tolist() == dag.successors(v)
        assert a.pred_idx[a.pred_ptr[v]:a.pred_ptr[v + 1]].tolist() == dag.predecessors(v)
        inst = c.instructions[v]
        if inst.is_two_qubit_gate:
            assert (a.q0[v], a.q1[v]) == inst.qubits
        elif len(inst.qubits) == 1:
            assert (a.q0[v], a.q1[v]) == (inst.qubits[0], -1)
        else:
            assert (a.q0[v], a.q1[v]) == (-1, -1)
    # no duplicate edges, and predecessors mirror successors
    assert len(edges_of(dag)) == a.succ_idx.size
    assert {(u, v) for v in range(n) for u in dag.predecessors(v)} == edges_of(dag)


@settings(max_examples=150, deadline=None)
@given(circuits(max_qubits=5, max_ops=30))
def test_pair_blocks_partition_and_keep_every_wire_in_order(c: Circuit) -> None:
    blocks = pair_blocks(c)
    flat = flatten(blocks)
    assert sorted(flat) == list(range(len(c)))
    assert all(block for block in blocks)
    insts = c.instructions
    for block in blocks:
        assert block == sorted(block)
        if len(block) == 1:
            continue
        head = insts[block[0]]
        assert head.is_two_qubit_gate and head.condition is None, block
        pair = set(head.qubits)
        strays = [j for j in block
                  if not insts[j].is_gate or insts[j].condition is not None
                  or not set(insts[j].qubits) <= pair
                  or (len(insts[j].qubits) == 2 and set(insts[j].qubits) != pair)]
        assert strays == [], (block, strays)
    # creation order respects every qubit and clbit wire
    pos = {i: k for k, i in enumerate(flat)}
    out_of_order = {(a, b) for a, b in wire_pairs(c) if pos[a] > pos[b]}
    assert out_of_order == set()


@settings(max_examples=60, deadline=None)
@given(circuits(max_qubits=4, max_ops=20, directives=False))
def test_pair_block_members_are_consecutive_on_their_wires(c: Circuit) -> None:
    blocks = pair_blocks(c)
    owner = {i: k for k, b in enumerate(blocks) for i in b}
    for q in range(c.num_qubits):
        seq = [owner[i] for i, inst in enumerate(c.instructions) if q in inst.qubits]
        runs = [k for j, k in enumerate(seq) if j == 0 or seq[j - 1] != k]
        assert len(runs) == len(set(runs)), (q, seq)


@settings(max_examples=60, deadline=None)
@given(circuits(max_qubits=4, max_ops=20, directives=False), st.randoms(use_true_random=False))
def test_any_topological_order_of_the_commutation_dag_is_the_same_unitary(
        c: Circuit, rnd: random.Random) -> None:
    dag = DAG(c, commutation=True)
    indeg = [len(dag.predecessors(v)) for v in range(dag.num_nodes)]
    ready = [v for v in range(dag.num_nodes) if indeg[v] == 0]
    order: list[int] = []
    while ready:
        v = ready.pop(rnd.randrange(len(ready)))
        order.append(v)
        for s in dag.successors(v):
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    assert sorted(order) == list(range(len(c)))
    shuffled = c.copy_empty()
    shuffled.instructions = [c.instructions[v] for v in order]
    psi = random_state(c.num_qubits, np.random.default_rng(7))
    assert fidelity(simulate(c, psi), simulate(shuffled, psi)) == pytest.approx(1.0, abs=1e-9)

"""Dependency DAG of a circuit, optionally commutation-aware.

Node ``i`` is instruction ``i`` of the circuit. An edge ``u -> v`` says ``u`` must run
before ``v``. Without commutation the edges follow each wire (qubit or clbit) in order.
With commutation, consecutive operations that are all Z-diagonal on a qubit (``rz``,
``cz``, the control of ``cx``, ...) form a *run* on that wire: members of a run need no
order among themselves, each depends on what came before the run, and the next
non-diagonal operation depends on every member. That freedom is what lets the router
take ``cx a,b`` and ``cx a,c`` in whichever order suits the coupling graph.

Classical wires are never relaxed: ``measure`` writes its clbit, a conditional reads its
whole register.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.gates import is_diagonal_on

__all__ = ["DAG", "DagArrays", "pair_blocks"]


@dataclass(frozen=True, slots=True)
class DagArrays:
    """A DAG as flat integer arrays (CSR), the form the numba kernels take.

    Attributes:
        succ_ptr, succ_idx: successors of node i are ``succ_idx[succ_ptr[i]:succ_ptr[i+1]]``.
        pred_ptr, pred_idx: the same for predecessors (the reversed DAG).
        q0, q1: the two logical qubits of a two-qubit gate (``q1 >= 0`` marks the nodes
            routing must place); for a one-qubit operation ``q0`` is its qubit and ``q1``
            is ``-1``; both are ``-1`` for operations on three or more qubits (barriers).
    """

    succ_ptr: NDArray[np.int64]
    succ_idx: NDArray[np.int64]
    pred_ptr: NDArray[np.int64]
    pred_idx: NDArray[np.int64]
    q0: NDArray[np.int64]
    q1: NDArray[np.int64]


class _WireState:
    """What the next operation on one qubit wire must wait for."""

    __slots__ = ("before_run", "run")

    def __init__(self) -> None:
        self.before_run: list[int] = []  # predecessors of the current diagonal run
        self.run: list[int] = []  # members of the current diagonal run (may be empty)


class DAG:
    """Dependency graph of a circuit's instructions.

    Args:
        circuit: the circuit; its instruction list is not copied, do not mutate it.
        commutation: relax ordering between Z-diagonal operations on a shared qubit.

    >>> c = Circuit(num_qubits=3)
    >>> c.append("cx", [0, 1]); c.append("cx", [0, 2]); c.append("h", [0])
    >>> DAG(c, commutation=True).front_layer()
    [0, 1]
    """

    def __init__(self, circuit: Circuit, *, commutation: bool = True) -> None:
        self.circuit = circuit
        self.commutation = commutation
        n = len(circuit.instructions)
        self._succ: list[list[int]] = [[] for _ in range(n)]
        self._pred: list[list[int]] = [[] for _ in range(n)]
        self._build()

    @property
    def num_nodes(self) -> int:
        """Number of nodes (= instructions)."""
        return len(self._succ)

    def instruction(self, node: int) -> Instruction:
        """The instruction behind ``node``."""
        return self.circuit.instructions[node]

    def successors(self, node: int) -> list[int]:
        """Nodes that directly wait for ``node``."""
        return self._succ[node]

    def predecessors(self, node: int) -> list[int]:
        """Nodes ``node`` directly waits for."""
        return self._pred[node]

    def _link(self, u: int, v: int) -> None:
        if u != v and (not self._pred[v] or self._pred[v][-1] != u) and u not in self._pred[v]:
            self._succ[u].append(v)
            self._pred[v].append(u)

    def _build(self) -> None:
        wires = [_WireState() for _ in range(self.circuit.num_qubits)]
        last_clbit: list[int] = [-1] * self.circuit.num_clbits
        creg_bits = {r.name: tuple(r.bits) for r in self.circuit.cregs}
        for node, inst in enumerate(self.circuit.instructions):
            for k, q in enumerate(inst.qubits):
                w = wires[q]
                diagonal = (self.commutation and inst.condition is None
                            and inst.is_gate and is_diagonal_on(inst.name, k))
                if diagonal:
                    for p in w.before_run:
                        self._link(p, node)
                    w.run.append(node)
                else:
                    for p in (w.run or w.before_run):
                        self._link(p, node)
                    w.before_run = [node]
                    w.run = []
            cbits = list(inst.clbits)
            if inst.condition is not None:
                cbits.extend(creg_bits[inst.condition.creg])
            for b in cbits:
                if last_clbit[b] >= 0:
                    self._link(last_clbit[b], node)
                last_clbit[b] = node

    def front_layer(self) -> list[int]:
        """Nodes with no predecessors, in instruction order."""
        return [v for v in range(self.num_nodes) if not self._pred[v]]

    def layers(self) -> Iterator[list[int]]:
        """Yield layers: each is the set of nodes whose predecessors all ran before it."""
        indeg = [len(p) for p in self._pred]
        layer = self.front_layer()
        while layer:
            yield layer
            nxt: list[int] = []
            for u in layer:
                for v in self._succ[u]:
                    indeg[v] -= 1
                    if indeg[v] == 0:
                        nxt.append(v)
            nxt.sort()
            layer = nxt

    def topological_order(self) -> list[int]:
        """Every node once, each after all its predecessors."""
        return [v for layer in self.layers() for v in layer]

    def to_arrays(self) -> DagArrays:
        """Flatten into CSR arrays for the routing kernels."""
        n = self.num_nodes
        succ_ptr = np.zeros(n + 1, dtype=np.int64)
        pred_ptr = np.zeros(n + 1, dtype=np.int64)
        for i in range(n):
            succ_ptr[i + 1] = succ_ptr[i] + len(self._succ[i])
            pred_ptr[i + 1] = pred_ptr[i] + len(self._pred[i])
        succ_idx = np.fromiter((v for s in self._succ for v in s), dtype=np.int64,
                               count=int(succ_ptr[-1]))
        pred_idx = np.fromiter((v for p in self._pred for v in p), dtype=np.int64,
                               count=int(pred_ptr[-1]))
        q0 = np.full(n, -1, dtype=np.int64)
        q1 = np.full(n, -1, dtype=np.int64)
        for i, inst in enumerate(self.circuit.instructions):
            if inst.is_two_qubit_gate:
                q0[i], q1[i] = inst.qubits
            elif len(inst.qubits) == 1:
                q0[i] = inst.qubits[0]
        return DagArrays(succ_ptr, succ_idx, pred_ptr, pred_idx, q0, q1)


def pair_blocks(circuit: Circuit) -> list[list[int]]:
    """Group instructions into blocks that routing can treat as one two-qubit gate.

    A block starts at an unconditional two-qubit gate on ``(a, b)`` and takes every later
    unconditional gate on exactly that pair, and every one-qubit gate on ``a`` or ``b``,
    until another operation touches ``a`` or ``b``. Every other instruction is a block of
    its own. Blocks are listed in creation order, which respects every wire's order.

    Routing on blocks sees "the next pair to bring together" rather than the second and
    third CX of a block whose first CX is already placed, so its lookahead looks further.
    """
    blocks: list[list[int]] = []
    open_on: dict[int, int] = {}
    for i, inst in enumerate(circuit.instructions):
        plain = inst.is_gate and inst.condition is None
        if plain and len(inst.qubits) == 2:
            a, b = inst.qubits
            k = open_on.get(a)
            if k is not None and k == open_on.get(b):
                blocks[k].append(i)
                continue
            open_on.pop(a, None)
            open_on.pop(b, None)
            open_on[a] = open_on[b] = len(blocks)
            blocks.append([i])
        elif plain and len(inst.qubits) == 1 and inst.qubits[0] in open_on:
            blocks[open_on[inst.qubits[0]]].append(i)
        else:
            for q in inst.qubits:
                open_on.pop(q, None)
            blocks.append([i])
    return blocks

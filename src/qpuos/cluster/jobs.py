"""Jobs on a cluster of QPU nodes: placement by fit, results gathered, lost nodes retried.

Design:

* A *node* is a Ray actor that owns one device and one executor (``executors.py``: the
  emulated controller of ``qpuos.device``, or the single-process simulator). It compiles
  each job for its device (layout, routing, timing, verification) and runs it; Ray runs
  one node's jobs one at a time, so the jobs submitted to a node are its queue.
* Placement, job by job in batch order: among living nodes whose device has enough
  qubits, the highest ``estimated fidelity / (1 + queue length)``: a node twice as
  accurate may hold one more queued job before a worse idle node is preferred. The
  fidelity estimate, ``(1 - e2) ** two_qubit_gates`` with the device's typical
  two-qubit error (1% when it has no figures), ignores routing SWAPs: it only ranks.
* A node whose actor dies (process killed, machine lost) surfaces as ``RayActorError``
  on each of its jobs; the node is marked dead and every unfinished job it held is
  placed again elsewhere, up to ``max_attempts`` placements per job. A result only ever
  comes from a run that completed on a living node, so a retry never mixes partial runs.
  When no living node fits, ``NodeLost`` says which job and why.
* ``Cluster()`` starts a local Ray on demand with one CPU per core of this machine;
  ``Cluster(address=...)`` joins a running one. Nodes reserve no Ray CPU (a controller is
  a process of its own, outside Ray's accounting), so a laptop can host several.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from qpuos.cluster._inline import InlineHandle
from qpuos.cluster._ray import ensure_ray
from qpuos.cluster.executors import Executor, default_executor
from qpuos.errors import (
    ClosedResourceError,
    ClusterError,
    NodeLost,
    QpuosError,
    TopologyError,
    UsageError,
)
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.compile import compile_circuit
from qpuos.quantum.device import Device, load_device

__all__ = ["Cluster", "JobResult", "NodeStatus"]

_DEFAULT_2Q_ERROR = 0.01


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One QPU node as the cluster sees it."""

    name: str
    device: str
    num_qubits: int
    two_qubit_error: float
    executor: str
    queued: int
    alive: bool


@dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of one job of a batch.

    Attributes:
        index: the job's position in the batch.
        node: the node that ran it to completion.
        device: that node's device.
        counts: outcome string -> shots.
        shots: shots taken.
        attempts: placements it took (1 unless a node died under it).
        estimated_fidelity: the placement estimate on that node.
        swaps: SWAPs routing inserted for that device.
    """

    index: int
    node: str
    device: str
    counts: dict[str, int]
    shots: int
    attempts: int
    estimated_fidelity: float
    swaps: int


class _QpuNodeWorker:
    """The body of a node actor: a device, an executor, compile-then-run."""

    def __init__(self, name: str, device_json: dict[str, Any], executor: Executor) -> None:
        self.name = name
        self.device = Device.from_json(device_json, origin=name)
        self.executor = executor

    def ping(self) -> int:
        return os.getpid()

    def run(self, circuit: Circuit, shots: int, seed: int) -> tuple[dict[str, int], int]:
        program = compile_circuit(circuit, self.device)
        counts = self.executor.execute(program, shots=shots, seed=seed)
        return counts, program.routed.swaps


@dataclass(slots=True)
class _Node:
    name: str
    device: Device
    executor: str
    handle: Any
    queued: int = 0
    alive: bool = True

    @property
    def error(self) -> float:
        e = self.device.typical_two_qubit_error
        return _DEFAULT_2Q_ERROR if e is None else float(e)


class Cluster:
    """QPU nodes as Ray actors, and batches of circuits placed on them.

    Args:
        address: a Ray cluster to join (``"auto"``, ``"host:port"``, ``"ray://..."``);
            None starts a local Ray on demand.
        num_cpus: CPUs of the local Ray (default: this machine's count).
        backend: ``"ray"``, or ``"inline"``: nodes are objects in this process, jobs run
            one after another when submitted (no Ray, no node failures).

    Raises:
        UsageError: Ray is not installed.
        ClusterError: Ray could not start or be reached.

    >>> from qpuos.cluster.executors import SimulatorExecutor
    >>> from qpuos.quantum import line_device
    >>> bell = Circuit(num_qubits=2, num_clbits=2)
    >>> bell.append("h", [0]); bell.append("cx", [0, 1])
    >>> bell.append("measure", [0], clbits=[0]); bell.append("measure", [1], clbits=[1])
    >>> with Cluster(backend="inline") as cluster:
    ...     cluster.add_node(line_device(3), executor=SimulatorExecutor())
    ...     [r] = cluster.run([bell], shots=100, seed=1)
    'node0'
    >>> sorted(r.counts), r.node, r.attempts
    (['00', '11'], 'node0', 1)
    """

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None,
                 backend: Literal["ray", "inline"] = "ray") -> None:
        if backend not in ("ray", "inline"):
            raise UsageError(f"backend must be 'ray' or 'inline', got {backend!r}")
        self._ray: Any = (ensure_ray(address=address, num_cpus=num_cpus)
                          if backend == "ray" else None)
        self._nodes: dict[str, _Node] = {}
        self._names = itertools.count()
        self._closed = False

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every node actor (idempotent; Ray itself keeps running)."""
        if self._closed:
            return
        self._closed = True
        for node in self._nodes.values():
            if node.alive and self._ray is not None:
                self._ray.kill(node.handle)
        self._nodes.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the cluster is closed; create a new Cluster")

    def add_node(self, device: Device | str, *, name: str | None = None,
                 executor: Executor | None = None) -> str:
        """Start a node actor for ``device`` (a ``Device`` or a ``load_device`` spec).

        Args:
            device: the node's device.
            name: a unique node name (default ``nodeN``).
            executor: how the node runs programs (default: the emulated controller when
                the device layer is available, else the simulator).

        Returns:
            The node's name.

        Raises:
            UsageError: the name is taken.
            DeviceError: ``device`` names no known device.
            ClosedResourceError: the cluster is closed.
        """
        self._check_open()
        dev = load_device(device) if isinstance(device, str) else device
        label = name if name is not None else f"node{next(self._names)}"
        if label in self._nodes:
            raise UsageError(f"a node named {label!r} already exists; pick another name")
        ex = executor if executor is not None else default_executor()
        if self._ray is None:
            handle: Any = InlineHandle(_QpuNodeWorker(label, dev.to_json(), ex))
        else:
            actor = self._ray.remote(_QpuNodeWorker).options(num_cpus=0, max_restarts=0)
            handle = actor.remote(label, dev.to_json(), ex)
        self._nodes[label] = _Node(label, dev, ex.name, handle)
        return label

    def node_handle(self, name: str) -> Any:
        """The Ray actor handle of node ``name`` (to inspect it or kill it in tests)."""
        return self._node(name).handle

    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise UsageError(f"no node named {name!r}; nodes: "
                             f"{', '.join(self._nodes) or 'none'}") from None

    def status(self) -> list[NodeStatus]:
        """Every node, pinged now: a node whose actor is gone is reported dead."""
        self._check_open()
        for node in self._nodes.values():
            if node.alive and self._ray is not None:
                try:
                    self._ray.get(node.handle.ping.remote(), timeout=60)
                except (self._ray.exceptions.RayActorError,
                        self._ray.exceptions.GetTimeoutError):
                    node.alive = False
        return [NodeStatus(n.name, n.device.name, n.device.num_qubits, n.error, n.executor,
                           n.queued, n.alive) for n in self._nodes.values()]

    def _pick(self, index: int, circuit: Circuit, lost: str | None) -> tuple[_Node, float]:
        n2q = circuit.num_two_qubit_gates
        fits = [(node.name, node, (1.0 - node.error) ** n2q)
                for node in self._nodes.values()
                if node.alive and node.device.num_qubits >= circuit.num_qubits]
        if not fits:
            if lost is not None:
                raise NodeLost(f"job {index} ({circuit.num_qubits} qubits) lost node "
                               f"{lost!r} and no living node has enough qubits; add a "
                               "node and run the job again")
            widest = max((n.device.num_qubits for n in self._nodes.values() if n.alive),
                         default=0)
            raise TopologyError(f"job {index} has {circuit.num_qubits} qubits but the "
                                f"largest living node has {widest}; add a larger device "
                                "(`qpuos devices`)")
        _, node, fid = max(fits, key=lambda t: (t[2] / (1 + t[1].queued), t[0]))
        return node, fid

    def run(self, circuits: Sequence[Circuit], *, shots: int = 1000, seed: int = 0,
            max_attempts: int = 3) -> list[JobResult]:
        """Place every circuit on a node, run them all, and gather the results.

        Args:
            circuits: logical circuits (each is compiled on the node that runs it).
            shots: shots per job.
            seed: job ``i`` samples with seed ``seed + i`` (on any node, any attempt).
            max_attempts: placements a job may take before ``NodeLost``.

        Returns:
            One result per circuit, in batch order.

        Raises:
            UsageError: no nodes, or bad counts.
            TopologyError: a circuit is wider than every node.
            NodeLost: a job's node died and no other could take it, or it ran out of
                attempts.
            QpuosError: a job itself failed on its node (the node's error, re-raised).
        """
        self._check_open()
        if not self._nodes:
            raise UsageError("the cluster has no nodes; add one with add_node()")
        if shots < 1 or max_attempts < 1:
            raise UsageError(f"shots and max_attempts must be >= 1, got {shots} and "
                             f"{max_attempts}")
        attempts = [0] * len(circuits)
        results: list[JobResult | None] = [None] * len(circuits)
        pending: dict[Any, tuple[int, _Node, float]] = {}

        def place(i: int, lost: str | None) -> None:
            if attempts[i] >= max_attempts:
                raise NodeLost(f"job {i} was placed {attempts[i]} times and lost its node "
                               f"each time (last {lost!r}); check the nodes")
            node, fid = self._pick(i, circuits[i], lost)
            attempts[i] += 1
            node.queued += 1
            pending[node.handle.run.remote(circuits[i], shots, seed + i)] = (i, node, fid)

        for i in range(len(circuits)):
            place(i, None)
        while pending:
            ref = self._next_done(pending)
            i, node, fid = pending.pop(ref)
            node.queued -= 1
            outcome = self._outcome(i, node, ref)
            if outcome is None:
                node.alive = False
                place(i, node.name)
                continue
            counts, swaps = outcome
            results[i] = JobResult(i, node.name, node.device.name, counts, shots,
                                   attempts[i], fid, swaps)
        return [r for r in results if r is not None]

    def _next_done(self, pending: dict[Any, Any]) -> Any:
        if self._ray is None:
            return next(iter(pending))
        ready, _ = self._ray.wait(list(pending), num_returns=1)
        return ready[0]

    def _outcome(self, i: int, node: _Node, ref: Any) -> tuple[dict[str, int], int] | None:
        """A job's (counts, swaps), or None when its node died under it."""
        if self._ray is None:
            return cast(tuple[dict[str, int], int], ref.value)
        rx = self._ray.exceptions
        try:
            return cast(tuple[dict[str, int], int], self._ray.get(ref))
        except rx.RayActorError:
            return None
        except rx.RayTaskError as exc:
            if isinstance(exc.cause, QpuosError):
                raise exc.cause from None
            raise ClusterError(f"job {i} failed on node {node.name!r}: "
                               f"{type(exc.cause).__name__}: {exc.cause}") from exc

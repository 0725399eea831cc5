"""The Qiskit routing stage behind ``transpile(..., routing_method="qpuos")``.

Some facts this module relies on:

- Qiskit hands the routing stage a *physical* DAG: its layout stage has already placed
  every virtual qubit (``ApplyLayout``), so the DAG has one register ``q`` with one qubit
  per coupling-map node, and qubit ``i`` of the DAG *is* physical qubit ``i``. We keep that
  placement: the router starts from the identity layout and only inserts SWAPs, as
  Qiskit's own ``SabreSwap`` does. Changing the layout here would fight Qiskit's layout
  stage (and its ``VF2PostLayout``, which runs after us and may improve it).
- The router sees a *skeleton*, not a translation: DAG op node ``j`` (in topological
  order) becomes one stand-in instruction of our IR on the same qubits, with ``j`` as its
  last parameter, and after routing each stand-in is replaced by node ``j``'s original
  operation on its new physical qubits. Stand-ins keep the commutation class of the
  original (Z-diagonal on which qubits), so the commutation-aware router keeps its
  freedom; unknown operations are treated as commuting with nothing, which is always
  safe. Rejected alternative: ``from_qiskit`` on the DAG and ``to_qiskit`` back. It
  refuses parameterised, ``unitary`` and custom gates and drops labels, so the
  protection barrier Qiskit filters by label after routing would survive into the output.
- ``final_layout`` is the "where did the qubit that started at ``i`` end" permutation,
  composed with any earlier one exactly as ``qiskit.transpiler.passes.SabreSwap`` does,
  so ``Operator.from_circuit`` and Qiskit's later stages undo it correctly.
- Edges of a directed coupling map are used both ways; Qiskit's translation stage fixes
  the direction of two-qubit gates afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from qiskit.circuit import ControlFlowOp
from qiskit.circuit.library import SwapGate
from qiskit.circuit.library.standard_gates import get_standard_gate_name_mapping
from qiskit.transpiler import CouplingMap, Layout, PassManager, Target, TranspilerError
from qiskit.transpiler.basepasses import TransformationPass
from qiskit.transpiler.preset_passmanagers import common

from qpuos.errors import QpuosError
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.device import Device
from qpuos.quantum.gates import GATES
from qpuos.quantum.routing import RoutedCircuit, RoutingOptions, SabreRouter

__all__ = ["QpuosSwap", "qpuos_routing_stage"]

# Qiskit names that differ from ours for the same gate (see qiskit_interop).
_FROM_QISKIT = {"rcccx": "rc3x", "c3sx": "c3sqrtx"}

# Routing tie-break trials per optimization level (Qiskit's default level is 2).
_ROUTING_TRIALS = {0: 1, 1: 4, 2: 8, 3: 16}

# Stand-ins by commutation class: one parameter each (it carries the node index).
_ONE_QUBIT = {True: "rz", False: "rx"}
_TWO_QUBIT: dict[tuple[bool, ...], str] = {
    (True, True): "rzz", (True, False): "crx", (False, False): "rxx"}


@cache
def _standard_types() -> dict[str, type]:
    return {name: type(gate) for name, gate in get_standard_gate_name_mapping().items()}


def _diagonal_on(op: Any, width: int) -> tuple[bool, ...]:
    """On which qubits ``op`` is Z-diagonal; all False unless it is a known standard gate.

    A gate counts only if it is Qiskit's own class for its name, so a user gate that
    happens to be called ``cz`` is not trusted to commute like one.
    """
    unknown = (False,) * width
    name = str(op.name)
    if isinstance(op, ControlFlowOp) or _standard_types().get(name) is not type(op):
        return unknown
    spec = GATES.get(_FROM_QISKIT.get(name, name))
    if spec is None or spec.num_qubits != width:
        return unknown
    return spec.diagonal_on


@dataclass(frozen=True, slots=True)
class _Skeleton:
    """The routing problem: stand-ins in ``circuit``; node ``j`` is ``nodes[j]``."""

    circuit: Circuit
    nodes: list[Any]
    reversed_nodes: frozenset[int]


def _skeleton(dag: Any) -> _Skeleton:
    """Build the stand-in circuit of a physical DAG (see the module docstring)."""
    qindex = {q: i for i, q in enumerate(dag.qubits)}
    cindex = {c: i for i, c in enumerate(dag.clbits)}
    circuit = Circuit(num_qubits=len(qindex), num_clbits=len(cindex))
    nodes = list(dag.topological_op_nodes())
    flipped: set[int] = set()
    for j, node in enumerate(nodes):
        op, qs = node.op, tuple(qindex[q] for q in node.qargs)
        cs = tuple(cindex[c] for c in node.cargs)
        tag = (float(j),)
        if op.name in ("measure", "reset", "barrier") and not isinstance(op, ControlFlowOp):
            circuit.add(Instruction(op.name, qs, tag, cs))
            continue
        # operations that touch classical bits (control flow) read the whole classical
        # register, so they keep their order against every measurement: conservative
        cond = Condition("c", 0) if cs else None
        if not 1 <= len(qs) <= 2:
            if isinstance(op, ControlFlowOp):
                raise TranspilerError(
                    f"qpuos routing cannot place {op.name!r} on {len(qs)} qubits; it routes "
                    "control flow on one or two qubits (use routing_method='sabre')")
            # like SabreSwap and CheckMap: a coupling map constrains pairs only, so a gate
            # on 3+ qubits keeps its order but is not placed (with a basis, Qiskit's init
            # stage has already decomposed it); same for 0-qubit ops (global phase)
            circuit.add(Instruction("barrier", qs, tag, (), cond))
            continue
        diag = _diagonal_on(op, len(qs))
        if len(qs) == 1:
            circuit.add(Instruction(_ONE_QUBIT[diag[0]], qs, tag, (), cond))
            continue
        if diag == (False, True):
            qs, diag = qs[::-1], (True, False)
            flipped.add(j)
        circuit.add(Instruction(_TWO_QUBIT[diag], qs, tag, (), cond))
    return _Skeleton(circuit, nodes, frozenset(flipped))


def _route_fixed(router: SabreRouter, circuit: Circuit) -> RoutedCircuit:
    """Route ``circuit`` from the identity layout, keeping the layout Qiskit chose."""
    identity = tuple(range(circuit.num_qubits))
    result = router.route(circuit, initial_layout=identity)
    if result.initial_layout != identity:
        raise TranspilerError("SabreRouter moved a given initial layout; this is a bug in "
                              "qpuos")
    return result


class QpuosSwap(TransformationPass):  # type: ignore[misc]  # Qiskit is untyped
    """Insert SWAPs with qpuos's ``SabreRouter``, keeping the layout already applied.

    The router and its distance tables are built once per pass, on first use.
    Deterministic: a given DAG, coupling map and seed give the same output.

    Args:
        coupling_map: the device's ``CouplingMap`` or a ``Target``; edges are used both ways.
        seed: seeds the router's tie-breaking; ``None`` means 0 (qpuos is always seeded).
        routing_trials: routings from the fixed layout, each with its own tie-break seed;
            the one with the fewest SWAPs wins.
    """

    def __init__(self, coupling_map: CouplingMap | Target, *, seed: int | None = None,
                 routing_trials: int = 8) -> None:
        super().__init__()
        if isinstance(coupling_map, Target):
            coupling_map = coupling_map.build_coupling_map()
        self.coupling_map = coupling_map
        self.seed = 0 if seed is None else int(seed) % (1 << 31)
        self.routing_trials = routing_trials
        self._router: SabreRouter | None = None

    def _get_router(self) -> SabreRouter:
        if self._router is None:
            cm = self.coupling_map
            edges = sorted({(min(a, b), max(a, b)) for a, b in cm.get_edges() if a != b})
            device = Device(name="qiskit-coupling-map", num_qubits=cm.size(),
                            edges=tuple(edges))
            options = RoutingOptions(seed=self.seed, routing_trials=self.routing_trials)
            self._router = SabreRouter(device, options)
        return self._router

    def run(self, dag: Any) -> Any:
        """Route ``dag`` (physical, full width) and record ``final_layout``.

        Raises:
            TranspilerError: no coupling map; the DAG is not a full-width physical
                circuit; it has classical variables or operations on 3+ qubits; or the
                router rejected it (the qpuos error is chained).
        """
        if self.coupling_map is None:
            raise TranspilerError("QpuosSwap cannot run with coupling_map=None")
        if len(dag.qregs) != 1 or dag.qregs.get("q", None) is None:
            raise TranspilerError("QpuosSwap runs on physical circuits only (after a "
                                  "layout stage)")
        width, size = dag.num_qubits(), self.coupling_map.size()
        if width != size:
            raise TranspilerError(
                f"circuit has {width} qubits but the coupling map has {size}; run a layout "
                "stage with ancilla allocation (FullAncillaAllocation, EnlargeWithAncilla, "
                "ApplyLayout) first")
        if dag.num_vars or dag.num_stretches:
            raise TranspilerError("qpuos routing does not support classical variables or "
                                  "stretches; use routing_method='sabre'")
        # 1. the stand-in circuit, 2. route it from the identity layout
        skel = _skeleton(dag)
        try:
            routed = _route_fixed(self._get_router(), skel.circuit)
        except QpuosError as exc:
            raise TranspilerError(f"qpuos routing failed: {type(exc).__name__}: {exc}"
                                  ) from exc
        # 3. replay: stand-ins become their original operations, SWAPs become SwapGate
        out = dag.copy_empty_like()
        qubits = dag.qubits
        emitted = 0
        for inst in routed.circuit.instructions:
            if not inst.params:  # only the router's SWAPs come without a node tag
                out.apply_operation_back(SwapGate(), (qubits[inst.qubits[0]],
                                                      qubits[inst.qubits[1]]), (),
                                         check=False)
                continue
            j = int(inst.params[-1])
            node = skel.nodes[j]
            phys = inst.qubits[::-1] if j in skel.reversed_nodes else inst.qubits
            out.apply_operation_back(node.op, tuple(qubits[p] for p in phys), node.cargs,
                                     check=False)
            emitted += 1
        if emitted != len(skel.nodes):
            raise TranspilerError(f"qpuos routing emitted {emitted} of {len(skel.nodes)} "
                                  "operations; this is a bug in qpuos")
        # 4. final_layout, composed with an earlier one as SabreSwap does
        layout = Layout(dict(zip(out.qubits, routed.final_layout, strict=True)))
        prev = self.property_set["final_layout"]
        self.property_set["final_layout"] = (layout if prev is None
                                             else prev.compose(layout, out.qubits))
        return out


def qpuos_routing_stage(pass_manager_config: Any, optimization_level: int | None = None
                        ) -> PassManager:
    """The routing stage for ``routing_method="qpuos"``, built like Qiskit's own plugins.

    ``CheckMap`` skips routing when the laid-out circuit already fits; a protection
    barrier goes before final measurements; from level 1 ``VF2PostLayout`` may then
    re-place the routed circuit (only with a ``Target``), as for ``routing_method="sabre"``.

    Args:
        pass_manager_config: Qiskit's ``PassManagerConfig`` (coupling map or target,
            ``seed_transpiler``, layout settings).
        optimization_level: 0 to 3; ``None`` means Qiskit's default, 2. Higher levels try
            more tie-break seeds.

    Returns:
        The routing-stage ``PassManager``.

    Raises:
        TranspilerError: ``optimization_level`` is not 0 to 3.

    >>> from qiskit import QuantumCircuit, transpile
    >>> from qiskit.transpiler import CouplingMap
    >>> qc = QuantumCircuit(3); _ = qc.cx(0, 2)
    >>> out = transpile(qc, coupling_map=CouplingMap.from_line(3), routing_method="qpuos",
    ...                 layout_method="trivial", seed_transpiler=1)
    >>> out.count_ops().get("swap", 0) + out.count_ops().get("cx", 0) >= 2
    True
    """
    level = 2 if optimization_level is None else optimization_level
    if level not in _ROUTING_TRIALS:
        raise TranspilerError(f"Invalid optimization level specified: {optimization_level}")
    target = pass_manager_config.target
    coupling_map = pass_manager_config.coupling_map
    routing_pass = QpuosSwap(target if coupling_map is None else coupling_map,
                             seed=pass_manager_config.seed_transpiler,
                             routing_trials=_ROUTING_TRIALS[level])
    if level == 0:
        return common.generate_routing_passmanager(
            routing_pass, target, coupling_map=coupling_map, seed_transpiler=-1,
            use_barrier_before_measurement=True)
    vf2_call_limit, vf2_max_trials = common.get_vf2_limits(
        level, pass_manager_config.layout_method, pass_manager_config.initial_layout)
    return common.generate_routing_passmanager(
        routing_pass, target, coupling_map=coupling_map, vf2_call_limit=vf2_call_limit,
        vf2_max_trials=vf2_max_trials, seed_transpiler=-1, check_trivial=level == 1,
        use_barrier_before_measurement=True)

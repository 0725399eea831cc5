"""Qiskit interop: circuits both ways, and ``transpile(..., routing_method="qpuos")``."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qiskit")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.classical import expr
from qiskit.circuit.library import ECRGate, UnitaryGate
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import Operator
from qiskit.transpiler import CouplingMap, TranspilerError
from qiskit.transpiler.preset_passmanagers.plugin import list_stage_plugins

from qpuos.errors import UsageError
from qpuos.quantum._qiskit_pass import QpuosSwap
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.gates import GATES
from qpuos.quantum.qiskit_interop import from_qiskit, to_qiskit
from qpuos.quantum.statevector import simulate

MAX_QUBITS = 5
# Our aliases come back under Qiskit's name: U -> u, CX -> cx, u0(t) -> id (u0 is an idle).
ALIASES = {"U": "u", "CX": "cx", "u0": "id"}
ANGLES = st.floats(min_value=-2 * math.pi, max_value=2 * math.pi, allow_nan=False)


def canonical(inst: Instruction) -> Instruction:
    """What ``from_qiskit(to_qiskit(...))`` should give back for ``inst``."""
    if inst.name == "u0":
        return Instruction("id", inst.qubits, (), inst.clbits, inst.condition)
    name = ALIASES.get(inst.name, inst.name)
    return Instruction(name, inst.qubits, inst.params, inst.clbits, inst.condition)


@st.composite
def gate_circuits(draw: Any, *, matrix_only: bool = False, max_gates: int = 12) -> Circuit:
    """Random circuits of our standard gates (any arity that fits)."""
    n = draw(st.integers(1, MAX_QUBITS))
    names = sorted(name for name, spec in GATES.items() if spec.num_qubits <= n
                   and (spec.matrix is not None or not matrix_only))
    c = Circuit(num_qubits=n)
    for _ in range(draw(st.integers(0, max_gates))):
        name = draw(st.sampled_from(names))
        spec = GATES[name]
        qubits = draw(st.permutations(range(n)))[:spec.num_qubits]
        c.append(name, qubits, draw(st.lists(ANGLES, min_size=spec.num_params,
                                             max_size=spec.num_params)))
    return c


@st.composite
def classical_circuits(draw: Any) -> Circuit:
    """Gates, measurements, resets, barriers and conditions over two classical registers."""
    n = draw(st.integers(1, 4))
    c = Circuit.with_registers([("a", 1), ("b", n - 1)] if n > 1 else [("a", 1)],
                               [("m", 2), ("flag", 1)])
    one_q = sorted(name for name, spec in GATES.items() if spec.num_qubits == 1)
    for _ in range(draw(st.integers(0, 10))):
        q = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(["gate", "measure", "reset", "barrier", "cond"]))
        if kind == "measure":
            c.append("measure", [q], clbits=[draw(st.integers(0, 2))])
        elif kind in ("reset", "barrier"):
            c.append(kind, [q] if kind == "reset" else range(n))
        else:
            name = draw(st.sampled_from(one_q))
            params = [0.25] * GATES[name].num_params
            cond = None
            if kind == "cond":
                creg = draw(st.sampled_from(["m", "flag"]))
                cond = Condition(creg, draw(st.integers(0, 3 if creg == "m" else 1)))
            c.append(name, [q], params, condition=cond)
    return c


def our_operator(c: Circuit) -> Operator:
    """The unitary of ``c`` from our simulator, in Qiskit's qubit order."""
    n = c.num_qubits
    cols = []
    for k in range(2**n):
        basis = np.zeros(2**n, dtype=np.complex128)
        basis[k] = 1.0
        cols.append(simulate(c, basis.reshape((2,) * n)).reshape(-1))
    # our qubit 0 is the top bit of the index, Qiskit's is the bottom one
    return Operator(np.array(cols).T).reverse_qargs()


# --- circuits both ways ----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(gate_circuits())
def test_round_trip_keeps_every_instruction(c: Circuit) -> None:
    back = from_qiskit(to_qiskit(c))
    assert back.qregs == c.qregs
    assert back.instructions == [canonical(i) for i in c.instructions]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gate_circuits(matrix_only=True))
def test_qiskit_and_qpuos_agree_on_the_unitary(c: Circuit) -> None:
    qc = to_qiskit(c)
    assert Operator(qc).equiv(our_operator(c))
    assert Operator(to_qiskit(from_qiskit(qc))).equiv(Operator(qc))


@settings(max_examples=100, deadline=None)
@given(classical_circuits())
def test_round_trip_keeps_registers_measurements_and_conditions(c: Circuit) -> None:
    qc = to_qiskit(c)
    conditioned = sum(1 for i in c.instructions if i.condition is not None)
    assert qc.count_ops().get("if_else", 0) == conditioned
    back = from_qiskit(qc)
    assert (back.qregs, back.cregs) == (c.qregs, c.cregs)
    assert back.instructions == [canonical(i) for i in c.instructions]


def test_condition_becomes_if_else_on_the_whole_register() -> None:
    c = Circuit.with_registers([("q", 2)], [("c", 2)])
    c.append("measure", [0], clbits=[0])
    c.append("x", [1], condition=Condition("c", 1))
    qc = to_qiskit(c)
    op = qc.data[-1].operation
    assert op.name == "if_else"
    assert op.condition == (qc.cregs[0], 1)
    assert from_qiskit(qc).instructions[-1] == Instruction("x", (1,), (),
                                                           condition=Condition("c", 1))


def test_if_else_body_on_two_qubits_keeps_its_condition() -> None:
    qr, cr = QuantumRegister(2, "q"), ClassicalRegister(2, "c")
    qc = QuantumCircuit(qr, cr)
    with qc.if_test((cr, 2)):
        qc.x(1)
        qc.cx(1, 0)
    cond = Condition("c", 2)
    assert from_qiskit(qc).instructions == [Instruction("x", (1,), (), (), cond),
                                            Instruction("cx", (1, 0), (), (), cond)]


def _unitary() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.append(UnitaryGate(np.eye(4)), [0, 1])
    return qc


def _ecr() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.append(ECRGate(), [0, 1])
    return qc


def _unbound() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.rx(Parameter("theta"), 0)
    return qc


def _unbound_expression() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.rz(2 * Parameter("phi"), 0)
    return qc


def _registers() -> tuple[QuantumCircuit, ClassicalRegister, ClassicalRegister]:
    cr, d = ClassicalRegister(2, "c"), ClassicalRegister(1, "d")
    return QuantumCircuit(QuantumRegister(2, "q"), cr, d), cr, d


def _on_clbit() -> QuantumCircuit:
    qc, cr, _ = _registers()
    with qc.if_test((cr[0], 1)):
        qc.x(0)
    return qc


def _with_else() -> QuantumCircuit:
    qc, cr, _ = _registers()
    with qc.if_test((cr, 1)) as orelse:
        qc.x(0)
    with orelse:
        qc.y(0)
    return qc


def _on_expression() -> QuantumCircuit:
    qc, cr, _ = _registers()
    with qc.if_test(expr.equal(cr, 3)):
        qc.x(0)
    return qc


def _nested() -> QuantumCircuit:
    qc, cr, d = _registers()
    with qc.if_test((cr, 1)), qc.if_test((d, 1)):
        qc.x(0)
    return qc


def _while() -> QuantumCircuit:
    qc, cr, _ = _registers()
    with qc.while_loop((cr, 1)):
        qc.x(0)
    return qc


@pytest.mark.parametrize(("build", "message"), [
    (_unitary, r"^Qiskit operation 'unitary' has no qpuos equivalent; "
               r"transpile it to standard gates first$"),
    (_ecr, r"^Qiskit operation 'ecr' has no qpuos equivalent; "
           r"transpile it to standard gates first$"),
    (_while, r"^Qiskit operation 'while_loop' has no qpuos equivalent; "
             r"transpile it to standard gates first$"),
    (_unbound, r"^gate 'rx' has unbound parameters; bind them first$"),
    (_unbound_expression, r"^gate 'rz' has unbound parameters; bind them first$"),
    (_on_clbit, r"^conditions on single clbits are not supported; "
                r"condition on a whole classical register$"),
    (_with_else, r"^if_else with an else branch has no OpenQASM 2 form; "
                 r"qpuos supports `if \(creg == n\)` only$"),
    (_on_expression, r"^if_else on a classical expression is not supported; "
                     r"condition on \(creg, value\)$"),
    (_nested, r"^nested if_else has no OpenQASM 2 form; "
              r"qpuos supports one `if \(creg == n\)` per instruction$"),
])
def test_from_qiskit_rejects_what_qpuos_cannot_express(build: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        from_qiskit(build())


# --- the routing plugin ----------------------------------------------------------------


def couplings(out: QuantumCircuit) -> set[tuple[int, int]]:
    """The (sorted) physical pairs of every two-qubit operation of ``out``."""
    pairs = set()
    for ci in out.data:
        if len(ci.qubits) == 2:
            a, b = (out.find_bit(q).index for q in ci.qubits)
            pairs.add((min(a, b), max(a, b)))
    return pairs


def equivalent(out: QuantumCircuit, qc: QuantumCircuit) -> bool:
    """``out`` implements ``qc`` (its ancillas idle), undoing the initial and final layout."""
    padded = QuantumCircuit(out.num_qubits)
    padded.compose(qc, range(qc.num_qubits), inplace=True)
    return bool(Operator.from_circuit(out).equiv(Operator(padded)))


def undirected(cm: CouplingMap) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in cm.get_edges()}


def run_qpuos(qc: QuantumCircuit, cm: CouplingMap, **kw: Any) -> tuple[QuantumCircuit,
                                                                          list[str]]:
    """``transpile`` with our routing; also returns the names of the passes that ran."""
    ran: list[str] = []
    out = transpile(qc, coupling_map=cm, routing_method="qpuos",
                    callback=lambda **k: ran.append(type(k["pass_"]).__name__), **kw)
    return out, ran


@st.composite
def routing_circuits(draw: Any) -> QuantumCircuit:
    """Random circuits of Qiskit standard gates on at most 6 qubits."""
    n = draw(st.integers(2, 6))
    qc = QuantumCircuit(n)
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["h", "rz", "sx", "cx", "cz", "cp", "swap", "ccx",
                                     "rzz"]))
        qs = draw(st.permutations(range(n)))
        angle = draw(ANGLES)
        if kind == "ccx" and n >= 3:
            qc.ccx(qs[0], qs[1], qs[2])
        elif kind in ("h", "sx"):
            getattr(qc, kind)(qs[0])
        elif kind == "rz":
            qc.rz(angle, qs[0])
        elif kind in ("cp", "rzz"):
            getattr(qc, kind)(angle, qs[0], qs[1])
        elif kind != "ccx":
            getattr(qc, kind)(qs[0], qs[1])
    return qc


def test_the_plugin_is_registered() -> None:
    assert "qpuos" in list_stage_plugins("routing")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routing_circuits(), st.sampled_from(["line", "ring"]), st.integers(0, 3),
       st.integers(0, 2**31 - 1))
def test_transpiled_circuit_is_on_the_map_and_equivalent(
        qc: QuantumCircuit, shape: str, level: int, seed: int) -> None:
    cm = (CouplingMap.from_line(6) if shape == "line" else CouplingMap.from_ring(6))
    out, ran = run_qpuos(qc, cm, optimization_level=level, seed_transpiler=seed)
    assert "SabreSwap" not in ran
    assert couplings(out) - undirected(cm) == set()
    assert equivalent(out, qc)


def test_qpuos_swap_does_the_routing_and_records_final_layout() -> None:
    qc = QuantumCircuit(4)
    qc.h(0)
    for t in (3, 2, 1, 3, 0):
        qc.cx(0 if t else 3, t or 1)
    cm = CouplingMap.from_line(4)
    out, ran = run_qpuos(qc, cm, layout_method="trivial", optimization_level=0,
                         seed_transpiler=7)
    assert "QpuosSwap" in ran
    assert out.count_ops().get("swap", 0) >= 1
    assert out.layout.final_layout is not None
    assert couplings(out) - undirected(cm) == set()
    assert equivalent(out, qc)


def test_same_seed_same_circuit() -> None:
    qc = QuantumCircuit(5)
    for a, b in [(0, 4), (1, 3), (2, 4), (0, 2), (1, 4), (3, 0)]:
        qc.cx(a, b)
    cm = CouplingMap.from_line(5)
    first = [run_qpuos(qc, cm, seed_transpiler=11)[0] for _ in range(2)]
    assert first[0] == first[1]


def test_directed_coupling_map_is_routed_then_fixed_up() -> None:
    qc = QuantumCircuit(4)
    qc.h(0)
    qc.cx(0, 3)
    qc.cx(3, 1)
    qc.cx(2, 0)
    cm = CouplingMap.from_line(4, bidirectional=False)
    out, _ = run_qpuos(qc, cm, basis_gates=["cx", "u"], seed_transpiler=3)
    directed = {tuple(e) for e in cm.get_edges()}
    cx_pairs = {tuple(out.find_bit(q).index for q in ci.qubits)
                for ci in out.data if ci.operation.name == "cx"}
    assert cx_pairs - directed == set()
    assert equivalent(out, qc)


def test_measurements_parameters_and_barriers_survive_routing() -> None:
    theta = Parameter("theta")
    qc = QuantumCircuit(4, 4)
    qc.h(0)
    qc.rz(theta, 3)
    qc.cx(0, 3)
    qc.cx(1, 3)
    qc.cx(2, 0)
    qc.measure(range(4), range(4))
    cm = CouplingMap.from_ring(5)
    out, ran = run_qpuos(qc, cm, layout_method="trivial", optimization_level=1,
                         seed_transpiler=5)
    assert "QpuosSwap" in ran
    assert couplings(out) - undirected(cm) == set()
    assert out.count_ops().get("measure") == 4
    assert out.parameters == {theta}
    # the protection barrier Qiskit puts before final measurements is filtered by label
    assert "barrier" not in out.count_ops()
    bound = qc.assign_parameters({theta: 0.3}).remove_final_measurements(inplace=False)
    routed = out.assign_parameters({theta: 0.3}).remove_final_measurements(inplace=False)
    assert equivalent(routed, bound)


def test_conditional_gates_are_routed_with_their_condition() -> None:
    qr, cr = QuantumRegister(3, "q"), ClassicalRegister(1, "c")
    qc = QuantumCircuit(qr, cr)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((cr, 1)):
        qc.cx(0, 2)
    cm = CouplingMap.from_line(3)
    out, _ = run_qpuos(qc, cm, layout_method="trivial", optimization_level=0,
                       seed_transpiler=1)
    assert couplings(out) - undirected(cm) == set()
    assert out.count_ops().get("if_else") == 1


def test_works_with_a_target_and_vf2_post_layout() -> None:
    backend = GenericBackendV2(num_qubits=6, coupling_map=CouplingMap.from_line(6).get_edges(),
                               seed=1)
    qc = QuantumCircuit(5)
    qc.h(0)
    for a, b in [(0, 4), (4, 2), (1, 3), (3, 0), (2, 1)]:
        qc.cx(a, b)
    out = transpile(qc, backend, routing_method="qpuos", optimization_level=2,
                    seed_transpiler=2)
    assert couplings(out) - undirected(backend.coupling_map) == set()
    assert equivalent(out, qc)


def test_pass_rejects_a_dag_that_was_not_laid_out() -> None:
    from qiskit.converters import circuit_to_dag

    qc = QuantumCircuit(QuantumRegister(2, "data"))
    qc.cx(0, 1)
    with pytest.raises(TranspilerError) as info:
        QpuosSwap(CouplingMap.from_line(2)).run(circuit_to_dag(qc))
    assert info.value.message == "QpuosSwap runs on physical circuits only (after a layout stage)"


def test_pass_translates_router_errors() -> None:
    from qiskit.converters import circuit_to_dag

    cm = CouplingMap([[0, 1], [2, 3]])  # two components: SabreRouter refuses it
    qc = QuantumCircuit(4)
    qc.cx(0, 3)
    with pytest.raises(TranspilerError) as info:
        QpuosSwap(cm).run(circuit_to_dag(qc))
    assert re.match(r"^qpuos routing failed: TopologyError: device 'qiskit-coupling-map' is "
                    r"not connected; routing needs a connected coupling graph$",
                    info.value.message)
    assert type(info.value.__cause__).__name__ == "TopologyError"


def test_gates_on_three_qubits_and_global_phase_pass_through_unplaced() -> None:
    from qiskit.circuit.library import GlobalPhaseGate

    qc = QuantumCircuit(4)
    qc.h(0)
    qc.cx(0, 3)
    qc.ccx(0, 1, 3)  # no basis given: Qiskit keeps it, and CheckMap checks pairs only
    qc.append(GlobalPhaseGate(0.4), [])
    qc.cx(3, 1)
    cm = CouplingMap.from_line(5)
    out, ran = run_qpuos(qc, cm, layout_method="trivial", optimization_level=0,
                         seed_transpiler=2)
    assert "QpuosSwap" in ran
    assert out.count_ops().get("ccx") == 1
    assert couplings(out) - undirected(cm) == set()
    assert equivalent(out, qc)


def test_control_flow_on_three_qubits_is_refused_clearly() -> None:
    qr, cr = QuantumRegister(3, "q"), ClassicalRegister(1, "c")
    qc = QuantumCircuit(qr, cr)
    qc.measure(0, 0)
    with qc.if_test((cr, 1)):
        qc.cx(0, 2)
        qc.x(1)
    with pytest.raises(TranspilerError) as info:
        transpile(qc, coupling_map=CouplingMap.from_line(3), routing_method="qpuos",
                  layout_method="trivial", optimization_level=0)
    assert info.value.message == ("qpuos routing cannot place 'if_else' on 3 qubits; it routes "
                                  "control flow on one or two qubits (use "
                                  "routing_method='sabre')")

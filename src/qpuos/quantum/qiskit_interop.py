"""Qiskit interop (extra ``qpuos[qiskit]``): circuits both ways, and a routing plugin.

- ``to_qiskit(circuit)`` / ``from_qiskit(qc)`` convert between our IR and
  ``QuantumCircuit``. Gate names map one to one (our ``u`` is Qiskit's ``UGate``, ...).
  Qiskit's ``if_else`` with an empty false branch becomes conditional instructions.
- ``QpuosRoutingPlugin`` is registered under the ``qiskit.transpiler.routing`` entry point
  as ``qpuos``, so ``transpile(qc, coupling_map=cm, routing_method="qpuos")`` routes with
  qpuos's SABRE-class router (after Qiskit's own layout stage).

Qiskit is imported lazily: importing this module without it installed works, calling it
raises a ``UsageError`` naming the extra to install.
"""

from __future__ import annotations

import math
from typing import Any

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.gates import GATES

__all__ = ["QpuosRoutingPlugin", "from_qiskit", "to_qiskit"]

# Our name <-> Qiskit's standard-gate name, where they differ.
_TO_QISKIT = {"U": "u", "CX": "cx", "u0": "id", "c3x": "mcx", "c4x": "mcx",
              "rc3x": "rcccx", "c3sqrtx": "c3sx"}
_FROM_QISKIT = {"rcccx": "rc3x", "c3sx": "c3sqrtx"}


def _qiskit() -> Any:
    try:
        import qiskit
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise UsageError("Qiskit interop needs the 'qiskit' extra: "
                         "pip install 'qpuos[qiskit]'") from exc
    return qiskit


def _standard_gate_factory() -> dict[str, Any]:
    from qiskit.circuit.library import standard_gates as sg

    table = sg.get_standard_gate_name_mapping()
    return {name: type(gate) for name, gate in table.items()}


def to_qiskit(circuit: Circuit) -> Any:
    """Build an equivalent ``QuantumCircuit`` with the same registers."""
    qk = _qiskit()
    from qiskit.circuit import ClassicalRegister, QuantumRegister

    qregs = [QuantumRegister(r.size, r.name) for r in circuit.qregs]
    cregs = {r.name: ClassicalRegister(r.size, r.name) for r in circuit.cregs}
    qc = qk.QuantumCircuit(*qregs, *cregs.values())
    qubits, clbits = qc.qubits, qc.clbits
    classes = _standard_gate_factory()
    for inst in circuit.instructions:
        qs = [qubits[q] for q in inst.qubits]
        if inst.name == "barrier":
            qc.barrier(*qs)
            continue
        if inst.name == "measure":
            op: Any = qk.circuit.Measure()
            cs = [clbits[c] for c in inst.clbits]
        elif inst.name == "reset":
            op, cs = qk.circuit.Reset(), []
        else:
            op = _qiskit_gate(inst, classes)
            cs = []
        if inst.condition is None:
            qc.append(op, qs, cs)
        else:
            with qc.if_test((cregs[inst.condition.creg], inst.condition.value)):
                qc.append(op, qs, cs)
    return qc


def _qiskit_gate(inst: Instruction, classes: dict[str, Any]) -> Any:
    from qiskit.circuit.library import C3XGate, C4XGate, IGate

    if inst.name == "u0":
        return IGate()
    if inst.name == "c3x":
        return C3XGate()
    if inst.name == "c4x":
        return C4XGate()
    name = _TO_QISKIT.get(inst.name, inst.name)
    if name not in classes:
        raise UsageError(f"no Qiskit gate for {inst.name!r}; decompose it first")
    return classes[name](*inst.params)


def from_qiskit(qc: Any) -> Circuit:
    """Convert a ``QuantumCircuit`` of standard gates into our IR.

    Raises:
        UsageError: an operation has no qpuos equivalent (name it, with the fix).
    """
    out = Circuit.with_registers([(r.name, r.size) for r in qc.qregs],
                                 [(r.name, r.size) for r in qc.cregs])
    if out.num_qubits != qc.num_qubits or out.num_clbits != qc.num_clbits:
        # bits outside registers: fall back to one register of each kind
        out = Circuit(num_qubits=qc.num_qubits, num_clbits=qc.num_clbits)
    _append_all(out, qc, qc.data, None, {r.name for r in out.cregs})
    return out


def _append_all(out: Circuit, qc: Any, data: Any, cond: Condition | None,
                creg_names: set[str]) -> None:
    for ci in data:
        op = ci.operation
        qs = [qc.find_bit(q).index for q in ci.qubits]
        cs = [qc.find_bit(c).index for c in ci.clbits]
        name = op.name
        if name == "if_else":
            if cond is not None:
                raise UsageError("nested if_else has no OpenQASM 2 form; qpuos supports one "
                                 "`if (creg == n)` per instruction")
            if not isinstance(op.condition, tuple):
                raise UsageError("if_else on a classical expression is not supported; "
                                 "condition on (creg, value)")
            target, value = op.condition
            if op.blocks[1:] and op.blocks[1] is not None and len(op.blocks[1].data):
                raise UsageError("if_else with an else branch has no OpenQASM 2 form; "
                                 "qpuos supports `if (creg == n)` only")
            if getattr(target, "name", None) not in creg_names or not hasattr(target, "size"):
                raise UsageError("conditions on single clbits are not supported; "
                                 "condition on a whole classical register")
            body = op.blocks[0]
            inner = [_remap(ci2, body, ci.qubits, ci.clbits) for ci2 in body.data]
            _append_all(out, qc, inner, Condition(target.name, int(value)), creg_names)
            continue
        if name in ("measure", "reset", "barrier"):
            out.add(Instruction(name, tuple(qs), (), tuple(cs), cond))
            continue
        if name == "delay":
            continue
        ours = _FROM_QISKIT.get(name, name)
        if name == "mcx":
            ours = {4: "c3x", 5: "c4x"}.get(len(qs), name)
        if ours not in GATES:
            raise UsageError(f"Qiskit operation {name!r} has no qpuos equivalent; "
                             "transpile it to standard gates first")
        try:
            params = tuple(float(p) for p in op.params)
        except TypeError as exc:  # a ParameterExpression with free parameters
            raise UsageError(f"gate {name!r} has unbound parameters; bind them first"
                             ) from exc
        if any(math.isnan(p) for p in params):
            raise UsageError(f"gate {name!r} has unbound parameters; bind them first")
        out.add(Instruction(ours, tuple(qs), params, (), cond))


def _remap(ci: Any, body: Any, outer_qubits: Any, outer_clbits: Any) -> Any:
    """Rewrite an instruction of a control-flow block onto the outer circuit's bits."""
    qmap = dict(zip(body.qubits, outer_qubits, strict=True))
    cmap = dict(zip(body.clbits, outer_clbits, strict=True))
    return ci.replace(qubits=[qmap[q] for q in ci.qubits],
                      clbits=[cmap[c] for c in ci.clbits])


class QpuosRoutingPlugin:
    """Qiskit routing-stage plugin: ``routing_method="qpuos"``.

    The returned pass manager routes the laid-out circuit with ``SabreRouter`` keeping
    Qiskit's chosen layout, and records ``final_layout`` in the property set the way
    Qiskit's routing passes do.
    """

    def pass_manager(self, pass_manager_config: Any, optimization_level: int | None = None
                     ) -> Any:
        """Build the routing stage for Qiskit's staged pass manager."""
        from qpuos.quantum._qiskit_pass import qpuos_routing_stage

        return qpuos_routing_stage(pass_manager_config, optimization_level)

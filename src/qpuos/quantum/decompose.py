"""Expand gates on three or more qubits into gates on at most two.

Routing places two-qubit gates on coupled pairs; it cannot place a Toffoli. This pass
replaces every standard gate on 3+ qubits (``ccx``, ``cswap``, ``rccx``, ``rc3x``,
``c3x``, ``c3sqrtx``, ``c4x``) by the body of its definition in qpuos's packaged
``qelib1.inc``, recursively, until no gate touches more than two qubits.

The definitions are exact: the expansion of ``ccx``, ``cswap``, ``c3x``, ``c3sqrtx`` and
``c4x`` has exactly the gate's matrix (no global or relative phase). ``rccx`` and
``rc3x`` *are* the relative-phase Toffolis; their definition is their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from qpuos.errors import QpuosInternalError, UsageError
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.qasm import GateDefinition, _library_definitions

__all__ = ["decompose_multiqubit", "standard_definitions"]

# Definitions only reference earlier gates of qelib1.inc, so recursion ends; this bound
# turns a broken library into a clear error instead of a RecursionError.
_MAX_DEPTH = 16


def standard_definitions() -> Mapping[str, GateDefinition]:
    """The definitions of ``qelib1.inc``'s gates, by name (parsed once, read-only).

    Each body calls only earlier standard gates (``U`` and ``CX`` appear as ``u`` and
    ``cx``).

    >>> [(op[0], op[1]) for op in standard_definitions()["cswap"].body]
    [('cx', (2, 1)), ('ccx', (0, 1, 2)), ('cx', (2, 1))]
    """
    return MappingProxyType(_library_definitions())


def decompose_multiqubit(circuit: Circuit) -> Circuit:
    """A copy of ``circuit`` in which every gate acts on at most two qubits.

    Gates on one or two qubits and all directives (barriers included, whatever their
    width) are kept as they are. A conditional gate becomes conditional pieces with the
    same condition.

    >>> c = Circuit(num_qubits=3); c.append("ccx", [0, 1, 2])
    >>> out = decompose_multiqubit(c)
    >>> max(len(i.qubits) for i in out), out.count_ops()["cx"]
    (2, 6)

    Raises:
        UsageError: a 3+-qubit gate has no definition (not a standard gate).
    """
    definitions = _library_definitions()
    out = circuit.copy_empty()
    pieces: list[Instruction] = []
    for inst in circuit.instructions:
        if len(inst.qubits) <= 2 or not inst.is_gate:
            pieces.append(inst)
        else:
            _expand(inst, definitions, pieces, 0)
    out.instructions = pieces
    return out


def _expand(inst: Instruction, definitions: dict[str, GateDefinition],
            into: list[Instruction], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise QpuosInternalError(f"expanding {inst.name!r} did not end after {_MAX_DEPTH} "
                                 "levels; qelib1.inc is broken (this is a bug)")
    definition = definitions.get(inst.name)
    if definition is None:
        raise UsageError(f"gate {inst.name!r} on {len(inst.qubits)} qubits has no "
                         "definition to decompose it by")
    for piece in definition.instantiate(inst.qubits, inst.params, inst.condition):
        if len(piece.qubits) <= 2 or not piece.is_gate:
            into.append(piece)
        else:
            _expand(piece, definitions, into, depth + 1)

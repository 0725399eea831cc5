"""Duration-aware ASAP and ALAP scheduling: every instruction gets a start time in ns.

Durations come from the device's figures through a :class:`DurationModel`:

- a one-qubit gate costs what its native decomposition costs: Z-diagonal gates are virtual
  (``rz``, usually 0 ns), an X-like gate one ``x``, a gate with ``|U00| = 1/sqrt 2`` one
  ``sx``, anything else two ``sx`` (the ``rz sx rz sx rz`` form). The class of a gate is
  read off its matrix, so ``h``, ``u2`` and ``u(pi/2, ...)`` cost the same however written;
- a two-qubit gate costs its count of native two-qubit gates times that edge's duration
  (per-edge figure when the device gives one, else the typical one), plus its one-qubit
  layers (``swap`` = 3 native, ``cp`` = 2, ...);
- ``measure`` and ``reset`` use the device figures; ``barrier`` takes no time but aligns
  its qubits.

Where a device gives no figures, nominal ones are used (see ``NOMINAL_NS``) and the model
says so (``nominal``), so makespans stay comparable between compilers on that device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.gates import gate_matrix

__all__ = [
    "NOMINAL_NS",
    "DurationModel",
    "Schedule",
    "ScheduledOp",
    "schedule",
]

#: Figures used when a device gives none (ns). Typical of superconducting hardware.
NOMINAL_NS: Mapping[str, float] = {
    "sx": 50.0, "x": 50.0, "rz": 0.0, "2q": 300.0, "measure": 1000.0, "reset": 1000.0,
}

#: Native two-qubit gates and one-qubit layers in each standard two-qubit gate.
_TWO_QUBIT_COST: Mapping[str, tuple[int, int]] = {
    "cx": (1, 0), "CX": (1, 0), "cz": (1, 0), "cy": (1, 0), "ch": (1, 2),
    "swap": (3, 0), "crz": (2, 0), "cp": (2, 0), "cu1": (2, 0), "rzz": (2, 0),
    "crx": (2, 2), "cry": (2, 2), "cu3": (2, 2), "cu": (2, 2), "csx": (2, 2),
    "rxx": (2, 2),
}


class _DeviceFigures(Protocol):
    @property
    def gate_durations_ns(self) -> Mapping[str, float]: ...

    @property
    def typical_two_qubit_duration_ns(self) -> float | None: ...

    def two_qubit_duration_ns(self, a: int, b: int) -> float | None: ...


@lru_cache(maxsize=8192)
def _one_qubit_class(name: str, params: tuple[float, ...]) -> str:
    """'virtual', 'x', 'sx' or 'u': how a one-qubit gate maps onto native pulses."""
    m = gate_matrix(name, params)
    a00 = abs(m[0, 0])
    if abs(m[0, 1]) < 1e-9:
        return "virtual"
    if a00 < 1e-9:
        return "x"
    if abs(a00 - math.sqrt(0.5)) < 1e-9:
        return "sx"
    return "u"


@dataclass(frozen=True, slots=True)
class DurationModel:
    """Gate durations for one device, in ns.

    Attributes:
        sx_ns, x_ns, rz_ns, measure_ns, reset_ns: one-qubit figures.
        two_qubit_ns: the typical native two-qubit gate.
        edge_ns: per-edge native two-qubit durations where the device gives them.
        nominal: True when the device gave no figures and ``NOMINAL_NS`` was used.
    """

    sx_ns: float = NOMINAL_NS["sx"]
    x_ns: float = NOMINAL_NS["x"]
    rz_ns: float = NOMINAL_NS["rz"]
    two_qubit_ns: float = NOMINAL_NS["2q"]
    measure_ns: float = NOMINAL_NS["measure"]
    reset_ns: float = NOMINAL_NS["reset"]
    edge_ns: Mapping[tuple[int, int], float] = field(default_factory=dict)
    nominal: bool = True

    @classmethod
    def from_device(cls, device: _DeviceFigures, edges: Sequence[tuple[int, int]] = ()
                    ) -> DurationModel:
        """Read a device's figures, falling back to nominal ones where it has none.

        The typical two-qubit figure is the device's own (``native_2q``, else ``cx``,
        ``ecr``, ``cz``, else the first ``2q...`` key); a one-qubit pulse is ``sx``, else
        ``x``, ``u2`` or ``1q``. Two-qubit gates are counted in CX equivalents of that
        native gate.
        """
        g = device.gate_durations_ns
        typical_2q = device.typical_two_qubit_duration_ns
        edge_ns: dict[tuple[int, int], float] = {}
        for a, b in edges:
            d = device.two_qubit_duration_ns(a, b)
            if d is not None and d != typical_2q:
                edge_ns[(min(a, b), max(a, b))] = d
        pulse = next((g[k] for k in ("sx", "x", "u2", "1q") if k in g), None)
        sx = pulse if pulse is not None else NOMINAL_NS["sx"]
        return cls(
            sx_ns=sx,
            x_ns=g.get("x", sx),
            rz_ns=g.get("rz", NOMINAL_NS["rz"]),
            two_qubit_ns=typical_2q if typical_2q is not None else NOMINAL_NS["2q"],
            measure_ns=g.get("measure", NOMINAL_NS["measure"]),
            reset_ns=g.get("reset", NOMINAL_NS["reset"]),
            edge_ns=edge_ns,
            nominal=typical_2q is None and not edge_ns and pulse is None,
        )

    def native_two_qubit_ns(self, a: int, b: int) -> float:
        """Duration of one native two-qubit gate on edge ``(a, b)``."""
        return self.edge_ns.get((min(a, b), max(a, b)), self.two_qubit_ns)

    def one_qubit_ns(self, inst: Instruction) -> float:
        """Duration of a one-qubit gate, from its native decomposition."""
        kind = _one_qubit_class(inst.name, inst.params)
        if kind == "virtual":
            return self.rz_ns
        if kind == "x":
            return self.x_ns
        if kind == "sx":
            return self.sx_ns
        return 2 * self.sx_ns

    @staticmethod
    def two_qubit_cost(name: str) -> tuple[int, int]:
        """``(native two-qubit gates, one-qubit layers)`` of a standard two-qubit gate."""
        return _TWO_QUBIT_COST.get(name, (2, 2))

    def duration_ns(self, inst: Instruction) -> float:
        """Duration of ``inst`` whose qubits are physical qubits of the device."""
        if inst.name == "barrier":
            return 0.0
        if inst.name == "measure":
            return self.measure_ns
        if inst.name == "reset":
            return self.reset_ns
        if len(inst.qubits) == 1:
            return self.one_qubit_ns(inst)
        if len(inst.qubits) == 2:
            n2q, layers = self.two_qubit_cost(inst.name)
            return n2q * self.native_two_qubit_ns(*inst.qubits) + layers * self.sx_ns
        raise UsageError(f"cannot time {inst.name!r} on {len(inst.qubits)} qubits; "
                         "decompose gates on 3+ qubits first")


@dataclass(frozen=True, slots=True)
class ScheduledOp:
    """One instruction of a schedule: its index in the circuit, start and duration (ns)."""

    index: int
    start_ns: float
    duration_ns: float

    @property
    def end_ns(self) -> float:
        """When it finishes."""
        return self.start_ns + self.duration_ns


@dataclass(frozen=True, slots=True)
class Schedule:
    """A timed circuit: ``ops[i]`` times ``circuit.instructions[i]``."""

    circuit: Circuit
    ops: tuple[ScheduledOp, ...]
    makespan_ns: float
    policy: str


def _asap_starts(instructions: Sequence[Instruction], num_qubits: int, num_clbits: int,
                 durations: Sequence[float],
                 clbits_of: Callable[[Instruction], Sequence[int]]) -> list[float]:
    qfree = [0.0] * num_qubits
    cfree = [0.0] * num_clbits
    starts: list[float] = []
    for inst, dur in zip(instructions, durations, strict=True):
        cbits = clbits_of(inst)
        t = max([qfree[q] for q in inst.qubits] + [cfree[c] for c in cbits], default=0.0)
        starts.append(t)
        for q in inst.qubits:
            qfree[q] = t + dur
        for c in cbits:
            cfree[c] = t + dur
    return starts


def schedule(circuit: Circuit, model: DurationModel, *,
             policy: Literal["asap", "alap"] = "alap") -> Schedule:
    """Give every instruction a start time.

    ASAP starts each operation as soon as its qubits and clbits are free; ALAP starts it
    as late as possible without delaying the end (so qubits idle in ``|0>`` rather than
    after their state is prepared). Both have the same makespan.

    >>> c = Circuit(num_qubits=2)
    >>> c.append("x", [0]); c.append("cx", [0, 1])
    >>> s = schedule(c, DurationModel(), policy="alap")
    >>> s.makespan_ns, [op.start_ns for op in s.ops]
    (350.0, [0.0, 50.0])
    """
    if policy not in ("asap", "alap"):
        raise UsageError(f"unknown scheduling policy {policy!r}; use 'asap' or 'alap'")
    insts = circuit.instructions
    durations = [model.duration_ns(i) for i in insts]
    creg_bits = {r.name: tuple(r.bits) for r in circuit.cregs}

    def clbits_of(inst: Instruction) -> Sequence[int]:
        if inst.condition is None:
            return inst.clbits
        return inst.clbits + creg_bits[inst.condition.creg]

    if policy == "asap":
        starts = _asap_starts(insts, circuit.num_qubits, circuit.num_clbits, durations,
                              clbits_of)
    else:
        rev = _asap_starts(insts[::-1], circuit.num_qubits, circuit.num_clbits,
                           durations[::-1], clbits_of)[::-1]
        span = max((s + d for s, d in zip(rev, durations, strict=True)), default=0.0)
        starts = [span - (s + d) for s, d in zip(rev, durations, strict=True)]
    ops = tuple(ScheduledOp(i, s, d) for i, (s, d) in enumerate(zip(starts, durations,
                                                                      strict=True)))
    makespan = max((op.end_ns for op in ops), default=0.0)
    return Schedule(circuit, ops, makespan, policy)

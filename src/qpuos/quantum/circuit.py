"""The circuit IR: a flat list of instructions on integer qubits and clbits.

Registers exist only to name bits: a circuit with ``qreg a[2]; qreg b[3];`` has qubits
0..4, ``a[1]`` being qubit 1 and ``b[0]`` qubit 2. Instructions are immutable, so
passes build new circuits instead of editing old ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from qpuos.errors import UsageError
from qpuos.quantum.gates import DIRECTIVES, GATES

__all__ = ["Circuit", "Condition", "Instruction", "Register"]


@dataclass(frozen=True, slots=True)
class Register:
    """A named run of bits; ``start`` is the index of its first bit in the circuit."""

    name: str
    size: int
    start: int = 0

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.size:
            raise IndexError(f"{self.name}[{i}] is out of range (size {self.size})")
        return self.start + i

    @property
    def bits(self) -> range:
        """The circuit-wide indices of this register's bits."""
        return range(self.start, self.start + self.size)


@dataclass(frozen=True, slots=True)
class Condition:
    """``if(creg == value)``: run only when the classical register holds ``value``."""

    creg: str
    value: int


@dataclass(frozen=True, slots=True)
class Instruction:
    """One operation: a gate, ``measure``, ``reset`` or ``barrier``.

    Attributes:
        name: a standard gate name (see ``gates.GATES``) or a directive.
        qubits: the qubits it acts on, in the gate's argument order.
        params: real parameters, already evaluated.
        clbits: for ``measure``, the bit written.
        condition: classical condition, or ``None``.
    """

    name: str
    qubits: tuple[int, ...]
    params: tuple[float, ...] = ()
    clbits: tuple[int, ...] = ()
    condition: Condition | None = None

    @property
    def is_gate(self) -> bool:
        """True for unitary gates, False for directives (measure, reset, barrier)."""
        return self.name not in DIRECTIVES

    @property
    def is_two_qubit_gate(self) -> bool:
        """True for a unitary gate on exactly two qubits (what routing must place)."""
        return len(self.qubits) == 2 and self.name not in DIRECTIVES

    def with_qubits(self, qubits: Sequence[int]) -> Instruction:
        """The same operation on other qubits (used to relabel onto physical qubits)."""
        return Instruction(self.name, tuple(qubits), self.params, self.clbits, self.condition)


@dataclass(slots=True)
class Circuit:
    """A quantum circuit: registers plus an ordered list of instructions.

    Build one with ``Circuit.with_registers`` or ``Circuit(num_qubits=n)`` (one register
    ``q[n]``), then ``append``.

    >>> c = Circuit(num_qubits=2)
    >>> c.append("h", [0]); c.append("cx", [0, 1])
    >>> c.count_ops()
    {'h': 1, 'cx': 1}
    """

    num_qubits: int = 0
    num_clbits: int = 0
    qregs: list[Register] = field(default_factory=list)
    cregs: list[Register] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.qregs and self.num_qubits:
            self.qregs = [Register("q", self.num_qubits, 0)]
        if not self.cregs and self.num_clbits:
            self.cregs = [Register("c", self.num_clbits, 0)]

    @classmethod
    def with_registers(cls, qregs: Iterable[tuple[str, int]],
                       cregs: Iterable[tuple[str, int]] = ()) -> Circuit:
        """A circuit whose bits are laid out register after register, in order."""
        qr: list[Register] = []
        cr: list[Register] = []
        n = 0
        for name, size in qregs:
            qr.append(Register(name, size, n))
            n += size
        m = 0
        for name, size in cregs:
            cr.append(Register(name, size, m))
            m += size
        return cls(num_qubits=n, num_clbits=m, qregs=qr, cregs=cr)

    def copy_empty(self, *, num_qubits: int | None = None) -> Circuit:
        """A circuit with the same classical registers and no instructions.

        With ``num_qubits``, the quantum registers become one register ``q`` of that size
        (the shape of a routed circuit over physical qubits).
        """
        if num_qubits is None:
            return Circuit(self.num_qubits, self.num_clbits, list(self.qregs),
                           list(self.cregs), [])
        return Circuit(num_qubits, self.num_clbits, [Register("q", num_qubits, 0)],
                       list(self.cregs), [])

    def creg(self, name: str) -> Register:
        """The classical register called ``name``."""
        for r in self.cregs:
            if r.name == name:
                return r
        raise UsageError(f"circuit has no classical register {name!r}")

    def append(self, name: str, qubits: Sequence[int], params: Sequence[float] = (),
               clbits: Sequence[int] = (), condition: Condition | None = None) -> None:
        """Append one operation, checking bit indices and gate arity."""
        self.add(Instruction(name, tuple(qubits), tuple(float(p) for p in params),
                             tuple(clbits), condition))

    def add(self, inst: Instruction) -> None:
        """Append an already built instruction, checking it against this circuit."""
        for q in inst.qubits:
            if not 0 <= q < self.num_qubits:
                raise UsageError(f"{inst.name}: qubit {q} out of range 0..{self.num_qubits - 1}")
        for b in inst.clbits:
            if not 0 <= b < self.num_clbits:
                raise UsageError(f"{inst.name}: clbit {b} out of range 0..{self.num_clbits - 1}")
        if len(set(inst.qubits)) != len(inst.qubits):
            raise UsageError(f"{inst.name}: repeated qubit in {list(inst.qubits)}")
        spec = GATES.get(inst.name)
        if spec is not None and (spec.num_qubits != len(inst.qubits)
                                 or spec.num_params != len(inst.params)):
            raise UsageError(
                f"{inst.name} takes {spec.num_qubits} qubits and {spec.num_params} parameters, "
                f"got {len(inst.qubits)} and {len(inst.params)}")
        if spec is None and inst.name not in DIRECTIVES:
            raise UsageError(f"unknown operation {inst.name!r}")
        self.instructions.append(inst)

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self.instructions)

    def __len__(self) -> int:
        return len(self.instructions)

    def count_ops(self) -> dict[str, int]:
        """How many of each operation, in order of first appearance."""
        return dict(Counter(i.name for i in self.instructions))

    @property
    def num_two_qubit_gates(self) -> int:
        """Number of unitary gates on two qubits (SWAPs included)."""
        return sum(1 for i in self.instructions if i.is_two_qubit_gate)

    def depth(self, *, two_qubit_only: bool = False) -> int:
        """Longest chain of operations on shared bits (barriers do not count).

        With ``two_qubit_only`` only two-qubit gates add to the length, which is the
        usual "2q depth".
        """
        qlevel = [0] * self.num_qubits
        clevel = [0] * self.num_clbits
        best = 0
        for inst in self.instructions:
            cbits = self._clbits_touched(inst)
            level = max([qlevel[q] for q in inst.qubits] + [clevel[c] for c in cbits],
                        default=0)
            counts = inst.name != "barrier" and (not two_qubit_only or inst.is_two_qubit_gate)
            level += 1 if counts else 0
            for q in inst.qubits:
                qlevel[q] = level
            for c in cbits:
                clevel[c] = level
            best = max(best, level)
        return best

    def _clbits_touched(self, inst: Instruction) -> tuple[int, ...]:
        if inst.condition is None:
            return inst.clbits
        return inst.clbits + tuple(self.creg(inst.condition.creg).bits)

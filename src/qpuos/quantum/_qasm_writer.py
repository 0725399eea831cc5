"""OpenQASM 2.0 writer: a ``Circuit`` as text that ``parse_qasm`` reads back equal.

Split out of ``qasm.py``, which re-exports ``dump_qasm`` and ``save_qasm``: writing shares
no state with the parser, only the promise that the output parses back bit-exactly.

Design notes:

* A parameter is written as ``k*pi/d`` only when that text, evaluated the way the parser
  evaluates it, gives exactly the same float (``pi_forms``); otherwise ``repr``, which
  round-trips. So output is readable where it can be and exact always.
* Everything that cannot be written raises before any text is produced, so
  ``save_qasm`` never leaves a partial file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cache

from qpuos._atomic import atomic_write_text
from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Register
from qpuos.quantum.gates import DIRECTIVES, GATES

__all__ = ["dump_qasm", "save_qasm"]


@cache
def pi_forms() -> dict[float, str]:
    """Exact floats of ``k*pi/d`` for small k, d, and the text that parses back to each."""
    forms: dict[float, str] = {}
    for den in range(1, 65):
        for mag in range(1, 4 * den + 1):
            if math.gcd(mag, den) != 1:
                continue
            for num in (mag, -mag):
                # Evaluated as the parser does: unary minus binds to the first factor.
                if abs(num) == 1:
                    text, value = ("pi" if num == 1 else "-pi"), num * math.pi
                else:
                    text, value = f"{num}*pi", float(num) * math.pi
                if den != 1:
                    text, value = f"{text}/{den}", value / den
                forms.setdefault(value, text)
    return forms


def _format_param(x: float) -> str:
    if not math.isfinite(x):
        raise UsageError(f"parameter {x!r} cannot be written in OpenQASM")
    return pi_forms().get(x) or repr(float(x))


def _bit_names(regs: Sequence[Register], n: int, kind: str) -> list[str]:
    names = [""] * n
    for r in regs:
        for k in range(r.size):
            if not 0 <= r.start + k < n or names[r.start + k]:
                raise UsageError(f"{kind} register {r.name!r} does not fit the circuit's "
                                 f"{n} bits or overlaps another register")
            names[r.start + k] = f"{r.name}[{k}]"
    if "" in names:
        raise UsageError(f"{kind} bit {names.index('')} belongs to no register")
    return names


def dump_qasm(circuit: Circuit) -> str:
    """Write a circuit as OpenQASM 2.0 that ``parse_qasm`` reads back equal.

    Bits are named by register (``q[3]``). Parameters are written with ``repr``
    (bit-exact) or as ``k*pi/d`` where that text gives exactly the same float.

    >>> c = Circuit(num_qubits=1); c.append("rz", [0], [math.pi / 2])
    >>> print(dump_qasm(c), end="")
    OPENQASM 2.0;
    include "qelib1.inc";
    qreg q[1];
    rz(pi/2) q[0];

    Raises:
        UsageError: an unknown operation, a non-finite parameter, a conditional barrier,
            an empty barrier, or bits outside every register.
    """
    qn = _bit_names(circuit.qregs, circuit.num_qubits, "quantum")
    cn = _bit_names(circuit.cregs, circuit.num_clbits, "classical")
    cregs = {r.name for r in circuit.cregs}
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";']
    lines += [f"qreg {r.name}[{r.size}];" for r in circuit.qregs]
    lines += [f"creg {r.name}[{r.size}];" for r in circuit.cregs]
    for inst in circuit.instructions:
        name, cond, prefix = inst.name, inst.condition, ""
        if cond is not None:
            if name == "barrier" or cond.creg not in cregs:
                raise UsageError(f"cannot write {name!r} with condition on {cond.creg!r}: "
                                 "barriers cannot be conditional; the register must exist")
            prefix = f"if({cond.creg}=={cond.value}) "
        args = ",".join([qn[q] for q in inst.qubits])
        if name == "measure":
            lines.append(f"{prefix}measure {args} -> {cn[inst.clbits[0]]};")
        elif name in DIRECTIVES:
            if not args:
                raise UsageError(f"cannot write {name!r} on no qubits")
            lines.append(f"{prefix}{name} {args};")
        elif name in GATES:
            ps = f"({','.join([_format_param(p) for p in inst.params])})" if inst.params else ""
            lines.append(f"{prefix}{name}{ps} {args};")
        else:
            raise UsageError(f"unknown operation {name!r} cannot be written as OpenQASM")
    return "\n".join(lines) + "\n"


def save_qasm(circuit: Circuit, path: str | os.PathLike[str]) -> None:
    """Write ``dump_qasm(circuit)`` to ``path`` atomically (temp file, fsync, rename).

    Readers see the old file or the complete new one, never a part. A circuit that cannot
    be written raises before the file is touched.

    Raises:
        UsageError: as ``dump_qasm``.
        OSError: the folder is not writable.
    """
    atomic_write_text(path, dump_qasm(circuit))

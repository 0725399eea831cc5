"""The QPU instruction format: fixed-size binary records encoded from a schedule.

A compiled :class:`~qpuos.quantum.timing.Schedule` becomes a numpy array of
:data:`RECORD` (64 bytes each, little-endian), the unit the host driver streams to the
controller through a shared-memory ring. Byte layout of one record (format
:data:`VERSION` 1)::

    offset  size  field        meaning
         0     4  seq          u32  position in the stream, 0, 1, 2, ...
         4     1  opcode       u8   :class:`Opcode` (0 is never valid: a zeroed slot
                                    is caught as malformed)
         5     1  version      u8   :data:`VERSION`; a controller refuses any other
         6     2  flags        u16  :data:`FLAG_TERMINAL`: a measurement after which the
                                    qubit is not touched again (it may be deferred and
                                    sampled once per shot from the final state)
         8     2  q0           u16  first physical qubit, :data:`NO_QUBIT` if none
        10     2  q1           u16  second physical qubit (2-qubit gates; control first)
        12     4  clbit        u32  classical bit a ``measure`` writes, else :data:`NO_CLBIT`
        16     8  start_ns     f64  start time in schedule time (ns)
        24     8  duration_ns  f64  duration in schedule time (ns)
        32    32  params       4 x f64  gate parameters (unused ones are 0.0)

Why these choices: 64 bytes is one cache line and a power of two, so ring slots never
straddle lines; float64 times keep the schedule's own values exactly (device figures such
as 35.6 ns are not whole nanoseconds); four parameters fit every standard gate (``cu``
has four), so no gate needs splitting. The version byte sits in every record, so a
controller can refuse a stream of another format at the first record it reads.

The constants, :class:`Opcode` and the ``struct`` format :data:`RECORD_FORMAT` live in
the numpy-free ``_isa_layout`` (the boot image's executor reads records with them) and
are re-exported here unchanged.

Stream order: records are sorted by ``(start_ns, circuit index)``, which is a
topological order (an operation never starts before one it depends on, and ties keep
circuit order), so a controller can issue them one after another at their timestamps.
The stream ends with one :attr:`Opcode.END` record whose ``start_ns`` is the makespan.
``barrier`` becomes a :attr:`Opcode.BARRIER` record on no particular qubit (it takes no
time; the timestamps already carry its alignment). Conditional gates and gates on three
or more qubits cannot be encoded (compile decomposes the latter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qpuos.errors import IsaError
from qpuos.quantum._isa_layout import (
    FLAG_TERMINAL,
    NAME_OF,
    NO_CLBIT,
    NO_QUBIT,
    OPCODE_OF,
    RECORD_FORMAT,
    RECORD_SIZE,
    VERSION,
    Opcode,
    arity,
    num_params,
)
from qpuos.quantum.timing import Schedule

__all__ = [
    "FLAG_TERMINAL",
    "NO_CLBIT",
    "NO_QUBIT",
    "OPCODE_OF",
    "RECORD",
    "RECORD_FORMAT",
    "VERSION",
    "IsaRecord",
    "Opcode",
    "decode",
    "encode",
    "encode_empty",
    "num_params",
]

#: One instruction record (see the module docstring for the byte layout).
RECORD = np.dtype([
    ("seq", "<u4"), ("opcode", "u1"), ("version", "u1"), ("flags", "<u2"),
    ("q0", "<u2"), ("q1", "<u2"), ("clbit", "<u4"),
    ("start_ns", "<f8"), ("duration_ns", "<f8"), ("params", "<f8", (4,)),
])
assert RECORD.itemsize == RECORD_SIZE


@dataclass(frozen=True, slots=True)
class IsaRecord:
    """One decoded instruction, readable.

    Attributes:
        seq: position in the stream.
        name: the circuit's instruction name (``"end"`` for the end record).
        qubits: physical qubits, in the gate's argument order.
        clbit: the classical bit a measurement writes, else None.
        start_ns: start in schedule time (ns).
        duration_ns: duration in schedule time (ns).
        params: the gate's parameters (exactly ``num_params(name)`` of them).
        flags: the record's flag bits (``FLAG_TERMINAL``).
    """

    seq: int
    name: str
    qubits: tuple[int, ...]
    clbit: int | None
    start_ns: float
    duration_ns: float
    params: tuple[float, ...]
    flags: int = 0


def encode(sched: Schedule, *, num_qubits: int | None = None) -> NDArray[Any]:
    """Encode a schedule as a stream of :data:`RECORD`, ending with ``END``.

    Args:
        sched: a timed physical circuit (``CompileResult.schedule``).
        num_qubits: the register the stream is for (default: the circuit's own);
            any qubit at or beyond it is refused.

    Returns:
        A new array of ``len(sched.ops) + 1`` records in issue order.

    Raises:
        IsaError: an unknown or conditional operation, a gate on three or more qubits,
            a qubit beyond the register, or too many parameters.

    >>> from qpuos.quantum.circuit import Circuit
    >>> from qpuos.quantum.timing import DurationModel, schedule
    >>> c = Circuit(num_qubits=2, num_clbits=2)
    >>> c.append("h", [0]); c.append("cx", [0, 1]); c.append("measure", [1], clbits=[0])
    >>> recs = encode(schedule(c, DurationModel()))
    >>> [(r.name, r.qubits, r.start_ns) for r in decode(recs)]
    [('h', (0,), 0.0), ('cx', (0, 1), 50.0), ('measure', (1,), 350.0), ('end', (), 1350.0)]
    """
    circuit = sched.circuit
    width = circuit.num_qubits if num_qubits is None else num_qubits
    if not 0 < width <= NO_QUBIT:
        raise IsaError(f"a register of {width} qubits cannot be addressed; "
                       f"qubit numbers are 0..{NO_QUBIT - 1}")
    insts = circuit.instructions
    order = sorted(range(len(sched.ops)), key=lambda i: (sched.ops[i].start_ns,
                                                          sched.ops[i].index))
    last_touch: dict[int, int] = {}
    for pos, i in enumerate(order):
        for q in insts[sched.ops[i].index].qubits:
            last_touch[q] = pos
    out = np.zeros(len(order) + 1, dtype=RECORD)
    for pos, i in enumerate(order):
        op = sched.ops[i]
        inst = insts[op.index]
        _encode_one(out[pos:pos + 1], pos, inst.name, inst.qubits, inst.params,
                    inst.clbits, inst.condition is not None, width, op.index)
        out["start_ns"][pos] = op.start_ns
        out["duration_ns"][pos] = op.duration_ns
        if inst.name == "measure" and last_touch[inst.qubits[0]] == pos:
            out["flags"][pos] = FLAG_TERMINAL
    end = len(order)
    out["seq"][end] = end
    out["opcode"][end] = Opcode.END
    out["version"][end] = VERSION
    out["q0"][end] = out["q1"][end] = NO_QUBIT
    out["clbit"][end] = NO_CLBIT
    out["start_ns"][end] = sched.makespan_ns
    return out


def _encode_one(rec: NDArray[Any], seq: int, name: str, qubits: tuple[int, ...],
                params: tuple[float, ...], clbits: tuple[int, ...], conditional: bool,
                width: int, index: int) -> None:
    where = f"instruction {index} ({name} on {list(qubits)})"
    code = OPCODE_OF.get(name)
    if code is None:
        raise IsaError(f"{where}: no opcode for {name!r} in ISA v{VERSION}; compile the "
                       "circuit first (it decomposes gates on 3+ qubits)")
    if conditional:
        raise IsaError(f"{where}: conditional operations cannot be encoded in ISA "
                       f"v{VERSION}; remove the `if` or run it on the simulator")
    if len(params) > 4:
        raise IsaError(f"{where}: {len(params)} parameters, a record holds 4")
    bad = [q for q in qubits if not 0 <= q < width]
    if bad:
        raise IsaError(f"{where}: qubit(s) {bad} beyond the register of {width} qubits; "
                       "compile for this device first")
    takes = arity(code)
    if code == Opcode.BARRIER:
        qubits = ()
    elif len(qubits) != takes:
        raise IsaError(f"{where}: {name!r} takes {takes} qubit(s)")
    rec["seq"] = seq
    rec["opcode"] = code
    rec["version"] = VERSION
    rec["q0"] = qubits[0] if qubits else NO_QUBIT
    rec["q1"] = qubits[1] if len(qubits) > 1 else NO_QUBIT
    rec["clbit"] = clbits[0] if name == "measure" and clbits else NO_CLBIT
    rec["params"][0, :len(params)] = params


def decode(records: NDArray[Any]) -> list[IsaRecord]:
    """Turn records back into readable :class:`IsaRecord` values, checking each.

    Args:
        records: an array of :data:`RECORD` (or raw bytes viewed as one).

    Returns:
        One ``IsaRecord`` per record, in stream order.

    Raises:
        IsaError: a wrong dtype, a record of another format version, an unknown
            opcode, a wrong qubit count, or a non-finite time.

    >>> [r.name for r in decode(encode_empty())]
    ['end']
    """
    arr = np.asarray(records)
    if arr.dtype != RECORD:
        raise IsaError(f"records have dtype {arr.dtype}, not the {RECORD.itemsize}-byte "
                       "RECORD; view raw bytes with np.frombuffer(buf, dtype=RECORD)")
    out: list[IsaRecord] = []
    for rec in arr.tolist():
        seq, code, version, flags, q0, q1, clbit, start, dur, params = rec
        if version != VERSION:
            raise IsaError(f"record {seq} has format version {version}; this build reads "
                           f"version {VERSION}: re-encode the schedule")
        name = NAME_OF.get(code)
        if name is None:
            raise IsaError(f"record {seq} has unknown opcode {code:#04x}")
        qubits = tuple(q for q in (q0, q1) if q != NO_QUBIT)
        takes = arity(code)
        if code != Opcode.BARRIER and len(qubits) != takes:
            raise IsaError(f"record {seq} ({name}) names {len(qubits)} qubit(s), "
                           f"{name!r} takes {takes}")
        if not (math.isfinite(start) and math.isfinite(dur)):
            raise IsaError(f"record {seq} ({name}) has a non-finite time "
                           f"(start {start}, duration {dur})")
        out.append(IsaRecord(seq, name, qubits, None if clbit == NO_CLBIT else clbit,
                             start, dur, tuple(params[:num_params(name)]), flags))
    return out


def encode_empty() -> NDArray[Any]:
    """A stream holding only the ``END`` record (an empty program), for tests and probes.

    >>> int(encode_empty()["opcode"][0]) == Opcode.END
    True
    """
    out = np.zeros(1, dtype=RECORD)
    out["opcode"] = Opcode.END
    out["version"] = VERSION
    out["q0"] = out["q1"] = NO_QUBIT
    out["clbit"] = NO_CLBIT
    return out

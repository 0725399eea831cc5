"""The ISA record layout without numpy: constants, opcodes and the ``struct`` format.

:mod:`qpuos.quantum.isa` encodes schedules into numpy arrays of its ``RECORD`` dtype and
re-exports everything here. This module holds what a reader of the records needs and
nothing that needs numpy, so that the controller's boot image (which cannot carry numpy)
decodes the same format from the same definitions: :data:`RECORD_FORMAT` is the
``struct`` twin of ``isa.RECORD`` (the byte layout is in ``isa``'s docstring).
"""

from __future__ import annotations

import struct
from enum import IntEnum

__all__ = [
    "FLAG_TERMINAL",
    "NAME_OF",
    "NO_CLBIT",
    "NO_QUBIT",
    "OPCODE_OF",
    "RECORD_FORMAT",
    "RECORD_SIZE",
    "VERSION",
    "Opcode",
    "arity",
    "num_params",
]

#: Format version carried by every record.
VERSION = 1
#: ``q0``/``q1`` value meaning "no qubit".
NO_QUBIT = 0xFFFF
#: ``clbit`` value meaning "no classical bit".
NO_CLBIT = 0xFFFFFFFF
#: Flag bit: a measurement with no later operation on its qubit.
FLAG_TERMINAL = 0x0001
#: One record for ``struct``: seq, opcode, version, flags, q0, q1, clbit, start_ns,
#: duration_ns and the four params, little-endian, no padding.
RECORD_FORMAT = "<IBBHHHIdd4d"
#: Bytes per record (one cache line).
RECORD_SIZE = struct.calcsize(RECORD_FORMAT)
assert RECORD_SIZE == 64


class Opcode(IntEnum):
    """Stable operation codes. Values never change within a format version.

    0x01-0x0F control and non-unitary operations, 0x10-0x3F one-qubit gates,
    0x40-0x7F two-qubit gates (first qubit is the control where there is one).
    """

    END = 0x01
    BARRIER = 0x02
    DELAY = 0x03
    MEASURE = 0x04
    RESET = 0x05
    U = 0x10
    U3 = 0x11
    U_ = 0x12
    U2 = 0x13
    U1 = 0x14
    P = 0x15
    U0 = 0x16
    ID = 0x17
    X = 0x18
    Y = 0x19
    Z = 0x1A
    H = 0x1B
    S = 0x1C
    SDG = 0x1D
    T = 0x1E
    TDG = 0x1F
    RX = 0x20
    RY = 0x21
    RZ = 0x22
    SX = 0x23
    SXDG = 0x24
    CX_ = 0x40
    CX = 0x41
    CY = 0x42
    CZ = 0x43
    CH = 0x44
    SWAP = 0x45
    CRX = 0x46
    CRY = 0x47
    CRZ = 0x48
    CU1 = 0x49
    CP = 0x4A
    CU3 = 0x4B
    CSX = 0x4C
    CU = 0x4D
    RXX = 0x4E
    RZZ = 0x4F


#: Circuit instruction name -> opcode (``U``/``CX`` are OpenQASM's built-ins).
OPCODE_OF: dict[str, Opcode] = {
    "barrier": Opcode.BARRIER, "delay": Opcode.DELAY, "measure": Opcode.MEASURE,
    "reset": Opcode.RESET, "U": Opcode.U, "u3": Opcode.U3, "u": Opcode.U_,
    "u2": Opcode.U2, "u1": Opcode.U1, "p": Opcode.P, "u0": Opcode.U0, "id": Opcode.ID,
    "x": Opcode.X, "y": Opcode.Y, "z": Opcode.Z, "h": Opcode.H, "s": Opcode.S,
    "sdg": Opcode.SDG, "t": Opcode.T, "tdg": Opcode.TDG, "rx": Opcode.RX,
    "ry": Opcode.RY, "rz": Opcode.RZ, "sx": Opcode.SX, "sxdg": Opcode.SXDG,
    "CX": Opcode.CX_, "cx": Opcode.CX, "cy": Opcode.CY, "cz": Opcode.CZ, "ch": Opcode.CH,
    "swap": Opcode.SWAP, "crx": Opcode.CRX, "cry": Opcode.CRY, "crz": Opcode.CRZ,
    "cu1": Opcode.CU1, "cp": Opcode.CP, "cu3": Opcode.CU3, "csx": Opcode.CSX,
    "cu": Opcode.CU, "rxx": Opcode.RXX, "rzz": Opcode.RZZ,
}
#: Opcode value -> the circuit's instruction name (``"end"`` for :attr:`Opcode.END`).
NAME_OF: dict[int, str] = {int(op): name for name, op in OPCODE_OF.items()}
NAME_OF[int(Opcode.END)] = "end"
_NPARAMS = {
    "U": 3, "u3": 3, "u": 3, "u2": 2, "u1": 1, "p": 1, "u0": 1, "rx": 1, "ry": 1,
    "rz": 1, "crx": 1, "cry": 1, "crz": 1, "cu1": 1, "cp": 1, "cu3": 3, "cu": 4,
    "rxx": 1, "rzz": 1,
}


def num_params(name: str) -> int:
    """How many of the four parameter slots ``name`` uses (0 for most gates).

    >>> num_params("u"), num_params("cx"), num_params("cu")
    (3, 0, 4)
    """
    return _NPARAMS.get(name, 0)


def arity(op: int) -> int:
    """How many qubits opcode ``op`` names (0 for ``END`` and ``BARRIER``).

    >>> arity(Opcode.H), arity(Opcode.CX), arity(Opcode.END), arity(Opcode.MEASURE)
    (1, 2, 0, 1)
    """
    if op >= 0x40:
        return 2
    if op >= 0x10 or op in (Opcode.MEASURE, Opcode.RESET, Opcode.DELAY):
        return 1
    return 0

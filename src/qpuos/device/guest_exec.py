"""The controller's executor inside its boot image: ISA records on a pure-Python state.

The controller's OS image (``qpuos.kernel.boot``) has room for Python and a trimmed
stdlib, not for numpy, numba or llvmlite, so it cannot compile circuits: compiling
happens on the host. The image's job is to *execute* compiled programs, and its
``circuit`` self-test checks exactly that:

1. on the host, at ``qpuos boot build`` time,
   :func:`qpuos.device.guest_program.prepare_program` parses a GHZ
   circuit written as OpenQASM, compiles it with :func:`qpuos.quantum.compile_circuit`
   for a device whose coupling graph forces a SWAP, encodes it with
   :func:`qpuos.quantum.isa.encode` into the 64-byte ISA records, and computes the
   outcome probabilities of the measured qubits with :mod:`qpuos.quantum.statevector`
   (numpy); the records (raw bytes) and that table go into the image as data files
   (:func:`qpuos.device.guest_program.boot_step`);
2. in the guest, :func:`circuit_check` decodes the records with ``struct`` (the layout
   of :mod:`qpuos.quantum._isa_layout`, no numpy), runs them with :func:`execute` on a
   state vector of Python complex numbers, and compares its probabilities with the
   host's.

:func:`execute` knows every gate opcode of ISA v1 (the one- and two-qubit standard
set), ``BARRIER``/``DELAY`` (no effect on the state), ``MEASURE`` and ``END``. A
terminal measurement (``FLAG_TERMINAL``) is read from the final state; one that is
followed by more operations on its qubit (routing may swap a measured qubit onward) is
deferred: a CX copies the qubit into a fresh ancilla, which is read at the end; that
gives the same joint distribution since no operation is conditioned on a clbit.
Anything else (``RESET``, an unknown opcode) is refused with an ``IsaError`` naming it.

This module imports nothing that needs numpy; the host side lives in
:mod:`qpuos.device.guest_program`.
"""

from __future__ import annotations

import cmath
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from qpuos.errors import IsaError, VerificationError
from qpuos.quantum._isa_layout import (
    FLAG_TERMINAL,
    NAME_OF,
    NO_CLBIT,
    NO_QUBIT,
    RECORD_FORMAT,
    RECORD_SIZE,
    VERSION,
    Opcode,
    arity,
    num_params,
)

__all__ = ["Execution", "circuit_check", "execute"]

MAX_QUBITS = 12
MAX_CLBITS = 16
_RECORD = struct.Struct(RECORD_FORMAT)
_Matrix = tuple[complex, ...]


@dataclass(frozen=True, slots=True)
class Execution:
    """What :func:`execute` found: outcome probabilities and what the stream held.

    Attributes:
        probabilities: ``probabilities[k]`` is the chance of reading classical bits
            ``k`` (bit ``c`` of ``k`` is clbit ``c``); unmeasured bits read 0.
        measured: ``(physical qubit, clbit)`` of each terminal measurement.
        qubits: the physical qubits the stream touches (the simulated ones).
        records: records run, ``END`` included.
        swaps: ``SWAP`` records among them.
    """

    probabilities: tuple[float, ...]
    measured: tuple[tuple[int, int], ...]
    qubits: tuple[int, ...]
    records: int
    swaps: int


def _u(theta: float, phi: float, lam: float) -> _Matrix:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return (c, -cmath.exp(1j * lam) * s, cmath.exp(1j * phi) * s,
            cmath.exp(1j * (phi + lam)) * c)


def _phase(lam: float) -> _Matrix:
    return (1, 0, 0, cmath.exp(1j * lam))


def _rx(t: float) -> _Matrix:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return (c, -1j * s, -1j * s, c)


def _ry(t: float) -> _Matrix:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return (c, -s, s, c)


def _rz(t: float) -> _Matrix:
    return (cmath.exp(-0.5j * t), 0, 0, cmath.exp(0.5j * t))


def _controlled(u: _Matrix) -> _Matrix:
    """``diag(I, u)`` on (control, target), the control being the high index bit."""
    a, b, c, d = u
    return (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, a, b, 0, 0, c, d)


def _rxx(t: float) -> _Matrix:
    c, s = math.cos(t / 2), -1j * math.sin(t / 2)
    return (c, 0, 0, s, 0, c, s, 0, 0, s, c, 0, s, 0, 0, c)


def _rzz(t: float) -> _Matrix:
    a, b = cmath.exp(-0.5j * t), cmath.exp(0.5j * t)
    return (a, 0, 0, 0, 0, b, 0, 0, 0, 0, b, 0, 0, 0, 0, a)


_I = (1, 0, 0, 1)
_X = (0, 1, 1, 0)
_Y = (0, -1j, 1j, 0)
_Z = (1, 0, 0, -1)
_R2 = 1 / math.sqrt(2)
_H = (_R2, _R2, _R2, -_R2)
_SX = ((1 + 1j) / 2, (1 - 1j) / 2, (1 - 1j) / 2, (1 + 1j) / 2)
_SXDG = ((1 - 1j) / 2, (1 + 1j) / 2, (1 + 1j) / 2, (1 - 1j) / 2)
_SWAP = (1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1)

_ONE_QUBIT: dict[int, Any] = {
    Opcode.U: _u, Opcode.U3: _u, Opcode.U_: _u,
    Opcode.U2: lambda phi, lam: _u(math.pi / 2, phi, lam),
    Opcode.U1: _phase, Opcode.P: _phase, Opcode.U0: lambda _gamma: _I,
    Opcode.ID: lambda: _I, Opcode.X: lambda: _X, Opcode.Y: lambda: _Y,
    Opcode.Z: lambda: _Z, Opcode.H: lambda: _H,
    Opcode.S: lambda: _phase(math.pi / 2), Opcode.SDG: lambda: _phase(-math.pi / 2),
    Opcode.T: lambda: _phase(math.pi / 4), Opcode.TDG: lambda: _phase(-math.pi / 4),
    Opcode.RX: _rx, Opcode.RY: _ry, Opcode.RZ: _rz,
    Opcode.SX: lambda: _SX, Opcode.SXDG: lambda: _SXDG,
}
_TWO_QUBIT: dict[int, Any] = {
    Opcode.CX_: lambda: _controlled(_X), Opcode.CX: lambda: _controlled(_X),
    Opcode.CY: lambda: _controlled(_Y), Opcode.CZ: lambda: _controlled(_Z),
    Opcode.CH: lambda: _controlled(_H), Opcode.SWAP: lambda: _SWAP,
    Opcode.CRX: lambda t: _controlled(_rx(t)), Opcode.CRY: lambda t: _controlled(_ry(t)),
    Opcode.CRZ: lambda t: _controlled(_rz(t)),
    Opcode.CU1: lambda lam: _controlled(_phase(lam)),
    Opcode.CP: lambda lam: _controlled(_phase(lam)),
    Opcode.CU3: lambda t, p, lam: _controlled(_u(t, p, lam)),
    Opcode.CSX: lambda: _controlled(_SX),
    Opcode.CU: lambda t, p, lam, g: _controlled(tuple(cmath.exp(1j * g) * x
                                                      for x in _u(t, p, lam))),
    Opcode.RXX: _rxx, Opcode.RZZ: _rzz,
}
_NO_EFFECT = (Opcode.BARRIER, Opcode.DELAY)


def _apply1(psi: list[complex], bit: int, m: _Matrix) -> None:
    a, b, c, d = m
    step = 1 << bit
    for i in range(len(psi)):
        if not i & step:
            x, y = psi[i], psi[i | step]
            psi[i], psi[i | step] = a * x + b * y, c * x + d * y


def _apply2(psi: list[complex], hi: int, lo: int, m: _Matrix) -> None:
    """``m`` on (first, second) qubit at bits (``hi``, ``lo``); first = high index bit."""
    bh, bl = 1 << hi, 1 << lo
    for i in range(len(psi)):
        if not i & (bh | bl):
            idx = (i, i | bl, i | bh, i | bh | bl)
            amp = [psi[j] for j in idx]
            for r in range(4):
                row = m[4 * r:4 * r + 4]
                psi[idx[r]] = (row[0] * amp[0] + row[1] * amp[1] + row[2] * amp[2]
                               + row[3] * amp[3])


def _decode(data: bytes) -> list[tuple[Any, ...]]:
    if len(data) % RECORD_SIZE or not data:
        raise IsaError(f"an instruction stream of {len(data)} bytes is not a whole number "
                       f"of {RECORD_SIZE}-byte records; encode it with qpuos.quantum.isa")
    recs = list(_RECORD.iter_unpack(data))
    for i, rec in enumerate(recs):
        seq, code, version, _flags, q0, q1 = rec[:6]
        if version != VERSION:
            raise IsaError(f"record {i} (seq {seq}) has format version {version}; this "
                           f"executor reads version {VERSION}: re-encode on the host")
        name = NAME_OF.get(code)
        runnable = code in _ONE_QUBIT or code in _TWO_QUBIT or code in _NO_EFFECT or \
            code in (Opcode.MEASURE, Opcode.END)
        if name is None or not runnable:
            what = f"opcode {code:#04x}" + (f" ({name})" if name else " (unknown)")
            raise IsaError(f"record {i} (seq {seq}) has {what}, which the guest "
                           "executor does not run; it runs the gates of ISA "
                           f"v{VERSION}, barrier, delay, measure and end")
        named = [q for q in (q0, q1) if q != NO_QUBIT]
        if code != Opcode.BARRIER and len(named) != arity(code):
            raise IsaError(f"record {i} ({name}) names {len(named)} qubit(s); {name!r} "
                           f"takes {arity(code)}")
        if len(set(named)) != len(named):
            raise IsaError(f"record {i} ({name}) names qubit {q0} twice")
    if recs[-1][1] != Opcode.END or any(r[1] == Opcode.END for r in recs[:-1]):
        raise IsaError("the stream must end with exactly one END record (and only there); "
                       "was it cut short or concatenated?")
    return recs


def execute(data: bytes) -> Execution:
    """Run an encoded instruction stream on a pure-Python state vector.

    Only the physical qubits the stream names are simulated (a compiled program on a
    large device touches few of them), starting from ``|0...0>``; a measurement that
    is not terminal adds one ancilla (see the module docstring).

    Args:
        data: the raw records, as ``qpuos.quantum.isa.encode(...).tobytes()`` writes.

    Returns:
        The outcome probabilities of the measured classical bits and a summary.

    Raises:
        IsaError: a malformed stream, an opcode the executor does not run (named), or
            more than 12 qubits (ancillas included) or 16 clbits.

    >>> import struct
    >>> from qpuos.quantum._isa_layout import RECORD_FORMAT
    >>> def rec(seq, op, q0=0xFFFF, q1=0xFFFF, clbit=0xFFFFFFFF, flags=0):
    ...     return struct.pack(RECORD_FORMAT, seq, op, 1, flags, q0, q1, clbit, 0.0, 0.0,
    ...                        0.0, 0.0, 0.0, 0.0)
    >>> bell = (rec(0, Opcode.H, 5) + rec(1, Opcode.CX, 5, 9) + rec(2, Opcode.MEASURE, 5,
    ...         clbit=0, flags=1) + rec(3, Opcode.MEASURE, 9, clbit=1, flags=1)
    ...         + rec(4, Opcode.END))
    >>> [round(p, 12) for p in execute(bell).probabilities]
    [0.5, 0.0, 0.0, 0.5]
    """
    recs = _decode(data)
    qubits = sorted({q for r in recs for q in r[4:6] if q != NO_QUBIT})
    deferred = sum(r[1] == Opcode.MEASURE and not r[3] & FLAG_TERMINAL for r in recs)
    if len(qubits) + deferred > MAX_QUBITS:
        raise IsaError(f"the stream needs {len(qubits)} qubits and {deferred} ancillas for "
                       f"mid-circuit measurements; the guest executor simulates at most "
                       f"{MAX_QUBITS}: run it on the host's simulator")
    bit = {q: i for i, q in enumerate(qubits)}
    psi: list[complex] = [0j] * (1 << (len(qubits) + deferred))
    psi[0] = 1 + 0j
    reads: dict[int, tuple[int, int]] = {}   # clbit -> (physical qubit, state bit)
    ancilla = len(qubits)
    swaps = 0
    for i, rec in enumerate(recs):
        seq, code, _v, flags, q0, q1, clbit = rec[:7]
        params = rec[9:9 + num_params(NAME_OF[code])]
        if code in _ONE_QUBIT:
            _apply1(psi, bit[q0], _ONE_QUBIT[code](*params))
        elif code in _TWO_QUBIT:
            _apply2(psi, bit[q0], bit[q1], _TWO_QUBIT[code](*params))
            swaps += code == Opcode.SWAP
        elif code == Opcode.MEASURE:
            if not 0 <= clbit < MAX_CLBITS:
                raise IsaError(f"record {i} (seq {seq}) measures qubit {q0} into clbit "
                               f"{'none' if clbit == NO_CLBIT else clbit}; the guest "
                               f"executor keeps classical bits 0..{MAX_CLBITS - 1}")
            if flags & FLAG_TERMINAL:
                reads[clbit] = (q0, bit[q0])
            else:  # deferred measurement: copy the qubit into a fresh ancilla, read that
                _apply2(psi, bit[q0], ancilla, _controlled(_X))
                reads[clbit] = (q0, ancilla)
                ancilla += 1
    width = max(reads, default=-1) + 1
    probs = [0.0] * (1 << width)
    where = [(b, c) for c, (_, b) in reads.items()]
    for index, amp in enumerate(psi):
        outcome = 0
        for b, c in where:
            outcome |= ((index >> b) & 1) << c
        probs[outcome] += amp.real * amp.real + amp.imag * amp.imag
    measured = tuple(sorted((q, c) for c, (q, _) in reads.items()))
    return Execution(tuple(probs), measured, tuple(qubits), len(recs), swaps)


def circuit_check(*, records: str, expected: str, tolerance: float = 1e-9) -> str:
    """The image's ``circuit`` stage: run the host-compiled records, compare with the host.

    Args:
        records: path of the raw records (written by
            :func:`qpuos.device.guest_program.boot_step`).
        expected: path of the host's JSON (label, device, swaps, probabilities).
        tolerance: the largest difference of any outcome probability allowed.

    Returns:
        The stage's one-line detail.

    Raises:
        VerificationError: a probability differs from the host's by more than
            ``tolerance``, or the measured qubits differ.
        IsaError: the records cannot be run (see :func:`execute`).
    """
    with open(records, "rb") as f:
        data = f.read()
    with open(expected) as f:
        want = json.load(f)
    got = execute(data)
    host = [float(p) for p in want["probabilities"]]
    if [list(m) for m in got.measured] != want["measured"] or len(host) != len(
            got.probabilities):
        raise VerificationError(f"the guest measured {list(got.measured)} "
                                f"({len(got.probabilities)} outcomes), the host compiled "
                                f"{want['measured']} ({len(host)}); rebuild the image")
    diffs = [abs(a - b) for a, b in zip(got.probabilities, host, strict=True)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    if diffs[worst] > tolerance:
        raise VerificationError(f"outcome {worst:0{max(1, len(host).bit_length() - 1)}b}: "
                                f"guest probability {got.probabilities[worst]:.12g}, host "
                                f"{host[worst]:.12g} (|dp| {diffs[worst]:.3g} > "
                                f"{tolerance:g}); the executor and the host simulator "
                                "disagree on this program")
    return (f"{want['label']} compiled on the host for {want['device']} ({got.records} "
            f"records, {got.swaps} swap{'s' * (got.swaps != 1)}), simulated in the "
            f"guest: max |dp| {diffs[worst]:.1e}")

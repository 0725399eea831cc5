"""The host side of the guest's ``circuit`` self-test: compile, encode, expect.

The controller's boot image cannot carry the compiler (numpy, numba), so the program it
runs in its ``circuit`` stage is compiled here, on the host, at ``qpuos boot build``
time; :mod:`qpuos.device.guest_exec` executes it in the guest and compares the outcome
with what :func:`prepare_program` computed here with :mod:`qpuos.quantum.statevector`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qpuos.errors import UsageError

if TYPE_CHECKING:
    from qpuos.kernel.boot.init import Step

__all__ = ["GHZ_QASM", "GuestProgram", "boot_step", "prepare_program"]

#: The self-test's circuit: a 4-qubit GHZ state built as a star from qubit 0 (a qubit of
#: degree 3, which no line can host without a SWAP).
GHZ_QASM = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[4];
creg c[4];
h q[0];
cx q[0], q[1];
cx q[0], q[2];
cx q[0], q[3];
measure q -> c;
"""


@dataclass(frozen=True, slots=True)
class GuestProgram:
    """A program compiled on the host for the guest: its records and expected outcome.

    Attributes:
        records: the raw ISA records.
        expected: what :func:`circuit_check` compares with (JSON-ready).
    """

    records: bytes
    expected: Mapping[str, Any]


def prepare_program(*, qasm: str = GHZ_QASM, device: str = "line:4",
                    label: str = "GHZ-4") -> GuestProgram:
    """Compile ``qasm`` for ``device`` on the host; simulate it there for the expectation.

    Runs on the host only: it imports the quantum layer (numpy, numba) when called.

    Args:
        qasm: an OpenQASM 2.0 program whose measurements all come last.
        device: a built-in device or generator spec (``qpuos.quantum.load_device``).
        label: the program's name in the stage's report.

    Returns:
        The records and the measured qubits' outcome probabilities.

    Raises:
        UsageError: the compiled program measures no qubit.

    >>> p = prepare_program()
    >>> p.expected["device"], p.expected["swaps"] >= 1
    ('line:4', True)
    >>> [round(x, 12) for x in p.expected["probabilities"]][::5]
    [0.5, 0.0, 0.0, 0.5]
    """
    import numpy as np

    from qpuos.quantum.circuit import Circuit
    from qpuos.quantum.compile import compile_circuit
    from qpuos.quantum.device import load_device
    from qpuos.quantum.isa import encode
    from qpuos.quantum.qasm import parse_qasm
    from qpuos.quantum.statevector import simulate

    result = compile_circuit(parse_qasm(qasm), load_device(device))
    records = encode(result.schedule)
    physical = result.circuit
    insts = physical.instructions
    n = physical.num_qubits + sum(inst.name == "measure" for inst in insts)
    unitary = Circuit(num_qubits=n)
    measured: dict[int, tuple[int, int]] = {}   # clbit -> (physical qubit, read qubit)
    ancilla = physical.num_qubits
    for inst in insts:
        if inst.name == "measure":   # every one deferred: copied into its own ancilla
            unitary.append("cx", [inst.qubits[0], ancilla])
            measured[inst.clbits[0]] = (inst.qubits[0], ancilla)
            ancilla += 1
        elif inst.is_gate:
            unitary.append(inst.name, inst.qubits, inst.params)
    if not measured:
        raise UsageError(f"the program compiled for {device} measures nothing; add "
                         "measurements at its end")
    flat = np.abs(simulate(unitary).reshape(-1)) ** 2
    probs = np.zeros(1 << (max(measured) + 1))
    index = np.arange(flat.size)
    outcome = np.zeros(flat.size, dtype=np.int64)
    for c, (_, q) in measured.items():
        outcome |= ((index >> (n - 1 - q)) & 1) << c
    np.add.at(probs, outcome, flat)
    return GuestProgram(records.tobytes(), {
        "label": label, "device": device, "swaps": int(result.routed.swaps),
        "measured": sorted([q, c] for c, (q, _) in measured.items()),
        "probabilities": [float(p) for p in probs]})


def boot_step(*, data_dir: str, qasm: str = GHZ_QASM, device: str = "line:4",
              label: str = "GHZ-4") -> tuple[Step, dict[str, bytes]]:
    """The ``circuit`` self-test for ``qpuos boot build``: its step and its data files.

    Compiles on the host (:func:`prepare_program`); the image carries the records and
    the expected table as files in ``data_dir``, which the step reads in the guest.

    Args:
        data_dir: where the image puts its data files (``init.DATA_DIR``).
        qasm: the program (default: :data:`GHZ_QASM`).
        device: the device to compile for (default ``line:4``: forces one SWAP).
        label: the program's name in the report.

    Returns:
        The :class:`~qpuos.kernel.boot.init.Step` and ``{file name: bytes}``.
    """
    from qpuos.kernel.boot.init import Step

    program = prepare_program(qasm=qasm, device=device, label=label)
    files = {"circuit.isa": program.records,
             "circuit.expected.json": json.dumps(program.expected, sort_keys=True,
                                                 indent=1).encode()}
    step = Step("circuit", "qpuos.device.guest_exec:circuit_check",
                {"records": f"{data_dir}/circuit.isa",
                 "expected": f"{data_dir}/circuit.expected.json"})
    return step, files

"""How a QPU node runs one compiled program: the executor interface and two executors.

A node owns one executor for its device. ``ControllerExecutor`` hands the program to
the emulated QPU controller (``qpuos.device.run_on_device``: a controller process fed
through the shared-memory ring, results back by interrupt). ``SimulatorExecutor`` runs
the same compiled program on the single-process state-vector simulator, on the
physical qubits it uses, and samples the measured bits; it needs no controller process,
so it also serves machines where the device layer cannot start one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from qpuos.cluster._counts import format_words
from qpuos.cluster._plan import split_measurements
from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Register
from qpuos.quantum.compile import CompileResult
from qpuos.quantum.statevector import simulate

__all__ = ["ControllerExecutor", "Executor", "SimulatorExecutor", "default_executor"]


@runtime_checkable
class Executor(Protocol):
    """Runs one compiled program on the node's device and returns its counts."""

    @property
    def name(self) -> str:
        """A short label for status tables."""
        ...

    def execute(self, program: CompileResult, *, shots: int, seed: int) -> dict[str, int]:
        """Run ``program`` for ``shots`` shots; counts as OpenQASM tools print them."""
        ...


@dataclass(frozen=True, slots=True)
class ControllerExecutor:
    """The emulated QPU controller of ``qpuos.device`` (one controller per job)."""

    name: str = "controller"

    def execute(self, program: CompileResult, *, shots: int, seed: int) -> dict[str, int]:
        """Run on a fresh emulated controller for ``program.device``."""
        from qpuos.device import run_on_device

        return dict(run_on_device(program, shots=shots, seed=seed).counts)


@dataclass(frozen=True, slots=True)
class SimulatorExecutor:
    """The single-process simulator on the program's used physical qubits.

    Attributes:
        shot_time_s: wall time each shot is held for, emulating a device's repetition
            period (0: as fast as the simulator goes).
    """

    name: str = "simulator"
    shot_time_s: float = 0.0

    def execute(self, program: CompileResult, *, shots: int, seed: int) -> dict[str, int]:
        """Simulate the compiled circuit and sample its measurements.

        Args:
            program: the compiled program (its physical circuit is what runs).
            shots: samples to draw.
            seed: the sampling seed.

        Returns:
            Outcome string -> count, as OpenQASM tools print them.

        Raises:
            UsageError: the program uses more than 26 qubits, or is not unitary up to
                its terminal measurements.

        >>> from qpuos.quantum import compile_circuit, line_device, parse_qasm
        >>> src = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
        ...        'x q[0]; measure q -> c;')
        >>> program = compile_circuit(parse_qasm(src), line_device(3))
        >>> SimulatorExecutor().execute(program, shots=10, seed=1)
        {'01': 10}
        """
        compact = _compact(program.circuit)
        body, measured = split_measurements(compact)
        n = compact.num_qubits
        probs = (np.abs(simulate(body)) ** 2).reshape(-1)
        rng = np.random.default_rng(seed)
        picks = rng.choice(probs.size, size=shots, p=probs / probs.sum())
        words = np.zeros(shots, dtype=np.int64)
        for q, c in measured:
            bit = (picks >> (n - 1 - q)) & 1
            words = (words & ~(1 << c)) | (bit << c)
        if self.shot_time_s > 0:
            time.sleep(self.shot_time_s * shots)
        return format_words(words, compact.cregs)


def _compact(circuit: Circuit) -> Circuit:
    """The circuit on only the qubits it uses, renumbered in order."""
    used = sorted({q for inst in circuit for q in inst.qubits})
    if len(used) > 26:
        raise UsageError(f"the program uses {len(used)} qubits; the simulator executor "
                         "stops at 26 (use the sharded simulator)")
    index = {q: i for i, q in enumerate(used)}
    out = Circuit(len(used), circuit.num_clbits, [Register("q", len(used))],
                  list(circuit.cregs), [])
    for inst in circuit:
        out.add(inst.with_qubits([index[q] for q in inst.qubits]))
    return out


def default_executor() -> Executor:
    """The emulated controller when ``qpuos.device`` imports, else the simulator."""
    try:
        import qpuos.device  # noqa: F401
    except ImportError:
        return SimulatorExecutor()
    return ControllerExecutor()

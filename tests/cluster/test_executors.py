"""Executors: the simulator executor samples the compiled program's distribution; the
controller executor runs it on the emulated QPU; both satisfy the interface."""

from __future__ import annotations

import pytest

from qpuos.cluster.executors import (
    ControllerExecutor,
    Executor,
    SimulatorExecutor,
    default_executor,
)
from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.compile import compile_circuit
from qpuos.quantum.device import grid_device, line_device


def program(n: int, device_qubits: int) -> object:
    c = Circuit(num_qubits=n, num_clbits=n)
    c.append("x", [n - 1])
    c.append("h", [0])
    c.append("cx", [0, n - 2])  # not neighbours on a line when n > 2: routing moves them
    for q in range(n):
        c.append("measure", [q], clbits=[q])
    return compile_circuit(c, line_device(device_qubits))


def test_simulator_executor_samples_the_routed_program() -> None:
    counts = SimulatorExecutor().execute(program(4, 6), shots=2000, seed=3)  # type: ignore[arg-type]
    # q3 = 1 always; q0 and q2 equal (Bell); q1 = 0: clbit 3 leftmost
    assert set(counts) == {"1000", "1101"}
    assert sum(counts.values()) == 2000
    assert 850 < counts["1000"] < 1150


def test_simulator_executor_refuses_programs_it_cannot_hold() -> None:
    c = Circuit(num_qubits=27, num_clbits=1)
    for q in range(27):
        c.append("h", [q])
    c.append("measure", [0], clbits=[0])
    p = compile_circuit(c, grid_device(3, 9), verify=False)
    with pytest.raises(UsageError, match=r"^the program uses 27 qubits; the simulator "
                                         r"executor stops at 26"):
        SimulatorExecutor().execute(p, shots=1, seed=0)


def test_both_executors_satisfy_the_interface() -> None:
    assert isinstance(SimulatorExecutor(), Executor)
    assert isinstance(ControllerExecutor(), Executor)
    assert default_executor().name in {"controller", "simulator"}


def test_controller_executor_agrees_with_the_simulator() -> None:
    pytest.importorskip("qpuos.device", reason="the device layer is not built here")
    p = program(3, 4)
    counts = ControllerExecutor().execute(p, shots=400, seed=1)  # type: ignore[arg-type]
    simulated = SimulatorExecutor().execute(p, shots=400, seed=1)  # type: ignore[arg-type]
    assert set(counts) == set(simulated) == {"100", "111"}  # q2 = 1; q0, q1 a Bell pair
    assert sum(counts.values()) == 400

"""The emulated QPU: its register map, the controller process and the host driver.

``Qpu.open(device)`` starts a controller and ``await qpu.run(schedule, shots=...)``
runs a compiled program on it inside the qpuos scheduler; ``run_on_device`` does both
for synchronous callers. ``QPU_REGISTERS`` is the register map the two sides share.
"""

from __future__ import annotations

from qpuos.device._dilation import pick_dilation
from qpuos.device._results import LatencyStats, RunResult, format_counts
from qpuos.device.driver import Qpu, run_on_device
from qpuos.device.registers import (
    DEVICE_ID,
    QPU_REGISTERS,
    FaultCode,
    IrqBit,
    QpuState,
)

__all__ = [
    "DEVICE_ID",
    "QPU_REGISTERS",
    "FaultCode",
    "IrqBit",
    "LatencyStats",
    "Qpu",
    "QpuState",
    "RunResult",
    "format_counts",
    "pick_dilation",
    "run_on_device",
]

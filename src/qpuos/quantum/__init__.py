"""Quantum computation: circuits, devices, layout, routing, timing, verification.

Pure computation: nothing here starts a process or makes a system call (reading a
device or circuit file aside). The names below are the layer's public face.
"""

from __future__ import annotations

from qpuos.quantum.circuit import Circuit, Condition, Instruction, Register
from qpuos.quantum.compile import CompileResult, compile_circuit
from qpuos.quantum.dag import DAG
from qpuos.quantum.decompose import decompose_multiqubit
from qpuos.quantum.device import (
    Device,
    builtin_device_names,
    describe_devices,
    grid_device,
    heavy_hex_device,
    line_device,
    load_device,
    require_fits,
    ring_device,
)
from qpuos.quantum.isa import IsaRecord, Opcode
from qpuos.quantum.qasm import dump_qasm, load_qasm, parse_qasm, save_qasm
from qpuos.quantum.routing import RoutedCircuit, RoutingOptions, SabreRouter
from qpuos.quantum.statevector import simulate
from qpuos.quantum.timing import DurationModel, Schedule, ScheduledOp, schedule
from qpuos.quantum.verify import VerifyReport, verify_routed

__all__ = [
    "DAG",
    "Circuit",
    "CompileResult",
    "Condition",
    "Device",
    "DurationModel",
    "Instruction",
    "IsaRecord",
    "Opcode",
    "Register",
    "RoutedCircuit",
    "RoutingOptions",
    "SabreRouter",
    "Schedule",
    "ScheduledOp",
    "VerifyReport",
    "builtin_device_names",
    "compile_circuit",
    "decompose_multiqubit",
    "describe_devices",
    "dump_qasm",
    "grid_device",
    "heavy_hex_device",
    "line_device",
    "load_device",
    "load_qasm",
    "parse_qasm",
    "require_fits",
    "ring_device",
    "save_qasm",
    "schedule",
    "simulate",
    "verify_routed",
]

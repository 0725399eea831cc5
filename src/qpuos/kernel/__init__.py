"""Lowest layer: Linux-hosted OS primitives. Imports nothing of qpuos above it.

Interrupts and coroutines: ``VectorTable`` (256 vectors; sources ``TimerSource``,
``EventSource``, ``SignalSource``, ``FdSource``, ``UioSource``) and ``Scheduler``
(priorities, ``Event``/``Queue``/``Lock`` with priority inheritance). The awaitable
``irq(vector)`` and the raw gate ``syscall(nr, *args)`` are not re-exported here, as
their names are those of the modules ``qpuos.kernel.irq`` and ``qpuos.kernel.syscall``:
import them from ``qpuos.kernel.scheduler`` and ``qpuos.kernel.syscall``.

Memory: ``Arena`` (first-fit or TLSF allocator whose state lives in the buffer it
manages, shareable between processes), ``ArenaStats`` and ``pool_size_for``.
Devices: ``RegisterMap`` of ``Register``/``Field`` declarations with ``Access`` rules,
read and written through an ``MmioWindow`` (emulated in shared memory, or a real BAR).
"""

from __future__ import annotations

from qpuos.kernel.irq import (
    EventSource,
    FdSource,
    IrqSource,
    SignalSource,
    TimerSource,
    UioSource,
    VectorStats,
    VectorTable,
    doorbell,
)
from qpuos.kernel.mheap import Arena, ArenaStats, pool_size_for
from qpuos.kernel.mmio import Access, Field, MmioWindow, Register, RegisterMap, unlink_window
from qpuos.kernel.scheduler import (
    Event,
    Lock,
    Queue,
    Scheduler,
    Task,
    TaskInfo,
    TaskState,
    WatchdogReport,
    checkpoint,
    current_scheduler,
    current_task,
    sleep,
    sleep_until,
    spawn,
)

__all__ = [
    "Access",
    "Arena",
    "ArenaStats",
    "Event",
    "EventSource",
    "FdSource",
    "Field",
    "IrqSource",
    "Lock",
    "MmioWindow",
    "Queue",
    "Register",
    "RegisterMap",
    "Scheduler",
    "SignalSource",
    "Task",
    "TaskInfo",
    "TaskState",
    "TimerSource",
    "UioSource",
    "VectorStats",
    "VectorTable",
    "WatchdogReport",
    "checkpoint",
    "current_scheduler",
    "current_task",
    "doorbell",
    "pool_size_for",
    "sleep",
    "sleep_until",
    "spawn",
    "unlink_window",
]

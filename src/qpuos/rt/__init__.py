"""Real-time hygiene: garbage-collector pauses under a budget, CPU and memory placement.

``GCGuard`` measures every collection by generation, applies a policy (``"default"``,
``"frozen"``, ``"scheduled"``: young collections only in the loop's idle windows),
holds per-phase pause budgets and reports breaches as ``DegradeEvidence``; its
``idle`` method is the kernel scheduler's ``idle_hook``. ``RealtimeProfile`` pins a
thread to CPUs, asks for SCHED_FIFO/RR, locks memory and holds a CPU-latency request,
and its ``RealtimeReport`` says what the kernel granted and what it refused, and why.
``pin_to``, ``numa_topology`` and ``cpu_nodes`` are the single steps.
"""

from __future__ import annotations

from qpuos.rt._gctypes import DegradeEvidence, GCStats, GenerationStats
from qpuos.rt.affinity import (
    RealtimeItem,
    RealtimeProfile,
    RealtimeReport,
    cpu_nodes,
    numa_topology,
    pin_to,
)
from qpuos.rt.gcguard import GCGuard, GCPhase

__all__ = [
    "DegradeEvidence",
    "GCGuard",
    "GCPhase",
    "GCStats",
    "GenerationStats",
    "RealtimeItem",
    "RealtimeProfile",
    "RealtimeReport",
    "cpu_nodes",
    "numa_topology",
    "pin_to",
]

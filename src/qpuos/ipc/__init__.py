"""Inter-process communication: shared-memory rings between host and controller.

``SpscRing`` (fixed-size records, one producer and one consumer), ``RecordRing``
(variable-length records), ``MpmcRing`` (many producers and consumers). See
``qpuos.ipc.ring`` for the design: ownership, memory ordering, crash safety.
"""

from __future__ import annotations

from qpuos.ipc.ring import ArenaHook, MpmcRing, RecordRing, SpscRing, WaitMode, unlink_ring

__all__ = ["ArenaHook", "MpmcRing", "RecordRing", "SpscRing", "WaitMode", "unlink_ring"]

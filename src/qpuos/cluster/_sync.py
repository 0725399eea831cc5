"""The vocabulary of the sharded simulator's synchronisation: modes, drift, statistics.

``shards.py`` explains what each mode guarantees; these are the values it takes and
reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["MODES", "Drift", "Mode", "SyncStats"]

Mode = Literal["barrier", "pairwise", "relaxed"]
#: The sync modes; ``relaxed`` is unsafe and exists for the calibration test.
MODES: tuple[Mode, ...] = get_args(Mode)


@dataclass(frozen=True, slots=True)
class Drift:
    """Injected phase drift: shard ``shard`` releases every half-shard ``lag_s`` late."""

    shard: int
    lag_s: float


@dataclass(frozen=True, slots=True)
class SyncStats:
    """What one sharded run moved and how its shards synchronised.

    Attributes:
        mode: the sync mode.
        shards: number of shards.
        epochs: swaps each shard completed (its final epoch).
        swaps: swap steps; each moves half of the register's bytes.
        exchanges: qubits swapped in for one gate and straight back.
        global_gates: gates that mixed a global qubit (they moved data).
        free_global_gates: gates on a global qubit that moved no data.
        bytes_exchanged: bytes sent between shards, all shards together.
        barrier_waits: times the driver waited for every shard.
        acquire_checks: halves received whose sender and epoch were checked.
        stale_reads: halves not ready when read (``relaxed`` only; else 0).
        elapsed_s: wall time of the run (steps only, not the reset).
    """

    mode: str
    shards: int
    epochs: int
    swaps: int
    exchanges: int
    global_gates: int
    free_global_gates: int
    bytes_exchanged: int
    barrier_waits: int
    acquire_checks: int
    stale_reads: int
    elapsed_s: float

    @property
    def bytes_per_global_gate(self) -> float:
        """Bytes moved per gate that mixed a global qubit (0 when there was none)."""
        return self.bytes_exchanged / self.global_gates if self.global_gates else 0.0

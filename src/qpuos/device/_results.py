"""What a run returns: counts in Qiskit's bit order and the timing record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qpuos.quantum.circuit import Circuit

__all__ = ["LatencyStats", "RunResult", "format_counts", "lateness_stats"]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of a latency sample, in ns."""

    count: int
    p50_ns: float
    p99_ns: float
    max_ns: float
    mean_ns: float


def lateness_stats(sample: NDArray[np.int64]) -> LatencyStats:
    """p50/p99/max/mean of a sample of ns values (zeros for an empty sample).

    >>> lateness_stats(np.arange(101, dtype=np.int64)).p50_ns
    50.0
    """
    if len(sample) == 0:
        return LatencyStats(0, 0.0, 0.0, 0.0, 0.0)
    p50, p99 = np.percentile(sample, [50, 99])
    return LatencyStats(len(sample), float(p50), float(p99), float(sample.max()),
                        float(sample.mean()))


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run on the QPU.

    Attributes:
        counts: bitstring -> shots, classical bits in Qiskit's order (bit 0 rightmost,
            registers separated by a space, the first-declared register rightmost).
        shots: shots taken.
        dilation: wall ns per schedule ns the driver chose (0: as fast as possible).
        num_instructions: records streamed (the END record included).
        lateness: issue lateness (actual issue - dilated timestamp) over every record.
        lateness_ns: the per-record sample behind ``lateness``, in stream order.
        end_to_end_ns: from ``run()`` being called to the results being read.
        ring_latency_ns: from the first publication to the controller seeing the job.
        execute_ns: from schedule time 0 to the END record, wall time.
        trajectory: the program measured mid-circuit or reset, so each shot was replayed.
        controller_pid: the controller process.
        realtime: what the controller's real-time profile was granted.
        gc: the controller's GC guard statistics.
    """

    counts: dict[str, int]
    shots: int
    dilation: float
    num_instructions: int
    lateness: LatencyStats
    lateness_ns: NDArray[np.int64] = field(repr=False)
    end_to_end_ns: int
    ring_latency_ns: int
    execute_ns: int
    trajectory: bool
    controller_pid: int
    realtime: str
    gc: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The counts and the timing record as JSON-ready values (no per-record sample)."""
        lat = self.lateness
        return {
            "counts": dict(sorted(self.counts.items())), "shots": self.shots,
            "dilation": self.dilation, "num_instructions": self.num_instructions,
            "lateness_ns": {"p50": lat.p50_ns, "p99": lat.p99_ns, "max": lat.max_ns,
                            "mean": lat.mean_ns, "count": lat.count},
            "end_to_end_ns": self.end_to_end_ns, "ring_latency_ns": self.ring_latency_ns,
            "execute_ns": self.execute_ns, "trajectory": self.trajectory,
            "realtime": self.realtime, "gc": self.gc,
        }


def format_counts(words: NDArray[np.int64], circuit: Circuit) -> dict[str, int]:
    """Count outcome words as Qiskit prints them for ``circuit``'s classical registers.

    >>> c = Circuit.with_registers([("q", 1)], [("a", 2), ("b", 1)])
    >>> format_counts(np.array([0b101, 0b101, 0b001]), c)
    {'1 01': 2, '0 01': 1}
    """
    regs = list(circuit.cregs)
    if not regs:
        return {"": len(words)} if len(words) else {}
    out: Counter[str] = Counter()
    for word, n in zip(*np.unique(words, return_counts=True), strict=True):
        w = int(word)
        parts = ["".join("1" if w >> (r.start + i) & 1 else "0"
                         for i in reversed(range(r.size))) for r in reversed(regs)]
        out[" ".join(parts)] += int(n)
    return dict(out.most_common())

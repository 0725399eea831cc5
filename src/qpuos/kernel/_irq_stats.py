"""Per-vector counters and latency samples, and the /proc/interrupts-like table.

Counters are plain ints on the vector's slot (the top half bumps them); latencies go
into fixed-size sample rings (the last ``size`` values, overwritten in place), so the
hot path appends with one store and percentiles are computed only when asked.
Three latencies are kept per vector, all in ns:

- top half: acknowledge + handler, measured around both, for vectors with a
  handler (without one the top half is the acknowledge alone and is not timed:
  that keeps one clock read per interrupt on the path to the coroutine);
- wake: from the top half's start to the first waiting coroutine resuming (the
  scheduler reports it);
- lateness (timers only): from the nominal expiry to the top half's start.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Latency", "SampleRing", "VectorStats", "format_stats"]


class SampleRing:
    """The last ``size`` samples (ints), overwritten in place."""

    __slots__ = ("_data", "_mask", "count")

    def __init__(self, size: int = 1024) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError(f"sample ring size must be a power of two, got {size}")
        self._data = [0] * size
        self._mask = size - 1
        self.count = 0

    def add(self, value: int) -> None:
        """Record one sample."""
        self._data[self.count & self._mask] = value
        self.count += 1

    def values(self) -> list[int]:
        """The retained samples, oldest first."""
        n = len(self._data)
        if self.count <= n:
            return self._data[:self.count]
        i = self.count & self._mask
        return self._data[i:] + self._data[:i]

    def summary(self) -> Latency | None:
        """Percentiles of the retained samples, or None without any."""
        vals = sorted(self.values())
        if not vals:
            return None
        n = len(vals)
        return Latency(samples=n, p50_ns=vals[(n - 1) // 2],
                       p99_ns=vals[min(n - 1, (n * 99) // 100)], max_ns=vals[-1],
                       min_ns=vals[0])


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of one latency, in ns, over the retained samples."""

    samples: int
    p50_ns: int
    p99_ns: int
    max_ns: int
    min_ns: int


@dataclass(frozen=True, slots=True)
class VectorStats:
    """A snapshot of one vector's counters and latencies.

    Attributes:
        vector: the vector number.
        name: the name given at registration.
        source: the source's description (kind, fd, period...).
        priority: the vector's priority (higher is dispatched first).
        count: interrupts acknowledged (spurious wake-ups not included).
        errors: top halves whose handler raised (the loop went on).
        overruns: extra timer expirations folded into one interrupt (missed ticks).
        spurious: polls that reported the fd but found nothing to read.
        unclaimed: interrupts no coroutine was waiting for (latched for the next one).
        masked: the vector is no longer polled (its fd reached end of file).
        last_error: ``"ExcType: message"`` of the last handler failure, or "".
        top_half: acknowledge + handler time (None for a vector without a handler).
        wake: top half start -> waiting coroutine resumed.
        lateness: timers: nominal expiry -> top half start.
    """

    vector: int
    name: str
    source: str
    priority: int
    count: int
    errors: int
    overruns: int
    spurious: int
    unclaimed: int
    masked: bool
    last_error: str
    top_half: Latency | None
    wake: Latency | None
    lateness: Latency | None


def _us(lat: Latency | None, first: str, second: str) -> str:
    if lat is None:
        return "-"
    a = getattr(lat, first) / 1e3
    b = getattr(lat, second) / 1e3
    return f"{a:.1f}/{b:.1f}"


def format_stats(rows: list[VectorStats]) -> str:
    """Render rows like ``/proc/interrupts``: one line per vector, counts first."""
    header = (f"{'VEC':>4}  {'COUNT':>10} {'ERR':>5} {'OVERRUN':>7} {'SPUR':>5} "
              f"{'TOP µs p50/max':>15} {'WAKE µs p50/p99':>16} {'LATE µs p50/p99':>16} "
              f"{'PRIO':>4}  {'SOURCE':<28} NAME")
    lines = [header]
    for s in rows:
        src = s.source + (" (masked)" if s.masked else "")
        lines.append(
            f"{s.vector:>3}:  {s.count:>10} {s.errors:>5} {s.overruns:>7} {s.spurious:>5} "
            f"{_us(s.top_half, 'p50_ns', 'max_ns'):>15} "
            f"{_us(s.wake, 'p50_ns', 'p99_ns'):>16} "
            f"{_us(s.lateness, 'p50_ns', 'p99_ns'):>16} "
            f"{s.priority:>4}  {src:<28} {s.name}")
    return "\n".join(lines)

"""A log-linear histogram of durations in ns: constant memory, quantiles within 1/16.

Each power of two is split into 16 equal buckets, so a reported quantile (the upper
edge of its bucket, capped at the exact maximum) is at most 1/16 above the true value
and never below it. Values under 16 ns are exact. Recording is a few integer
operations and one list increment, cheap enough for a ``gc.callbacks`` entry; raw
samples were rejected because a long-running guard must not grow its own memory.
"""

from __future__ import annotations

__all__ = ["_Histogram"]

_SUB = 16  # buckets per power of two
_BUCKETS = 64 * _SUB


class _Histogram:
    """Counts of non-negative integer durations, with exact count, total and maximum."""

    __slots__ = ("_counts", "max", "n", "total")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.n = 0
        self.total = 0
        self.max = 0

    def record(self, value: int) -> None:
        """Add one duration (negative values count as 0)."""
        if value < _SUB:
            index = value if value > 0 else 0
        else:
            shift = value.bit_length() - 5
            index = _SUB * (shift + 1) + (value >> shift) - _SUB
        self._counts[index] += 1
        self.n += 1
        self.total += value
        if value > self.max:  # noqa: PLR1730 (a builtin call costs more in a gc callback)
            self.max = value

    def quantile(self, q: float) -> int:
        """The smallest bucket edge with at least ``q`` of the samples at or below it.

        Returns 0 for an empty histogram.
        """
        if self.n == 0:
            return 0
        rank = max(1, -(-int(q * self.n * 1_000_000) // 1_000_000))  # ceil, float-safe
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                return min(_upper(index), self.max)
        return self.max


def _upper(index: int) -> int:
    """Largest value that falls in bucket ``index``."""
    if index < _SUB:
        return index
    shift = index // _SUB - 1
    return ((_SUB + 1 + index % _SUB) << shift) - 1

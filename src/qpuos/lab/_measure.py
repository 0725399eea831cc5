"""Shared measuring helpers: interleaved sweeps with repeats, and a per-operation timer.

Every probe measures through :func:`sweep`: each repeat visits all sweep points in a
fresh random order, so slow drift of a shared machine (another process starting, the
CPU clocking down) spreads over all points as noise instead of bending the curve into a
false knee.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from qpuos.lab.model import Progress

__all__ = ["ns_per_op", "sweep"]

T = TypeVar("T")


def sweep(points: Sequence[T], repeats: int, measure: Callable[[T], float], *,
          progress: Progress | None = None, seed: int = 0,
          done: float = 0.0, share: float = 1.0) -> list[list[float]]:
    """Measure every point ``repeats`` times, in a shuffled order each round.

    Args:
        points: the sweep points (any values ``measure`` accepts).
        repeats: rounds over all points.
        measure: returns one measurement of a point.
        progress: told the probe's fraction done after each measurement.
        seed: seed of the shuffling.
        done: the probe's fraction done before this sweep.
        share: the fraction of the probe this sweep accounts for.

    Returns:
        The repeats at each point, in the order of ``points``.

    >>> sweep([1, 2, 3], 2, lambda p: p * 10.0)
    [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]
    """
    rng = random.Random(seed)
    out: list[list[float]] = [[] for _ in points]
    order = list(range(len(points)))
    total = max(1, repeats * len(points))
    count = 0
    for _ in range(repeats):
        rng.shuffle(order)
        for i in order:
            out[i].append(float(measure(points[i])))
            count += 1
            if progress is not None:
                progress(done + share * count / total)
    return out


def ns_per_op(body: Callable[[int], object], n: int) -> float:
    """Nanoseconds per operation of ``body(n)``, which performs ``n`` operations.

    >>> ns_per_op(lambda n: sum(range(n)), 1000) > 0
    True
    """
    t0 = time.perf_counter_ns()
    body(n)
    return (time.perf_counter_ns() - t0) / max(1, n)

"""Probe: where allocation and garbage collection change cost.

1. Allocation latency per size, ``bytes(n)`` timed per call, in three windows swept in
   fine steps: small objects (where the interpreter's own small-object allocator hands
   over to the C allocator), around the page size, and large blocks (where the C
   allocator may switch to ``mmap`` or trim its heap; there the cost is compared per
   KiB, because filling the block grows with its size). One step search per window.
2. A full ``gc.collect()`` pause against the number of tracked containers alive (the
   rest of the process frozen out with ``gc.freeze()``): the knee (log-log hinge) past
   which the pause grows with the population instead of being the collector's fixed
   cost, or bends again when the walk outgrows the caches.
3. RSS before, during and after holding many small objects (a note, not a threshold).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import numpy as np

from qpuos.lab._measure import sweep
from qpuos.lab.knee import Knee, find_hinge, find_step
from qpuos.lab.model import (
    Finding,
    Mark,
    Miss,
    Panel,
    ProbeResult,
    Progress,
    Series,
    Size,
    check_size,
    relative_spread,
)

__all__ = ["PROBE", "QUANTITIES", "run"]

PROBE = "allocation"
QUANTITIES = ("small_object_size", "page_size", "large_block_size", "gc_tracked_objects")

# size -> (repeats, calls per measurement, points per large window, largest container count)
_PLAN = {"tiny": (3, 500, 12, 30_000), "quick": (5, 10_000, 24, 1_000_000),
         "full": (9, 40_000, 40, 4_000_000)}


def _alloc_ns(n: int, calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        bytes(n)
    return (time.perf_counter_ns() - t0) / calls


def _gc_pause_ns(n: int) -> float:
    was = gc.isenabled()
    gc.disable()
    gc.freeze()        # the process's own objects (numpy, matplotlib, ...) sit this out
    try:
        held: list[list[int]] = [[] for _ in range(n)]
        gc.collect()                     # settle: the new objects reach the oldest gen
        t0 = time.perf_counter_ns()
        gc.collect()
        dt = time.perf_counter_ns() - t0
        del held
    finally:
        gc.unfreeze()
        if was:
            gc.enable()
    return float(dt)


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_note(count: int) -> str:
    before = _rss_bytes()
    held = [(i, i) for i in range(count)]
    peak = _rss_bytes()
    del held
    gc.collect()
    after = _rss_bytes()
    grown = max(1, peak - before)
    kept = max(0, after - before)
    return (f"RSS: {count:,} small tuples grew RSS by {grown / 2**20:.1f} MiB; after "
            f"freeing them {kept / 2**20:.1f} MiB ({100 * kept / grown:.0f} %) stayed "
            "with the process")


def _window(xs: list[int], repeats: int, measure: Callable[[int], float], *,
            progress: Progress | None, seed: int, done: float, share: float
            ) -> list[list[float]]:
    return sweep(xs, repeats, measure, progress=progress, seed=seed, done=done, share=share)


def run(*, size: Size = "quick", progress: Progress | None = None,
        seed: int = 0) -> ProbeResult:
    """Sweep allocation sizes and GC population; find the steps.

    Args:
        size: ``tiny`` (tests), ``quick`` or ``full``.
        progress: told the fraction done.
        seed: seed of the sweep order and the bootstrap.

    Returns:
        The probe's panels, findings and misses.

    >>> run(size="tiny").searched() == set(QUANTITIES)
    True
    """
    t_start = time.perf_counter()
    repeats, calls, n_large, n_gc = _PLAN[check_size(size)]
    small = list(range(16, 1025, 16))
    page = list(range(2048, 12289, 256))
    large = sorted({int(v) for v in np.geomspace(16 * 1024, 4 * 1024 * 1024, n_large)})
    counts = sorted({int(v) for v in np.geomspace(100, n_gc, 14)})

    def alloc(n: int) -> float:
        return _alloc_ns(n, calls)

    def alloc_large(n: int) -> float:
        return _alloc_ns(n, max(10, calls // 20)) / (n / 1024)

    small_reps = _window(small, repeats, alloc, progress=progress, seed=seed, done=0.0,
                         share=0.3)
    page_reps = _window(page, repeats, alloc, progress=progress, seed=seed + 1, done=0.3,
                        share=0.2)
    large_reps = _window(large, repeats, alloc_large, progress=progress, seed=seed + 2,
                         done=0.5, share=0.2)
    gc_reps = _window(counts, repeats, _gc_pause_ns, progress=progress,
                      seed=seed + 3, done=0.7, share=0.3)
    findings: list[Finding] = []
    misses: list[Miss] = []

    def search(quantity: str, xs: list[int], reps: list[list[float]], unit: str,
               describe: Callable[[Knee], str], *, hinge: bool = False
               ) -> tuple[Mark, ...]:
        knee = (find_hinge(xs, reps, seed=seed) if hinge
                else find_step(xs, reps, seed=seed))
        if knee is None:
            misses.append(Miss(PROBE, quantity, f"no step or knee within noise over "
                                                f"{xs[0]:,}..{xs[-1]:,} {unit}"))
            return ()
        findings.append(Finding(PROBE, quantity, knee.x, unit, knee.ratio,
                                knee.confidence, describe(knee)))
        return (Mark(knee.x, f"{knee.x:,.0f}"),)

    small_marks = search(
        "small_object_size", small, small_reps, "bytes",
        lambda k: f"bytes objects of more than {k.x:,.0f} bytes of payload cost "
                  f"{k.ratio:.2f}x to allocate ({k.before:.0f} -> {k.after:.0f} ns): "
                  "the small-object allocator's limit, past it the C allocator")
    page_marks = search(
        "page_size", page, page_reps, "bytes",
        lambda k: f"allocations above {k.x:,.0f} bytes cost {k.ratio:.2f}x "
                  f"({k.before:.0f} -> {k.after:.0f} ns)")
    large_marks = search(
        "large_block_size", large, large_reps, "bytes",
        lambda k: f"blocks above {k.x / 1024:,.0f} KiB cost {k.ratio:.2f}x per KiB "
                  f"({k.before:.1f} -> {k.after:.1f} ns/KiB)")
    gc_marks = search(
        "gc_tracked_objects", counts, gc_reps, "objects",
        lambda k: f"past {k.x:,.0f} tracked containers a full gc.collect() pause grows "
                  f"with their number ({k.at / 1e6:.2f} ms there, {k.after / 1e6:.1f} ms "
                  f"at {counts[-1]:,}: x{k.ratio:.1f})", hinge=True)
    panels = (
        Panel("bytes(n): small objects", "payload bytes", "ns per allocation",
              (Series.of("bytes(n)", small, small_reps),), log_x=False, log_y=False,
              marks=small_marks),
        Panel("bytes(n): around the page size", "payload bytes", "ns per allocation",
              (Series.of("bytes(n)", page, page_reps),), log_x=False, log_y=False,
              marks=page_marks),
        Panel("bytes(n): large blocks, per KiB", "payload bytes", "ns per KiB",
              (Series.of("bytes(n)", large, large_reps),), marks=large_marks),
        Panel("gc.collect() pause vs tracked containers", "tracked containers",
              "ns per collection", (Series.of("gc.collect()", counts, gc_reps),),
              marks=gc_marks),
    )
    notes = (_rss_note(n_gc),)
    return ProbeResult(PROBE, "Allocation and garbage collection", panels,
                       tuple(findings), tuple(misses), notes,
                       time.perf_counter() - t_start, relative_spread(panels))

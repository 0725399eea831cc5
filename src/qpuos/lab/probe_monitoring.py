"""Probe: the sampling interval below which watching a Python process costs over 1 %.

A fixed CPU-bound job runs with a sampler thread beside it that takes one sample, sleeps
the interval, and repeats; the same job also runs alone right before (so drift of a
shared machine cancels in the ratio). The overhead at each interval is
``time with / time alone - 1``. Samplers: ``/proc/self/stat`` read and parsed, psutil's
CPU times and memory, ``gc.get_stats()``, and ``tracemalloc`` (tracing on during the job,
``get_traced_memory()`` as the sample). :func:`~qpuos.lab.knee.find_inverse_crossing`
fits ``overhead = c / interval + d`` and solves for the 1 % level; when the constant
part ``d`` (tracemalloc's tracing) is already above 1 %, no interval is cheap enough.
The samples actually taken per second are recorded too: the sampler thread must win the
GIL from the job, so the interval asked for is not always the interval achieved.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qpuos.lab._measure import sweep
from qpuos.lab.knee import find_inverse_crossing
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
)

__all__ = ["LEVEL", "PROBE", "QUANTITIES", "run"]

PROBE = "monitoring"
QUANTITIES = ("proc_interval", "psutil_interval", "gc_stats_interval",
              "tracemalloc_interval")
LEVEL = 0.01
"""The overhead the issue asks about: 1 % of the watched job's time."""
# size -> (job seconds, repeats, number of intervals)
_PLAN = {"tiny": (0.005, 2, 4), "quick": (0.08, 5, 7), "full": (0.2, 9, 10)}


def _proc_sample() -> object:
    return Path("/proc/self/stat").read_text(encoding="ascii").split()


def _samplers() -> list[tuple[str, str, Callable[[], object], bool]]:
    """(quantity, label, sample, needs tracemalloc) for each sampler available."""
    out: list[tuple[str, str, Callable[[], object], bool]] = [
        ("proc_interval", "/proc/self/stat", _proc_sample, False)]
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        proc = psutil.Process()
        out.append(("psutil_interval", "psutil", lambda: (proc.cpu_times(),
                                                          proc.memory_info()), False))
    out.append(("gc_stats_interval", "gc.get_stats()", gc.get_stats, False))
    out.append(("tracemalloc_interval", "tracemalloc", tracemalloc.get_traced_memory, True))
    return out


def _job(seconds: float) -> Callable[[], None]:
    """A CPU-bound job calibrated to take about ``seconds`` alone."""
    def body(n: int) -> None:
        total = 0
        for i in range(n):
            total += i * i
            total &= 0xFFFF

    t0 = time.perf_counter()
    body(100_000)
    per = (time.perf_counter() - t0) / 100_000
    n = max(1_000, int(seconds / per))
    return lambda: body(n)


def _overhead(job: Callable[[], None], sample: Callable[[], object], interval: float,
              trace: bool, rates: dict[float, list[float]]) -> float:
    t0 = time.perf_counter()
    job()
    alone = time.perf_counter() - t0
    stop = threading.Event()

    taken = [0]

    def watch() -> None:
        while not stop.is_set():
            sample()
            taken[0] += 1
            time.sleep(interval)

    if trace:
        tracemalloc.start()
    watcher = threading.Thread(target=watch, daemon=True)
    try:
        watcher.start()
        t0 = time.perf_counter()
        job()
        watched = time.perf_counter() - t0
    finally:
        stop.set()
        watcher.join()
        if trace:
            tracemalloc.stop()
    rates.setdefault(interval, []).append(taken[0] / watched)
    return watched / alone - 1.0


def _measure_at(job: Callable[[], None], sample: Callable[[], object], trace: bool,
                rates: dict[float, list[float]]) -> Callable[[float], float]:
    def measure(interval: float) -> float:
        return _overhead(job, sample, interval, trace, rates)
    return measure


def run(*, size: Size = "quick", progress: Progress | None = None,
        seed: int = 0) -> ProbeResult:
    """Sweep the sampling interval for each sampler; find where overhead passes 1 %.

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
    seconds, repeats, points = _PLAN[check_size(size)]
    intervals = [float(v) for v in np.geomspace(50e-6, 50e-3, points)]
    job = _job(seconds)
    samplers = _samplers()
    reps: dict[str, list[list[float]]] = {}
    xs: dict[str, list[float]] = {}
    rates: dict[str, dict[float, list[float]]] = {}
    for i, (key, _, sample, trace) in enumerate(samplers):
        # tracing slows the job many times over whatever the interval: a few points do
        xs[key] = ([intervals[0], intervals[len(intervals) // 2], intervals[-1]] if trace
                   else intervals)
        rates[key] = {}
        reps[key] = sweep(xs[key], min(repeats, 2) if trace else repeats,
                          _measure_at(job, sample, trace, rates[key]),
                          progress=progress, seed=seed + i, done=i / len(samplers),
                          share=1 / len(samplers))
    findings: list[Finding] = []
    misses: list[Miss] = []
    marks: list[Mark] = []
    for key, label, _, _ in samplers:
        k = find_inverse_crossing(xs[key], reps[key], level=LEVEL, seed=seed)
        if k is None:
            meds = Series.of("", xs[key], reps[key]).medians()
            why = (f"overhead is {100 * meds[-1]:.1f} % even at "
                   f"{intervals[-1] * 1e3:g} ms: the cost is not in the sampling"
                   if meds[-1] > LEVEL else "overhead does not grow as the interval "
                   "shrinks (within noise)")
            misses.append(Miss(PROBE, key, f"{label}: {why}"))
            continue
        findings.append(Finding(
            PROBE, key, k.x, "seconds", k.ratio, k.confidence,
            f"{label}: sampling more often than every {k.x * 1e6:,.0f} us costs the "
            f"watched job over 1 % (about {k.before * 1e6:.1f} us of job time per "
            f"sample; {100 * k.ratio * LEVEL:.0f} % at {intervals[0] * 1e6:.0f} us)"))
        marks.append(Mark(k.x, label))
    missing = set(QUANTITIES) - {s[0] for s in samplers}
    for key in sorted(missing):
        misses.append(Miss(PROBE, key, "psutil is not installed: not measured"))
    panels = (Panel("overhead on a CPU-bound job vs sampling interval", "interval (s)",
                    "overhead (fraction of job time)",
                    tuple(Series.of(lbl, xs[k], reps[k]) for k, lbl, _, _ in samplers),
                    log_y=False, marks=tuple(marks), hline=LEVEL),)
    notes = [f"job: about {seconds * 1e3:g} ms of pure-Python arithmetic, timed alone "
             "and watched, alternately",
             f"the sampler thread needs the GIL; the switch interval is "
             f"{sys.getswitchinterval() * 1e3:g} ms, which caps how often it can sample"]
    for key, label, _, _ in samplers:
        got = float(np.median(rates[key][xs[key][0]]))
        notes.append(f"{label}: asked every {xs[key][0] * 1e6:.0f} us, achieved "
                     f"{got:,.0f} samples/s (every {1e6 / max(got, 1e-9):,.0f} us)")
    return ProbeResult(PROBE, "Monitoring overhead", panels, tuple(findings),
                       tuple(misses), tuple(notes),
                       time.perf_counter() - t_start, _spread(reps))


def _spread(reps: dict[str, list[list[float]]]) -> float:
    """Median interquartile range of the overheads: already a fraction of the job's time
    (a spread relative to an overhead near zero would mean nothing)."""
    iqrs = [float(np.subtract(*np.percentile(r, [75, 25])))
            for rows in reps.values() for r in rows if len(r) > 1]
    return float(np.median(iqrs)) if iqrs else 0.0

"""Probe: how many concurrent workers the machine carries before tail latency breaks.

For each kind (asyncio tasks, threads, processes) N workers run a periodic unit of
work: compute ``sum(range(_WORK))``, then sleep ``_PERIOD_S``. Meanwhile a probe (a task,
the main thread, the parent process) sleeps ``_TICK_S`` again and again and records how
late it wakes. N is swept over decades; each point gives the probe's p99 lateness and
the workers' throughput (work units per second). :func:`~qpuos.lab.knee.find_hinge` in
log-log space finds where p99 breaks away from its floor, and where throughput stops
growing with N (the workers saturate the interpreter or the CPUs).

Asyncio tasks and threads share one interpreter, so their CPU-bound work is serialised
by the GIL; processes are not. A separate fixed job split over 1 and 2 threads, and over
2 processes, shows the GIL's effect as a speed-up (a note).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qpuos.lab._measure import sweep
from qpuos.lab.knee import find_hinge
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

PROBE = "concurrency"
QUANTITIES = ("asyncio_tasks", "threads", "processes", "asyncio_tasks_throughput",
              "threads_throughput", "processes_throughput")
_WORK = 3_000          # sum(range(_WORK)): tens of microseconds of bytecode
_PERIOD_S = 0.001
_TICK_S = 0.001
# size -> (window s, repeats, largest N for tasks/threads, largest N for processes)
_PLAN = {"tiny": (0.03, 2, 16, 6), "quick": (0.25, 7, 64, 24), "full": (0.5, 9, 512, 64)}


def _unit() -> int:
    return sum(range(_WORK))


def _p99_us(late: list[float]) -> float:
    return float(np.percentile(late, 99)) * 1e6 if late else 0.0


def _asyncio_point(n: int, window: float) -> tuple[float, float]:
    async def main() -> tuple[list[float], int]:
        stop = time.perf_counter() + window
        done = [0]

        async def worker() -> None:
            while time.perf_counter() < stop:
                _unit()
                done[0] += 1
                await asyncio.sleep(_PERIOD_S)

        tasks = [asyncio.create_task(worker()) for _ in range(n)]
        late: list[float] = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await asyncio.sleep(_TICK_S)
            late.append(time.perf_counter() - t0 - _TICK_S)
        await asyncio.gather(*tasks)
        return late, done[0]

    late, done = asyncio.run(main())
    return _p99_us(late), done / window


def _sleep_probe(stop: float) -> list[float]:
    late: list[float] = []
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        time.sleep(_TICK_S)
        late.append(time.perf_counter() - t0 - _TICK_S)
    return late


def _thread_point(n: int, window: float) -> tuple[float, float]:
    stop = [float("inf")]                # set once every thread runs: the window is whole
    counts = [0] * n

    def worker(i: int) -> None:
        while time.perf_counter() < stop[0]:
            _unit()
            counts[i] += 1
            time.sleep(_PERIOD_S)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + window
    late = _sleep_probe(stop[0])
    for t in threads:
        t.join()
    return _p99_us(late), sum(counts) / window


def _process_worker(stop: float, slot: int, counts: Any) -> None:
    while time.time() < stop:
        _unit()
        counts[slot] += 1
        time.sleep(_PERIOD_S)


def _process_point(n: int, window: float) -> tuple[float, float]:
    ctx = mp.get_context("fork")
    counts = ctx.Array("q", n, lock=False)
    start_by = time.time() + 0.02 * n                    # all forked before the window
    stop = start_by + window
    procs = [ctx.Process(target=_process_worker, args=(stop, i, counts), daemon=True)
             for i in range(n)]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_by - time.time()))
    late = _sleep_probe(time.perf_counter() + max(0.0, stop - time.time()))
    for p in procs:
        p.join(timeout=window + 5)
        if p.is_alive():  # pragma: no cover - a stuck child: do not leave it behind
            p.kill()
            p.join()
    return _p99_us(late), sum(counts) / window


def _gil_note(work: int) -> str:
    def job(k: int) -> None:
        for _ in range(k):
            _unit()

    def timed(run: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    def threads(k: int) -> None:
        ts = [threading.Thread(target=job, args=(work // k,)) for _ in range(k)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def procs() -> None:
        ctx = mp.get_context("fork")
        ps = [ctx.Process(target=job, args=(work // 2,)) for _ in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()

    one = timed(lambda: job(work))
    two_t = timed(lambda: threads(2))
    two_p = timed(procs)
    return (f"GIL: a CPU-bound job split over 2 threads runs x{one / two_t:.2f} the speed "
            f"of 1 thread; over 2 processes x{one / two_p:.2f}")


def _points(top: int) -> list[int]:
    out = sorted({round(v) for v in np.geomspace(1, top, 12)})
    return out


def run(*, size: Size = "quick", progress: Progress | None = None,
        seed: int = 0) -> ProbeResult:
    """Sweep the number of tasks, threads and processes; find where p99 breaks away.

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
    window, repeats, top, top_proc = _PLAN[check_size(size)]
    kinds: list[tuple[str, str, Callable[[int, float], tuple[float, float]], list[int]]] = [
        ("asyncio_tasks", "asyncio tasks", _asyncio_point, _points(top)),
        ("threads", "threads", _thread_point, _points(top)),
        ("processes", "processes", _process_point, _points(top_proc))]
    p99: dict[str, list[list[float]]] = {}
    rate: dict[str, dict[int, list[float]]] = {}
    for i, (key, _, point, ns) in enumerate(kinds):
        got: dict[int, list[float]] = {}
        rate[key] = got

        def measure(n: int, point: Callable[[int, float], tuple[float, float]] = point,
                    got: dict[int, list[float]] = got) -> float:
            lat, thr = point(n, window)
            got.setdefault(n, []).append(thr)
            return max(lat, 1.0)                 # µs; floor keeps log space defined
        p99[key] = sweep(ns, repeats, measure, progress=progress, seed=seed + i,
                         done=0.9 * i / 3, share=0.3)
    findings: list[Finding] = []
    misses: list[Miss] = []
    marks: list[Mark] = []
    for key, label, _, ns in kinds:
        knee = find_hinge(ns, p99[key], seed=seed)
        if knee is None:
            misses.append(Miss(PROBE, key, f"{label}: p99 lateness shows no knee over "
                                           f"1..{ns[-1]} workers"))
            continue
        thr = float(np.median(rate[key][int(knee.x)]))
        findings.append(Finding(
            PROBE, key, knee.x, label, knee.ratio, knee.confidence,
            f"past {knee.x:g} {label} the probe's p99 wake-up lateness breaks away: "
            f"{knee.at:.0f} us there, {knee.after:.0f} us at {ns[-1]} (x{knee.ratio:.1f}); "
            f"{thr:,.0f} work units/s at the knee"))
        marks.append(Mark(knee.x, key))
    rate_marks: list[Mark] = []
    for key, label, _, ns in kinds:
        rate_reps = [rate[key][n] for n in ns]
        knee = find_hinge(ns, rate_reps, seed=seed)
        quantity = f"{key}_throughput"
        if knee is None or knee.after >= knee.at * 2:
            misses.append(Miss(PROBE, quantity, f"{label}: throughput keeps growing "
                                                f"over 1..{ns[-1]} workers"))
            continue
        findings.append(Finding(
            PROBE, quantity, knee.x, label, knee.at / knee.before, knee.confidence,
            f"throughput stops scaling past {knee.x:g} {label}: {knee.at:,.0f} work "
            f"units/s there (x{knee.at / knee.before:.1f} of one worker), "
            f"{knee.after:,.0f} at {ns[-1]}"))
        rate_marks.append(Mark(knee.x, key))
    if progress is not None:
        progress(0.95)
    notes = (_gil_note(200 if size == "tiny" else 2_000),
             f"each worker: sum(range({_WORK})) then sleep {_PERIOD_S * 1e3:g} ms; the "
             f"probe sleeps {_TICK_S * 1e3:g} ms and records how late it wakes")
    panels = (
        Panel("probe p99 wake-up lateness vs workers", "workers (N)", "p99 lateness (us)",
              tuple(Series.of(lbl, ns, p99[k]) for k, lbl, _, ns in kinds),
              marks=tuple(marks)),
        Panel("throughput vs workers", "workers (N)", "work units per second",
              tuple(Series.of(lbl, ns, [rate[k][n] for n in ns])
                    for k, lbl, _, ns in kinds), marks=tuple(rate_marks)),
    )
    if progress is not None:
        progress(1.0)
    return ProbeResult(PROBE, "Concurrency", panels, tuple(findings), tuple(misses), notes,
                       time.perf_counter() - t_start, relative_spread(panels[:1]))

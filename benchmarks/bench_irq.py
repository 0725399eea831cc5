"""``qpuos bench irq``: interrupt -> coroutine latency and timer lateness, beside asyncio.

Part 1, doorbell: another process writes an eventfd; how long until the coroutine
awaiting it resumes. The writer takes ``t0 = CLOCK_MONOTONIC`` (valid across
processes) and writes it as the eventfd's count; the awaiting coroutine takes ``t1``
as soon as its await returns, and acknowledges through a second eventfd, so exactly
one event is in flight. Events come every ``--interval-us`` plus a random
0..``--jitter-us`` (the writer sleeps, then spins the last 200 µs, so the time from
``t0`` to its write is the same hot path for every implementation). Implementations, same run, same
writer:

- qpuos, blocking: ``Scheduler(mode="block")``, epoll_wait until the interrupt;
- qpuos, spin-then-block: polls for ``--spin-us`` after each event before blocking
  (longer than the gap between events: the spin catches them; a short spin budget is
  also run and reported for contrast);
- qpuos, busy-poll: ``mode="poll"``, never blocks;
- qpuos, busy-poll with the table's poller swapped for ``select.epoll`` (the os
  module; the acknowledge still goes through the gate): what the gate costs, for
  contrast, no target;
- asyncio: one persistent ``loop.add_reader`` on the eventfd (no per-event
  registration); its callback reads the count and completes the future the coroutine
  awaits — the least an asyncio program can do;
- uvloop the same way, if installed.

Every implementation runs once per round (``--rounds``, order rotated each round) and
the samples are pooled, so load that comes and goes on a shared machine is spread over
all of them rather than landing on whichever ran at that moment.

Part 2, periodic timers at 1 kHz and 10 kHz: lateness of each tick, from its nominal
time to the coroutine resuming. qpuos: a timerfd vector (absolute deadlines) awaited
with ``irq``, in blocking, spin-then-block (the loop starts polling 200 µs before the
next expiry) and busy-poll mode; the polling modes take ticks by the clock and move the
kernel timer 100 µs behind as a backstop (see ``qpuos.kernel.scheduler``). asyncio:
``asyncio.sleep`` to the next absolute deadline. Both skip ticks they overran and count
them as missed.

Targets (issue [kernel] 5): qpuos blocking p50 <= 1/2 of asyncio's; spin-then-block
and busy-poll p50 <= 3 µs; 1 kHz timer lateness p99 <= 50 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import BenchRecord
from qpuos.kernel.irq import EventSource, TimerSource, VectorTable
from qpuos.kernel.scheduler import Scheduler, irq

WRITER = r"""
import os, random, select, sys, time
efd, ack, n, interval_ns, jitter_ns, seed = map(int, sys.argv[1:7])
rng = random.Random(seed)
perf = time.perf_counter_ns
for _ in range(n):
    due = perf() + interval_ns + int(rng.random() * jitter_ns)
    time.sleep(max(0, due - perf() - 200_000) / 1e9)  # sleep most of the gap...
    while perf() < due:  # ...then spin, so t0 -> write is not a cold CPU's wake-up
        pass
    os.eventfd_write(efd, perf())
    if not select.select([ack], [], [], 10)[0]:
        sys.exit("no acknowledgement within 10 s; reader gone")
    os.eventfd_read(ack)
"""

RUN_LIMIT_NS = 120 * 10**9  # a hung implementation fails the run instead of hanging it


def _writer(efd: int, ack: int, n: int, interval_us: int, jitter_us: int,
            seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(efd), str(ack), str(n), str(interval_us * 1000),
         str(jitter_us * 1000), str(seed)], pass_fds=(efd, ack))


def _stats(samples: list[int]) -> dict[str, float]:
    if not samples:
        return {"n": 0, "p50_us": math.nan, "p99_us": math.nan, "p999_us": math.nan,
                "max_us": math.nan, "mean_us": math.nan}
    s = sorted(samples)
    n = len(s)

    def q(f: float) -> float:
        return s[min(n - 1, int(f * n))] / 1e3

    return {"n": n, "p50_us": s[(n - 1) // 2] / 1e3, "p99_us": q(0.99),
            "p999_us": q(0.999), "max_us": s[-1] / 1e3, "mean_us": sum(s) / n / 1e3}


class SelectEpollPoller:
    """The vector table's Poller over ``select.epoll`` (the os module), for contrast.

    qpuos itself polls through its ctypes syscall gate; this shows what the gate's
    ~0.4 µs per crossing costs on the busy-poll path. Timeouts in whole ms.
    """

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._tokens: dict[int, int] = {}

    def register(self, fd: int, token: int) -> None:
        self._ep.register(fd, select.EPOLLIN)
        self._tokens[fd] = token

    def unregister(self, fd: int) -> None:
        self._ep.unregister(fd)
        del self._tokens[fd]

    def poll(self, timeout_ns: int | None) -> list[int]:
        timeout = -1 if timeout_ns is None else timeout_ns / 1e9
        return [self._tokens[fd] for fd, _ in self._ep.poll(timeout, 64)]

    def close(self) -> None:
        self._ep.close()


# ----------------------------------------------------------------- part 1: doorbell


def doorbell_qpuos(mode: str, spin_us: int, n: int, warmup: int, interval_us: int,
                   jitter_us: int, seed: int, *, os_poller: bool = False) -> list[int]:
    """Latencies (ns) of ``n`` doorbells through a qpuos scheduler in ``mode``."""
    lat: list[int] = []
    ack = os.eventfd(0, os.EFD_CLOEXEC)
    table = VectorTable(poller=SelectEpollPoller()) if os_poller else None
    with Scheduler(table, mode=mode, spin_ns=spin_us * 1000) as sched:  # type: ignore[arg-type]
        bell = EventSource()
        sched.table.register(32, bell, name="doorbell")
        writer = _writer(bell.fileno(), ack, n + warmup, interval_us, jitter_us, seed)

        async def consumer() -> None:
            perf = time.perf_counter_ns
            for i in range(n + warmup):
                t0 = await irq(32)
                t1 = perf()
                if i >= warmup:
                    lat.append(t1 - t0)
                os.eventfd_write(ack, 1)

        try:
            sched.run(consumer(), name="consumer", priority=10, timeout_ns=RUN_LIMIT_NS)
        finally:
            writer.wait(timeout=30)
    if table is not None:
        table.close()
    os.close(ack)
    return lat


def doorbell_asyncio(n: int, warmup: int, interval_us: int, jitter_us: int, seed: int,
                     loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
                     ) -> list[int]:
    """The same doorbells through asyncio: one persistent add_reader."""
    lat: list[int] = []
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    ack = os.eventfd(0, os.EFD_CLOEXEC)

    async def consumer() -> None:
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[int]] = []

        def on_readable() -> None:  # the persistent reader: read, complete the future
            value = os.eventfd_read(efd)
            if waiter and not waiter[0].done():
                waiter[0].set_result(value)

        loop.add_reader(efd, on_readable)
        writer = _writer(efd, ack, n + warmup, interval_us, jitter_us, seed)
        perf = time.perf_counter_ns
        try:
            for i in range(n + warmup):
                fut: asyncio.Future[int] = loop.create_future()
                waiter[:] = [fut]
                t0 = await asyncio.wait_for(fut, timeout=30)
                t1 = perf()
                if i >= warmup:
                    lat.append(t1 - t0)
                os.eventfd_write(ack, 1)
        finally:
            loop.remove_reader(efd)
            await asyncio.get_running_loop().run_in_executor(None, writer.wait, 30)

    if loop_factory is None:
        asyncio.run(consumer())
    else:
        loop = loop_factory()
        try:
            loop.run_until_complete(consumer())
        finally:
            loop.close()
    os.close(efd)
    os.close(ack)
    return lat


# ------------------------------------------------------------------- part 2: timers


def _lateness(now: int, due: int, period: int) -> tuple[int, int, int]:
    """(lateness from the latest tick due by now, ticks skipped, the next due)."""
    skipped = (now - due) // period if now >= due else 0
    latest = due + skipped * period
    return now - latest, skipped, latest + period


def timer_qpuos(mode: str, period_ns: int, n: int, warmup: int) -> tuple[list[int], int]:
    """Lateness (ns) of ``n`` ticks of a periodic timerfd vector, and ticks missed."""
    lat: list[int] = []
    missed = [0]
    with Scheduler(mode=mode) as sched:  # type: ignore[arg-type]
        tick = TimerSource(period_ns=period_ns)
        sched.table.register(0, tick, name="tick")

        async def ticker() -> None:
            perf = time.perf_counter_ns
            for i in range(n + warmup):
                count = await irq(0)
                t = perf()
                due = tick.last_expiry_ns()
                if i >= warmup and due is not None:
                    lat.append(t - due)
                    missed[0] += count - 1

        sched.run(ticker(), priority=10, timeout_ns=RUN_LIMIT_NS)
    return lat, missed[0]


def timer_asyncio(period_ns: int, n: int, warmup: int) -> tuple[list[int], int]:
    """Lateness (ns) of ``n`` ticks of an asyncio.sleep loop to absolute deadlines."""
    lat: list[int] = []
    missed = 0

    async def ticker() -> None:
        nonlocal missed
        perf = time.perf_counter_ns
        due = perf() + period_ns
        for i in range(n + warmup):
            await asyncio.sleep(max(0, due - perf()) / 1e9)
            t = perf()
            late, skipped, due = _lateness(t, due, period_ns)
            if i >= warmup:
                lat.append(late)
                missed += skipped

    asyncio.run(ticker())
    return lat, missed


# --------------------------------------------------------------------------- main


def _uvloop() -> Any:
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return None
    return uvloop


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench irq``."""
    p = argparse.ArgumentParser(prog="qpuos bench irq", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_irq.json"),
                   help="where to write the results (default out/bench_irq.json)")
    p.add_argument("--events", type=int, default=2000,
                   help="doorbells per implementation (default 2000)")
    p.add_argument("--interval-us", type=int, default=1000,
                   help="base gap between doorbells (default 1000 µs)")
    p.add_argument("--jitter-us", type=int, default=500,
                   help="random extra gap, 0..this (default 500 µs)")
    p.add_argument("--spin-us", type=int, default=2000,
                   help="spin-then-block budget (default 2000 µs, longer than the gap)")
    p.add_argument("--short-spin-us", type=int, default=50,
                   help="the short spin budget shown for contrast (default 50 µs)")
    p.add_argument("--ticks-1k", type=int, default=2000,
                   help="1 kHz timer ticks per implementation (default 2000)")
    p.add_argument("--ticks-10k", type=int, default=10000,
                   help="10 kHz timer ticks per implementation (default 10000)")
    p.add_argument("--rounds", type=int, default=4,
                   help="interleaved rounds the counts are split over (default 4)")
    p.add_argument("--seed", type=int, default=5, help="writer's random seed (default 5)")
    args = p.parse_args(argv)
    if min(args.events, args.interval_us, args.ticks_1k, args.ticks_10k, args.rounds) < 1 or \
            args.jitter_us < 0 or args.spin_us < 0:
        print("UsageError: counts and intervals must be positive", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    console = Console()
    uvloop = _uvloop()
    rec = BenchRecord("irq", packages=("uvloop",))
    rounds = args.rounds
    per_round = max(1, args.events // rounds)
    warm = max(10, per_round // 20)
    runs: list[tuple[str, Callable[[int], list[int]]]] = [
        ("asyncio add_reader", lambda seed: doorbell_asyncio(*common(seed))),
        ("qpuos blocking", lambda seed: doorbell_qpuos("block", 0, *common(seed))),
        (f"qpuos spin-then-block {args.spin_us} µs",
         lambda seed: doorbell_qpuos("spin", args.spin_us, *common(seed))),
        (f"qpuos spin-then-block {args.short_spin_us} µs",
         lambda seed: doorbell_qpuos("spin", args.short_spin_us, *common(seed))),
        ("qpuos busy-poll", lambda seed: doorbell_qpuos("poll", 0, *common(seed))),
        ("qpuos busy-poll, select.epoll poller (contrast)",
         lambda seed: doorbell_qpuos("poll", 0, *common(seed), os_poller=True)),
    ]

    def common(seed: int) -> tuple[int, int, int, int, int]:
        return per_round, warm, args.interval_us, args.jitter_us, seed

    if uvloop is not None:
        runs.append(("uvloop add_reader", lambda seed: doorbell_asyncio(
            *common(seed), loop_factory=uvloop.new_event_loop)))
    timer_runs: list[tuple[str, Callable[[], tuple[list[int], int]]]] = []
    for hz, ticks in ((1000, args.ticks_1k), (10000, args.ticks_10k)):
        period = 1_000_000_000 // hz
        n = max(1, ticks // rounds)
        w = max(10, n // 20)
        timer_runs += [
            (f"asyncio.sleep {hz // 1000} kHz",
             lambda period=period, n=n, w=w: timer_asyncio(period, n, w)),
            (f"qpuos timerfd blocking {hz // 1000} kHz",
             lambda period=period, n=n, w=w: timer_qpuos("block", period, n, w)),
            (f"qpuos timerfd spin-then-block {hz // 1000} kHz",
             lambda period=period, n=n, w=w: timer_qpuos("spin", period, n, w)),
            (f"qpuos timerfd busy-poll {hz // 1000} kHz",
             lambda period=period, n=n, w=w: timer_qpuos("poll", period, n, w)),
        ]
    doorbell: dict[str, list[int]] = {name: [] for name, _ in runs}
    timers: dict[str, tuple[list[int], int]] = {name: ([], 0) for name, _ in timer_runs}
    # Interleaved: every implementation runs once per round, in a rotated order, and the
    # samples are pooled, so a change of machine load during the run hits all of them.
    with console.status("") as status:
        for r in range(rounds):
            for i in range(len(runs)):
                name, run = runs[(i + r) % len(runs)]
                status.update(f"round {r + 1}/{rounds}, doorbell: {name}")
                gc.collect()
                doorbell[name] += run(args.seed + r)
            for i in range(len(timer_runs)):
                name, trun = timer_runs[(i + r) % len(timer_runs)]
                status.update(f"round {r + 1}/{rounds}, timer: {name}")
                gc.collect()
                lat, missed = trun()
                timers[name] = (timers[name][0] + lat, timers[name][1] + missed)

    t1 = Table(title=f"eventfd from another process -> coroutine resumed, µs "
                     f"({args.events} events, every {args.interval_us}+0..{args.jitter_us} µs)")
    for col in ("implementation", "p50", "p99", "p99.9", "max", "mean"):
        t1.add_column(col, justify="left" if col == "implementation" else "right")
    for name, lat in doorbell.items():
        s = _stats(lat)
        for metric in ("p50_us", "p99_us", "p999_us", "max_us", "mean_us"):
            rec.add(name, f"doorbell_{metric}", round(s[metric], 2), "µs", samples=s["n"])
        t1.add_row(name, *(f"{s[m]:.1f}" for m in ("p50_us", "p99_us", "p999_us", "max_us",
                                                   "mean_us")))
    console.print(t1)
    if uvloop is None:
        console.print("uvloop: not installed, not measured")

    t2 = Table(title="periodic timer lateness (nominal tick -> coroutine resumed), µs")
    for col in ("implementation", "p50", "p99", "p99.9", "max", "missed"):
        t2.add_column(col, justify="left" if col == "implementation" else "right")
    for name, (lat, missed) in timers.items():
        s = _stats(lat)
        for metric in ("p50_us", "p99_us", "p999_us", "max_us"):
            rec.add(name, f"timer_lateness_{metric}", round(s[metric], 2), "µs",
                    samples=s["n"])
        rec.add(name, "timer_missed_ticks", missed, "ticks")
        t2.add_row(name, *(f"{s[m]:.1f}" for m in ("p50_us", "p99_us", "p999_us",
                                                   "max_us")), str(missed))
    console.print(t2)

    a50 = _stats(doorbell["asyncio add_reader"])["p50_us"]
    b50 = _stats(doorbell["qpuos blocking"])["p50_us"]
    rec.target("qpuos blocking p50 / asyncio add_reader p50", b50 / a50, 0.5, "x")
    rec.target(f"qpuos spin-then-block ({args.spin_us} µs) p50",
               _stats(doorbell[f"qpuos spin-then-block {args.spin_us} µs"])["p50_us"], 3.0,
               "µs")
    rec.target("qpuos busy-poll p50", _stats(doorbell["qpuos busy-poll"])["p50_us"], 3.0, "µs")
    for mode in ("spin-then-block", "blocking"):
        rec.target(f"1 kHz timer lateness p99, qpuos timerfd {mode}",
                   _stats(timers[f"qpuos timerfd {mode} 1 kHz"][0])["p99_us"], 50.0, "µs")
    rec.print_targets(console)
    load = os.getloadavg()
    console.print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                  f"(before: {' '.join(f'{x:.2f}' for x in rec.load_before)})")
    rec.write(args.json, extra={"uvloop": "installed" if uvloop else "not installed",
                                "events": args.events, "interval_us": args.interval_us,
                                "jitter_us": args.jitter_us, "spin_us": args.spin_us})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))


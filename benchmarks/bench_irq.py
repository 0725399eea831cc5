"""``qpuos bench irq``: interrupt -> coroutine latency and timer lateness, beside asyncio.

Part 1, doorbell: another process writes an eventfd; how long until the coroutine
awaiting it resumes. The writer takes ``t0 = time.perf_counter_ns()`` (CLOCK_MONOTONIC,
valid across processes) immediately before the write and writes it as the eventfd's
count; the reader takes ``t1`` with the same clock as soon as its await returns, and
acknowledges through a second eventfd, so exactly one event is in flight. Events come
every ``--interval-us`` plus a random 0..``--jitter-us`` (the writer sleeps, then spins
the last 200 µs, so the time from ``t0`` to its write is the same hot path for every
implementation). Implementations, same run, same writer, same clock:

- qpuos, blocking: ``Scheduler(mode="block")``, epoll_wait until the interrupt;
- qpuos, spin-then-block: polls for ``--spin-us`` after each event before blocking
  (longer than the gap between events: the spin catches them; a short spin budget is
  also run and reported for contrast);
- qpuos, busy-poll: ``mode="poll"``, never blocks;
- asyncio: one persistent ``loop.add_reader`` on the eventfd (no per-event
  registration); its callback reads the count and completes the future the coroutine
  awaits — the least an asyncio program can do. Both loops are bounded by one time
  limit for the whole run (``asyncio.timeout``, ``run(timeout_ns=...)``), not a
  per-event timeout, which would cost asyncio a timer handle and a waiter per event;
- uvloop the same way, if installed;
- contrast, no target: a bare ``select.epoll`` loop with no scheduler and no
  coroutine (``poll(-1)`` or ``poll(0)`` until ready, ``os.eventfd_read``, take
  ``t1``): the floor any Python loop pays on this machine for the wake-up, the
  syscalls and the clock. qpuos's distance to it is its own cost.

Every implementation runs once per round (``--rounds``, order rotated each round) and
the samples are pooled, so load that comes and goes on a shared machine is spread over
all of them rather than landing on whichever ran at that moment.

Part 2, periodic timers at 1 kHz and 10 kHz: lateness of each tick, from its nominal
time to the coroutine resuming. qpuos: a timerfd vector (absolute deadlines) awaited
with ``irq``, in blocking, spin-then-block (the loop starts polling 200 µs before the
next expiry) and busy-poll mode; the polling modes take ticks by the clock and move the
kernel timer 100 µs behind as a backstop (see ``qpuos.kernel.scheduler``). asyncio:
``asyncio.sleep`` to the next absolute deadline. Both skip ticks they overran and count
them as missed. Contrast, no target: the same timerfd in a bare ``select.epoll`` loop,
blocking, the floor of the blocking rows (the VM's wake-up from an idle vCPU).

Targets (issue [kernel] 5): qpuos blocking p50 <= 1/2 of asyncio's; spin-then-block
and busy-poll p50 <= 3 µs; 1 kHz timer lateness p99 <= 50 µs.

``--quick``: a few hundred events and ticks, two rounds; seconds, for a smoke test.
``--dma-latency-us N``: hold a CPU wake-up latency request of N µs
(``/dev/cpu_dma_latency`` through :class:`qpuos.rt.RealtimeProfile`) for the whole run,
every implementation alike. At 0 the kernel's idle loop polls instead of halting the
vCPU, which removes most of the wake-up cost the blocking rows pay (the
``latency-performance`` idea); it costs a busy CPU while idle. Needs root.
``--pin``: the reader on one CPU, the writer on another, for every implementation.
Unpinned, the kernel sometimes puts both on one CPU when other work keeps the second
busy; a busy-polling reader then waits for the writer's time slice (a context switch,
~4-5 µs here, instead of ~2 µs across CPUs), which is load placement, not the loop.
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
from functools import partial
from pathlib import Path
from typing import Any

from _common import BenchRecord
from qpuos.kernel import syscall as sc
from qpuos.kernel.irq import EventSource, TimerSource
from qpuos.kernel.scheduler import Scheduler, irq
from qpuos.rt import RealtimeProfile

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
BARE_BLOCK = "contrast: bare select.epoll, blocking"
BARE_POLL = "contrast: bare select.epoll, busy-poll"


PINNED: dict[str, set[int]] = {}  # --pin: {"writer": its CPUs}; the reader has another


def _writer(efd: int, ack: int, n: int, interval_us: int, jitter_us: int,
            seed: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(efd), str(ack), str(n), str(interval_us * 1000),
         str(jitter_us * 1000), str(seed)], pass_fds=(efd, ack))
    if "writer" in PINNED:  # before its first write: the interpreter takes ~20 ms
        os.sched_setaffinity(proc.pid, PINNED["writer"])
    return proc


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


# ----------------------------------------------------------------- part 1: doorbell


def doorbell_qpuos(mode: str, spin_us: int, n: int, warmup: int, interval_us: int,
                   jitter_us: int, seed: int) -> list[int]:
    """Latencies (ns) of ``n`` doorbells through a qpuos scheduler in ``mode``."""
    lat: list[int] = []
    ack = os.eventfd(0, os.EFD_CLOEXEC)
    with Scheduler(mode=mode, spin_ns=spin_us * 1000) as sched:  # type: ignore[arg-type]
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
    os.close(ack)
    return lat


def doorbell_bare(busy: bool, n: int, warmup: int, interval_us: int, jitter_us: int,
                  seed: int) -> list[int]:
    """The same doorbells into a bare ``select.epoll`` loop: the floor (contrast)."""
    lat: list[int] = []
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    ack = os.eventfd(0, os.EFD_CLOEXEC)
    ep = select.epoll()
    ep.register(efd, select.EPOLLIN)
    writer = _writer(efd, ack, n + warmup, interval_us, jitter_us, seed)
    poll, read, perf = ep.poll, os.eventfd_read, time.perf_counter_ns
    limit = perf() + RUN_LIMIT_NS
    try:
        for i in range(n + warmup):
            if busy:
                while not poll(0):
                    pass
            elif not poll(RUN_LIMIT_NS / 1e9):
                break
            t0 = read(efd)
            t1 = perf()
            if i >= warmup:
                lat.append(t1 - t0)
            os.eventfd_write(ack, 1)
            if t1 > limit:
                break
    finally:
        writer.wait(timeout=30)
        ep.close()
        os.close(efd)
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
            async with asyncio.timeout(RUN_LIMIT_NS / 1e9):  # one limit for the run
                for i in range(n + warmup):
                    fut: asyncio.Future[int] = loop.create_future()
                    waiter[:] = [fut]
                    t0 = await fut
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


def timer_bare(period_ns: int, n: int, warmup: int) -> tuple[list[int], int]:
    """The same periodic timerfd in a bare ``select.epoll`` loop, blocking: the floor
    of blocking timer lateness here (contrast; the timerfd is set up with the gate)."""
    lat: list[int] = []
    missed = 0
    fd = sc.timerfd_create(sc.CLOCK_MONOTONIC, sc.TFD_CLOEXEC | sc.TFD_NONBLOCK)
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN)
        first = time.monotonic_ns() + period_ns
        sc.timerfd_settime(fd, first, period_ns, absolute=True)
        poll, read, perf = ep.poll, os.read, time.perf_counter_ns
        fired = 0
        for i in range(n + warmup):
            if not poll(RUN_LIMIT_NS / 1e9):
                break
            count = int.from_bytes(read(fd, 8), sys.byteorder)
            t = perf()
            fired += count
            if i >= warmup:
                lat.append(t - (first + (fired - 1) * period_ns))
                missed += count - 1
    finally:
        ep.close()
        sc.close(fd)
    return lat, missed


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
        import uvloop  # type: ignore[import-not-found,unused-ignore]
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
    p.add_argument("--rounds", type=int, default=8,
                   help="interleaved rounds the counts are split over (default 8)")
    p.add_argument("--seed", type=int, default=5, help="writer's random seed (default 5)")
    p.add_argument("--quick", action="store_true",
                   help="300 doorbells, 300 + 1500 ticks, 2 rounds: a smoke test")
    p.add_argument("--pin", action="store_true",
                   help="run the reader (every implementation) on one CPU and the writer "
                        "on another; unpinned, the kernel may put both on one CPU, and a "
                        "busy-poll reader then waits for the writer's time slice")
    p.add_argument("--dma-latency-us", type=int, default=None, metavar="N",
                   help="hold a CPU wake-up latency request of N µs for the whole run "
                        "(/dev/cpu_dma_latency; every implementation alike; needs root)")
    args = p.parse_args(argv)
    if args.dma_latency_us is not None and args.dma_latency_us < 0:
        print(f"UsageError: --dma-latency-us must be >= 0, got {args.dma_latency_us}",
              file=sys.stderr)
        return 2
    if args.quick:
        args.events, args.ticks_1k, args.ticks_10k, args.rounds = 300, 300, 1500, 2
    if min(args.events, args.interval_us, args.ticks_1k, args.ticks_10k, args.rounds) < 1 or \
            args.jitter_us < 0 or args.spin_us < 0:
        print("UsageError: counts and intervals must be positive", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    console = Console()
    uvloop = _uvloop()
    rec = BenchRecord("irq", packages=("uvloop",))
    allowed = sorted(os.sched_getaffinity(0))
    if args.pin:
        if len(allowed) < 2:
            print(f"UsageError: --pin needs two CPUs, this process may use {allowed}",
                  file=sys.stderr)
            return 2
        PINNED["writer"] = {allowed[1]}
        os.sched_setaffinity(0, {allowed[0]})
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
        (BARE_BLOCK, lambda seed: doorbell_bare(False, *common(seed))),
        (BARE_POLL, lambda seed: doorbell_bare(True, *common(seed))),
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
            (f"asyncio.sleep {hz // 1000} kHz", partial(timer_asyncio, period, n, w)),
            (f"qpuos timerfd blocking {hz // 1000} kHz",
             partial(timer_qpuos, "block", period, n, w)),
            (f"qpuos timerfd spin-then-block {hz // 1000} kHz",
             partial(timer_qpuos, "spin", period, n, w)),
            (f"qpuos timerfd busy-poll {hz // 1000} kHz",
             partial(timer_qpuos, "poll", period, n, w)),
            (f"contrast: bare timerfd + select.epoll, blocking {hz // 1000} kHz",
             partial(timer_bare, period, n, w)),
        ]
    profile = RealtimeProfile(dma_latency_us=args.dma_latency_us)
    report = profile.apply()
    if not report.ok:
        profile.close()
        print("UsageError: " + "; ".join(item.line() for item in report.refused)
              + " (run without --dma-latency-us, or as root)", file=sys.stderr)
        return 2
    for item in report.items:
        console.print(item.line())
    doorbell: dict[str, list[int]] = {name: [] for name, _ in runs}
    timers: dict[str, tuple[list[int], int]] = {name: ([], 0) for name, _ in timer_runs}
    # Interleaved: every implementation runs once per round, in a rotated order, and the
    # samples are pooled, so a change of machine load during the run hits all of them.
    with profile, console.status("") as status:
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
    floor = _stats(doorbell[BARE_BLOCK])["p50_us"] / a50
    rec.add(BARE_BLOCK, "doorbell_p50_over_asyncio", round(floor, 3), "x")
    console.print(f"contrast: the bare select.epoll loop's blocking p50 is {floor:.2f}x "
                  f"asyncio's, qpuos blocking {b50 / a50:.2f}x; busy-poll p50: bare "
                  f"{_stats(doorbell[BARE_POLL])['p50_us']:.1f} µs, qpuos "
                  f"{_stats(doorbell['qpuos busy-poll'])['p50_us']:.1f} µs")
    rec.target(f"qpuos spin-then-block ({args.spin_us} µs) p50",
               _stats(doorbell[f"qpuos spin-then-block {args.spin_us} µs"])["p50_us"], 3.0,
               "µs")
    rec.target("qpuos busy-poll p50", _stats(doorbell["qpuos busy-poll"])["p50_us"], 3.0, "µs")
    for mode in ("spin-then-block", "blocking"):
        rec.target(f"1 kHz timer lateness p99, qpuos timerfd {mode}",
                   _stats(timers[f"qpuos timerfd {mode} 1 kHz"][0])["p99_us"], 50.0, "µs")
    bare_1k = _stats(timers["contrast: bare timerfd + select.epoll, blocking 1 kHz"][0])
    console.print(f"contrast: 1 kHz blocking lateness p50/p99, bare loop "
                  f"{bare_1k['p50_us']:.1f}/{bare_1k['p99_us']:.1f} µs")
    rec.print_targets(console)
    if args.pin:
        os.sched_setaffinity(0, allowed)
        PINNED.clear()
    load = os.getloadavg()
    console.print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                  f"(before: {' '.join(f'{x:.2f}' for x in rec.load_before)})")
    rec.write(args.json, extra={"uvloop": "installed" if uvloop else "not installed",
                                "events": args.events, "interval_us": args.interval_us,
                                "jitter_us": args.jitter_us, "spin_us": args.spin_us,
                                "pinned": args.pin,
                                "dma_latency_us": args.dma_latency_us})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))


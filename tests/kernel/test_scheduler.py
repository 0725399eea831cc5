"""The priority scheduler: ordering, interrupts, timers, signals, locks, failures."""

from __future__ import annotations

import asyncio
import heapq
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import InvalidVector, IrqError, SchedulerError, UsageError, WouldBlock
from qpuos.kernel import syscall as sc
from qpuos.kernel._irq_sources import NO_EVENT
from qpuos.kernel.irq import (
    EventSource,
    IrqSource,
    SignalSource,
    TimerSource,
    VectorTable,
)
from qpuos.kernel.scheduler import (
    Event,
    Lock,
    Queue,
    Scheduler,
    TaskState,
    WatchdogReport,
    checkpoint,
    current_scheduler,
    current_task,
    irq,
    sleep,
    sleep_until,
    spawn,
)

RUN = 20 * 10**9  # every run() below is bounded by this; none should come near it
MODES = ["block", "spin", "poll"]


def _child(code: str, *fds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], pass_fds=fds)


# -------------------------------------------------------------------------- ordering


def test_fifo_within_priority_and_higher_priority_first() -> None:
    log: list[str] = []

    async def worker(tag: str, steps: int) -> None:
        for i in range(steps):
            log.append(f"{tag}{i}")
            await checkpoint()

    with Scheduler() as s:
        s.spawn(worker("a", 2))
        s.spawn(worker("b", 2))
        s.spawn(worker("H", 2), priority=5)
        s.spawn(worker("c", 1))
        s.run(timeout_ns=RUN)
    assert log == ["H0", "H1", "a0", "b0", "c0", "a1", "b1"]


@pytest.mark.parametrize("mode", MODES)
def test_interrupt_wakes_a_high_priority_task_before_ready_lower_ones(mode: str) -> None:
    log: list[str] = []

    async def low(tag: str) -> None:
        for i in range(3):
            log.append(f"{tag}{i}")
            if tag == "a" and i == 1:
                bell.fire(7)  # the interrupt arrives while low-priority tasks are ready
            await checkpoint()

    async def high() -> None:
        count = await irq(32)
        log.append(f"H({count})")

    with Scheduler(mode=mode) as s:  # type: ignore[arg-type]
        bell = EventSource()
        s.table.register(32, bell)
        h = s.spawn(high(), priority=10, name="high")
        s.spawn(low("a"))
        s.spawn(low("b"))
        s.run(timeout_ns=RUN)
    assert log == ["a0", "b0", "a1", "H(7)", "b1", "a2", "b2"]
    assert (h.state, h.wakeups, h.steps) == (TaskState.DONE, 1, 2)


def _model(specs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """FIFO within priority: what the trace must be for tasks (priority, steps)."""
    heap = [(-p, i, i, 0) for i, (p, _) in enumerate(specs)]
    heapq.heapify(heap)
    seq = len(specs)
    trace = []
    while heap:
        negp, _, tid, step = heapq.heappop(heap)
        trace.append((tid, step))
        if step + 1 < specs[tid][1]:
            heapq.heappush(heap, (negp, seq, tid, step + 1))
            seq += 1
    return trace


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(1, 4)), min_size=1, max_size=8))
def test_trace_matches_the_fifo_within_priority_model(specs: list[tuple[int, int]]) -> None:
    trace: list[tuple[int, int]] = []

    async def worker(tid: int, steps: int) -> None:
        for step in range(steps):
            trace.append((tid, step))
            await checkpoint()

    with Scheduler() as s:
        for tid, (prio, steps) in enumerate(specs):
            s.spawn(worker(tid, steps), priority=prio)
        s.run(timeout_ns=RUN)
    assert trace == _model(specs)


# ---------------------------------------------------------------------------- timers


@pytest.mark.parametrize("mode", MODES)
def test_sleepers_wake_in_deadline_order(mode: str) -> None:
    log: list[int] = []

    async def sleeper(offset_ms: int, base: int) -> None:
        await sleep_until(base + offset_ms * 1_000_000)
        log.append(offset_ms)

    async def main() -> None:
        base = time.monotonic_ns()
        for offset in (4, 1, 3, 2, 1):
            spawn(sleeper(offset, base))
        await sleep(5_000_000)
        log.append(99)

    with Scheduler(mode=mode) as s:  # type: ignore[arg-type]
        s.run(main(), timeout_ns=RUN)
    assert log == [1, 1, 2, 3, 4, 99]


def test_timer_vectors_fire_in_order() -> None:
    log: list[str] = []

    async def waiter(vector: int, tag: str) -> None:
        await irq(vector)
        log.append(tag)

    timers = {v: TimerSource(at_ns=time.monotonic_ns() + 60 * 10**9) for v in (1, 2, 3)}

    async def arm() -> None:
        # runs after the three waiters (same priority, spawned last), so they already
        # wait: a stall cannot let a timer fire into a vector nobody awaits yet (its
        # pending interrupt would then wake its waiter behind one woken earlier).
        # Vectors ascend with time, so that even if a stall makes all three fire in
        # one poll, dispatch order (priority, then vector) keeps them in time order
        now = time.monotonic_ns()
        for v in (3, 1, 2):
            timers[v].arm(at_ns=now + v * 1_000_000)

    with Scheduler() as s:
        for v, tag in ((3, "late"), (1, "early"), (2, "middle")):
            s.table.register(v, timers[v], name=tag)
            s.spawn(waiter(v, tag))
        s.spawn(arm())
        s.run(timeout_ns=RUN)
    assert log == ["early", "middle", "late"]


@pytest.mark.parametrize("mode", MODES)
def test_periodic_timer_ticks_reach_a_coroutine(mode: str) -> None:
    ticks: list[int] = []

    async def ticker() -> None:  # a lone waiter: in "block" mode, the fast path's
        while sum(ticks) < 5:    # wait, with the timerfd drained before each one
            ticks.append(await irq(0))

    with Scheduler(mode=mode) as s:  # type: ignore[arg-type]
        s.table.register(0, TimerSource(period_ns=1_000_000), name="1 kHz")
        s.run(ticker(), timeout_ns=RUN)
        st_ = s.table.stats(0)
    assert sum(ticks) >= 5 and st_.count == len(ticks)
    assert (st_.overruns, st_.spurious) == (sum(ticks) - len(ticks), 0)
    assert st_.wake is not None and st_.wake.samples == len(ticks)
    assert st_.lateness is not None and st_.lateness.samples == len(ticks)


# ---------------------------------------------------------------------------- signals


def test_signal_from_this_thread_arrives_as_an_interrupt() -> None:
    got: list[Any] = []

    async def handler() -> None:
        got.extend(await irq(3))

    async def sender() -> None:
        sc.tgkill(os.getpid(), sc.gettid(), signal.SIGUSR1)
        await checkpoint()

    with Scheduler() as s:
        s.table.register(3, SignalSource([signal.SIGUSR1]), name="usr1")
        s.spawn(handler(), priority=1)
        s.spawn(sender())
        s.run(timeout_ns=RUN)
    assert [(i.signo, i.pid) for i in got] == [(signal.SIGUSR1, os.getpid())]


def test_signal_from_another_process_arrives_as_an_interrupt() -> None:
    got: list[Any] = []

    async def handler() -> None:
        got.extend(await irq(3))

    with Scheduler() as s:
        s.table.register(3, SignalSource([signal.SIGUSR2]), name="usr2")
        child = _child("from qpuos.kernel.syscall import tgkill; "
                       f"tgkill({os.getpid()}, {sc.gettid()}, {int(signal.SIGUSR2)})")
        s.run(handler(), timeout_ns=RUN)
        assert child.wait(timeout=30) == 0
    assert [(i.signo, i.pid) for i in got] == [(signal.SIGUSR2, child.pid)]


# -------------------------------------------------------------- doorbells, handlers


@pytest.mark.parametrize("mode", MODES)
def test_doorbell_from_another_process_wakes_the_right_coroutine(mode: str) -> None:
    woken: dict[str, Any] = {}

    async def wait_on(vector: int, tag: str) -> None:
        woken[tag] = await irq(vector)

    with Scheduler(mode=mode) as s:  # type: ignore[arg-type]
        a, b = EventSource(), EventSource()
        s.table.register(40, a, name="a")
        s.table.register(41, b, name="b")
        s.spawn(wait_on(40, "a"))
        waiter_b = s.spawn(wait_on(41, "b"))
        child = _child("from qpuos.kernel.irq import doorbell; "
                       f"doorbell({b.fileno()}, 3)", b.fileno())

        async def main() -> None:
            while not waiter_b.done():
                await sleep(1_000_000)

        s.run(main(), timeout_ns=RUN)
        assert child.wait(timeout=30) == 0
        assert woken == {"b": 3}
        assert s.table.stats(41).count == 1 and s.table.stats(40).count == 0


# ------------------------------------------------ the lone waiter's fast path
# A task that awaits irq(v) while nothing else is ready waits inside the step (the
# fast path); whatever it cannot handle alone must come out as the general path would.


@pytest.mark.parametrize("mode", MODES)
def test_lone_waiter_keeps_its_records_and_the_idle_hook_runs(mode: str) -> None:
    seen: list[tuple[int | None, list[tuple[str, TaskState, str]]]] = []

    def hook(budget: int | None) -> None:
        seen.append((budget, [(i.name, i.state, i.waiting_for) for i in s.tasks()]))
        if len(seen) == 1:
            bell.fire(7)  # rung while the task waits

    async def main() -> int:
        return await irq(40)

    with Scheduler(mode=mode, idle_hook=hook) as s:  # type: ignore[arg-type]
        bell = EventSource()
        s.table.register(40, bell)
        assert s.run(main(), name="main", timeout_ns=RUN) == 7
        info, stats = s.tasks()[0], s.table.stats(40)
    budget, tasks = seen[0]
    assert budget is not None and 0 <= budget <= RUN
    assert tasks == [("main", TaskState.BLOCKED, "irq 40")]
    assert (info.wakeups, info.steps, info.state) == (1, 2, TaskState.DONE)
    assert (stats.count, stats.unclaimed, stats.spurious, stats.errors) == (1, 0, 0, 0)
    assert stats.wake is not None and stats.wake.samples == 1


@pytest.mark.parametrize("mode", MODES)
def test_lone_waiter_hands_vectors_firing_together_to_the_general_path(mode: str) -> None:
    got: list[int] = []

    async def main() -> None:
        other.fire(2)
        bell.fire(5)
        got.append(await irq(40))  # 40 and 41 are both ready when it waits
        got.append(await irq(41))  # latched meanwhile

    with Scheduler(mode=mode) as s:  # type: ignore[arg-type]
        bell, other = EventSource(), EventSource()
        s.table.register(40, bell)
        s.table.register(41, other, priority=3)
        s.run(main(), timeout_ns=RUN)
        assert (s.table.stats(40).unclaimed, s.table.stats(41).unclaimed) == (0, 1)
    assert got == [5, 2]


@pytest.mark.parametrize("mode", MODES)
def test_lone_waiter_survives_a_raising_handler(mode: str) -> None:
    rings = iter([1, 2])

    def hook(budget: int | None) -> None:
        value = next(rings, None)
        if value is not None:
            bell.fire(value)

    def handler(value: int) -> int:
        if value == 1:
            raise RuntimeError("bad frame")
        return value * 10

    async def main() -> int:
        return await irq(9)

    with Scheduler(mode=mode, idle_hook=hook) as s:  # type: ignore[arg-type]
        bell = EventSource()
        s.table.register(9, bell, handler)
        assert s.run(main(), timeout_ns=RUN) == 20
        stats = s.table.stats(9)
    assert (stats.count, stats.errors, stats.last_error) == (2, 1, "RuntimeError: bad frame")


@pytest.mark.parametrize("mode", MODES)
def test_lone_waiter_cancelled_or_orphaned_by_the_idle_hook(mode: str) -> None:
    unwound: list[str] = []

    async def waiter() -> None:
        try:
            await irq(40)
        finally:
            unwound.append("waiter")

    def cancel(budget: int | None) -> None:
        if w.state is TaskState.BLOCKED:
            w.cancel()

    with Scheduler(mode=mode, idle_hook=cancel) as s:  # type: ignore[arg-type]
        s.table.register(40, EventSource())
        w = s.spawn(waiter(), name="w")
        s.run(timeout_ns=RUN)
    assert (w.state, unwound) == (TaskState.CANCELLED, ["waiter"])

    async def main() -> str:
        with pytest.raises(IrqError, match=r"^vector 40 was unregistered while 'main' "
                                           r"waited for it$"):
            await irq(40)
        return "done"

    def unregister(budget: int | None) -> None:
        if 40 in s.table:
            s.table.unregister(40).close()

    with Scheduler(mode=mode, idle_hook=unregister) as s:  # type: ignore[arg-type]
        s.table.register(40, EventSource())
        assert s.run(main(), name="main", timeout_ns=RUN) == "done"


class _ListSource(IrqSource):
    """Values handed out one per acknowledge; fd number made up."""

    kind = "list"

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.values: list[int] = []

    def fileno(self) -> int:
        return self.fd

    def ack(self) -> Any:
        return self.values.pop(0) if self.values else NO_EVENT


class _ListPoller:
    """Reports the sources that have values, after any scripted reports."""

    def __init__(self) -> None:
        self.sources: dict[int, tuple[int, _ListSource]] = {}
        self.script: list[list[int]] = []

    def register(self, fd: int, token: int) -> None:
        pass

    def unregister(self, fd: int) -> None:
        pass

    def poll(self, timeout_ns: int | None) -> list[int]:
        if self.script:
            return self.script.pop(0)
        return [tok for tok, src in self.sources.values() if src.values]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", MODES)
def test_lone_waiter_counts_a_spurious_report_once(mode: str) -> None:
    poller = _ListPoller()
    src = _ListSource(1000)
    poller.sources[src.fd] = (5, src)
    poller.script = [[5]]  # reported, but nothing to read: spurious
    hooks: list[int | None] = []

    def hook(budget: int | None) -> None:
        hooks.append(budget)
        if len(hooks) == 2:
            src.values.append(9)  # after the spurious report, a real one

    async def main() -> int:
        return await irq(5)

    with VectorTable(poller=poller) as table, \
            Scheduler(table, mode=mode, idle_hook=hook) as s:  # type: ignore[arg-type]
        table.register(5, src)
        assert s.run(main(), timeout_ns=RUN) == 9
        stats = table.stats(5)
    assert (stats.count, stats.spurious, stats.unclaimed) == (1, 1, 0)


def test_a_raising_handler_does_not_stop_the_loop() -> None:
    got: list[int] = []

    def handler(value: int) -> int:
        if value == 1:
            raise RuntimeError("bad frame")
        return value

    async def consumer() -> None:
        got.append(await irq(9))

    async def producer() -> None:
        bell.fire(1)
        await checkpoint()
        bell.fire(2)
        await checkpoint()

    with Scheduler() as s:
        bell = EventSource()
        s.table.register(9, bell, handler)
        s.spawn(consumer(), priority=1)
        s.spawn(producer())
        s.run(timeout_ns=RUN)
        stats = s.table.stats(9)
    assert got == [2]
    assert (stats.count, stats.errors, stats.last_error) == (2, 1, "RuntimeError: bad frame")


def test_an_interrupt_nobody_awaits_is_latched_for_the_next_irq() -> None:
    got: list[int] = []

    async def late() -> None:
        bell.fire(5)
        await checkpoint()  # the interrupt is handled while nobody waits
        got.append(await irq(4))

    with Scheduler() as s:
        bell = EventSource()
        s.table.register(4, bell)
        s.run(late(), timeout_ns=RUN)
        assert s.table.stats(4).unclaimed == 1
    assert got == [5]


def test_irq_on_an_empty_vector_or_an_unregistered_one_raises_in_the_task() -> None:
    async def bad() -> None:
        with pytest.raises(IrqError, match=r"^irq\(77\): no source is registered on that "
                                           r"vector"):
            await irq(77)
        with pytest.raises(InvalidVector, match=r"^irq\(-1\): not a vector number 0\.\.255$"):
            await irq(-1)

    async def waits() -> None:
        with pytest.raises(IrqError, match=r"^vector 5 was unregistered while 'waits' "
                                           r"waited for it$"):
            await irq(5)

    async def main() -> None:
        spawn(waits(), name="waits")
        await checkpoint()
        s.table.unregister(5).close()
        await checkpoint()

    with Scheduler() as s:
        s.table.register(5, EventSource())
        s.spawn(bad())
        s.run(main(), timeout_ns=RUN)
        assert [t.state for t in s.tasks()] == [TaskState.DONE] * 3


# ------------------------------------------------------------------ events, queues


def test_event_wakes_every_waiter_and_queue_hands_items_in_order() -> None:
    log: list[Any] = []
    ev: Event = Event()
    q: Queue[int] = Queue()

    async def waiter(tag: str) -> None:
        await ev.wait()
        log.append(tag)

    async def getter(tag: str) -> None:
        log.append((tag, await q.get()))

    async def main() -> None:
        spawn(waiter("w1"))
        spawn(waiter("w2"))
        spawn(getter("lo"), priority=0)
        spawn(getter("hi"), priority=3)
        await checkpoint()
        ev.set()
        q.put_nowait(1)  # to the higher-priority getter, though it came second
        q.put_nowait(2)
        await checkpoint()
        await ev.wait()  # already set: no wait

    with Scheduler() as s:
        s.run(main(), priority=-1, timeout_ns=RUN)
    assert log == [("hi", 1), "w1", "w2", ("lo", 2)]
    ev.clear()
    assert not ev.is_set()


def test_bounded_queue_blocks_putters_and_refuses_nowait() -> None:
    q: Queue[int] = Queue(maxsize=1)
    log: list[Any] = []

    async def producer() -> None:
        for i in range(3):
            await q.put(i)
            log.append(f"put{i}")

    async def consumer() -> None:
        for _ in range(3):
            log.append(await q.get())
            await checkpoint()

    with Scheduler() as s:
        s.spawn(producer())
        s.spawn(consumer())
        s.run(timeout_ns=RUN)
    assert log == ["put0", 0, "put1", 1, "put2", 2]
    q.put_nowait(9)
    with pytest.raises(WouldBlock, match=r"^queue is full \(1 items\)"):
        q.put_nowait(10)
    assert q.get_nowait() == 9
    with pytest.raises(WouldBlock, match=r"^queue is empty"):
        q.get_nowait()


def test_interrupt_handler_feeds_a_queue() -> None:
    q: Queue[int] = Queue()

    async def main() -> list[int]:
        bell.fire(1)
        first = await q.get()
        bell.fire(2)
        return [first, await q.get()]

    with Scheduler() as s:
        bell = EventSource()
        s.table.register(8, bell, lambda n: q.put_nowait(n * 100))
        assert s.run(main(), timeout_ns=RUN) == [100, 200]


# ------------------------------------------------------------ priority inheritance


def test_lock_lends_the_holder_the_waiters_priority() -> None:
    log: list[str] = []
    lock = Lock("bus")
    held = Event()

    async def low() -> None:
        async with lock:
            log.append("L in")
            held.set()
            for i in range(3):
                log.append(f"L{i}@{current_task().effective_priority}")
                await checkpoint()
            log.append("L out")
        log.append(f"L back@{current_task().effective_priority}")

    async def mid() -> None:
        await held.wait()
        for i in range(3):
            log.append(f"M{i}")
            await checkpoint()

    async def high() -> None:
        await held.wait()
        log.append("H wants")
        async with lock:
            log.append("H in")

    with Scheduler() as s:
        s.spawn(high(), priority=10)
        s.spawn(mid(), priority=5)
        s.spawn(low(), priority=1)
        s.run(timeout_ns=RUN)
    # without inheritance M0..M2 would run between "H wants" and "L1"
    assert log == ["L in", "L0@1", "H wants", "L1@10", "L2@10", "L out", "H in", "M0",
                   "M1", "M2", "L back@1"]


def test_inheritance_is_transitive_along_a_chain_of_locks() -> None:
    a, b = Lock("a"), Lock("b")
    seen: dict[str, int] = {}
    a_held, b_held = Event(), Event()

    async def low() -> None:
        async with a:
            a_held.set()
            for _ in range(3):
                await checkpoint()
            seen["low"] = current_task().effective_priority

    async def mid() -> None:
        await a_held.wait()
        async with b:
            b_held.set()
            await checkpoint()  # high blocks on b: mid inherits 9
            async with a:       # mid blocks on a: low inherits 9 through mid
                seen["mid"] = current_task().effective_priority

    async def high() -> None:
        await b_held.wait()
        async with b:
            pass

    with Scheduler() as s:
        s.spawn(high(), priority=9)
        s.spawn(mid(), priority=5)
        s.spawn(low(), priority=1)
        s.run(timeout_ns=RUN)
    assert seen == {"low": 9, "mid": 9}


def test_lock_misuse_is_refused() -> None:
    a, b = Lock("a"), Lock("b")
    got_a = Event()

    async def reentrant() -> None:
        async with a:
            got_a.set()
            with pytest.raises(SchedulerError, match=r"^'re' already holds lock 'a' \(locks "
                                                     r"are not reentrant\)$"):
                await a.acquire()
            await checkpoint()  # "other" takes b and blocks on a
            with pytest.raises(SchedulerError, match=r"^deadlock: waiting for lock 'b' "
                                                     r"closes the cycle re -> other -> re$"):
                await b.acquire()

    async def other() -> None:
        await got_a.wait()
        async with b:
            await a.acquire()
            a.release()

    async def stranger() -> None:
        with pytest.raises(SchedulerError, match=r"^'stranger' released lock 'a' held by "
                                                 r"nobody$"):
            a.release()

    with Scheduler() as s:
        s.spawn(reentrant(), name="re", priority=1)
        s.spawn(other(), name="other", priority=2)
        s.spawn(stranger(), name="stranger")
        s.run(timeout_ns=RUN)


# ------------------------------------------------------------------ bad use, limits


def test_a_coroutine_that_never_yields_is_reported_by_name() -> None:
    reports: list[WatchdogReport] = []
    reported = threading.Event()

    def on_report(r: WatchdogReport) -> None:
        reports.append(r)
        reported.set()

    async def hog() -> None:
        reported.wait(timeout=10)  # never yields until the watchdog speaks up

    with Scheduler(watchdog_ns=20_000_000, on_watchdog=on_report) as s:
        task = s.spawn(hog(), name="hog")
        s.run(timeout_ns=RUN)
    assert len(reports) == 1 and reports[0].task_name == "hog"
    assert str(reports[0]).startswith(f"coroutine 'hog' (task {task.id}) has run ")
    assert "reported.wait" in reports[0].stack
    assert task.info().watchdog_overruns == 1


def test_task_failure_stops_run_names_the_task_and_cancels_the_rest() -> None:
    cleaned: list[str] = []

    async def bystander() -> None:
        try:
            await sleep(60 * 10**9)
        finally:
            cleaned.append("bystander")

    async def broken() -> None:
        await checkpoint()
        raise KeyError("missing calibration")

    with Scheduler() as s:
        by = s.spawn(bystander())
        s.spawn(broken(), name="broken")
        with pytest.raises(KeyError, match="missing calibration") as info:
            s.run(timeout_ns=RUN)
    assert info.value.__notes__ == ["raised in qpuos task 2 'broken'"]
    assert cleaned == ["bystander"] and by.state is TaskState.CANCELLED


@pytest.mark.parametrize("mode", MODES)
def test_run_timeout_and_deadlock_are_reported_not_hung(mode: str) -> None:
    async def forever() -> None:
        await irq(33)  # the lone waiter: the fast path waits, bounded by the time limit

    with Scheduler(mode=mode) as s:  # type: ignore[arg-type]
        s.table.register(33, EventSource())
        s.spawn(forever(), name="forever")
        with pytest.raises(SchedulerError, match=r"^run\(\) gave up after 20\.0 ms with 1 "
                                                 r"unfinished: 'forever' \(irq 33\)$"):
            s.run(timeout_ns=20_000_000)

    async def stuck() -> None:
        await Event().wait()

    with Scheduler() as s:
        s.spawn(stuck(), name="stuck")
        with pytest.raises(SchedulerError, match=r"^deadlock: no task is ready, none sleeps "
                                                 r"and no interrupt source is registered, so "
                                                 r"nothing can wake the 1 unfinished: "
                                                 r"'stuck' \(event\)$"):
            s.run(timeout_ns=RUN)


def test_spawn_and_await_misuse_give_clear_errors() -> None:
    async def work() -> None:
        await checkpoint()

    async def foreign() -> None:
        with pytest.raises(SchedulerError, match=r"^task 'foreign' awaited .*which the qpuos "
                                                 r"scheduler cannot run"):
            await asyncio.sleep(0)

    with Scheduler() as s:
        with pytest.raises(UsageError, match=r"^spawn\(\) takes a coroutine object, got "
                                             r"'test_spawn_and_await_misuse_give_clear_"
                                             r"errors.<locals>.work'; call the async "
                                             r"function"):
            s.spawn(work)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=r"^scheduler mode 'fast' is not one of block, "
                                             r"spin, poll$"):
            Scheduler(mode="fast")  # type: ignore[arg-type]
        s.spawn(foreign(), name="foreign")
        s.run(timeout_ns=RUN)
    with pytest.raises(SchedulerError, match=r"^no qpuos scheduler is running in this "
                                             r"thread"):
        current_scheduler()


def test_run_is_not_reentrant_and_a_task_cannot_cancel_itself() -> None:
    async def inner() -> None:
        with pytest.raises(SchedulerError, match=r"^this scheduler is already running"):
            current_scheduler().run()
        with pytest.raises(SchedulerError, match=r"tried to cancel itself"):
            current_task().cancel()

    with Scheduler() as s:
        s.run(inner(), timeout_ns=RUN)


# --------------------------------------------------------------- records, hooks


def test_records_count_wakeups_and_deadline_misses_with_a_fake_clock() -> None:
    now = [0]
    ev = Event()

    async def responder() -> None:
        for _ in range(2):
            await ev.wait()
            ev.clear()

    async def driver() -> None:
        ev.set()            # woken at t=0
        now[0] += 50        # 50 ns pass before it resumes: within its 100 ns deadline
        await checkpoint()
        ev.set()            # woken at t=50
        now[0] += 500       # a miss
        await checkpoint()

    with Scheduler(clock=lambda: now[0]) as s:
        r = s.spawn(responder(), name="responder", priority=1, deadline_ns=100)
        s.spawn(driver(), name="driver")
        s.run(timeout_ns=RUN)
        info = r.info()
        assert (info.wakeups, info.deadline_misses, info.state) == (2, 1, TaskState.DONE)
        table = s.format_tasks().splitlines()
        assert table[0].split() == ["ID", "PRIO", "EFF", "STATE", "WAKEUPS", "MISSES",
                                    "STEPS", "WAITING", "FOR", "NAME"]
        assert table[1].split() == ["1", "1", "1", "done", "2", "1", "3", "responder"]


def test_idle_hook_gets_the_time_to_the_next_deadline() -> None:
    budgets: list[int | None] = []

    async def main() -> None:
        await sleep(2_000_000)

    with Scheduler(idle_hook=budgets.append) as s:
        s.run(main(), timeout_ns=RUN)
    assert budgets and all(b is not None and 0 <= b <= RUN for b in budgets)


def test_cancel_a_blocked_task_and_read_results() -> None:
    async def blocked() -> None:
        await Event().wait()

    async def value() -> int:
        return 42

    async def main() -> None:
        t = spawn(blocked(), name="blocked")
        v = spawn(value())
        await checkpoint()
        t.cancel()
        assert t.state is TaskState.CANCELLED and v.result() == 42
        with pytest.raises(SchedulerError, match=r"^task 'blocked' was cancelled"):
            t.result()

    with Scheduler() as s:
        s.run(main(), timeout_ns=RUN)


def test_a_shared_table_outlives_its_scheduler() -> None:
    with VectorTable() as table:
        table.register(1, EventSource())
        with Scheduler(table) as s:
            async def main() -> str:
                return "ok"

            assert s.run(main(), timeout_ns=RUN) == "ok"
        assert not table.closed and table.vectors() == [1]

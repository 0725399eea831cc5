"""A coroutine scheduler with priorities, driven by the interrupt vector table.

``async def`` coroutines run as tasks with integer priorities (higher runs first).
They wait on interrupts (``await irq(vector)``), time (``sleep_until``), events, queues
and locks. The loop keeps three invariants:

1. At every switch point the highest-priority ready task runs; equal priorities run
   first-come first-served (the ready queue is a heap keyed by ``(-priority,
   sequence)``). Before each step the loop polls the vector table without waiting, so
   a high-priority task woken by an interrupt runs before ready lower ones resume
   (``poll_every`` relaxes this to every n-th step, for throughput).
2. When nothing is ready the loop waits for the table's fds, in one of three modes:
   ``"block"`` (epoll_wait until the next interrupt or deadline), ``"spin"`` (poll
   without waiting for ``spin_ns`` after going idle and from ``timer_lead_ns`` before
   any known deadline, then block: hot wake-ups cost a few µs instead of a CPU wake)
   or ``"poll"`` (never block: lowest latency, one CPU busy). While polling, timer
   vectors tick when the clock (vDSO, ns) passes their next expiry rather than when
   the timer interrupt makes their timerfd readable, and the kernel timer is moved
   ``timer_backstop_ns`` later to back the clock up: in a VM (Firecracker here) a
   timer interrupt costs ~15-20 µs of the CPU it lands on, and landing exactly when
   the tick is due it delayed every tick by that much.
   Fast path: when the task that just awaited ``irq(v)`` is the only thing that can
   run next (nothing ready, nothing sleeping, nobody else on ``v``, nothing latched,
   no timer ticking by the clock), the loop waits for ``v`` inside that step and
   resumes the task straight from the poll: one acknowledge, counters and one
   clock read, no ready-queue trip (``_irq_fast``). Whatever else fires meanwhile
   goes through the general path, so the ordering is the same.
3. Everything is deterministic given the order interrupts arrive in: ties are broken
   by sequence numbers, interrupts that fire together are dispatched by vector
   priority then number, and sleepers expire by deadline then sequence.

Interrupts: the table runs the top half (acknowledge + handler) and the scheduler is
the bottom half: every task awaiting ``irq(v)`` resumes with the top half's value. An
interrupt nobody awaits is latched (up to ``backlog`` per vector) and returned by the
next ``irq(v)`` at once, so a task that was busy does not lose a doorbell.

Records: each task counts wake-ups, steps and deadline misses (a task spawned with
``deadline_ns`` misses when it resumes later than that after the event that woke it:
the interrupt's top half, the sleep deadline, or the wake-up call). An optional
watchdog thread names a coroutine whose step exceeds ``watchdog_ns``; an optional idle
hook runs whenever the loop goes idle, with the time left until the next deadline
(the GC guard collects there).

Threads: the scheduler and its primitives belong to the thread that runs it. Another
thread or process wakes it by ringing an :class:`~qpuos.kernel.irq.EventSource`
(an eventfd write), which is also how device completions arrive.

Failures: an exception escaping a task stops ``run()`` and is re-raised there (with a
note naming the task); the other tasks are cancelled. ``run(timeout_ns=...)`` bounds
a run, and a run in which blocked tasks can never be woken raises instead of hanging.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from qpuos.errors import InvalidVector, IrqError, SchedulerError, UsageError
from qpuos.kernel._irq_sources import NO_EVENT
from qpuos.kernel._sync import Event, Lock, Queue
from qpuos.kernel._task import (
    BLOCKED,
    FINISHED,
    IRQ,
    PARK,
    READY,
    RUNNING,
    SLEEP,
    SLEEPING,
    YIELD,
    Request,
    Task,
    TaskInfo,
    TaskState,
    current_task,
    running_scheduler,
    set_running,
)
from qpuos.kernel._watchdog import Watchdog, WatchdogReport
from qpuos.kernel.irq import VectorTable

__all__ = [
    "Event",
    "Lock",
    "Mode",
    "Queue",
    "Scheduler",
    "Task",
    "TaskInfo",
    "TaskState",
    "WatchdogReport",
    "checkpoint",
    "current_scheduler",
    "current_task",
    "irq",
    "sleep",
    "sleep_until",
    "spawn",
]

Mode = Literal["block", "spin", "poll"]
_MODES = ("block", "spin", "poll")
_log = logging.getLogger("qpuos.kernel.scheduler")
_NS = 1_000_000_000


_INELIGIBLE, _DELIVERED, _BLOCKED = object(), object(), object()  # _irq_fast's answers
_IRQ_REQUESTS = tuple(Request[Any]((IRQ, v)) for v in range(256))
_CHECKPOINT = Request[None]((YIELD,))


def irq(vector: int) -> Request[Any]:
    """Await the next interrupt on ``vector``; returns its top half's value.

    A latched interrupt (one that came while nobody waited) is returned at once.
    """
    if vector.__class__ is int and 0 <= vector < 256:
        return _IRQ_REQUESTS[vector]  # built once: an await allocates no request
    return Request((IRQ, vector))  # refused in the task with InvalidVector


def sleep_until(deadline_ns: int) -> Request[None]:
    """Await until the scheduler's clock (``time.monotonic_ns`` by default) reaches
    ``deadline_ns``. A deadline already past is a plain switch point."""
    return Request((SLEEP, deadline_ns))


def sleep(duration_ns: int) -> Request[None]:
    """Await for ``duration_ns`` from now."""
    return Request((SLEEP, running_scheduler()._clock() + duration_ns))


def checkpoint() -> Request[None]:
    """A switch point: let ready tasks of equal or higher priority run first."""
    return _CHECKPOINT


def current_scheduler() -> Scheduler:
    """The scheduler running in this thread (SchedulerError outside ``run()``)."""
    return running_scheduler()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str | None = None, priority: int = 0,
          deadline_ns: int | None = None) -> Task:
    """Spawn a task on the scheduler running in this thread (see ``Scheduler.spawn``)."""
    return running_scheduler().spawn(coro, name=name, priority=priority,
                                     deadline_ns=deadline_ns)


class Scheduler:
    """Runs ``async def`` coroutines by priority, woken by a vector table's interrupts.

    >>> from qpuos.kernel.irq import EventSource
    >>> order = []
    >>> async def worker(tag):
    ...     for i in range(2):
    ...         order.append(f"{tag}{i}")
    ...         if tag == "a" and i == 0:
    ...             bell.fire(1)        # an interrupt arrives while "a" runs
    ...         await checkpoint()      # switch point: the woken handler goes first
    >>> async def handler():
    ...     count = await irq(32)
    ...     order.append(f"irq({count})")
    >>> with Scheduler() as sched:
    ...     bell = EventSource()
    ...     sched.table.register(32, bell, name="doorbell")
    ...     _ = sched.spawn(handler(), priority=10)
    ...     _ = sched.spawn(worker("a")), sched.spawn(worker("b"))
    ...     sched.run(timeout_ns=10**9)
    >>> order
    ['a0', 'irq(1)', 'b0', 'a1', 'b1']

    Args:
        table: the vector table to dispatch (default: a new one, closed with the
            scheduler).
        mode: "block", "spin" or "poll" (module docstring, invariant 2).
        spin_ns: in "spin" mode, how long to poll after going idle before blocking.
        timer_lead_ns: in "spin" mode, start polling this long before the next known
            deadline (sleepers, timer sources). Default: 200 µs in "spin", else 0.
        timer_backstop_ns: in "spin" and "poll" mode, timer sources' kernel timers
            fire this long after each tick, which the loop delivers by the clock
            (module docstring, invariant 2); 0 keeps them on time.
        poll_every: poll the table before every n-th step while tasks are ready.
        backlog: interrupts latched per vector while nobody waits (oldest dropped).
        idle_hook: called as ``idle_hook(budget_ns)`` each time the loop goes idle;
            ``budget_ns`` is the time to the next deadline, or None.
        watchdog_ns: report a coroutine step longer than this (None: no watchdog).
        on_watchdog: receives each :class:`WatchdogReport` (from the watchdog thread);
            default: a warning on the ``qpuos.kernel.scheduler`` logger.
        clock: ns clock; must be CLOCK_MONOTONIC (the timers' clock) unless the table
            is fake too.
    """

    def __init__(self, table: VectorTable | None = None, *, mode: Mode = "block",
                 spin_ns: int = 50_000, timer_lead_ns: int | None = None,
                 timer_backstop_ns: int = 100_000,
                 poll_every: int = 1, backlog: int = 64,
                 idle_hook: Callable[[int | None], None] | None = None,
                 watchdog_ns: int | None = None,
                 on_watchdog: Callable[[WatchdogReport], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if mode not in _MODES:
            raise UsageError(f"scheduler mode {mode!r} is not one of {', '.join(_MODES)}")
        if poll_every < 1 or backlog < 1 or spin_ns < 0:
            raise UsageError(f"poll_every ({poll_every}) and backlog ({backlog}) must be "
                             f"at least 1 and spin_ns ({spin_ns}) not negative")
        if watchdog_ns is not None and watchdog_ns <= 0:
            raise UsageError(f"watchdog_ns must be positive, got {watchdog_ns}")
        self._owns_table = table is None
        self.table = VectorTable(clock=clock) if table is None else table
        self.table.add_unregister_listener(self._vector_gone)
        self.mode: Mode = mode
        self._spin_ns = spin_ns
        self._lead = (200_000 if mode == "spin" else 0) if timer_lead_ns is None \
            else timer_lead_ns
        if timer_backstop_ns < 0:
            raise UsageError(f"timer_backstop_ns must not be negative, got "
                             f"{timer_backstop_ns}")
        self._backstop = timer_backstop_ns if mode != "block" else 0
        self._poll_every = poll_every
        self._backlog = backlog
        self._idle_hook = idle_hook
        self._watchdog_ns = watchdog_ns
        self._on_watchdog = on_watchdog
        self._clock = clock
        self._ready: list[list[Any]] = []
        self._sleepers: list[tuple[int, int, Task, int]] = []
        self._irq_waiters: dict[int, list[Task]] = {}
        self._pending: dict[int, deque[Any]] = {}
        self._seq = 0
        self._next_id = 1
        self._tasks: list[Task] = []
        self._alive = 0
        self._current: Task | None = None
        self._running = False
        self._failure: tuple[Task, BaseException] | None = None
        self._main: Task | None = None
        self._step_no = 0
        self._step_start = 0
        self._closed = False

    # ------------------------------------------------------------------ public API

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None,
              priority: int = 0, deadline_ns: int | None = None) -> Task:
        """Add a coroutine as a ready task.

        Args:
            coro: a coroutine object (call the async function: ``spawn(work())``).
            name: for records and reports (default: the function's qualified name).
            priority: higher runs first; any int.
            deadline_ns: response deadline after each wake-up, counted in
                ``deadline_misses`` (None: none).

        Raises:
            UsageError: ``coro`` is not a coroutine object, or bad numbers.
            ClosedResourceError: the scheduler was closed.
        """
        self.table._check()
        if not inspect.iscoroutine(coro):
            what = getattr(coro, "__qualname__", type(coro).__name__)
            raise UsageError(f"spawn() takes a coroutine object, got {what!r}; call the "
                             f"async function: spawn({what}()), not spawn({what})")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise UsageError(f"priority must be an int, got {priority!r}")
        if deadline_ns is not None and deadline_ns <= 0:
            raise UsageError(f"deadline_ns must be positive, got {deadline_ns}")
        task = Task(self, self._next_id, coro, name or coro.__qualname__, priority,
                    deadline_ns)
        self._next_id += 1
        self._tasks.append(task)
        self._alive += 1
        self._push(task)
        return task

    def tasks(self) -> list[TaskInfo]:
        """Records of every task spawned so far, in spawn order."""
        return [t.info() for t in self._tasks]

    def format_tasks(self) -> str:
        """The task records as a table, like ``ps``."""
        lines = [f"{'ID':>4} {'PRIO':>5} {'EFF':>5} {'STATE':<9} {'WAKEUPS':>8} "
                 f"{'MISSES':>6} {'STEPS':>8}  {'WAITING FOR':<16} NAME"]
        for i in self.tasks():
            lines.append(f"{i.id:>4} {i.priority:>5} {i.effective_priority:>5} "
                         f"{i.state.value:<9} {i.wakeups:>8} {i.deadline_misses:>6} "
                         f"{i.steps:>8}  {i.waiting_for:<16} {i.name}")
        return "\n".join(lines)

    def run(self, main: Coroutine[Any, Any, Any] | None = None, *, name: str | None = None,
            priority: int = 0, timeout_ns: int | None = None) -> Any:
        """Run tasks until ``main`` returns (then cancel the rest), or until every task
        has finished when there is no ``main``.

        Args:
            main: the coroutine whose result ``run`` returns.
            name: its task name.
            priority: its priority.
            timeout_ns: give up after this long (SchedulerError naming what is left).

        Returns:
            ``main``'s return value (None without ``main``).

        Raises:
            SchedulerError: already running, timed out, or blocked tasks that nothing
                can wake (deadlock).
            BaseException: whatever a task raised (noted with the task's name).
        """
        if self._running:
            raise SchedulerError("this scheduler is already running; spawn() more tasks "
                                 "instead of calling run() again")
        self.table._check()
        self._main = None if main is None else self.spawn(main, name=name,
                                                          priority=priority)
        deadline = None if timeout_ns is None else self._clock() + timeout_ns
        watchdog = None
        if self._watchdog_ns is not None:
            watchdog = Watchdog(self._probe, self._watchdog_ns, clock=self._clock,
                                on_report=self._on_watchdog,
                                loop_thread=threading.get_ident())
        self._running = True
        self._failure = None
        set_running(self)
        backstop = self.table.timer_backstop_ns
        try:
            self.table.timer_backstop_ns = self._backstop
            if watchdog is not None:
                watchdog.start()
            self._loop(deadline, timeout_ns)
        finally:
            if watchdog is not None:
                watchdog.stop()
            if not self.table.closed:
                self.table.timer_backstop_ns = backstop
            try:
                self._cancel_all(keep=self._main is None and self._failure is None)
            finally:
                set_running(None)
                self._running = False
        if self._failure is not None:
            raise self._failure[1]
        return None if self._main is None else self._main._result

    def close(self) -> None:
        """Cancel unfinished tasks; close the table if the scheduler created it."""
        if self._closed:
            return
        self._closed = True
        self._cancel_all(keep=False)
        if self._owns_table:
            self.table.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------- the loop

    def _loop(self, deadline: int | None, timeout_ns: int | None) -> None:
        ready = self._ready
        poll = self.table.poll
        clock = self._clock
        heappop = heapq.heappop
        poll_every = self._poll_every
        watch = self._watchdog_ns is not None
        irq_fast = self._irq_fast
        since_poll = 0
        # HOT: everything below runs once per step or per interrupt. Kept in one
        # function with locals bound above; the step is inlined (a method call per step
        # costs ~5 % at these step sizes). Steps 1-3 of the module docstring.
        while self._alive and self._failure is None:
            if ready:
                if since_poll >= poll_every:  # 1. interrupts first, at a switch point
                    since_poll = 0
                    if self._sleepers or deadline is not None:
                        now = clock()
                        if deadline is not None and now >= deadline:
                            self._timed_out(timeout_ns)
                        self._expire(now)
                    fired = poll(0)
                    if fired:
                        self._bottom_half(fired)
                since_poll += 1
                entry = heappop(ready)
                task: Task = entry[2]
                if task._entry is not entry:
                    continue  # stale: requeued at another priority, or cancelled
                task._entry = None
                while True:  # its steps: again at once when the fast path delivers
                    task._state = RUNNING
                    task.steps += 1
                    self._current = task
                    ref = task._wake_ref
                    if ref is not None:  # woken: resumed now (accounted after the step)
                        ref = clock() - ref
                    if watch:
                        self._step_no += 1
                        self._step_start = clock()
                    try:
                        exc = task._throw
                        if exc is None:
                            req = task._coro.send(task._value)
                        else:
                            task._throw = None
                            req = task._coro.throw(exc)
                    except StopIteration as stop:
                        self._current = None
                        self._finish(task, TaskState.DONE, stop.value, None)
                        if task is self._main:
                            return
                        break
                    except BaseException as err:  # a task's failure is run()'s failure
                        self._current = None
                        self._finish(task, TaskState.FAILED, None, err)
                        break
                    finally:
                        if ref is not None:  # wake latency and deadline accounting
                            task._wake_ref = None
                            ring = task._wake_ring
                            if ring is not None:
                                ring._data[ring.count & ring._mask] = ref
                                ring.count += 1
                                task._wake_ring = None
                            if task._deadline is not None and ref > task._deadline:
                                task.deadline_misses += 1
                    self._current = None
                    task._value = None
                    try:
                        op = req[0]
                    except (TypeError, IndexError, KeyError):
                        op = -1
                    if op == IRQ:
                        if not ready:
                            done = irq_fast(task, req[1], deadline)
                            if done is _DELIVERED:
                                # nothing else was ready and nothing else fired: the
                                # general path would run this task next, so run it now
                                # (the poll just made was this switch point's poll)
                                since_poll = 0
                                continue
                            if done is _BLOCKED:
                                since_poll = 0
                                break
                        self._wait_irq(task, req[1])
                    elif op == YIELD:
                        task._state = READY
                        self._push(task)
                    elif op == SLEEP:
                        self._wait_sleep(task, req[1])
                    elif op == PARK:
                        task._state = BLOCKED
                        task._gen += 1
                        task._blocked_on = req[1]
                        req[1]._park(task)
                    else:
                        self._bad_await(task, req)
                    break
                continue
            # 2. nothing ready: wait for interrupts or the next deadline
            self._idle(deadline, timeout_ns)
            since_poll = 0

    def _idle(self, deadline: int | None, timeout_ns: int | None) -> None:
        clock, table = self._clock, self.table
        now = clock()
        if self._expire(now):
            return
        nxt = self._sleepers[0][0] if self._sleepers else None
        if deadline is not None:
            if now >= deadline:
                self._timed_out(timeout_ns)
            nxt = deadline if nxt is None else min(nxt, deadline)
        if not self._sleepers and not len(table):
            self._deadlock()
        if self._idle_hook is not None:
            self._idle_hook(None if nxt is None else max(0, nxt - now))
            if self._ready:
                return
        mode = self.mode
        if mode == "block":
            fired = table.poll_until(nxt)
            if fired:
                self._bottom_half(fired)
            if self._sleepers:
                self._expire(clock())
            return
        # "spin" and "poll": poll without waiting; timer ticks are taken by the clock
        # (TimerSource.expire), not when the timer interrupt makes the timerfd readable
        timer = table.next_timer_expiry_ns()
        ppoll, dispatch = table.poller.poll, table.dispatch
        if mode == "poll":
            while True:  # HOT: busy-poll until something is ready
                tokens = ppoll(0)
                if tokens:
                    fired = dispatch(tokens)
                    if fired:
                        self._bottom_half(fired)
                        return
                if timer is not None or nxt is not None:
                    t = clock()
                    if timer is not None and t >= timer and self._tick(t):
                        return
                    if nxt is not None and t >= nxt:
                        self._expire(t)
                        return
                    if timer is not None and t >= timer:
                        timer = table.next_timer_expiry_ns()
        soon = nxt if timer is None else timer if nxt is None else min(nxt, timer)
        spin_until = now + self._spin_ns
        lead = self._lead
        while True:  # HOT: spin while recently busy or a deadline is near
            t = clock()
            if t >= spin_until and (soon is None or soon - t > lead):
                break
            tokens = ppoll(0)
            if tokens:
                fired = dispatch(tokens)
                if fired:
                    self._bottom_half(fired)
                    return
            if timer is not None and t >= timer:
                if self._tick(t):
                    return
                timer = table.next_timer_expiry_ns()
            if nxt is not None and t >= nxt:
                self._expire(t)
                return
        now = clock()
        if soon is not None:
            wake = soon - lead
            nxt = wake if nxt is None else min(nxt, wake)
        fired = table.poll_until(nxt)
        if fired:
            self._bottom_half(fired)
        if self._sleepers:
            self._expire(clock())

    def _tick(self, now: int) -> bool:
        """Deliver timer ticks due by ``now``; True if any task woke."""
        fired = self.table.expire_timers(now)
        if fired:
            self._bottom_half(fired)
        return bool(self._ready)

    # ------------------------------------------------------------- waking, blocking

    def _push(self, task: Task) -> None:
        entry = [-task._prio, self._seq, task]
        self._seq += 1
        task._entry = entry
        heapq.heappush(self._ready, entry)

    def _wake(self, task: Task, value: Any, ref_ns: int | None = None) -> None:
        """Make a blocked task ready, resuming with ``value``; ``ref_ns`` is when the
        event happened (for deadline accounting; default: now)."""
        if task._state is not BLOCKED:
            return
        task._state = READY
        task._blocked_on = None
        task._value = value
        task.wakeups += 1
        if task._deadline is not None:
            task._wake_ref = self._clock() if ref_ns is None else ref_ns
        self._push(task)

    def _wait_irq(self, task: Task, vector: int) -> None:
        pending = self._pending.get(vector)
        if pending:
            task._value = pending.popleft()
            task._state = READY
            self._push(task)
            return
        if vector not in self.table:
            bad = vector.__class__ is not int or not 0 <= vector < 256
            task._throw = InvalidVector(f"irq({vector!r}): not a vector number 0..255") \
                if bad else IrqError(f"irq({vector!r}): no source is registered on that "
                                     "vector; register it with the vector table first")
            task._state = READY
            self._push(task)
            return
        task._state = BLOCKED
        task._gen += 1
        task._blocked_on = vector
        self._add_irq_waiter(task, vector)

    def _add_irq_waiter(self, task: Task, vector: int) -> None:
        waiters = self._irq_waiters.get(vector)
        if waiters is None:
            self._irq_waiters[vector] = [task]
        else:
            waiters.append(task)

    def _irq_fast(self, task: Task, vector: Any, deadline: int | None) -> object:
        """Wait for ``vector`` right here, when nothing else can happen meanwhile.

        The fast path of invariant 2, for the task that just awaited ``irq(vector)``
        while no task is ready: if none sleeps, no other task waits on the vector, no
        interrupt is latched on it and no timer ticks by the clock, the loop would go
        idle and wait for the table's fds anyway. Here the wait, the acknowledge and
        the bottom half are one lean step, and the task resumes without a trip
        through the ready queue. Anything else (another vector firing, two at once, a
        spurious report, a handler that raises, the time limit) goes to the general
        path, with the task blocked on the vector as ``_wait_irq`` would leave it.

        Returns:
            ``_INELIGIBLE`` (nothing done: call ``_wait_irq``), ``_DELIVERED`` (the
            task has its value: resume it now) or ``_BLOCKED`` (it waits; go on).
        """
        table = self.table
        if vector.__class__ is not int or not 0 <= vector < 256 or self._sleepers \
                or self._irq_waiters.get(vector) or self._pending.get(vector):
            return _INELIGIBLE
        mode = self.mode
        by_clock = mode != "block"  # polling modes tick timers by the clock instead
        slot = table._fast_slot(vector, timers=not by_clock)
        if slot is None or (by_clock and table.next_timer_expiry_ns() is not None):
            return _INELIGIBLE
        task._state = BLOCKED
        task._gen += 1
        task._blocked_on = vector
        clock = self._clock
        hook = self._idle_hook
        listed = hook is not None  # whether the task is among the vector's waiters
        if hook is not None:
            # the hook sees what the general path shows it, the task listed as the
            # vector's waiter, and may act on it (cancel it, unregister the vector)
            self._add_irq_waiter(task, vector)
            hook(None if deadline is None else max(0, deadline - clock()))
            if self._ready or task._state is not BLOCKED:
                return _BLOCKED
        if table._undrained:  # timerfds to read before the wait (VectorTable.poll)
            fired = table._drain()
            if fired:
                if not listed:
                    self._add_irq_waiter(task, vector)
                self._bottom_half(fired)
                return _BLOCKED
        if not by_clock:
            tokens = table._wait_tokens(deadline)
        else:
            limit = deadline
            if mode == "spin":
                limit = clock() + self._spin_ns
                if deadline is not None and deadline < limit:
                    limit = deadline
            tokens = self._spin(limit)
            if not tokens and mode == "spin":
                tokens = table._wait_tokens(deadline)
        # HOT: from the poll's return to the task's resumption
        if len(tokens) == 1 and tokens[0] == vector:
            t0 = clock()
            if slot.is_timer or slot.handler is not None:  # the table's steps 1-2
                value = table._acknowledge(slot, t0)
                if value is not NO_EVENT:
                    fired_one = table._top_half(slot, value, t0)
                    value = NO_EVENT if fired_one is None else fired_one[1]
            else:  # a plain vector: steps 1-2 inlined
                take = slot.source._take
                try:
                    value = slot.ack() if take is None else take()
                except BlockingIOError:
                    value = NO_EVENT
                    table._nothing(slot)
                except OSError as exc:
                    value = NO_EVENT
                    table._ack_failed(slot, exc)
                else:
                    if value is NO_EVENT:
                        table._nothing(slot)
                    else:
                        slot.count += 1
            if value is NO_EVENT:  # spurious, failed, or the handler raised: counted
                if not listed:
                    self._add_irq_waiter(task, vector)
                return _BLOCKED
            if listed:
                del self._irq_waiters[vector]  # it was the only one
            task._blocked_on = None
            task._value = value
            task.wakeups += 1
            task._wake_ref = t0
            task._wake_ring = slot.wake
            return _DELIVERED
        if not listed:
            self._add_irq_waiter(task, vector)
        if tokens:
            fired = table.dispatch(tokens)
            if fired:
                self._bottom_half(fired)
        return _BLOCKED

    def _spin(self, limit: int | None) -> list[int]:
        """Poll without waiting until a token is ready or the clock reaches ``limit``
        (None: no limit); the ready tokens, or []."""
        poller = self.table.poller
        spin = getattr(poller, "spin", None)
        if spin is not None and self._clock is time.monotonic_ns:
            tokens: list[int] = spin(limit)
            return tokens
        ppoll, clock = poller.poll, self._clock
        tokens = ppoll(0)
        while not tokens and (limit is None or clock() < limit):
            tokens = ppoll(0)
        return tokens

    def _wait_sleep(self, task: Task, deadline: int) -> None:
        task._state = BLOCKED
        task._gen += 1
        task._blocked_on = SLEEPING
        heapq.heappush(self._sleepers, (deadline, self._seq, task, task._gen))
        self._seq += 1

    def _expire(self, now: int) -> bool:
        """Wake sleepers whose deadline has passed; True if any woke."""
        sl = self._sleepers
        woke = False
        while sl and sl[0][0] <= now:
            deadline, _, task, gen = heapq.heappop(sl)
            if task._gen == gen and task._blocked_on is SLEEPING:
                self._wake(task, None, deadline)
                woke = True
        return woke

    def _bottom_half(self, fired: list[tuple[int, Any, int]]) -> None:
        waiters_by_vector = self._irq_waiters
        ready = self._ready
        # HOT: once per delivered interrupt; _wake and _push inlined
        for vector, value, t0 in fired:
            waiters = waiters_by_vector.pop(vector, None)
            if waiters:
                ring = self.table.wake_ring(vector)
                for task in waiters:
                    if task._state is not BLOCKED:
                        continue
                    task._state = READY
                    task._blocked_on = None
                    task._value = value
                    task.wakeups += 1
                    task._wake_ref = t0
                    task._wake_ring = ring
                    entry = [-task._prio, self._seq, task]
                    self._seq += 1
                    task._entry = entry
                    heapq.heappush(ready, entry)
            else:
                pending = self._pending.get(vector)
                if pending is None:
                    pending = self._pending[vector] = deque(maxlen=self._backlog)
                pending.append(value)
                self.table.note_unclaimed(vector)

    def _vector_gone(self, vector: int) -> None:
        self._pending.pop(vector, None)
        for task in self._irq_waiters.pop(vector, []):
            if task._state is BLOCKED:
                task._state = READY
                task._blocked_on = None
                task._throw = IrqError(f"vector {vector} was unregistered while "
                                       f"{task.name!r} waited for it")
                self._push(task)

    # ------------------------------------------------------- priority inheritance

    def _recompute_priority(self, task: Task) -> None:
        """Effective priority = max(base, waiters of every lock it holds)."""
        prio = task._base
        for lock in task._held:
            for w in lock._waiters:
                prio = max(prio, w._prio)
        if prio == task._prio:
            return
        task._prio = prio
        entry = task._entry
        if entry is not None:  # requeue at the new priority, keeping its FIFO place
            new = [-prio, entry[1], task]
            task._entry = new
            heapq.heappush(self._ready, new)
        elif task._state is BLOCKED and task._blocked_on is not None \
                and not isinstance(task._blocked_on, int) and task._blocked_on is not SLEEPING:
            task._blocked_on._priority_changed(task)  # a lock passes it on

    # ------------------------------------------------------ finishing, cancelling

    def _finish(self, task: Task, state: TaskState, result: Any,
                exc: BaseException | None) -> None:
        task._state = state
        task._result = result
        task._exc = exc
        task._coro.close()
        self._alive -= 1
        for lock in list(task._held):  # a task that ended holding locks frees them
            self._current = task
            try:
                lock.release()
            finally:
                self._current = None
        if exc is not None and self._failure is None:
            exc.add_note(f"raised in qpuos task {task.id} {task.name!r}")
            self._failure = (task, exc)

    def _unblock(self, task: Task) -> None:
        b = task._blocked_on
        task._blocked_on = None
        task._gen += 1
        if isinstance(b, int):
            waiters = self._irq_waiters.get(b)
            if waiters and task in waiters:
                waiters.remove(task)
        elif b is not None and b is not SLEEPING:
            b._unpark(task)

    def _cancel(self, task: Task) -> None:
        if task._state in FINISHED:
            return
        if task._state is RUNNING:
            raise SchedulerError(f"task {task.name!r} tried to cancel itself; return "
                                 "from the coroutine instead")
        if task._state is BLOCKED:
            self._unblock(task)
        task._entry = None
        prev, self._current = self._current, task
        try:
            task._coro.close()
        except BaseException as exc:
            _log.warning("task %r raised while being cancelled: %r", task.name, exc)
        finally:
            self._current = prev
        task._state = TaskState.CANCELLED
        self._alive -= 1
        for lock in list(task._held):
            if lock._owner is task:
                prev, self._current = self._current, task
                try:
                    lock.release()
                finally:
                    self._current = prev

    def _cancel_all(self, *, keep: bool) -> None:
        if keep:
            return
        if not self._running:
            set_running(self)  # cancelled coroutines may release locks as they unwind
        try:
            for task in self._tasks:
                if task._state not in FINISHED:
                    self._cancel(task)
        finally:
            if not self._running:
                set_running(None)
        self._ready.clear()
        self._sleepers.clear()
        self._irq_waiters.clear()

    # ----------------------------------------------------------------- diagnostics

    def _probe(self) -> tuple[int, Task | None, int]:
        return self._step_no, self._current, self._step_start

    def _unfinished(self) -> str:
        left = [t for t in self._tasks if t._state not in FINISHED]
        shown = ", ".join(f"{t.name!r} ({t.waiting_for() or t._state.value})"
                          for t in left[:8])
        more = f" and {len(left) - 8} more" if len(left) > 8 else ""
        return f"{len(left)} unfinished: {shown}{more}"

    def _timed_out(self, timeout_ns: int | None) -> None:
        raise SchedulerError(f"run() gave up after {(timeout_ns or 0) / 1e6:.1f} ms with "
                             f"{self._unfinished()}")

    def _deadlock(self) -> None:
        raise SchedulerError(f"deadlock: no task is ready, none sleeps and no interrupt "
                             f"source is registered, so nothing can wake the "
                             f"{self._unfinished()}")

    def _bad_await(self, task: Task, req: object) -> None:
        task._throw = SchedulerError(
            f"task {task.name!r} awaited {req!r}, which the qpuos scheduler cannot run; "
            "await qpuos primitives (irq, sleep_until, checkpoint, Event, Queue, Lock), "
            "not asyncio or trio ones")
        task._state = READY
        self._push(task)

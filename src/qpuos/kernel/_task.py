"""Tasks (the scheduler's record of one coroutine) and the requests coroutines yield.

A coroutine talks to the scheduler the way trio's do: awaiting a qpuos primitive
yields a small request tuple up through ``coro.send()`` to the run loop, which decides
whether the task stays ready or blocks, and resumes it later with a value. Requests:

- ``(IRQ, vector)``: block until the vector's next interrupt; resume with its value;
- ``(SLEEP, deadline_ns)``: block until the clock reaches the deadline;
- ``(YIELD,)``: go to the back of the ready queue for this priority (a switch point);
- ``(PARK, waitable)``: block on an Event, Queue or Lock; the waitable has recorded
  the task and wakes it through the scheduler.

The running scheduler of this thread is found through a thread-local, so primitives
need no scheduler argument.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from qpuos.errors import SchedulerError

if TYPE_CHECKING:
    from qpuos.kernel.scheduler import Scheduler

__all__ = ["IRQ", "PARK", "SLEEP", "YIELD", "Request", "Task", "TaskInfo", "TaskState",
           "Waitable", "current_task", "running_scheduler"]

IRQ, SLEEP, YIELD, PARK = 0, 1, 2, 3

T = TypeVar("T")


class Request(Generic[T]):
    """An awaitable that yields one request to the scheduler and returns its answer."""

    __slots__ = ("req",)

    def __init__(self, req: tuple[Any, ...]) -> None:
        self.req = req

    def __await__(self) -> Generator[tuple[Any, ...], Any, T]:
        value: T = yield self.req
        return value


class Waitable(Protocol):
    """What a parking primitive (Event, Queue, Lock) offers the scheduler."""

    def _park(self, task: Task) -> None:
        """Record ``task`` as waiting (it is already marked blocked)."""

    def _unpark(self, task: Task) -> None:
        """Forget ``task`` (it was cancelled while waiting)."""

    def _priority_changed(self, task: Task) -> None:
        """A waiting task's effective priority changed (locks propagate it)."""

    def _describe(self) -> str:
        """What the task waits for, for records and error messages."""
        ...


class TaskState(enum.Enum):
    """Where a task is in its life."""

    READY = "ready"
    RUNNING = "running"
    BLOCKED = "blocked"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


READY, RUNNING, BLOCKED = TaskState.READY, TaskState.RUNNING, TaskState.BLOCKED
FINISHED = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task's record.

    Attributes:
        id: unique within its scheduler, in spawn order from 1.
        name: given at spawn (default: the coroutine's qualified name).
        state: ready, running, blocked, done, failed or cancelled.
        priority: the base priority (higher runs first).
        effective_priority: the priority it runs at now (raised by inheritance).
        wakeups: times it was woken after blocking.
        deadline_misses: wake-ups it resumed later than its ``deadline_ns`` after.
        steps: times it was resumed.
        watchdog_overruns: steps the watchdog reported as too long.
        waiting_for: what it is blocked on ("" unless blocked).
    """

    id: int
    name: str
    state: TaskState
    priority: int
    effective_priority: int
    wakeups: int
    deadline_misses: int
    steps: int
    watchdog_overruns: int
    waiting_for: str


class Task:
    """The scheduler's record of one coroutine (returned by ``Scheduler.spawn``).

    The hot loop reads and writes the underscored slots directly; users read the
    properties or take an :meth:`info` snapshot.
    """

    __slots__ = ("_base", "_blocked_on", "_coro", "_deadline", "_entry", "_exc", "_gen",
                 "_held", "_prio", "_result", "_sched", "_state", "_throw", "_value",
                 "_wake_ref", "_wake_ring", "deadline_misses", "id", "name", "steps",
                 "wakeups", "watchdog_overruns")

    def __init__(self, sched: Scheduler, tid: int, coro: Coroutine[Any, Any, Any],
                 name: str, priority: int, deadline_ns: int | None) -> None:
        self._sched = sched
        self.id = tid
        self.name = name
        self._coro = coro
        self._base = self._prio = priority
        self._deadline = deadline_ns
        self._state = READY
        self._entry: list[Any] | None = None  # its live ready-heap entry
        self._blocked_on: Any = None  # vector (int), SLEEPING, or a Waitable
        self._gen = 0  # bumped at each block: stale sleep entries are skipped
        self._value: Any = None
        self._throw: BaseException | None = None
        self._wake_ref: int | None = None
        self._wake_ring: Any = None  # the vector's wake-latency ring, if woken by one
        self._held: list[Any] = []  # locks held, for priority inheritance
        self._result: Any = None
        self._exc: BaseException | None = None
        self.wakeups = self.deadline_misses = self.steps = self.watchdog_overruns = 0

    @property
    def state(self) -> TaskState:
        """The task's state now."""
        return self._state

    @property
    def priority(self) -> int:
        """The base priority given at spawn."""
        return self._base

    @property
    def effective_priority(self) -> int:
        """The priority it runs at now (its base, or higher by inheritance)."""
        return self._prio

    @property
    def deadline_ns(self) -> int | None:
        """The response deadline after each wake-up, if any."""
        return self._deadline

    def done(self) -> bool:
        """Whether it has finished (returned, raised or was cancelled)."""
        return self._state in FINISHED

    def result(self) -> Any:
        """The coroutine's return value; re-raises its exception.

        Raises:
            SchedulerError: it has not finished, or was cancelled.
        """
        if self._state is TaskState.DONE:
            return self._result
        if self._state is TaskState.FAILED:
            assert self._exc is not None
            raise self._exc
        if self._state is TaskState.CANCELLED:
            raise SchedulerError(f"task {self.name!r} was cancelled; it has no result")
        raise SchedulerError(f"task {self.name!r} is {self._state.value}; it has no "
                             "result yet")

    def exception(self) -> BaseException | None:
        """The exception it raised, or None."""
        return self._exc

    def cancel(self) -> None:
        """Stop the task: its coroutine is closed where it waits (``finally`` runs).

        Raises:
            SchedulerError: a task tried to cancel itself (return instead).
        """
        self._sched._cancel(self)

    def waiting_for(self) -> str:
        """What it is blocked on, or "" when not blocked."""
        if self._state is not BLOCKED:
            return ""
        b = self._blocked_on
        if isinstance(b, int):
            return f"irq {b}"
        if b is SLEEPING:
            return "sleep"
        return str(b._describe())

    def info(self) -> TaskInfo:
        """A snapshot of the record."""
        return TaskInfo(self.id, self.name, self._state, self._base, self._prio,
                        self.wakeups, self.deadline_misses, self.steps,
                        self.watchdog_overruns, self.waiting_for())

    def __repr__(self) -> str:
        return (f"<Task {self.id} {self.name!r} {self._state.value} "
                f"priority={self._prio}>")


class _Sleeping:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SLEEPING"


SLEEPING = _Sleeping()

_local = threading.local()


def running_scheduler() -> Scheduler:
    """The scheduler running in this thread.

    Raises:
        SchedulerError: no ``Scheduler.run()`` is active in this thread.
    """
    sched: Scheduler | None = getattr(_local, "sched", None)
    if sched is None:
        raise SchedulerError("no qpuos scheduler is running in this thread; await "
                             "qpuos primitives only inside Scheduler.run()")
    return sched


def set_running(sched: Scheduler | None) -> None:
    """Install (or clear) this thread's running scheduler."""
    _local.sched = sched


def current_task() -> Task:
    """The task whose coroutine is running now.

    Raises:
        SchedulerError: called outside a running coroutine.
    """
    task = running_scheduler()._current
    if task is None:
        raise SchedulerError("current_task() was called outside a running coroutine "
                             "(e.g. from an interrupt handler)")
    return task

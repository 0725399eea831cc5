"""Events, queues and locks for the priority scheduler.

All three are priority-aware: when one waiter must be chosen (a queue item, a lock
hand-over), the waiter with the highest effective priority wins, and among equals the
one that waited longest (FIFO). ``Event.set`` wakes everyone; the ready queue then
orders them. They may be created anywhere and used from coroutines; ``Event.set`` and
``Queue.put_nowait`` may also be called from interrupt handlers (top halves).

:class:`Lock` implements priority inheritance (Sha, Rajkumar, Lehoczky, "Priority
inheritance protocols", IEEE Trans. Computers 39(9), 1990, the basic protocol): while
a task waits for a lock, the holder runs at least at the waiter's effective priority,
transitively along chains of locks, and drops back when it releases. This bounds the
classic inversion where a medium-priority task keeps a low-priority holder, and so the
high-priority waiter, off the CPU. Locks are not reentrant; a wait that would close a
cycle of holders raises instead of deadlocking.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

from qpuos.errors import SchedulerError, WouldBlock
from qpuos.kernel._task import BLOCKED, PARK, YIELD, Request, Task, current_task

__all__ = ["Event", "Lock", "Queue"]

T = TypeVar("T")


def _pick(waiters: list[Task]) -> Task:
    """The highest effective priority, first come among equals."""
    best = waiters[0]
    for t in waiters:
        if t._prio > best._prio:
            best = t
    waiters.remove(best)
    return best


class Event:
    """A flag coroutines can wait for; ``set()`` wakes them all.

    >>> from qpuos.kernel.scheduler import Scheduler, checkpoint, spawn
    >>> ev, log = Event(), []
    >>> async def waiter():
    ...     await ev.wait()
    ...     log.append("woken")
    >>> async def main():
    ...     spawn(waiter())
    ...     await checkpoint()  # the waiter runs and blocks
    ...     ev.set()
    ...     await checkpoint()  # the waiter runs again
    >>> with Scheduler() as sched:
    ...     sched.run(main(), timeout_ns=10**9)
    >>> log
    ['woken']
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[Task] = []

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag = True
        waiters, self._waiters = self._waiters, []
        for t in waiters:
            t._sched._wake(t, None)

    def clear(self) -> None:
        """Clear the flag (waiters arriving later block again)."""
        self._flag = False

    async def wait(self) -> None:
        """Return once the flag is set (at once if it already is)."""
        if not self._flag:
            await Request[None]((PARK, self))

    def _park(self, task: Task) -> None:
        self._waiters.append(task)

    def _unpark(self, task: Task) -> None:
        self._waiters.remove(task)

    def _priority_changed(self, task: Task) -> None:
        pass

    def _describe(self) -> str:
        return "event"


class Queue(Generic[T]):
    """A FIFO queue between coroutines (and from interrupt handlers into coroutines).

    Args:
        maxsize: the most items it holds; 0 for no bound. ``put`` waits while full.
    """

    __slots__ = ("_getters", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        if maxsize < 0:
            raise SchedulerError(f"queue maxsize must be 0 (unbounded) or more, got "
                                 f"{maxsize}")
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._getters: list[Task] = []
        self._putters: list[Task] = []  # each with its item in _value until admitted

    def qsize(self) -> int:
        """Items queued now."""
        return len(self._items)

    def empty(self) -> bool:
        """Whether no item is queued."""
        return not self._items

    def full(self) -> bool:
        """Whether a put would wait."""
        return bool(self._maxsize) and len(self._items) >= self._maxsize

    def put_nowait(self, item: T) -> None:
        """Queue ``item`` (or hand it to the best waiting getter).

        Raises:
            WouldBlock: the queue is full.
        """
        if self._getters:
            t = _pick(self._getters)
            t._sched._wake(t, item)
            return
        if self._maxsize and len(self._items) >= self._maxsize:
            raise WouldBlock(f"queue is full ({self._maxsize} items); await put() to "
                             "wait for room")
        self._items.append(item)

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting while the queue is full."""
        try:
            self.put_nowait(item)
        except WouldBlock:
            await Request[None]((PARK, _Putter(self, item)))

    def get_nowait(self) -> T:
        """Take the oldest item.

        Raises:
            WouldBlock: the queue is empty.
        """
        if not self._items:
            raise WouldBlock("queue is empty; await get() to wait for an item")
        item = self._items.popleft()
        if self._putters:
            t = _pick(self._putters)
            putter = t._blocked_on
            self._items.append(putter.item)
            t._sched._wake(t, None)
        return item

    async def get(self) -> T:
        """Take the oldest item, waiting while the queue is empty."""
        if self._items:
            return self.get_nowait()
        item: T = await Request[T]((PARK, self))
        return item

    def _park(self, task: Task) -> None:
        self._getters.append(task)

    def _unpark(self, task: Task) -> None:
        self._getters.remove(task)

    def _priority_changed(self, task: Task) -> None:
        pass

    def _describe(self) -> str:
        return "queue get"


class _Putter:
    """What a task blocked in ``Queue.put`` waits on: its queue and item."""

    __slots__ = ("item", "queue")

    def __init__(self, queue: Queue[Any], item: Any) -> None:
        self.queue = queue
        self.item = item

    def _park(self, task: Task) -> None:
        self.queue._putters.append(task)

    def _unpark(self, task: Task) -> None:
        self.queue._putters.remove(task)

    def _priority_changed(self, task: Task) -> None:
        pass

    def _describe(self) -> str:
        return "queue put"


class Lock:
    """A mutual-exclusion lock with priority inheritance (see the module docstring).

    Use ``async with lock:``; ``acquire``/``release`` must come from the same task.

    Args:
        name: shown in records and messages.
    """

    __slots__ = ("_owner", "_waiters", "name")

    def __init__(self, name: str = "lock") -> None:
        self.name = name
        self._owner: Task | None = None
        self._waiters: list[Task] = []

    def locked(self) -> bool:
        """Whether a task holds it."""
        return self._owner is not None

    @property
    def owner(self) -> Task | None:
        """The holding task, if any."""
        return self._owner

    async def acquire(self) -> None:
        """Take the lock, waiting (and lending the holder our priority) while held.

        Raises:
            SchedulerError: this task already holds it, or waiting would deadlock.
        """
        task = current_task()
        owner = self._owner
        if owner is None:
            self._owner = task
            task._held.append(self)
            return
        if owner is task:
            raise SchedulerError(f"{task.name!r} already holds lock {self.name!r} (locks "
                                 "are not reentrant)")
        chain = [task.name]
        holder: Task | None = owner
        while holder is not None:  # would waiting close a cycle of holders?
            chain.append(holder.name)
            if holder is task:
                raise SchedulerError(f"deadlock: waiting for lock {self.name!r} closes the "
                                     f"cycle {' -> '.join(chain)}")
            nxt = holder._blocked_on
            holder = nxt._owner if isinstance(nxt, Lock) and holder._state is BLOCKED \
                else None
        await Request[None]((PARK, self))
        # woken by release(): the lock was handed to us

    def release(self) -> None:
        """Release the lock, handing it to the best waiter.

        Not a switch point (it is synchronous); ``async with`` adds one when the new
        holder outranks the releasing task, so it runs at once.

        Raises:
            SchedulerError: the calling task does not hold it.
        """
        self._release(current_task())

    def _release(self, task: Task) -> Task | None:
        """Release for ``task``; returns the new holder, if any."""
        if self._owner is not task:
            holder = self._owner.name if self._owner else "nobody"
            raise SchedulerError(f"{task.name!r} released lock {self.name!r} held by "
                                 f"{holder}")
        task._held.remove(self)
        sched = task._sched
        nxt: Task | None = None
        if self._waiters:
            nxt = _pick(self._waiters)
            self._owner = nxt
            nxt._held.append(self)
            sched._wake(nxt, None)
            sched._recompute_priority(nxt)
        else:
            self._owner = None
        sched._recompute_priority(task)
        return nxt

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        task = current_task()
        nxt = self._release(task)
        if nxt is not None and nxt._prio > task._prio and exc_type is not GeneratorExit:
            await Request[None]((YIELD,))  # hand over the CPU with the lock

    def _park(self, task: Task) -> None:
        self._waiters.append(task)
        if self._owner is not None:
            self._owner._sched._recompute_priority(self._owner)

    def _unpark(self, task: Task) -> None:
        self._waiters.remove(task)
        if self._owner is not None:
            self._owner._sched._recompute_priority(self._owner)

    def _priority_changed(self, task: Task) -> None:
        if self._owner is not None:
            self._owner._sched._recompute_priority(self._owner)

    def _describe(self) -> str:
        return f"lock {self.name!r}"

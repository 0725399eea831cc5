"""The interrupt vector table: vector number -> source -> top-half handler.

In qpuos the host's run loop is an interrupt controller: device completions, timers
and signals arrive as readable fds (timerfd, eventfd, signalfd, /dev/uioN, any fd),
each registered under a vector number 0..255 with a priority. :meth:`VectorTable.poll`
waits for them (epoll), then for each one that fired, highest priority first:

1. acknowledges the source (reads its fd: the count, the expirations, the signals).
   A timer is acknowledged by the clock instead (``TimerSource.expire``), and its
   timerfd is read before the next wait ("drained"): reading a periodic timerfd
   re-arms its kernel timer, measured at ~7 µs just after a wake-up in a Firecracker
   VM (a one-shot timerfd's read: ~1.3 µs; most likely the timer reprogramming
   traps to the host), which would otherwise sit between the tick and the task. The
   timerfd's count then confirms the ticks the clock delivered (each tick once);
   a caller that polls the poller itself and never calls :meth:`VectorTable.poll`
   sees the timer's token again, and that report is read at once;
2. runs the top half: the registered handler, a short synchronous function whose
   return value is what waiting coroutines receive (no handler: the acknowledged
   value itself). A handler that raises is isolated: counted in ``errors``, logged on
   ``qpuos.kernel.irq``, its interrupt not delivered, and the loop goes on. The top
   half is timed when there is a handler; without one it is the acknowledge alone,
   left untimed so that one interrupt costs one clock read (its start, ``t_ns``);
3. hands ``(vector, value, t_ns)`` back to the caller. The scheduler is the bottom
   half: it wakes the coroutines awaiting ``irq(vector)``.

Timer sources can also tick by the clock: :meth:`VectorTable.expire_timers` delivers
ticks that are due without waiting for the timer interrupt (a polling loop reads the
clock in ns, the interrupt can come tens of µs later in a VM), and
``timer_backstop_ns`` moves the kernel timers behind their nominal ticks so their
interrupts stop landing exactly when a tick is due. Each tick is delivered once.

Counters and latency samples per vector are kept like ``/proc/interrupts`` does;
:meth:`VectorTable.format_table` prints them. Ordering is deterministic: vectors that
fire together are handled by priority (higher first), then vector number (lower
first).

The table owns its poller (by default :class:`~qpuos.kernel._epoll.Epoll`); tests
inject a fake one with the same four methods (:class:`Poller`).

The acknowledge of an :class:`EventSource` is ``os.eventfd_read`` (one C call) and
the default poller waits in ``select.epoll``: on the interrupt's path from the poll's
return to the coroutine, the ctypes gate cost ~0.5 µs per crossing more (the gate
stays for what ``os`` lacks: timerfd_settime, signalfd, the rest of ``syscall``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from qpuos.errors import ClosedResourceError, InvalidVector, IrqError, VectorInUse
from qpuos.kernel._irq_sources import (
    NO_EVENT,
    EventSource,
    FdSource,
    IrqSource,
    SignalSource,
    TimerSource,
    UioSource,
    doorbell,
)
from qpuos.kernel._irq_stats import Latency, SampleRing, VectorStats, format_stats

__all__ = [
    "NUM_VECTORS",
    "EventSource",
    "FdSource",
    "Handler",
    "IrqSource",
    "Latency",
    "Poller",
    "SignalSource",
    "TimerSource",
    "UioSource",
    "VectorStats",
    "VectorTable",
    "doorbell",
]

NUM_VECTORS = 256
_log = logging.getLogger("qpuos.kernel.irq")

Handler = Callable[[Any], Any]
"""A top half: takes the acknowledged value, returns what waiting coroutines receive."""


class Poller(Protocol):
    """What the table needs from its poller (an epoll set, or a fake in tests).

    A poller may also offer ``poll_until(deadline_ns)`` (absolute CLOCK_MONOTONIC
    timeouts) and ``spin(limit_ns)`` (poll without waiting until ready or the limit);
    the table and the scheduler use them when present (:class:`Epoll` has both).
    """

    def register(self, fd: int, token: int) -> None:
        """Watch ``fd`` for readability, reporting it as ``token``."""

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``."""

    def poll(self, timeout_ns: int | None) -> list[int]:
        """Ready tokens, waiting up to ``timeout_ns`` (None: forever; 0: not at all)."""
        ...

    def close(self) -> None:
        """Release the poller."""


class _Slot:
    """One occupied vector: its source, handler and counters (mutated in place)."""

    __slots__ = ("ack", "count", "errors", "fd", "handler", "is_timer", "last_error",
                 "late", "masked", "name", "order", "overruns", "priority", "source",
                 "spurious", "top", "unclaimed", "undrained", "vector", "wake")

    def __init__(self, vector: int, source: IrqSource, handler: Handler | None,
                 priority: int, name: str, fd: int, samples: int) -> None:
        self.vector = vector
        self.source = source
        self.ack = source.ack  # bound once: the hot path calls it per interrupt
        self.handler = handler
        self.priority = priority
        self.name = name
        self.fd = fd
        self.order = (-priority, vector)
        self.is_timer = source.is_timer
        self.count = self.errors = self.overruns = self.spurious = self.unclaimed = 0
        self.masked = False
        self.undrained = False  # a timer acknowledged by the clock, timerfd not yet read
        self.last_error = ""
        self.top = SampleRing(samples)
        self.wake = SampleRing(samples)
        self.late = SampleRing(samples)


def _check_vector(vector: object) -> int:
    if isinstance(vector, bool) or not isinstance(vector, int) \
            or not 0 <= vector < NUM_VECTORS:
        raise InvalidVector(f"vector {vector!r} is not a vector number 0..{NUM_VECTORS - 1}")
    return vector


class VectorTable:
    """256 interrupt vectors, each an fd source with a top-half handler and statistics.

    >>> table = VectorTable()
    >>> bell = EventSource()
    >>> table.register(32, bell, lambda count: count * 10, name="doorbell")
    >>> bell.fire(4)
    >>> [(vector, value) for vector, value, _ in table.poll(timeout_ns=1_000_000_000)]
    [(32, 40)]
    >>> table.stats(32).count
    1
    >>> print(table.format_table().splitlines()[1].split()[:2])
    ['32:', '1']
    >>> table.close()

    Args:
        poller: where fds are watched (default: a new epoll set); the table closes it.
        clock: ns clock for statistics and for timer ticks taken by the clock (step
            1); must read CLOCK_MONOTONIC, the timers' clock.
        samples: latency samples kept per vector (a power of two).
    """

    def __init__(self, *, poller: Poller | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, samples: int = 1024) -> None:
        if poller is None:
            from qpuos.kernel._epoll import Epoll

            poller = Epoll()
        self._poller: Poller = poller
        self._clock = clock
        # absolute waits where the poller has them and reads the same clock
        until = getattr(poller, "poll_until", None)
        self._until: Callable[[int], list[int]] | None = \
            until if clock is time.monotonic_ns else None
        self._samples = samples
        self._slots: list[_Slot | None] = [None] * NUM_VECTORS
        self._timers: list[_Slot] = []
        self._listeners: list[Callable[[int], None]] = []
        self._undrained: list[_Slot] = []
        self._count = 0
        self._backstop = 0
        self._closed = False

    # ------------------------------------------------------------------ registration

    def register(self, vector: int, source: IrqSource, handler: Handler | None = None, *,
                 priority: int = 0, name: str | None = None) -> None:
        """Attach ``source`` to ``vector`` with an optional top-half ``handler``.

        The table takes ownership of the source: :meth:`close` closes it (and
        :meth:`unregister` hands it back).

        Raises:
            InvalidVector: ``vector`` is not 0..255.
            VectorInUse: the vector already has a source.
            IrqError: the source's fd is already on another vector, or cannot be polled.
        """
        self._check()
        v = _check_vector(vector)
        held = self._slots[v]
        if held is not None:
            free = self.free_vector(v)
            hint = f"or use free vector {free}" if free is not None else "(table full)"
            raise VectorInUse(f"vector {v} already has a handler ({held.source.describe()} "
                              f"{held.name!r}); unregister({v}) first {hint}")
        fd = source.fileno()
        for other in self._slots:
            if other is not None and other.fd == fd:
                raise IrqError(f"fd {fd} is already the source of vector {other.vector} "
                               f"({other.name!r}); one source per vector")
        try:
            self._poller.register(fd, v)
        except OSError as exc:
            raise IrqError(f"cannot poll {source.describe()} for vector {v}: {exc}; is it "
                           "an fd that supports poll (not a regular file)?") from exc
        slot = _Slot(v, source, handler, priority, name or source.kind, fd, self._samples)
        self._slots[v] = slot
        self._count += 1
        if slot.is_timer:
            self._timers.append(slot)
            if self._backstop:
                self._set_backstop(slot, self._backstop)

    def unregister(self, vector: int) -> IrqSource:
        """Detach and return the vector's source (not closed: it is the caller's again).

        Coroutines waiting on the vector are told (the scheduler raises IrqError in them).

        Raises:
            InvalidVector: ``vector`` is not 0..255.
            IrqError: nothing is registered there.
        """
        self._check()
        slot = self._slot(vector)
        if not slot.masked:
            self._poller.unregister(slot.fd)
        self._slots[slot.vector] = None
        self._count -= 1
        if slot.is_timer:
            self._timers.remove(slot)
        for listener in self._listeners:
            listener(slot.vector)
        return slot.source

    def _slot(self, vector: int) -> _Slot:
        v = _check_vector(vector)
        slot = self._slots[v]
        if slot is None:
            raise IrqError(f"vector {v} has no source registered; register({v}, source, "
                           "handler) first")
        return slot

    def free_vector(self, start: int = 0) -> int | None:
        """The lowest unused vector at or after ``start`` (wrapping), or None if full."""
        for i in range(NUM_VECTORS):
            v = (start + i) % NUM_VECTORS
            if self._slots[v] is None:
                return v
        return None

    def __contains__(self, vector: object) -> bool:
        return isinstance(vector, int) and 0 <= vector < NUM_VECTORS \
            and self._slots[vector] is not None

    def __len__(self) -> int:
        return self._count

    def vectors(self) -> list[int]:
        """The occupied vectors, ascending."""
        return [s.vector for s in self._slots if s is not None]

    def source(self, vector: int) -> IrqSource:
        """The source registered on ``vector``."""
        return self._slot(vector).source

    def add_unregister_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(vector)`` whenever a vector is unregistered."""
        self._listeners.append(listener)

    # ---------------------------------------------------------------------- dispatch

    @property
    def poller(self) -> Poller:
        """The poller (for loops that spin on ``poller.poll(0)`` and call
        :meth:`dispatch` themselves)."""
        return self._poller

    def poll(self, timeout_ns: int | None) -> list[tuple[int, Any, int]]:
        """Wait for interrupts, run their top halves, return what to deliver.

        Args:
            timeout_ns: how long to wait (None: until an interrupt; 0: do not wait).

        Returns:
            ``(vector, value, t_ns)`` for each delivered interrupt, in dispatch order
            (priority, then vector); ``t_ns`` is when its top half started. Spurious
            wake-ups and failed handlers are counted, not returned.
        """
        if self._undrained:
            drained = self._drain()
            if drained:
                return drained
        tokens = self._poller.poll(timeout_ns)
        return self.dispatch(tokens) if tokens else []

    def poll_until(self, deadline_ns: int | None) -> list[tuple[int, Any, int]]:
        """:meth:`poll`, waiting at most until ``deadline_ns`` on the table's clock
        (None: until an interrupt).

        With the default poller a loop that waits again for the same deadline (a time
        limit, the next sleeper) does not re-arm its timer: cheaper than ``poll``.
        """
        if self._undrained:
            drained = self._drain()
            if drained:
                return drained
        tokens = self._wait_tokens(deadline_ns)
        return self.dispatch(tokens) if tokens else []

    def _wait_tokens(self, deadline_ns: int | None) -> list[int]:
        """The poller's ready tokens, waiting at most until ``deadline_ns``."""
        if deadline_ns is None:
            return self._poller.poll(None)
        if self._until is not None:
            return self._until(deadline_ns)
        return self._poller.poll(max(0, deadline_ns - self._clock()))

    def _drain(self) -> list[tuple[int, Any, int]]:
        """Read the timerfds of timers that step 1 acknowledged by the clock."""
        out = []
        slots, self._undrained = self._undrained, []
        for slot in slots:
            if not slot.undrained:
                continue  # read since (its token came back to dispatch)
            slot.undrained = False
            if slot.masked or self._slots[slot.vector] is not slot:
                continue
            t0 = self._clock()
            try:
                value = slot.ack()  # absorbs the ticks the clock delivered
            except OSError as exc:
                self._ack_failed(slot, exc)
                continue
            if value is not NO_EVENT:  # ticks the clock had not counted yet
                fired = self._top_half(slot, value, t0)
                if fired is not None:
                    out.append(fired)
        return out

    def dispatch(self, tokens: list[int]) -> list[tuple[int, Any, int]]:
        """Run the top halves of the vectors in ``tokens`` (as a poller returned them)."""
        slots = self._slots
        if len(tokens) == 1:
            slot = slots[tokens[0]]
            if slot is None:
                return []  # unregistered since the poll
            if not slot.is_timer and slot.handler is None:
                # HOT: one plain vector, steps 1-2 of the module docstring inlined
                t0 = self._clock()
                take = slot.source._take
                try:
                    value = slot.ack() if take is None else take()
                except BlockingIOError:
                    value = NO_EVENT
                except OSError as exc:
                    self._ack_failed(slot, exc)
                    return []
                if value is NO_EVENT:
                    self._nothing(slot)
                    return []
                slot.count += 1
                return [(slot.vector, value, t0)]
        elif len(tokens) > 1:
            tokens.sort(key=self._order)
        out = []
        for token in tokens:
            slot = slots[token]
            if slot is None:
                continue
            t0 = self._clock()
            value = self._acknowledge(slot, t0)
            if value is not NO_EVENT:
                fired = self._top_half(slot, value, t0)
                if fired is not None:
                    out.append(fired)
        return out

    def _acknowledge(self, slot: _Slot, t0: int) -> Any:
        """Step 1 for a reported vector: its value, or NO_EVENT (nothing to deliver)."""
        value: Any = NO_EVENT
        if slot.is_timer:
            if not slot.undrained:  # by the clock; the timerfd is read before the next wait
                value = slot.source.expire(t0)
                if value is not NO_EVENT:
                    slot.undrained = True
                    self._undrained.append(slot)
                    return value
            else:
                slot.undrained = False  # reported again: read it now
        try:
            value = slot.ack()
        except OSError as exc:
            self._ack_failed(slot, exc)
            return NO_EVENT
        if value is NO_EVENT:
            self._nothing(slot)
        return value

    def _ack_failed(self, slot: _Slot, exc: OSError) -> None:
        self._fault(slot, exc, "acknowledge")
        self._mask(slot, f"its acknowledge failed: {exc}")

    def _nothing(self, slot: _Slot) -> None:
        """A reported vector had nothing to read."""
        if not slot.is_timer:  # a timer's NO_EVENT: ticks expire() delivered
            slot.spurious += 1
        if getattr(slot.source, "eof", False):
            self._mask(slot, "its fd reached end of file")

    def _top_half(self, slot: _Slot, value: Any, t0: int) -> tuple[int, Any, int] | None:
        """Step 2 for an acknowledged value: count it, run the handler (timed)."""
        slot.count += 1
        if slot.is_timer:
            if value > 1:
                slot.overruns += value - 1
            due = slot.source.last_expiry_ns()
            if due is not None:
                slot.late.add(t0 - due)
        handler = slot.handler
        if handler is None:
            return slot.vector, value, t0
        try:
            value = handler(value)  # 2. top half
        except Exception as exc:
            self._fault(slot, exc, "handler")
            return None
        slot.top.add(self._clock() - t0)
        return slot.vector, value, t0

    def expire_timers(self, now_ns: int) -> list[tuple[int, Any, int]]:
        """Deliver timer ticks due by ``now_ns`` without waiting for their timerfds.

        For polling loops: the clock is read in ns, while a timerfd turns readable
        only after the timer interrupt (tens of µs late in a VM). Same return as
        :meth:`dispatch`; the timerfd's later report of these ticks is absorbed.
        """
        out = []
        for slot in sorted(self._timers, key=lambda s: s.order):
            if slot.masked:
                continue
            due = slot.source.next_expiry_ns()
            if due is None or due > now_ns:
                continue
            t0 = self._clock()
            value = slot.source.expire(now_ns)
            if value is not NO_EVENT:
                fired = self._top_half(slot, value, t0)
                if fired is not None:
                    out.append(fired)
        return out

    def _fast_slot(self, vector: int, *, timers: bool) -> _Slot | None:
        """The slot of ``vector`` if the scheduler's fast path may take its interrupt:
        registered, polled, and a timer only if ``timers``; else None."""
        slot = self._slots[vector]
        if slot is None or slot.masked or (slot.is_timer and not timers):
            return None
        return slot

    def _order(self, token: int) -> tuple[int, int]:
        slot = self._slots[token]
        return slot.order if slot is not None else (0, token)

    def wake_ring(self, vector: int) -> SampleRing | None:
        """Where the scheduler records ``vector``'s wake latencies."""
        slot = self._slots[vector]
        return None if slot is None else slot.wake

    def _fault(self, slot: _Slot, exc: BaseException, where: str) -> None:
        slot.errors += 1
        slot.last_error = f"{type(exc).__name__}: {exc}"
        _log.error("vector %d (%s, %s): %s raised %s; the interrupt was dropped and the "
                   "loop goes on", slot.vector, slot.name, slot.source.describe(), where,
                   slot.last_error, exc_info=exc)

    def _mask(self, slot: _Slot, why: str) -> None:
        if slot.masked:
            return
        slot.masked = True
        with contextlib.suppress(OSError, KeyError):  # gone already if the fd closed
            self._poller.unregister(slot.fd)
        _log.warning("vector %d (%s) masked: %s", slot.vector, slot.name, why)

    @property
    def timer_backstop_ns(self) -> int:
        """Lag of timer sources' kernel timers behind their nominal expiries (see
        ``TimerSource.set_backstop``); polling schedulers set it while they run."""
        return self._backstop

    @timer_backstop_ns.setter
    def timer_backstop_ns(self, lag_ns: int) -> None:
        if lag_ns == self._backstop:
            return
        self._backstop = lag_ns
        for slot in self._timers:
            self._set_backstop(slot, lag_ns)

    @staticmethod
    def _set_backstop(slot: _Slot, lag_ns: int) -> None:
        setter = getattr(slot.source, "set_backstop", None)
        if setter is not None:
            setter(lag_ns)

    def next_timer_expiry_ns(self) -> int | None:
        """The earliest next nominal expiry among timer sources, or None."""
        best: int | None = None
        for slot in self._timers:
            if slot.masked:
                continue
            t = slot.source.next_expiry_ns()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def note_unclaimed(self, vector: int) -> None:
        """Count an interrupt that no coroutine was waiting for."""
        slot = self._slots[vector]
        if slot is not None:
            slot.unclaimed += 1

    # ------------------------------------------------------------------- statistics

    def stats(self, vector: int) -> VectorStats:
        """A snapshot of ``vector``'s counters and latencies."""
        s = self._slot(vector)
        return VectorStats(
            vector=s.vector, name=s.name, source=s.source.describe(), priority=s.priority,
            count=s.count, errors=s.errors, overruns=s.overruns, spurious=s.spurious,
            unclaimed=s.unclaimed, masked=s.masked, last_error=s.last_error,
            top_half=s.top.summary(), wake=s.wake.summary(),
            lateness=s.late.summary() if s.is_timer else None)

    def all_stats(self) -> list[VectorStats]:
        """Snapshots of every occupied vector, ascending."""
        return [self.stats(v) for v in self.vectors()]

    def format_table(self) -> str:
        """The table as text, one line per vector, like ``/proc/interrupts``."""
        return format_stats(self.all_stats())

    # ---------------------------------------------------------------------- lifetime

    def _check(self) -> None:
        if self._closed:
            raise ClosedResourceError("this vector table was closed; create a new "
                                      "VectorTable")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the poller and every registered source (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            if slot is not None:
                slot.source.close()
        self._slots = [None] * NUM_VECTORS
        self._count = 0
        self._timers = []
        self._poller.close()

    def __enter__(self) -> VectorTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


"""The epoll poller behind the vector table: readable fds in, tokens out, ns timeouts.

Some facts this module relies on:

- Every source in the vector table is level-triggered EPOLLIN: an fd stays ready until
  its top half reads it, so nothing is lost if one poll returns before handling all.
- The wait itself is ``select.epoll.poll`` (C, in the interpreter): ~0.24 µs for a
  poll that finds nothing here, against ~0.52 µs for the same ``epoll_pwait`` through
  the ctypes gate, and it returns Python ints without unpacking a buffer. Only the
  whole-ms timeouts of ``select.epoll`` are given up, and those are not used (next).
- ``epoll_wait`` timeouts are subject to the thread's timer slack (50 µs by default for
  normal threads) and ``select.epoll`` rounds them up to whole ms. A timerfd is not
  (timerfd_settime arms an hrtimer with no slack), so timed waits arm a private
  timerfd ("the alarm", registered like any source) with an absolute deadline and
  block with no timeout. Arming goes through the gate as a prepared call (~1 µs), and
  only when the deadline changed: a loop waiting again for the same deadline (a run's
  time limit, the next tick) does not re-arm it. Rejected: ``prctl(PR_SET_TIMERSLACK,
  1)``, which silently changes the whole thread.
- EINTR: ``select.epoll.poll`` retries by itself after running Python signal handlers
  (PEP 475); a handler that raises ends the wait with its exception.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable

from qpuos._ffi.consts import TFD_CLOEXEC, TFD_NONBLOCK, TFD_TIMER_ABSTIME
from qpuos._ffi.libc import PreparedCall, address_of, get_errno
from qpuos._ffi.structs import Itimerspec
from qpuos.errors import ClosedResourceError, UsageError
from qpuos.kernel.syscall import (
    CLOCK_MONOTONIC,
    close,
    os_error,
    syscall_number,
    timerfd_create,
)

__all__ = ["ALARM_TOKEN", "Epoll"]

ALARM_TOKEN = 1 << 32
"""Token of the private alarm timerfd; vector tokens are 0..255."""

_NS = 1_000_000_000


class Epoll:
    """An epoll set of readable fds, each with an integer token.

    >>> from qpuos.kernel.syscall import eventfd2, eventfd_write, close
    >>> ep = Epoll()
    >>> fd = eventfd2(0)
    >>> ep.register(fd, 7)
    >>> ep.poll(0)
    []
    >>> eventfd_write(fd, 1)
    >>> ep.poll(1_000_000)
    [7]
    >>> ep.close(); close(fd)

    Args:
        maxevents: most events one poll returns (the rest stay ready for the next).
        precise_timeouts: time waits with the alarm timerfd (ns, no slack); without
            it, timeouts are whole ms plus timer slack.
    """

    def __init__(self, *, maxevents: int = 64, precise_timeouts: bool = True) -> None:
        if maxevents < 1:
            raise UsageError(f"maxevents must be at least 1, got {maxevents}")
        self._maxevents = maxevents
        self._ep = select.epoll()  # EPOLL_CLOEXEC
        self._fd = self._ep.fileno()
        self._wait: Callable[[float, int], list[tuple[int, int]]] = self._ep.poll
        self._tokens: dict[int, int] = {}  # fd -> token
        self._max = 1
        self._closed = False
        self._alarm_fd = -1
        self._alarm_at = 0  # the absolute deadline the alarm is armed for (0: disarmed)
        if precise_timeouts:
            self._alarm_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)
            self._spec = Itimerspec()
            self._arm = PreparedCall(syscall_number("timerfd_settime"), self._alarm_fd,
                                     TFD_TIMER_ABSTIME, address_of(self._spec), 0).call
            self._ep.register(self._alarm_fd, select.EPOLLIN)
            self._tokens[self._alarm_fd] = ALARM_TOKEN
            self._size()

    def fileno(self) -> int:
        """The epoll fd (itself pollable, to nest this set in another loop)."""
        return self._fd

    def register(self, fd: int, token: int) -> None:
        """Watch ``fd`` for readability; ``poll`` reports it as ``token``."""
        self._check()
        self._ep.register(fd, select.EPOLLIN)
        self._tokens[fd] = token
        self._size()

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd`` (it must still be open)."""
        self._check()
        self._ep.unregister(fd)
        del self._tokens[fd]
        self._size()

    def _size(self) -> None:
        # select.epoll allocates the event array per call: no bigger than can fill
        self._max = max(1, min(self._maxevents, len(self._tokens)))

    def poll(self, timeout_ns: int | None) -> list[int]:
        """Wait until a watched fd is readable or ``timeout_ns`` passes (None: forever,
        0 or less: do not wait). Returns the ready tokens ([] on timeout)."""
        if timeout_ns is None:
            if self._alarm_at:
                self._set_alarm(0)
            evs = self._wait(-1, self._max)
        elif timeout_ns <= 0:
            evs = self._wait(0, self._max)
        else:
            return self.poll_until(time.monotonic_ns() + timeout_ns)
        # HOT: one C call above; fds to tokens below
        if not evs:
            return []
        tokens = self._tokens
        if len(evs) == 1:
            token = tokens[evs[0][0]]
            if token != ALARM_TOKEN:
                return [token]
        return self._tokens_of(evs)

    def poll_until(self, deadline_ns: int) -> list[int]:
        """Like :meth:`poll`, but wait at most until ``deadline_ns`` (CLOCK_MONOTONIC).

        The alarm stays armed for that deadline after a wake-up by another fd, so
        waiting again until the same deadline costs no re-arm.
        """
        if self._alarm_fd < 0:
            left = deadline_ns - time.monotonic_ns()
            evs = self._wait(max(0.0, left / _NS), self._max)  # whole ms
        else:
            if deadline_ns != self._alarm_at:
                self._set_alarm(max(deadline_ns, 1))  # 0 would disarm
            evs = self._wait(-1, self._max)
        if len(evs) == 1:  # HOT: one fd after a blocking wait
            token = self._tokens[evs[0][0]]
            if token != ALARM_TOKEN:
                return [token]
        return self._tokens_of(evs) if evs else []

    def spin(self, limit_ns: int | None) -> list[int]:
        """Poll without waiting, again and again, until an fd is ready or
        CLOCK_MONOTONIC reaches ``limit_ns`` (None: until an fd is ready).

        The busy-poll loop of polling schedulers, kept to the C poll and a clock
        read per turn (~0.3 µs here). Returns the ready tokens, or [].
        """
        wait, n = self._wait, self._max
        if limit_ns is None:
            evs = wait(0, n)
            while not evs:  # HOT: busy-poll
                evs = wait(0, n)
        else:
            clock = time.monotonic_ns
            evs = wait(0, n)
            while not evs and clock() < limit_ns:  # HOT: busy-poll until the limit
                evs = wait(0, n)
        if len(evs) == 1:
            token = self._tokens[evs[0][0]]
            if token != ALARM_TOKEN:
                return [token]
        return self._tokens_of(evs) if evs else []

    def _tokens_of(self, evs: list[tuple[int, int]]) -> list[int]:
        tokens = self._tokens
        out = []
        for fd, _ in evs:
            token = tokens[fd]
            if token == ALARM_TOKEN:
                self._alarm_at = 0  # expired: the next timed wait arms it again
                with contextlib.suppress(BlockingIOError):  # re-armed since reported
                    os.read(fd, 8)  # level-triggered: read, or it stays ready
            else:
                out.append(token)
        return out

    def _set_alarm(self, deadline_ns: int) -> None:
        """Arm the alarm for ``deadline_ns`` (0: disarm); re-arming clears its count."""
        self._check()
        spec = self._spec.it_value
        spec.tv_sec, spec.tv_nsec = divmod(deadline_ns, _NS)
        if self._arm() == -1:
            raise os_error(get_errno(), "timerfd_settime")
        self._alarm_at = deadline_ns

    def _check(self) -> None:
        if self._closed:
            raise ClosedResourceError("this epoll set was closed; create a new Epoll")

    def _wait_closed(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        self._check()
        return []

    def close(self) -> None:
        """Close the epoll fd and the alarm (idempotent); registered fds stay open.
        Polling afterwards raises ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        self._wait = self._wait_closed  # the hot paths call it without a check
        self._ep.close()
        if self._alarm_fd >= 0:
            close(self._alarm_fd)

    def __enter__(self) -> Epoll:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

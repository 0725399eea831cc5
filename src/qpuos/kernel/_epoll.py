"""The epoll poller behind the vector table: readable fds in, tokens out, ns timeouts.

Some facts this module relies on:

- Every source in the vector table is level-triggered EPOLLIN: an fd stays ready until
  its top half reads it, so nothing is lost if one poll returns before handling all.
- ``epoll_pwait``/``epoll_pwait2`` timeouts are subject to the thread's timer slack
  (50 µs by default for normal threads): a 1 ms timeout can fire 1.05 ms later. A
  timerfd is not (timerfd_settime arms an hrtimer with no slack), so timed waits arm a
  private timerfd ("the alarm", registered like any source) and block with no timeout.
  That costs one timerfd_settime per timed wait (~1 µs) and buys ns precision.
  Rejected: ``prctl(PR_SET_TIMERSLACK, 1)``, which silently changes the whole thread.
- The hot calls (wait with NULL/zero timeout, alarm arm) are :class:`PreparedCall`\\ s:
  their arguments are built once, so a poll costs one ctypes call (~0.5 µs) plus
  unpacking. EINTR returns an empty list; the scheduler recomputes and waits again.
"""

from __future__ import annotations

import struct

from qpuos._ffi.consts import (
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLLIN,
    TFD_CLOEXEC,
    TFD_NONBLOCK,
)
from qpuos._ffi.libc import PreparedCall, WritableBuffer, address_of, get_errno
from qpuos._ffi.structs import Itimerspec, Timespec, epoll_event_type
from qpuos.errors import ClosedResourceError, UsageError
from qpuos.kernel.syscall import (
    CLOCK_MONOTONIC,
    close,
    epoll_create1,
    epoll_ctl,
    os_error,
    syscall_number,
    timerfd_create,
)

__all__ = ["ALARM_TOKEN", "Epoll"]

ALARM_TOKEN = 1 << 32
"""Token of the private alarm timerfd; vector tokens are 0..255."""

_EINTR, _ENOSYS = 4, 38
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
    """

    def __init__(self, *, maxevents: int = 64, precise_timeouts: bool = True) -> None:
        if maxevents < 1:
            raise UsageError(f"maxevents must be at least 1, got {maxevents}")
        self._fmt = epoll_event_type()[1]
        self._size = struct.calcsize(self._fmt)
        self._unpack = struct.Struct(self._fmt).unpack_from
        self._maxevents = maxevents
        self._buf = bytearray(self._size * maxevents)
        self._wb = WritableBuffer(self._buf)
        self._fd = epoll_create1(EPOLL_CLOEXEC)
        self._closed = False
        self._zero = Timespec()  # tv_sec = tv_nsec = 0: poll
        self._ts = Timespec()
        addr = self._wb.address
        # One prepared call per timeout shape, so the hot calls change no argument.
        # Poll and block use epoll_pwait (int ms timeout: 0 or -1; NULL sigmask, so the
        # sixth argument is never read): one argument and a timespec copy fewer than
        # epoll_pwait2, ~0.07 µs. Timed waits use the alarm, or epoll_pwait2's ns.
        pwait = syscall_number("epoll_pwait")
        self._poll_call = PreparedCall(pwait, self._fd, addr, maxevents, 0, 0).call
        self._block_call = PreparedCall(pwait, self._fd, addr, maxevents, -1, 0).call
        self._timed = PreparedCall(syscall_number("epoll_pwait2"), self._fd, addr, maxevents,
                                   address_of(self._ts), 0)
        self._ms_fallback = False
        self._alarm_fd = -1
        self._alarm_armed = False
        if precise_timeouts:
            self._alarm_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)
            self._spec = Itimerspec()
            self._arm = PreparedCall(syscall_number("timerfd_settime"), self._alarm_fd, 0,
                                     address_of(self._spec), 0).call
            self._alarm_drain = PreparedCall(syscall_number("read"), self._alarm_fd,
                                             addr, 8).call
            epoll_ctl(self._fd, EPOLL_CTL_ADD, self._alarm_fd, EPOLLIN, ALARM_TOKEN)
        self._fds: dict[int, int] = {}

    def fileno(self) -> int:
        """The epoll fd (itself pollable, to nest this set in another loop)."""
        return self._fd

    def register(self, fd: int, token: int) -> None:
        """Watch ``fd`` for readability; ``poll`` reports it as ``token``."""
        self._check()
        epoll_ctl(self._fd, EPOLL_CTL_ADD, fd, EPOLLIN, token)
        self._fds[fd] = token

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd`` (it must still be open)."""
        self._check()
        epoll_ctl(self._fd, EPOLL_CTL_DEL, fd)
        del self._fds[fd]

    def poll(self, timeout_ns: int | None) -> list[int]:
        """Wait until a watched fd is readable or ``timeout_ns`` passes (None: forever,
        0: do not wait). Returns the ready tokens ([] on timeout or EINTR)."""
        if timeout_ns == 0:
            n = self._poll_call()
        elif timeout_ns is None:
            if self._alarm_armed:
                self._set_alarm(0)
            n = self._block_call()
        elif timeout_ns < 0:
            n = self._poll_call()
        elif self._alarm_fd >= 0:
            self._set_alarm(timeout_ns)
            n = self._block_call()
        elif self._ms_fallback:
            self._timed.set(3, -(-timeout_ns // 1_000_000))
            n = self._timed.call()
        else:
            ts = self._ts
            ts.tv_sec, ts.tv_nsec = divmod(timeout_ns, _NS)
            n = self._timed.call()
        # HOT: one ctypes call above, then unpack the events
        if n <= 0:
            if n == 0:
                return []
            return self._failed(timeout_ns)
        unpack, size, buf = self._unpack, self._size, self._buf
        if n == 1:
            token = unpack(buf, 0)[1]
            if token == ALARM_TOKEN:
                self._drain_alarm()
                return []
            return [token]
        out = []
        for i in range(n):
            token = unpack(buf, i * size)[1]
            if token == ALARM_TOKEN:
                self._drain_alarm()
            else:
                out.append(token)
        return out

    def _failed(self, timeout_ns: int | None) -> list[int]:
        err = get_errno()
        if err == _EINTR:
            return []
        if err == _ENOSYS and not self._ms_fallback:
            # before Linux 5.11 (no epoll_pwait2): timed waits in whole ms
            self._ms_fallback = True
            self._timed = PreparedCall(syscall_number("epoll_pwait"), self._fd,
                                       self._wb.address, self._maxevents, 0, 0)
            return []
        self._check()
        raise os_error(err, "epoll_pwait")

    def _set_alarm(self, timeout_ns: int) -> None:
        spec = self._spec.it_value
        spec.tv_sec, spec.tv_nsec = divmod(timeout_ns, _NS)
        if self._arm() == -1:
            raise os_error(get_errno(), "timerfd_settime")
        self._alarm_armed = timeout_ns > 0

    def _drain_alarm(self) -> None:
        self._alarm_armed = False
        self._alarm_drain()  # EAGAIN is fine: disarmed or already read

    def _check(self) -> None:
        if self._closed:
            raise ClosedResourceError("this epoll set was closed; create a new Epoll")

    def close(self) -> None:
        """Close the epoll fd and the alarm (idempotent); registered fds stay open."""
        if self._closed:
            return
        self._closed = True
        close(self._fd)
        if self._alarm_fd >= 0:
            close(self._alarm_fd)

    def __enter__(self) -> Epoll:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

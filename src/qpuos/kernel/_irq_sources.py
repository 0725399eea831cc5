"""Interrupt sources: the fds a vector table watches, and how each one is acknowledged.

A source is a readable fd plus an ``ack()`` that reads it, so a level-triggered epoll
set stops reporting it (the "acknowledge" of a hardware interrupt controller):

================  ===========================  =======================================
source            fd                           ack() returns
================  ===========================  =======================================
TimerSource       timerfd, CLOCK_MONOTONIC,    expirations since the last read (int)
                  absolute deadlines
EventSource       eventfd (doorbell)           the counter, reset to 0 (int)
SignalSource      signalfd                     the signals read (list of SignalInfo)
FdSource          any readable fd              up to ``read_size`` bytes, or None when
                                               the handler reads the fd itself
UioSource         /dev/uioN                    the device's interrupt count (int)
================  ===========================  =======================================

``ack()`` returns :data:`NO_EVENT` when the fd had nothing after all (another reader
drained it): the table counts that as spurious and wakes nobody. An eventfd is read
with ``os.eventfd_read`` (one C call, ~0.5 µs less than a ctypes crossing: it is on
every doorbell's path); the others with the syscall gate's prepared calls, one ctypes
call per acknowledge and no per-call argument building.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from qpuos._ffi.libc import PreparedCall, WritableBuffer, get_errno, word64
from qpuos.errors import ClosedResourceError, UsageError
from qpuos.kernel import syscall as _sys

__all__ = [
    "NO_EVENT",
    "EventSource",
    "FdSource",
    "IrqSource",
    "SignalSource",
    "TimerSource",
    "UioSource",
    "doorbell",
]

_EAGAIN, _EINTR = 11, 4
_eventfd_read = os.eventfd_read
_closed_take = functools.partial(_eventfd_read, -1)  # EBADF, as a read of a closed fd


class _NoEvent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_EVENT"


NO_EVENT: Final = _NoEvent()
"""What ``ack()`` returns when the fd turned out to have nothing to read."""


class IrqSource:
    """Base of interrupt sources: an fd, an acknowledge, a description, a close.

    Subclasses set ``kind`` and implement :meth:`fileno` and :meth:`ack`. Timer sources
    also report their expiries (for lateness statistics and the scheduler's spin lead).
    """

    kind = "source"
    is_timer = False
    _take: Callable[[], Any] | None = None
    """Optional C-level acknowledge for hot paths: returns the value or raises
    BlockingIOError where ``ack()`` would return NO_EVENT (saves a Python frame)."""

    def fileno(self) -> int:
        """The fd the vector table polls for readability."""
        raise NotImplementedError

    def ack(self) -> Any:
        """Read the fd once (the top half's acknowledge); :data:`NO_EVENT` if empty."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short description for tables and messages."""
        return f"{self.kind} fd={self.fileno()}"

    def last_expiry_ns(self) -> int | None:
        """For timers: the nominal expiry the last ``ack()`` covered."""
        return None

    def next_expiry_ns(self) -> int | None:
        """For timers: the next nominal expiry (CLOCK_MONOTONIC ns), or None."""
        return None

    def expire(self, now_ns: int) -> Any:
        """For timers: deliver ticks due by the clock now (see TimerSource.expire)."""
        return NO_EVENT

    def close(self) -> None:
        """Release the fd (idempotent)."""


class _FdOwner(IrqSource):
    """A source owning one fd, read with a prepared ``read(fd, buf, n)`` (none when
    ``read_size`` is None: the subclass reads it another way)."""

    def __init__(self, fd: int, read_size: int | None) -> None:
        self._fd = fd
        if read_size is None:
            return
        self._buf = bytearray(max(read_size, 8))
        self._wb = WritableBuffer(self._buf)
        address = self._wb.address
        if read_size == 8:  # counters (eventfd, timerfd): read into a C u64
            self._word, address = word64()
        self._read = PreparedCall(_sys.syscall_number("read"), fd, address,
                                  read_size).call

    def fileno(self) -> int:
        if self._fd < 0:
            raise ClosedResourceError(f"this {self.kind} source was closed")
        return self._fd

    def _read_raw(self) -> int:
        """One read; returns the byte count, or -1 for EAGAIN (raises other errors)."""
        n = self._read()
        if n < 0:
            err = get_errno()
            if err in (_EAGAIN, _EINTR):
                return -1
            raise _sys.os_error(err, "read")
        return n

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            _sys.close(fd)


class TimerSource(_FdOwner):
    """A timerfd on CLOCK_MONOTONIC: one-shot or periodic, ns resolution.

    The timer is armed with absolute deadlines (``TFD_TIMER_ABSTIME``), so the source
    knows each nominal expiry: the k-th tick of a periodic timer is due at
    ``first + (k - 1) * period``, and the table's lateness figure is measured from it.

    >>> t = TimerSource(period_ns=1_000_000)          # 1 kHz, first tick in 1 ms
    >>> t.describe().startswith("timerfd periodic 1000000 ns")
    True
    >>> t.close()

    Args:
        period_ns: the period; None or 0 for a one-shot timer.
        first_ns: the first expiry relative to now (default: one period).
        at_ns: the first expiry as a ``time.monotonic_ns()`` reading (instead of
            ``first_ns``).
    """

    kind = "timerfd"
    is_timer = True

    def __init__(self, *, period_ns: int | None = None, first_ns: int | None = None,
                 at_ns: int | None = None) -> None:
        fd = _sys.timerfd_create(_sys.CLOCK_MONOTONIC, _sys.TFD_CLOEXEC | _sys.TFD_NONBLOCK)
        super().__init__(fd, 8)
        self._period = 0
        self._first = 0
        self._fired = 0
        self._last = 0
        self._credited = 0
        self._backstop = 0
        try:
            self.arm(period_ns=period_ns, first_ns=first_ns, at_ns=at_ns)
        except BaseException:
            self.close()
            raise

    def arm(self, *, period_ns: int | None = None, first_ns: int | None = None,
            at_ns: int | None = None) -> None:
        """(Re)arm the timer; see the class arguments. Resets the tick count."""
        period = period_ns or 0
        if period < 0 or (first_ns is not None and first_ns <= 0):
            raise UsageError(f"timer period {period_ns} and first expiry {first_ns} must "
                             "be positive (ns)")
        if first_ns is not None and at_ns is not None:
            raise UsageError("give the first expiry as first_ns (relative) or at_ns "
                             "(absolute), not both")
        if at_ns is None:
            rel = first_ns if first_ns is not None else period
            if not rel:
                raise UsageError("a one-shot timer needs first_ns or at_ns; a periodic "
                                 "one needs period_ns")
            at_ns = time.monotonic_ns() + rel
        if at_ns <= 0:
            raise UsageError(f"absolute expiry {at_ns} must be a positive monotonic time")
        self._period, self._first, self._fired, self._last = period, at_ns, 0, 0
        self._credited = 0
        _sys.timerfd_settime(self.fileno(), at_ns + self._lag(), period, absolute=True)

    @property
    def backstop_ns(self) -> int:
        """How long after each nominal expiry the kernel timer fires (0: on time)."""
        return self._backstop

    def set_backstop(self, lag_ns: int) -> None:
        """Make the kernel timer fire ``lag_ns`` (at most half a period) after each
        nominal expiry.

        For loops that deliver ticks by the clock (:meth:`expire`): the timerfd then
        only backs them up, and its interrupt — which costs tens of µs of CPU in a VM
        — no longer lands at the very moment a tick is due. Nominal expiries, and so
        lateness figures, do not move. Ticks delivered but not yet confirmed by the
        kernel are forgotten by the re-arm, so the accounting stays exact.
        """
        if lag_ns < 0:
            raise UsageError(f"backstop lag must not be negative, got {lag_ns}")
        self._backstop = lag_ns
        nxt = self.next_expiry_ns()
        self._credited = 0
        if nxt is not None:
            _sys.timerfd_settime(self.fileno(), nxt + self._lag(), self._period,
                                 absolute=True)

    def _lag(self) -> int:
        # at most half a period: a lag of a whole period would land each interrupt on
        # the next tick, the very moment it should stay clear of
        return min(self._backstop, self._period // 2) if self._period else self._backstop

    def disarm(self) -> None:
        """Stop the timer (a pending expiry already counted stays readable)."""
        _sys.timerfd_settime(self.fileno(), 0, 0)
        self._first = 0
        self._credited = 0

    @property
    def period_ns(self) -> int:
        """The period (0: one-shot)."""
        return self._period

    def ack(self) -> Any:
        n = self._read_raw()
        if n < 0:
            return NO_EVENT
        count: int = self._word.value
        if self._credited:  # ticks expire() already delivered: the kernel confirms them
            taken = min(count, self._credited)
            self._credited -= taken
            count -= taken
            if not count:
                return NO_EVENT
        self._fired += count
        self._last = self._first + (self._fired - 1) * self._period
        return count

    def expire(self, now_ns: int) -> Any:
        """Deliver the ticks due by ``now_ns`` on the clock, before the kernel does.

        A polling loop reads CLOCK_MONOTONIC in a few ns from the vDSO, while the
        timerfd only becomes readable once the timer interrupt has run, which in a VM
        can be tens of µs later. Ticks delivered here are remembered and subtracted
        when the timerfd reports them, so each tick is delivered once.
        """
        if not self._first or now_ns < self._first:
            return NO_EVENT
        due = (now_ns - self._first) // self._period + 1 if self._period else 1
        count = due - self._fired
        if count <= 0:
            return NO_EVENT
        self._fired = due
        self._credited += count
        self._last = self._first + (due - 1) * self._period
        return count

    def last_expiry_ns(self) -> int | None:
        return self._last if self._fired else None

    def next_expiry_ns(self) -> int | None:
        if not self._first:
            return None
        if self._period:
            return self._first + self._fired * self._period
        return None if self._fired else self._first

    def describe(self) -> str:
        if self._fd < 0:
            return "timerfd (closed)"
        shape = f"periodic {self._period} ns" if self._period else "one-shot"
        return f"timerfd {shape} fd={self._fd}"


class EventSource(_FdOwner):
    """An eventfd: software interrupts and doorbells, also from other processes.

    Another process rings it by writing an 8-byte count to the fd (inherit it with
    ``subprocess.Popen(pass_fds=[src.fileno()])`` or send it over a Unix socket) —
    :func:`doorbell` does that. ``ack()`` returns the summed count and resets it (in
    semaphore mode: 1, and the rest stays pending).

    >>> src = EventSource()
    >>> src.fire(2); src.fire(3)
    >>> src.ack()
    5
    >>> src.ack()
    NO_EVENT
    >>> src.close()
    """

    kind = "eventfd"

    def __init__(self, initval: int = 0, *, semaphore: bool = False) -> None:
        flags = _sys.EFD_CLOEXEC | _sys.EFD_NONBLOCK | (_sys.EFD_SEMAPHORE if semaphore
                                                        else 0)
        super().__init__(_sys.eventfd2(initval, flags), None)
        self._take = functools.partial(_eventfd_read, self._fd)

    def fire(self, count: int = 1) -> None:
        """Ring the doorbell from this process (add ``count`` to the counter)."""
        _sys.eventfd_write(self.fileno(), count)

    def ack(self) -> Any:
        # os.eventfd_read is one C call (~0.2 µs here); the gate's prepared read costs
        # ~0.5 µs more. EINTR is retried inside it.
        try:
            return _eventfd_read(self._fd)
        except BlockingIOError:
            return NO_EVENT

    def close(self) -> None:
        self._take = _closed_take  # the fd number may be reused once closed
        super().close()


def doorbell(fd: int, count: int = 1) -> None:
    """Ring an eventfd doorbell by fd number (e.g. in the process that inherited it)."""
    _sys.eventfd_write(fd, count)


_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


class SignalSource(_FdOwner):
    """Signals as interrupts, through a signalfd.

    The signals are blocked in the calling thread (so they stay pending for the
    signalfd instead of running a handler) and unblocked again by :meth:`close`, after
    the pending ones are drained. Send them to this thread, or to a process whose other
    threads block them too: a process-directed signal goes to any thread that does not
    block it.

    Args:
        signals: signal numbers (not SIGKILL or SIGSTOP).
    """

    kind = "signalfd"

    def __init__(self, signals: Iterable[int]) -> None:
        sigs = sorted({int(s) for s in signals})
        if not sigs:
            raise UsageError("a SignalSource needs at least one signal number")
        bad = [s for s in sigs if s in _UNCATCHABLE or not 1 <= s < signal.NSIG]
        if bad:
            raise UsageError(f"signals {bad} cannot be delivered through a signalfd "
                             "(SIGKILL and SIGSTOP never can; numbers are 1..64)")
        self._signals = tuple(sigs)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        self._newly_blocked = [s for s in sigs if s not in old]
        try:
            fd = _sys.signalfd4(-1, sigs, _sys.SFD_CLOEXEC | _sys.SFD_NONBLOCK)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._newly_blocked)
            raise
        super().__init__(fd, 128 * 16)

    @property
    def signals(self) -> tuple[int, ...]:
        """The signal numbers this source receives."""
        return self._signals

    def ack(self) -> Any:
        n = self._read_raw()
        if n < 0:
            return NO_EVENT
        return _sys.signalfd_records(bytes(self._buf[:n]))

    def describe(self) -> str:
        names = ",".join(signal.Signals(s).name for s in self._signals)
        return f"signalfd {names} fd={self._fd}"

    def close(self) -> None:
        if self._fd < 0:
            return
        while self._read_raw() > 0:  # drain, or unblocking would deliver them for real
            pass
        super().close()
        if self._newly_blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._newly_blocked)


class FdSource(IrqSource):
    """Any readable fd as an interrupt source (a pipe, a socket, a device node).

    Args:
        fd: the fd; it is not closed by :meth:`close` unless ``owns_fd``.
        read_size: bytes ``ack()`` reads (returned as ``bytes``); None: no read, the
            handler must drain the fd itself or it will fire again at once.
        owns_fd: close the fd with the source.
    """

    kind = "fd"

    def __init__(self, fd: int, *, read_size: int | None = 4096,
                 owns_fd: bool = False) -> None:
        if read_size is not None and read_size <= 0:
            raise UsageError(f"read_size must be positive or None, got {read_size}")
        self._fd = fd
        self._read_size = read_size
        self._owns = owns_fd
        self.eof = False

    def fileno(self) -> int:
        if self._fd < 0:
            raise ClosedResourceError(f"this {self.kind} source was closed")
        return self._fd

    def ack(self) -> Any:
        if self._read_size is None:
            return None
        try:
            data = _sys.read(self._fd, self._read_size)
        except BlockingIOError:
            return NO_EVENT
        if not data:
            self.eof = True  # the table masks an fd at end of file
            return NO_EVENT
        return data

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            if self._owns:
                _sys.close(fd)


class UioSource(_FdOwner):
    """A userspace-I/O device interrupt (``/dev/uioN``): real hardware IRQs.

    ``ack()`` reads the device's 4-byte interrupt count. With ``rearm`` it then writes
    1 to re-enable the interrupt (drivers with irqcontrol, e.g. uio_pdrv_genirq;
    uio_pci_generic answers ENOSYS and needs PCI_COMMAND bit 10 cleared instead).

    Args:
        path: the device node, e.g. ``/dev/uio0``.
        rearm: write 1 after each acknowledge.
    """

    kind = "uio"

    def __init__(self, path: str, *, rearm: bool = True) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        super().__init__(fd, 4)
        self._path = path
        self._rearm = rearm

    def ack(self) -> Any:
        if self._read_raw() < 0:
            return NO_EVENT
        count = int.from_bytes(self._buf[:4], sys.byteorder)
        if self._rearm:
            _sys.write(self.fileno(), (1).to_bytes(4, sys.byteorder))
        return count

    def describe(self) -> str:
        return f"uio {self._path} fd={self._fd}"

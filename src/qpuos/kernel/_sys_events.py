"""Event-fd system calls: eventfd, timerfd, signalfd, epoll, futex, memfd_create.

Typed wrappers over the gate (:mod:`qpuos.kernel._gate`); exported by
:mod:`qpuos.kernel.syscall`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qpuos._ffi import consts as _c
from qpuos._ffi.consts import (
    CLOCK_MONOTONIC,
    EFD_CLOEXEC,
    EPOLL_CLOEXEC,
    EPOLL_CTL_DEL,
    EPOLLIN,
    MFD_CLOEXEC,
    SFD_CLOEXEC,
    TFD_CLOEXEC,
    TFD_TIMER_ABSTIME,
)
from qpuos._ffi.libc import BY_ARITY, CString, WritableBuffer, address_of, get_errno, scratch8
from qpuos._ffi.structs import Itimerspec, SignalfdSiginfo, Timespec, epoll_event_type
from qpuos.errors import UsageError
from qpuos.kernel._gate import NR, call, call_eintr, os_error

__all__ = ["SignalInfo", "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2",
           "eventfd_read", "eventfd_write", "futex", "futex_wait", "futex_wake",
           "memfd_create", "signalfd4", "signalfd_read", "signalfd_records",
           "timerfd_create", "timerfd_gettime", "timerfd_read", "timerfd_settime"]

_NS = 1_000_000_000

# --------------------------------------------------------------------------- eventfd


def eventfd2(initval: int = 0, flags: int = EFD_CLOEXEC) -> int:
    """``eventfd2(2)``: a new eventfd with counter ``initval``; returns the fd.

    >>> from qpuos.kernel.syscall import EFD_NONBLOCK, close
    >>> fd = eventfd2(0, EFD_CLOEXEC | EFD_NONBLOCK)
    >>> eventfd_write(fd, 3); eventfd_read(fd)
    3
    >>> close(fd)

    Raises:
        UsageError: ``initval`` does not fit the kernel's ``unsigned int``.
    """
    if not 0 <= initval <= 0xFFFFFFFF:
        raise UsageError(f"eventfd initial value {initval} does not fit an unsigned 32-bit "
                         "int (the kernel would silently truncate it); write the rest with "
                         "eventfd_write")
    return call("eventfd2", initval, flags)


_U64 = struct.Struct("=Q")


def eventfd_read(fd: int) -> int:
    """Read an eventfd's counter (8 bytes); EAGAIN raises ``BlockingIOError``."""
    word, addr = scratch8()
    call_eintr("read", fd, addr, 8)
    return int(word.value)


def eventfd_write(fd: int, value: int = 1) -> None:
    """Add ``value`` to an eventfd's counter (8-byte write): a doorbell."""
    if not 0 <= value < 2**64:
        raise UsageError(f"eventfd value {value} is not an unsigned 64-bit count")
    word, addr = scratch8()
    word.value = value
    call_eintr("write", fd, addr, 8)


# --------------------------------------------------------------------------- timerfd


def timerfd_create(clockid: int = CLOCK_MONOTONIC, flags: int = TFD_CLOEXEC) -> int:
    """``timerfd_create(2)``; returns the fd."""
    return call("timerfd_create", clockid, flags)


def _ns_to_timespec(ns: int, ts: Any) -> None:
    ts.tv_sec, ts.tv_nsec = divmod(ns, _NS)


def _timespec_ns(ts: Any) -> int:
    return int(ts.tv_sec) * _NS + int(ts.tv_nsec)


def timerfd_settime(fd: int, value_ns: int, interval_ns: int = 0, *,
                    absolute: bool = False) -> tuple[int, int]:
    """``timerfd_settime(2)``: arm (``value_ns`` > 0) or disarm (0) a timer.

    Args:
        fd: a timerfd.
        value_ns: first expiry, relative, or absolute on the timer's clock when
            ``absolute`` (``TFD_TIMER_ABSTIME``); 0 disarms.
        interval_ns: period after the first expiry; 0 for one-shot.
        absolute: interpret ``value_ns`` as a clock reading.

    Returns:
        The previous (time to next expiry, interval) in ns.
    """
    new, old = Itimerspec(), Itimerspec()
    _ns_to_timespec(value_ns, new.it_value)
    _ns_to_timespec(interval_ns, new.it_interval)
    call("timerfd_settime", fd, TFD_TIMER_ABSTIME if absolute else 0, address_of(new),
          address_of(old))
    return _timespec_ns(old.it_value), _timespec_ns(old.it_interval)


def timerfd_gettime(fd: int) -> tuple[int, int]:
    """``timerfd_gettime(2)``: (time to next expiry, interval) in ns; (0, 0) disarmed."""
    cur = Itimerspec()
    call("timerfd_gettime", fd, address_of(cur))
    return _timespec_ns(cur.it_value), _timespec_ns(cur.it_interval)


def timerfd_read(fd: int) -> int:
    """Read a timerfd: the number of expirations since the last read."""
    return eventfd_read(fd)  # same 8-byte counter ABI


# -------------------------------------------------------------------------- signalfd


def _sigset(signals: Iterable[int]) -> int:
    mask = 0
    for s in signals:
        if not 1 <= int(s) <= 64:
            raise UsageError(f"signal number {s} is outside 1..64")
        mask |= 1 << (int(s) - 1)
    return mask


def signalfd4(fd: int, signals: Iterable[int], flags: int = SFD_CLOEXEC) -> int:
    """``signalfd4(2)``: a signalfd for ``signals`` (``fd=-1`` creates a new one).

    The signals must also be blocked (``signal.pthread_sigmask``) or they are
    delivered the usual way instead.
    """
    mask = bytearray(_U64.pack(_sigset(signals)))
    return call("signalfd4", fd, WritableBuffer(mask).address, _c.KERNEL_SIGSET_BYTES,
                 flags)


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """One signal read from a signalfd (the useful part of ``signalfd_siginfo``)."""

    signo: int
    code: int
    pid: int
    uid: int
    status: int
    value: int


_SIGINFO_SIZE = 128


def signalfd_read(fd: int, max_signals: int = 16) -> list[SignalInfo]:
    """Read pending signals from a signalfd (EAGAIN raises ``BlockingIOError``)."""
    buf = bytearray(_SIGINFO_SIZE * max_signals)
    n = call_eintr("read", fd, WritableBuffer(buf).address, len(buf))
    return signalfd_records(bytes(buf[:n]))


def signalfd_records(data: bytes) -> list[SignalInfo]:
    """Decode what a signalfd read returned (128-byte ``signalfd_siginfo`` records)."""
    out = []
    for off in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE):
        si = SignalfdSiginfo.from_buffer_copy(data, off)
        out.append(SignalInfo(int(si.ssi_signo), int(si.ssi_code), int(si.ssi_pid),
                              int(si.ssi_uid), int(si.ssi_status), int(si.ssi_int)))
    return out


# ----------------------------------------------------------------------------- epoll


def epoll_create1(flags: int = EPOLL_CLOEXEC) -> int:
    """``epoll_create1(2)``; returns the fd."""
    return call("epoll_create1", flags)


def epoll_ctl(epfd: int, op: int, fd: int, events: int = EPOLLIN,
              data: int | None = None) -> None:
    """``epoll_ctl(2)``: add, modify or delete ``fd``; ``data`` (default ``fd``) comes
    back with its events."""
    etype, _ = epoll_event_type()
    ev = etype()
    ev.events = events
    ev.data = fd if data is None else data
    call("epoll_ctl", epfd, op, fd, 0 if op == EPOLL_CTL_DEL else address_of(ev))


def epoll_wait(epfd: int, maxevents: int = 64,
               timeout_ns: int | None = None) -> list[tuple[int, int]]:
    """Wait for events: ``epoll_pwait2(2)`` with a ns timeout (``None`` blocks, 0 polls).

    Returns ``(data, events)`` pairs. EINTR returns an empty list (the caller's loop
    recomputes its timeout), as ``select.epoll.poll`` does after running handlers.
    """
    etype, fmt = epoll_event_type()
    arr = (etype * max(1, maxevents))()
    ts = Timespec()
    tsp = 0
    if timeout_ns is not None:
        _ns_to_timespec(max(0, timeout_ns), ts)
        tsp = address_of(ts)
    r = BY_ARITY[5](NR["epoll_pwait2"], epfd, address_of(arr), maxevents, tsp, 0)
    if r == -1 and get_errno() == 38:  # ENOSYS: before Linux 5.11, ms resolution
        ms = -1 if timeout_ns is None else -(-max(0, timeout_ns) // 1_000_000)
        r = BY_ARITY[5](NR["epoll_pwait"], epfd, address_of(arr), maxevents, ms, 0)
    if r == -1:
        err = get_errno()
        if err == 4:
            return []
        raise os_error(err, "epoll_pwait2")
    raw = bytes(arr)
    size = struct.calcsize(fmt)
    out = []
    for i in range(r):
        events, data = struct.unpack_from(fmt, raw, i * size)
        out.append((int(data), int(events)))
    return out


# ----------------------------------------------------------------------------- futex


def futex(uaddr: int, op: int, val: int, timeout_ns: int | None = None, uaddr2: int = 0,
          val3: int = 0) -> int:
    """``futex(2)`` on the 32-bit word at address ``uaddr`` (raw; see futex_wait/wake).

    ``timeout_ns`` is relative for FUTEX_WAIT. EINTR is not retried.
    """
    ts = Timespec()
    tsp = 0
    if timeout_ns is not None:
        _ns_to_timespec(timeout_ns, ts)
        tsp = address_of(ts)
    return call("futex", uaddr, op, val, tsp, uaddr2, val3)


def futex_wait(buf: Any, offset: int, expected: int, timeout_ns: int | None = None, *,
               private: bool = False) -> bool:
    """Sleep while the u32 at ``buf[offset:offset+4]`` equals ``expected``.

    Returns ``False`` when the word already differed (EAGAIN) or on a spurious or
    signal wake-up, ``True`` when woken by FUTEX_WAKE; ``TimeoutError`` on timeout.
    ``buf`` is any writable buffer (a shared mmap for cross-process use).
    """
    if offset % 4:
        raise UsageError(f"futex word offset {offset} is not 4-byte aligned")
    wb = WritableBuffer(buf, offset, 4)
    op = _c.FUTEX_WAIT | (_c.FUTEX_PRIVATE_FLAG if private else 0)
    try:
        futex(wb.address, op, expected & 0xFFFFFFFF, timeout_ns)
    except (BlockingIOError, InterruptedError):
        return False
    return True


def futex_wake(buf: Any, offset: int, count: int = 1, *, private: bool = False) -> int:
    """Wake up to ``count`` waiters on the u32 at ``buf[offset]``; returns how many woke."""
    if offset % 4:
        raise UsageError(f"futex word offset {offset} is not 4-byte aligned")
    wb = WritableBuffer(buf, offset, 4)
    op = _c.FUTEX_WAKE | (_c.FUTEX_PRIVATE_FLAG if private else 0)
    return futex(wb.address, op, count)


# ----------------------------------------------------------------------- memory, sched


def memfd_create(name: str, flags: int = MFD_CLOEXEC) -> int:
    """``memfd_create(2)``: an anonymous file for shared memory; returns the fd."""
    s = CString(name)
    return call("memfd_create", s.address, flags)

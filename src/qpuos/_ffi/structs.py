"""Kernel structures as ctypes types; each group names the header it mirrors.

Layouts are checked by tests against the sizes the headers document
(``itimerspec`` 32, ``signalfd_siginfo`` 128, ``epoll_event`` 12 on x86_64 and 16 on
aarch64, ``sched_attr`` 56, ``perf_event_attr`` 72 as declared here).
"""

from __future__ import annotations

import ctypes
import platform

from qpuos.errors import UnsupportedArchitecture

__all__ = [
    "EPOLL_EVENT_LAYOUT",
    "EpollEvent",
    "Itimerspec",
    "PerfEventAttr",
    "SchedAttr",
    "SignalfdSiginfo",
    "Timespec",
    "epoll_event_type",
]


# mirrors <linux/time_types.h> (struct __kernel_timespec, 64-bit time on both arches)
class Timespec(ctypes.Structure):
    """``struct timespec``: seconds and nanoseconds."""

    _fields_ = (("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_long))


# mirrors <sys/timerfd.h> / <linux/time_types.h> (struct __kernel_itimerspec)
class Itimerspec(ctypes.Structure):
    """``struct itimerspec``: the period, then the first expiry."""

    _fields_ = (("it_interval", Timespec), ("it_value", Timespec))


# mirrors <linux/signalfd.h> (struct signalfd_siginfo, padded to 128 bytes)
class SignalfdSiginfo(ctypes.Structure):
    """One record read from a signalfd."""

    _fields_ = (
        ("ssi_signo", ctypes.c_uint32), ("ssi_errno", ctypes.c_int32),
        ("ssi_code", ctypes.c_int32), ("ssi_pid", ctypes.c_uint32),
        ("ssi_uid", ctypes.c_uint32), ("ssi_fd", ctypes.c_int32),
        ("ssi_tid", ctypes.c_uint32), ("ssi_band", ctypes.c_uint32),
        ("ssi_overrun", ctypes.c_uint32), ("ssi_trapno", ctypes.c_uint32),
        ("ssi_status", ctypes.c_int32), ("ssi_int", ctypes.c_int32),
        ("ssi_ptr", ctypes.c_uint64), ("ssi_utime", ctypes.c_uint64),
        ("ssi_stime", ctypes.c_uint64), ("ssi_addr", ctypes.c_uint64),
        ("ssi_addr_lsb", ctypes.c_uint16), ("_pad2", ctypes.c_uint16),
        ("ssi_syscall", ctypes.c_int32), ("ssi_call_addr", ctypes.c_uint64),
        ("ssi_arch", ctypes.c_uint32), ("_pad", ctypes.c_uint8 * 28),
    )


# mirrors <sys/epoll.h>: struct epoll_event is __attribute__((packed)) on x86_64 only
class _EpollEventPacked(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("events", ctypes.c_uint32), ("data", ctypes.c_uint64))


class _EpollEventNatural(ctypes.Structure):
    _fields_ = (("events", ctypes.c_uint32), ("data", ctypes.c_uint64))


_EPOLL_EVENT_BY_MACHINE: dict[str, tuple[type[ctypes.Structure], str]] = {
    "x86_64": (_EpollEventPacked, "=IQ"),
    "aarch64": (_EpollEventNatural, "=I4xQ"),
}


def epoll_event_type(machine: str | None = None) -> tuple[type[ctypes.Structure], str]:
    """The ``epoll_event`` type for ``machine`` and its ``struct`` format (events, data).

    Raises:
        UnsupportedArchitecture: the layout on that machine is not known here.
    """
    arch = platform.machine() if machine is None else machine
    try:
        return _EPOLL_EVENT_BY_MACHINE[arch]
    except KeyError:
        raise UnsupportedArchitecture(
            f"no struct epoll_event layout for architecture {arch!r}; qpuos knows "
            f"{', '.join(sorted(_EPOLL_EVENT_BY_MACHINE))}") from None


EpollEvent = _EpollEventPacked if platform.machine() == "x86_64" else _EpollEventNatural
EPOLL_EVENT_LAYOUT = _EPOLL_EVENT_BY_MACHINE.get(platform.machine(), (EpollEvent, "=I4xQ"))[1]


# mirrors <linux/sched/types.h> (struct sched_attr, SCHED_ATTR_SIZE_VER1 = 56)
class SchedAttr(ctypes.Structure):
    """``struct sched_attr`` for ``sched_setattr(2)`` / ``sched_getattr(2)``."""

    _fields_ = (
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32),
    )


# mirrors <linux/perf_event.h> (struct perf_event_attr up to PERF_ATTR_SIZE_VER1 = 72;
# the kernel accepts any published size and zero-extends). The C bitfield after
# read_format is one __u64 here ("flags"); its bits are PERF_ATTR_FLAG_* in consts.
class PerfEventAttr(ctypes.Structure):
    """The ``perf_event_attr`` header (first 72 bytes: through ``config2``)."""

    _fields_ = (
        ("type", ctypes.c_uint32), ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64), ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
    )

"""The raw system-call gate: ``syscall(nr, *args)`` through libc, errno exact.

Design (see also ``qpuos/_ffi/libc.py``):

- Numbers come from a table keyed by ``platform.machine()`` (``qpuos/_ffi/sysnr.py``);
  an architecture without one raises :class:`~qpuos.errors.UnsupportedArchitecture`
  naming it on first use, never a silent x86_64 default.
- Every argument travels as a 64-bit ``long`` (pointers as integer addresses), which
  is how both x86_64 and aarch64 pass syscall arguments in registers.
- A ``-1`` return reads the call's own errno (ctypes ``use_errno``) and raises
  ``OSError(errno, strerror)``, which Python turns into the matching subclass
  (``FileNotFoundError`` for ENOENT, ``BlockingIOError`` for EAGAIN, ...); a note names
  the syscall. The raw gate never retries EINTR (it raises ``InterruptedError``); the
  blocking wrappers above it do, as PEP 475 has the ``os`` module do.

- Argument checks the kernel would not make are made here: values that the kernel
  would silently truncate (an eventfd's ``unsigned int`` initial value), unknown
  reboot commands, unaligned futex words raise :class:`~qpuos.errors.UsageError`.

This module is the public face; the gate core (numbers, ``syscall``, errno, read,
write, close) is in ``_gate.py``, the typed wrappers qpuos needs in ``_sys_events.py``
(eventfd2, timerfd, signalfd4, epoll, futex, memfd_create) and ``_sys_admin.py``
(mlockall, sched_setattr/getattr, bpf, perf_event_open, reboot, mount). Constants live
in ``qpuos._ffi.consts``; the common ones are re-exported here. Hot loops that repeat
one call use ``qpuos._ffi.libc.PreparedCall`` (arguments converted once: ~0.35-0.5 µs
per call instead of ~0.4-0.7 µs through ``syscall()``).

>>> from qpuos.kernel.syscall import eventfd2, eventfd_read, eventfd_write, close
>>> fd = eventfd2(0)
>>> eventfd_write(fd, 2); eventfd_read(fd)
2
>>> close(fd)
"""

from __future__ import annotations

from qpuos._ffi.consts import (
    CLOCK_MONOTONIC,
    EFD_CLOEXEC,
    EFD_NONBLOCK,
    EFD_SEMAPHORE,
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLL_CTL_MOD,
    EPOLLIN,
    MCL_CURRENT,
    MCL_FUTURE,
    MCL_ONFAULT,
    MFD_CLOEXEC,
    PERF_FLAG_FD_CLOEXEC,
    SFD_CLOEXEC,
    SFD_NONBLOCK,
    TFD_CLOEXEC,
    TFD_NONBLOCK,
    TFD_TIMER_ABSTIME,
)
from qpuos.kernel._gate import (
    close,
    gettid,
    os_error,
    read,
    syscall,
    syscall_name,
    syscall_number,
    tgkill,
    write,
)
from qpuos.kernel._sys_admin import (
    PerfEventConfig,
    SchedAttributes,
    bpf,
    mlockall,
    mount,
    munlockall,
    perf_event_open,
    reboot,
    sched_getattr,
    sched_setattr,
    umount2,
)
from qpuos.kernel._sys_events import (
    SignalInfo,
    epoll_create1,
    epoll_ctl,
    epoll_wait,
    eventfd2,
    eventfd_read,
    eventfd_write,
    futex,
    futex_wait,
    futex_wake,
    memfd_create,
    signalfd4,
    signalfd_read,
    signalfd_records,
    timerfd_create,
    timerfd_gettime,
    timerfd_read,
    timerfd_settime,
)

__all__ = [
    "CLOCK_MONOTONIC",
    "EFD_CLOEXEC",
    "EFD_NONBLOCK",
    "EFD_SEMAPHORE",
    "EPOLLIN",
    "EPOLL_CLOEXEC",
    "EPOLL_CTL_ADD",
    "EPOLL_CTL_DEL",
    "EPOLL_CTL_MOD",
    "MCL_CURRENT",
    "MCL_FUTURE",
    "MCL_ONFAULT",
    "MFD_CLOEXEC",
    "PERF_FLAG_FD_CLOEXEC",
    "SFD_CLOEXEC",
    "SFD_NONBLOCK",
    "TFD_CLOEXEC",
    "TFD_NONBLOCK",
    "TFD_TIMER_ABSTIME",
    "PerfEventConfig",
    "SchedAttributes",
    "SignalInfo",
    "bpf",
    "close",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "eventfd2",
    "eventfd_read",
    "eventfd_write",
    "futex",
    "futex_wait",
    "futex_wake",
    "gettid",
    "memfd_create",
    "mlockall",
    "mount",
    "munlockall",
    "os_error",
    "perf_event_open",
    "read",
    "reboot",
    "sched_getattr",
    "sched_setattr",
    "signalfd4",
    "signalfd_read",
    "signalfd_records",
    "syscall",
    "syscall_name",
    "syscall_number",
    "tgkill",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_read",
    "timerfd_settime",
    "umount2",
    "write",
]

"""Syscall numbers by architecture, keyed by ``platform.machine()``.

Only the calls qpuos uses are listed. x86_64 numbers mirror
``<asm/unistd_64.h>`` (arch/x86/entry/syscalls/syscall_64.tbl); aarch64 uses the
generic table, ``<asm-generic/unistd.h>`` (which has no ``epoll_wait``, so qpuos always
calls ``epoll_pwait``/``epoll_pwait2``). Calls added since Linux 5.1 (``pidfd_*``,
``epoll_pwait2``, ``close_range``) share one number on every architecture.

There is deliberately no default: an architecture without a table raises
:class:`~qpuos.errors.UnsupportedArchitecture` naming it, rather than issuing the x86_64
number of some other call.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from types import MappingProxyType

from qpuos.errors import UnsupportedArchitecture

__all__ = ["TABLES", "numbers", "supported_machines"]

# mirrors <asm/unistd_64.h> (x86_64)
_X86_64: dict[str, int] = {
    "read": 0, "write": 1, "close": 3, "ioctl": 16, "rt_sigprocmask": 14, "dup": 32,
    "getpid": 39, "kill": 62, "fcntl": 72, "mlockall": 151, "munlockall": 152,
    "prctl": 157, "mount": 165, "umount2": 166, "reboot": 169, "gettid": 186,
    "futex": 202, "clock_gettime": 228, "epoll_ctl": 233, "tgkill": 234, "openat": 257,
    "epoll_pwait": 281, "timerfd_create": 283, "timerfd_settime": 286,
    "timerfd_gettime": 287, "signalfd4": 289, "eventfd2": 290, "epoll_create1": 291,
    "perf_event_open": 298, "sched_setattr": 314, "sched_getattr": 315,
    "finit_module": 313, "memfd_create": 319, "bpf": 321, "pidfd_send_signal": 424,
    "pidfd_open": 434, "close_range": 436, "epoll_pwait2": 441,
}

# mirrors <asm-generic/unistd.h> (aarch64, 64-bit generic ABI)
_AARCH64: dict[str, int] = {
    "read": 63, "write": 64, "close": 57, "ioctl": 29, "rt_sigprocmask": 135, "dup": 23,
    "getpid": 172, "kill": 129, "fcntl": 25, "mlockall": 230, "munlockall": 231,
    "prctl": 167, "mount": 40, "umount2": 39, "reboot": 142, "gettid": 178,
    "futex": 98, "clock_gettime": 113, "epoll_ctl": 21, "tgkill": 131, "openat": 56,
    "epoll_pwait": 22, "timerfd_create": 85, "timerfd_settime": 86,
    "timerfd_gettime": 87, "signalfd4": 74, "eventfd2": 19, "epoll_create1": 20,
    "perf_event_open": 241, "sched_setattr": 274, "sched_getattr": 275,
    "finit_module": 273, "memfd_create": 279, "bpf": 280, "pidfd_send_signal": 424,
    "pidfd_open": 434, "close_range": 436, "epoll_pwait2": 441,
}

TABLES: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "x86_64": MappingProxyType(_X86_64),
    "aarch64": MappingProxyType(_AARCH64),
})


def supported_machines() -> tuple[str, ...]:
    """The ``platform.machine()`` values qpuos has syscall tables for."""
    return tuple(sorted(TABLES))


def numbers(machine: str | None = None) -> Mapping[str, int]:
    """The syscall-number table of ``machine`` (default: this one).

    Raises:
        UnsupportedArchitecture: no table for that architecture.
    """
    arch = platform.machine() if machine is None else machine
    try:
        return TABLES[arch]
    except KeyError:
        raise UnsupportedArchitecture(
            f"no syscall table for architecture {arch!r}; qpuos knows "
            f"{', '.join(supported_machines())} (add one to qpuos/_ffi/sysnr.py from the "
            f"kernel's syscall table)") from None

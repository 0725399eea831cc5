"""The only place in qpuos that imports ``ctypes`` (STYLE.md: ctypes and syscalls, contained).

Modules:

- ``sysnr``: syscall numbers, one table per ``platform.machine()`` (x86_64, aarch64);
  an unknown architecture raises :class:`~qpuos.errors.UnsupportedArchitecture`.
- ``libc``: the bound ``syscall(2)`` entry points (one prototype per arity, all
  arguments ``long``, errno captured), prepared calls for hot paths, buffer addresses.
- ``structs``: kernel structures (``timespec``/``itimerspec``, ``signalfd_siginfo``,
  ``epoll_event``, ``sched_attr``, the ``perf_event_attr`` header), each group naming the
  header it mirrors.
- ``consts``: flag and command values, each group naming the header it mirrors.

Everything above this package talks to the kernel through :mod:`qpuos.kernel.syscall`.
"""

from __future__ import annotations

__all__: list[str] = []

"""Who holds an arena's lock: process liveness, waiting, and when to take over.

The lock word names its owner by pid (``_mheap_layout``), so a waiter can tell a busy
owner from a dead one. A dead owner (no such process, or a zombie) is taken over: the
caller's ``recover`` steals the word by compare-and-swap and rolls the owner's
unfinished operation back. Our own pid in the word is also a dead owner: kernels hold
the GIL and release the lock before they return, so from Python no operation of this
process can be running (only the test hook leaves one half done). A live owner that
keeps the lock past the timeout is reported, never overridden.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from qpuos.errors import HeapLockError
from qpuos.kernel._mheap_layout import H_LOCK, PID_MASK
from qpuos.kernel.proc import is_alive

__all__ = ["pid_namespace", "wait_for_lock"]


def pid_namespace() -> int:
    """Inode of this process's PID namespace (0 where /proc cannot tell)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def wait_for_lock(w: Any, *, me: int, timeout: float,
                  recover: Callable[[int, int], object]) -> None:
    """Return once the lock word in ``w`` is free or ``recover(word, pid)`` took it over
    from a dead owner; yield, then sleep, meanwhile.

    Raises:
        HeapLockError: a live process held the lock for more than ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    spins = 0
    while True:
        word = int(w[H_LOCK])
        pid = word & PID_MASK
        if pid == 0:
            return
        if pid == me or (spins % 16 == 3 and not is_alive(pid)):
            recover(word, pid)
            return
        spins += 1
        if spins < 64:
            os.sched_yield()
        else:
            time.sleep(0.0005)
        if time.monotonic() > deadline:
            raise HeapLockError(
                f"the arena lock has been held by pid {pid} (alive) for over {timeout:g} s;"
                " if that process is stuck, stop it and the next operation recovers the "
                "arena (Arena.break_lock() if its pid was reused)")

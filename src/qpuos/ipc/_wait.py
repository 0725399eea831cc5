"""How one side of a ring waits: busy-spin, spin-then-yield, or spin-then-block.

Every wait starts with a short busy-spin (``spin_s``, default 50 µs): a hot peer answers
within a microsecond and a system call would cost more than the wait. Then:

- ``"spin"``: keep spinning (lowest latency; burns the core; on shared cores it gives
  millisecond tails whenever the peer is descheduled);
- ``"yield"``: ``sched_yield`` between checks (the core goes to others that are runnable);
- ``"block"``: sleep on the ring's doorbell (a FIFO, see ``_shm.py``) until woken.

No lost wake-ups (``"block"``). The sleeper (S) and the waker (W) run::

    S: arm(waiters)       locked RMW: a full fence
    S: re-check the ring  (data / room?) -> if ready, disarm and go
    S: poll(doorbell)
    W: publish index      locked RMW (``publish_tail``/``publish_head``; MPMC: the
                          CAS of ``mpmc_finish``): a full fence
    W: read waiters       -> if armed, write one byte to the doorbell

Both sides order "write my word, then read the other's" with a full fence, so in the
single total order of the two locked operations either S's re-check sees W's index
(S does not sleep), or W's read sees S's flag (W rings). A plain store on the waker's
side would not do: x86 lets a load pass an older store to another address (the store
buffer), which is the one reordering TSO allows; this is why a ring that may have
sleepers (``blocking=True``) pays one numba call per publish and a spinning one does not.
The doorbell byte stays in the FIFO until read, so a wake-up written before the sleeper
reaches ``poll`` is not lost either. Spurious wake-ups (a stale byte) are harmless: the
sleeper re-checks and sleeps again.

Sleeps are cut into slices (``stall_every``) so a sleeper notices a dead peer (or runs
MPMC recovery) without anyone to wake it; that is liveness, not the wake-up path.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from typing import Any, Literal

from qpuos.errors import UsageError
from qpuos.ipc._ring_kernels import arm, disarm

__all__ = ["WaitMode", "Waiter", "ring_doorbell"]

WaitMode = Literal["spin", "yield", "block"]
_MODES = ("spin", "yield", "block")


def ring_doorbell(fd: int) -> None:
    """Wake the sleepers of a doorbell (a full FIFO already means 'wake up')."""
    with contextlib.suppress(BlockingIOError):
        os.write(fd, b"\x01")


class Waiter:
    """One side's waiting policy over one doorbell."""

    __slots__ = ("_fd", "_poll", "_single", "_w", "_waiters", "mode", "spin_s",
                 "stall_every")

    def __init__(self, mode: WaitMode, *, spin_s: float, w: Any, waiters: int,
                 fd: int | None, single: bool) -> None:
        if mode not in _MODES:
            raise UsageError(f"wait={mode!r} is not a wait mode; use one of "
                             f"{', '.join(_MODES)}")
        if mode == "block" and fd is None:
            raise UsageError("wait='block' needs a ring created with blocking=True; "
                             "use wait='yield' or 'spin', or recreate the ring")
        if spin_s < 0:
            raise UsageError(f"spin_s={spin_s} is negative; give seconds >= 0")
        self.mode = mode
        self.spin_s = spin_s
        self.stall_every = 0.05 if mode == "block" else 0.005
        self._w = w
        self._waiters = waiters
        self._fd = fd
        self._single = single
        self._poll: Any = None
        if fd is not None:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLIN)

    def wait(self, ready: Callable[[], bool], deadline: float | None,
             stall: Callable[[], bool]) -> bool:
        """Wait until ``ready()``; False when ``deadline`` (perf_counter) passes first.

        ``ready()`` may act when it succeeds (an MPMC claim), so it is never called
        again after returning True. ``stall()`` runs when the spin phase ends and then
        every ``stall_every`` seconds; it may raise (a dead peer) or repair the ring
        (MPMC recovery), and returns True if it found the ring ready.
        """
        now = time.perf_counter()
        spin_end = now + self.spin_s
        if deadline is not None and deadline < spin_end:
            spin_end = deadline
        while True:  # 1. the busy-spin: a hot peer answers within a microsecond
            for _ in range(32):
                if ready():
                    return True
            now = time.perf_counter()
            if now >= spin_end:
                break
        next_stall = now
        mode = self.mode
        while True:  # 2. spin, yield or sleep, with periodic stall checks
            if deadline is not None and now >= deadline:
                return ready()
            if now >= next_stall:
                if stall():
                    return True
                next_stall = now + self.stall_every
            if mode == "spin":
                for _ in range(64):
                    if ready():
                        return True
            elif mode == "yield":
                os.sched_yield()
                if ready():
                    return True
            else:
                until = next_stall if deadline is None else min(deadline, next_stall)
                if self._sleep(ready, until - now):
                    return True
            now = time.perf_counter()

    def _sleep(self, ready: Callable[[], bool], seconds: float) -> bool:
        w, waiters, single = self._w, self._waiters, self._single
        arm(w, waiters, single)
        try:
            if ready():
                return True
            self._poll.poll(max(1, int(seconds * 1000.0 + 0.999)))
        finally:
            disarm(w, waiters, single)
            self._drain()
        return ready()

    def _drain(self) -> None:
        # One sleeper (SPSC): take every byte. Several (MPMC): take one, leave the rest
        # for the other sleepers (a byte per publication while anyone sleeps).
        assert self._fd is not None
        try:
            if self._single:
                while len(os.read(self._fd, 4096)) == 4096:
                    pass
            else:
                os.read(self._fd, 1)
        except BlockingIOError:
            pass

"""In-buffer primitives of the arena kernels: the lock, the undo log, block headers.

The lock word is ``generation << 32 | pid`` (pid 0: free). ``_lock`` spins a bounded
number of compare-and-swaps and gives up with -1 so that Python can wait, look at the
owner and recover; ``_unlock`` bumps the generation with a release store.

Every write to allocator state goes through ``_put``: append (word index, old value) to
the undo log, publish the new log length with a release store, then store the value with
a release store. A process that dies at any instruction therefore leaves a log that
undoes exactly what it changed (``_mheap_walk.recover`` plays it backwards). Release
stores keep the compiler from reordering these; the CPU retires a process's stores in
program order up to the instruction a SIGKILL interrupts. ``_commit`` empties the log
before the lock is released. The fault hook ``H_CRASH_AT`` (tests only) makes the n-th
logged write of the next operation raise instead, with the lock held, as a dying process
would leave it.
"""

from __future__ import annotations

from typing import Any

from numba import njit

from qpuos.kernel._mheap_layout import (
    FLAG_MASK,
    GEN_MASK,
    H_BITMAP_W,
    H_CRASH_AT,
    H_END,
    H_HEAP,
    H_LOCK,
    H_LOG_HWM,
    H_LOG_N,
    HDR,
    LOG_BASE,
    LOG_CAP,
    MIN_BLOCK,
    PID_MASK,
    USED,
)
from qpuos.kernel.atomics import cas, load_acquire, store_release

__all__ = ["E_BUSY", "E_DOUBLE", "E_EXHAUSTED", "E_INVALID", "E_POISONED"]

E_BUSY = -1
E_EXHAUSTED = -2
E_INVALID = -3
E_DOUBLE = -4
E_POISONED = -5

SPIN = 256

# ---- the lock and the undo log ----------------------------------------------------------

@njit(cache=True)
def _lock(w: Any, me: int) -> int:
    """Take the lock for ``me`` (a pid); the held word, or -1 after SPIN tries."""
    for _ in range(SPIN):
        v = int(load_acquire(w, H_LOCK))
        if (v & PID_MASK) == 0 and int(cas(w, H_LOCK, v, v | me)) == v:
            return v | me
    return -1


@njit(cache=True)
def _unlock(w: Any, held: int) -> None:
    store_release(w, H_LOCK, (((held >> 32) + 1) & GEN_MASK) << 32)


@njit(cache=True)
def _put(w: Any, i: int, v: int) -> None:
    """The only way allocator state is written: log the old value, then store."""
    n = w[H_LOG_N]
    crash = w[H_CRASH_AT]
    if crash != 0 and n + 1 >= crash:
        w[H_CRASH_AT] = 0
        raise RuntimeError("qpuos arena: injected crash inside an operation (test hook)")
    if n >= LOG_CAP:
        raise RuntimeError("qpuos arena: undo log overflow; this is a bug")
    j = LOG_BASE + 2 * n
    w[j] = i
    w[j + 1] = w[i]
    store_release(w, H_LOG_N, n + 1)
    store_release(w, i, v)


@njit(cache=True)
def _commit(w: Any) -> None:
    w[H_LOG_HWM] = max(w[H_LOG_HWM], w[H_LOG_N])
    store_release(w, H_LOG_N, 0)


# ---- blocks and the live-block bitmap ---------------------------------------------------

@njit(cache=True, inline="always")
def _size(w: Any, h: int) -> int:
    return int(w[(h >> 3) + 1] & ~FLAG_MASK)


@njit(cache=True, inline="always")
def _used(w: Any, h: int) -> bool:
    return bool((w[(h >> 3) + 1] & USED) != 0)


@njit(cache=True)
def _bit(w: Any, h: int) -> tuple[int, int]:
    g = (h - w[H_HEAP]) >> 4
    return w[H_BITMAP_W] + (g >> 6), g & 63


@njit(cache=True)
def _live(w: Any, p: int) -> int:
    """0 if ``p`` is the payload of a live block; E_INVALID or E_DOUBLE otherwise."""
    heap = w[H_HEAP]
    end = w[H_END]
    if p < heap + HDR or p >= end or (p & 15) != 0:
        return E_INVALID
    h = p - HDR
    i, b = _bit(w, h)
    if (w[i] >> b) & 1:
        return 0
    sw = w[(h >> 3) + 1]
    sz = sw & ~FLAG_MASK
    if (sw & FLAG_MASK) == 0 and sz >= MIN_BLOCK and h + sz <= end:
        return E_DOUBLE
    return E_INVALID


@njit(cache=True)
def _gap(h: int, align: int) -> int:
    """Bytes to split off the front of block ``h`` so its payload is ``align``-aligned."""
    if align <= 16:
        return 0
    p = h + HDR
    g = ((p + align - 1) & -align) - p
    if 0 < g < MIN_BLOCK:
        g += align
    return g


@njit(cache=True)
def _need(size: int) -> int:
    """Bytes of the block that serves ``size`` bytes: header included, 32 at least."""
    n = ((size + 15) & -16) + HDR
    return n if n > MIN_BLOCK else MIN_BLOCK

"""Numba kernels that walk a whole arena: ``check``, ``stats`` and lock ``recover``.

Not hot: O(blocks + bitmap words + free-list entries) each. ``check`` verifies every
invariant the operations rely on and reports the first broken one as (code, byte offset);
``CHECK_MESSAGES`` in this module turns a code into words. ``recover`` is how a process
takes over the lock of a dead owner: steal the lock word by compare-and-swap, roll the
undo log back newest-first (idempotent, so a recoverer that dies too is recovered in
turn), walk, and mark the arena poisoned if the walk fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from qpuos.kernel._mheap_base import _commit, _lock, _unlock
from qpuos.kernel._mheap_layout import (
    FLAG_MASK,
    GEN_MASK,
    H_BITMAP_W,
    H_END,
    H_FFHEAD,
    H_FLCOUNT,
    H_FLMAP,
    H_HEADS_W,
    H_HEAP,
    H_LOCK,
    H_LOG_N,
    H_POISON,
    H_POISON_AT,
    H_POOL,
    H_RECOVERIES,
    H_STRATEGY,
    LOG_BASE,
    LOG_CAP,
    MIN_BLOCK,
    SL_COUNT,
    TABLES_W,
    TLSF,
    USED,
)
from qpuos.kernel._mheap_tlsf import _tlsf_map
from qpuos.kernel.atomics import cas, store_release

__all__ = ["CHECK_MESSAGES", "check", "recover", "stats"]

C_BLOCK_SIZE = 1
C_PREV_LINK = 2
C_HEAP_END = 3
C_ADJACENT_FREE = 4
C_BITMAP = 5
C_LIST_LINK = 6
C_LIST_NOT_FREE = 7
C_LIST_ORDER = 8
C_LIST_CLASS = 9
C_LIST_COUNT = 10
C_TLSF_BITMAP = 11
C_LOG_PENDING = 12
C_LOG_BAD = 13
C_FLAGS = 14

CHECK_MESSAGES = {
    C_BLOCK_SIZE: "block at byte {at} has an impossible size (under 32, not a multiple of "
                  "16, or past the end of the heap)",
    C_PREV_LINK: "block at byte {at} does not link back to the block before it",
    C_HEAP_END: "the chain of blocks does not end exactly at the end of the heap "
                "(stops at byte {at})",
    C_ADJACENT_FREE: "free blocks at byte {at} and after it were not coalesced",
    C_BITMAP: "the live-block bitmap disagrees with the block headers near byte {at}",
    C_LIST_LINK: "a free-list link is broken at block {at} (bad offset, back link or a "
                 "cycle)",
    C_LIST_NOT_FREE: "the free list holds block {at}, which is not a free block",
    C_LIST_ORDER: "the first-fit free list is not in address order at block {at}",
    C_LIST_CLASS: "free block {at} sits in the wrong TLSF size class",
    C_LIST_COUNT: "the free lists hold {at} blocks fewer or more than the heap has free",
    C_TLSF_BITMAP: "a TLSF bitmap bit disagrees with its list (list word {at})",
    C_LOG_PENDING: "the undo log holds {at} entries of an operation that never finished",
    C_LOG_BAD: "the undo log is unreadable (entry {at}); the interrupted operation cannot "
               "be rolled back",
    C_FLAGS: "block at byte {at} has unknown flag bits",
}


@njit(cache=True)
def _walk(w: Any) -> tuple[int, int]:
    """(0, 0) when every invariant holds, else (code, byte offset or count)."""
    heap = w[H_HEAP]
    end = w[H_END]
    strat = w[H_STRATEGY]
    if w[H_LOG_N] != 0:
        return C_LOG_PENDING, w[H_LOG_N]
    # 1. the physical chain, neighbours and the live bitmap
    h = heap
    prev = 0
    prev_was_free = False
    n_free = 0
    bmw = w[H_BITMAP_W]
    while h < end:
        sw = w[(h >> 3) + 1]
        size = sw & ~FLAG_MASK
        if size < MIN_BLOCK or (size & 15) != 0 or h + size > end:
            return C_BLOCK_SIZE, h
        if (sw & FLAG_MASK) & ~USED:
            return C_FLAGS, h
        if w[h >> 3] != prev:
            return C_PREV_LINK, h
        is_free = (sw & USED) == 0
        if is_free and prev_was_free:
            return C_ADJACENT_FREE, prev
        g = (h - heap) >> 4
        bit = (w[bmw + (g >> 6)] >> (g & 63)) & 1
        if bit != (0 if is_free else 1):
            return C_BITMAP, h
        if is_free:
            n_free += 1
        prev_was_free = is_free
        prev = h
        h += size
    if h != end:
        return C_HEAP_END, h
    # no bit set anywhere but at used headers: count bits against used blocks
    bits = 0
    for k in range(((end - heap) // 16 + 63) // 64):
        x = w[bmw + k]
        while x != 0:
            x &= x - 1
            bits += 1
    h = heap
    used = 0
    while h < end:
        if w[(h >> 3) + 1] & USED:
            used += 1
        h += w[(h >> 3) + 1] & ~FLAG_MASK
    if bits != used:
        return C_BITMAP, heap
    # 2. the free structure
    listed = 0
    if strat == TLSF:
        heads = w[H_HEADS_W]
        flmap = w[H_FLMAP]
        for fl in range(w[H_FLCOUNT]):
            slmap = w[TABLES_W + fl]
            if ((flmap >> fl) & 1) != (1 if slmap != 0 else 0):
                return C_TLSF_BITMAP, TABLES_W + fl
            for sl in range(SL_COUNT):
                c = w[heads + fl * SL_COUNT + sl]
                if ((slmap >> sl) & 1) != (1 if c != 0 else 0):
                    return C_TLSF_BITMAP, heads + fl * SL_COUNT + sl
                p = 0
                while c != 0:
                    code, at = _check_node(w, c, p, heap, end, n_free, listed)
                    if code != 0:
                        return code, at
                    f, s = _tlsf_map(w[(c >> 3) + 1] & ~FLAG_MASK)
                    if f != fl or s != sl:
                        return C_LIST_CLASS, c
                    listed += 1
                    p = c
                    c = w[(c >> 3) + 2]
        if flmap >> w[H_FLCOUNT] != 0:
            return C_TLSF_BITMAP, H_FLMAP
    else:
        c = w[H_FFHEAD]
        p = 0
        while c != 0:
            code, at = _check_node(w, c, p, heap, end, n_free, listed)
            if code != 0:
                return code, at
            if c <= p:
                return C_LIST_ORDER, c
            listed += 1
            p = c
            c = w[(c >> 3) + 2]
    if listed != n_free:
        return C_LIST_COUNT, abs(listed - n_free)
    return 0, 0


@njit(cache=True)
def _check_node(w: Any, c: int, p: int, heap: int, end: int, n_free: int, listed: int
                ) -> tuple[int, int]:
    if c < heap or c >= end or (c & 15) != 0 or listed >= n_free or w[(c >> 3) + 3] != p:
        return C_LIST_LINK, c
    if w[(c >> 3) + 1] & USED:
        return C_LIST_NOT_FREE, c
    return 0, 0


@njit(cache=True)
def check(w: Any, me: int) -> tuple[int, int]:
    """Walk under the lock: (0, 0) or the first broken invariant; (-1, 0) when busy.
    A failure poisons the arena so that no process keeps using it."""
    held = _lock(w, me)
    if held < 0:
        return -1, 0
    code, at = _walk(w)
    if code != 0 and w[H_POISON] == 0:
        w[H_POISON] = code
        w[H_POISON_AT] = at
    _unlock(w, held)
    return code, at


@njit(cache=True)
def stats(w: Any, me: int) -> Any:
    """[busy, free bytes, used bytes, largest free block, free blocks, used blocks]."""
    out = np.zeros(6, dtype=np.int64)
    held = _lock(w, me)
    if held < 0:
        out[0] = 1
        return out
    h = w[H_HEAP]
    end = w[H_END]
    while h < end:
        sw = w[(h >> 3) + 1]
        size = sw & ~FLAG_MASK
        if size <= 0:
            break  # a broken heap; check() says what and where
        if sw & USED:
            out[2] += size
            out[5] += 1
        else:
            out[1] += size
            out[4] += 1
            out[3] = max(out[3], size)
        h += size
    _unlock(w, held)
    return out


@njit(cache=True)
def recover(w: Any, seen: int, me: int) -> tuple[int, int, int]:
    """Take the lock from a dead owner whose lock word was ``seen``.

    Returns (-1, 0, 0) if the word changed meanwhile (retry as usual), else
    (writes rolled back, check code, check offset); a non-zero code poisoned the arena.
    """
    mine = ((((seen >> 32) + 1) & GEN_MASK) << 32) | me
    if int(cas(w, H_LOCK, seen, mine)) != seen:
        return -1, 0, 0
    n = w[H_LOG_N]
    words = w[H_POOL] >> 3
    bad = -1
    if n < 0 or n > LOG_CAP:
        bad = 0
    else:
        for j in range(n - 1, -1, -1):
            i = w[LOG_BASE + 2 * j]
            if i not in (H_FFHEAD, H_FLMAP) and not TABLES_W <= i < words:
                bad = j
                break
        if bad < 0:
            for j in range(n - 1, -1, -1):
                w[w[LOG_BASE + 2 * j]] = w[LOG_BASE + 2 * j + 1]
    store_release(w, H_LOG_N, 0)
    code, at = _walk(w)
    if bad >= 0:
        code, at = C_LOG_BAD, bad
    if code != 0 and w[H_POISON] == 0:
        w[H_POISON] = code
        w[H_POISON_AT] = at
    w[H_RECOVERIES] += 1
    _commit(w)
    _unlock(w, mine)
    return n, code, at

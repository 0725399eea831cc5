"""Numba kernels of the arena allocators: an int64 view of the buffer in, integers out.

Design (read before editing):
- One kernel call per public operation. Each takes the in-buffer lock (``_lock``, in
  ``_mheap_base``; on failure it returns ``E_BUSY`` and Python waits, checks the owner
  and recovers), does the work, commits the undo log and releases.
- Every state write goes through ``_put`` (``_mheap_base``), which logs the old value
  first: a process that dies anywhere in an operation leaves a log that rolls it back.
  Payload bytes a ``realloc`` copies are the exception: they are not state, except the
  first two words, which were the free-list links of the block the copy lands in.
- Memory ordering: the lock's compare-and-swap is sequentially consistent and its
  release is a release store, so everything written under the lock is visible to the
  next owner.
- Two strategies share the block format and these cores; they differ in the free
  structure: TLSF (``_mheap_tlsf``) and address-ordered first fit (``_mheap_ff``).
- Free blocks never touch each other (immediate coalescing), which ``check`` verifies.
"""

from __future__ import annotations

from typing import Any

from numba import njit

from qpuos.kernel._mheap_base import (
    E_BUSY,
    E_EXHAUSTED,
    E_POISONED,
    _bit,
    _commit,
    _gap,
    _live,
    _lock,
    _need,
    _put,
    _size,
    _unlock,
    _used,
)
from qpuos.kernel._mheap_ff import _ff_find, _ff_insert, _ff_link_after, _ff_unlink
from qpuos.kernel._mheap_layout import (
    FIRST_FIT,
    H_END,
    H_HEAP,
    H_LOG_N,
    H_POISON,
    H_STRATEGY,
    HDR,
    MIN_BLOCK,
    TLSF,
    USED,
)
from qpuos.kernel._mheap_tlsf import TOP_BLOCK, _tlsf_find, _tlsf_insert, _tlsf_remove

__all__ = ["alloc", "free", "init_heap", "realloc", "usable"]


# ---- shared cores (called with the lock held) -------------------------------------------

@njit(cache=True)
def _insert_free(w: Any, strat: int, h: int, size: int, hint: int) -> None:
    """Put free block ``h`` in the free structure. First fit: after ``hint`` when it is
    >= 0 (the caller knows the list position), else by an address-ordered walk."""
    if strat == TLSF:
        _tlsf_insert(w, h, size)
    elif hint >= 0:
        _ff_link_after(w, hint, h)
    else:
        _ff_insert(w, h)


@njit(cache=True)
def _carve_top(w: Any, h: int, big: int, need: int, end: int) -> int:
    """Split TLSF free block ``h`` (``big`` bytes, off its list) so that the used part is
    its last ``need`` bytes; the front stays free. Returns the payload offset."""
    r = h + big - need
    _put(w, r >> 3, h)
    if h + big < end:
        _put(w, (h + big) >> 3, r)
    _put(w, (h >> 3) + 1, big - need)
    _tlsf_insert(w, h, big - need)
    _put(w, (r >> 3) + 1, need | USED)
    i, b = _bit(w, r)
    _put(w, i, w[i] | (1 << b))
    return r + HDR


@njit(cache=True)
def _alloc_core(w: Any, strat: int, size: int, align: int) -> int:
    need = _need(size)
    end = w[H_END]
    # 1. find a free block and take it out of the free structure
    if strat == TLSF:
        search = need if align <= 16 else need + align + HDR
        if search > end - w[H_HEAP]:
            return E_EXHAUSTED
        top = align <= 16 and need <= TOP_BLOCK  # small blocks are placed top down
        h = _tlsf_find(w, search, top)
        if h == 0:
            return E_EXHAUSTED
        big = _size(w, h)
        _tlsf_remove(w, h, big)
        if top and big - need >= MIN_BLOCK:
            return _carve_top(w, h, big, need, end)
        hint = 0
    else:
        h = _ff_find(w, need, align)
        if h == 0:
            return E_EXHAUSTED
        big = _size(w, h)
        hint = _ff_unlink(w, h)
    # 2. split an aligning gap off the front; it stays free
    gap = _gap(h, align)
    if gap:
        h2 = h + gap
        _put(w, (h >> 3) + 1, gap)
        _put(w, h2 >> 3, h)
        if h + big < end:
            _put(w, (h + big) >> 3, h2)
        _insert_free(w, strat, h, gap, hint)
        hint = h
        h = h2
        big -= gap
    # 3. split the tail off when it can hold a block of its own
    if big - need >= MIN_BLOCK:
        r = h + need
        _put(w, r >> 3, h)
        _put(w, (r >> 3) + 1, big - need)
        if h + big < end:
            _put(w, (h + big) >> 3, r)
        _insert_free(w, strat, r, big - need, hint)
        big = need
    # 4. mark it used, in the header and in the live bitmap
    _put(w, (h >> 3) + 1, big | USED)
    i, b = _bit(w, h)
    _put(w, i, w[i] | (1 << b))
    return h + HDR


@njit(cache=True)
def _free_core(w: Any, strat: int, h: int) -> None:
    end = w[H_END]
    size = _size(w, h)
    i, b = _bit(w, h)
    _put(w, i, w[i] & ~(1 << b))
    _put(w, (h >> 3) + 1, size)  # free: a second free() of it is told apart as DoubleFree
    prev = w[h >> 3]
    nxt = h + size
    prev_free = prev != 0 and not _used(w, prev)
    next_free = nxt < end and not _used(w, nxt)
    if strat == TLSF:
        if prev_free:
            _tlsf_remove(w, prev, _size(w, prev))
            size += _size(w, prev)
            h = prev
        if next_free:
            _tlsf_remove(w, nxt, _size(w, nxt))
            size += _size(w, nxt)
    elif prev_free:  # the merged block keeps prev's list position
        size += _size(w, prev)
        h = prev
        if next_free:
            _ff_unlink(w, nxt)
            size += _size(w, nxt)
    elif next_free:  # takes nxt's list position
        _ff_link_after(w, _ff_unlink(w, nxt), h)
        size += _size(w, nxt)
    else:
        _ff_insert(w, h)
    if h + size < end:
        _put(w, (h + size) >> 3, h)
    _put(w, (h >> 3) + 1, size)
    if strat == TLSF:
        _tlsf_insert(w, h, size)


@njit(cache=True)
def _shrink(w: Any, strat: int, h: int, keep: int, have: int) -> None:
    """Give the tail of used block ``h`` (``have`` bytes) back, keeping ``keep``."""
    end = w[H_END]
    r = h + keep
    rsize = have - keep
    nxt = h + have
    hint = -1
    if nxt < end and not _used(w, nxt):
        nsize = _size(w, nxt)
        if strat == TLSF:
            _tlsf_remove(w, nxt, nsize)
        else:
            hint = _ff_unlink(w, nxt)
        rsize += nsize
    _put(w, r >> 3, h)
    _put(w, (r >> 3) + 1, rsize)
    if r + rsize < end:
        _put(w, (r + rsize) >> 3, r)
    _put(w, (h >> 3) + 1, keep | USED)
    _insert_free(w, strat, r, rsize, hint)


@njit(cache=True)
def _realloc_core(w: Any, strat: int, p: int, size: int, align: int) -> int:
    h = p - HDR
    need = _need(size)
    have = _size(w, h)
    end = w[H_END]
    if (p & (align - 1)) == 0:
        # 1. in place: shrink, or grow into a free successor
        if need <= have:
            if have - need >= MIN_BLOCK:
                _shrink(w, strat, h, need, have)
            return p
        nxt = h + have
        if nxt < end and not _used(w, nxt) and have + _size(w, nxt) >= need:
            nsize = _size(w, nxt)
            if strat == TLSF:
                _tlsf_remove(w, nxt, nsize)
            else:
                _ff_unlink(w, nxt)
            total = have + nsize
            if total + h < end:
                _put(w, (h + total) >> 3, h)
            _put(w, (h >> 3) + 1, total | USED)
            if total - need >= MIN_BLOCK:
                _shrink(w, strat, h, need, total)
            return p
    # 2. move: allocate, copy the payload, free the old block
    q = _alloc_core(w, strat, size, align)
    if q < 0:
        return q
    n = (min(have, _size(w, q - HDR)) - HDR) >> 3
    src = p >> 3
    dst = q >> 3
    # The first two payload words were the free-list links of the block q came from, so
    # they go through the log: a rollback puts that block back on its list intact. The
    # rest is payload whatever happens.
    _put(w, dst, w[src])
    _put(w, dst + 1, w[src + 1])
    for k in range(2, n):
        w[dst + k] = w[src + k]
    _free_core(w, strat, h)
    return q


# ---- entry points: one call per operation -----------------------------------------------

@njit(cache=True)
def alloc(w: Any, size: int, align: int, me: int) -> int:
    """Allocate; the payload's byte offset, or a negative E_* code."""
    held = _lock(w, me)
    if held < 0:
        return E_BUSY
    if w[H_POISON] != 0:
        _unlock(w, held)
        return E_POISONED
    r = _alloc_core(w, w[H_STRATEGY], size, align)
    _commit(w)
    _unlock(w, held)
    return r


@njit(cache=True)
def free(w: Any, p: int, me: int) -> int:
    """Free the block whose payload is at ``p``; 0 or a negative E_* code."""
    held = _lock(w, me)
    if held < 0:
        return E_BUSY
    r = E_POISONED if w[H_POISON] != 0 else _live(w, p)
    if r == 0:
        _free_core(w, w[H_STRATEGY], p - HDR)
        _commit(w)
    _unlock(w, held)
    return r


@njit(cache=True)
def realloc(w: Any, p: int, size: int, align: int, me: int) -> int:
    """Resize the block at ``p``; its (maybe new) payload offset, or a negative code."""
    held = _lock(w, me)
    if held < 0:
        return E_BUSY
    r = E_POISONED if w[H_POISON] != 0 else _live(w, p)
    if r == 0:
        r = _realloc_core(w, w[H_STRATEGY], p, size, align)
        _commit(w)
    _unlock(w, held)
    return r


@njit(cache=True)
def usable(w: Any, p: int) -> int:
    """Usable bytes of the live block at ``p``, or a negative code. Lock-free: only the
    block's owner changes its size word."""
    r = _live(w, p)
    if r != 0:
        return r
    return _size(w, p - HDR) - HDR


@njit(cache=True)
def init_heap(w: Any) -> None:
    """Make the whole heap one free block (the header is already written)."""
    heap = w[H_HEAP]
    size = w[H_END] - heap
    w[heap >> 3] = 0
    w[(heap >> 3) + 1] = size
    strat = w[H_STRATEGY]
    if strat == FIRST_FIT:
        _ff_link_after(w, 0, heap)
    else:
        _tlsf_insert(w, heap, size)
    w[H_LOG_N] = 0

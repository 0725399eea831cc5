"""TLSF's free structure: two-level segregated lists and their bitmaps, in the buffer.

Masmano, Ripoll, Crespo and Real, "TLSF: a new dynamic memory allocator for real-time
systems", ECRTS 2004. Blocks under 512 bytes sit in 32 lists 16 bytes apart (first level
0); above, each power of two (first level) is cut into 32 lists (second level). A
first-level bitmap and one second-level bitmap per first level say which lists are
non-empty, so finding a list whose every block is large enough takes two
count-trailing-zeros. Lists are doubly linked through the free blocks' first payload
words. A block goes in at the head when its address is below the head's, else just
behind the head (one more link either way), so a list's head is the lowest of the blocks
put in since the head last changed: the step of address ordering that costs O(1).
``_tlsf_find`` documents our bounded low-address variant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from qpuos.kernel._mheap_base import _put, _size
from qpuos.kernel._mheap_layout import (
    FL_SHIFT,
    H_FLCOUNT,
    H_FLMAP,
    H_HEADS_W,
    SL_COUNT,
    SL_LOG2,
    SMALL,
    TABLES_W,
)

# TLSF search breadth (see _tlsf_find), measured on bench_heap's traces (seeds 42, 1, 3).
# Pure TLSF (one head) fragmented most. Scanning SCAN_ENTRIES blocks of the request's own
# class and only the heads of SCAN_CLASSES larger classes reads no block the search does
# not take but those few (the heads sit in the tables), which matters on a 1 GiB pool
# where every block touched is a cache and TLB miss; with low-address heads (see
# _tlsf_insert) it fragmented as little as 4 entries of 4 classes did, or less
SCAN_CLASSES = 16
SCAN_ENTRIES = 4


@intrinsic
def _clz_intrinsic(typingctx: Any, x: Any) -> Any:
    sig = types.int64(x)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        v = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.ctlz(v, cgutils.false_bit)

    return sig, codegen


@intrinsic
def _ctz_intrinsic(typingctx: Any, x: Any) -> Any:
    sig = types.int64(x)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        v = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.cttz(v, cgutils.false_bit)

    return sig, codegen


# count leading / trailing zero bits of a non-zero int64 (LLVM ctlz / cttz)
_clz = cast(Callable[[int], int], _clz_intrinsic)
_ctz = cast(Callable[[int], int], _ctz_intrinsic)


@njit(cache=True)
def _tlsf_map(size: int) -> tuple[int, int]:
    if size < SMALL:
        return 0, size >> 4
    f = 63 - _clz(size)
    return f - (FL_SHIFT - 1), (size >> (f - SL_LOG2)) - SL_COUNT


@njit(cache=True)
def _tlsf_insert(w: Any, h: int, size: int) -> None:
    fl, sl = _tlsf_map(size)
    hd = w[H_HEADS_W] + fl * SL_COUNT + sl
    first = w[hd]
    hw = h >> 3
    if first != 0 and first < h:  # the lower block stays at the head; h goes behind it
        nxt = w[(first >> 3) + 2]
        _put(w, hw + 2, nxt)
        _put(w, hw + 3, first)
        if nxt != 0:
            _put(w, (nxt >> 3) + 3, h)
        _put(w, (first >> 3) + 2, h)
        return
    _put(w, hw + 2, first)
    _put(w, hw + 3, 0)
    if first != 0:
        _put(w, (first >> 3) + 3, h)
    else:
        _put(w, TABLES_W + fl, w[TABLES_W + fl] | (1 << sl))
        if ((w[H_FLMAP] >> fl) & 1) == 0:
            _put(w, H_FLMAP, w[H_FLMAP] | (1 << fl))
    _put(w, hd, h)


@njit(cache=True)
def _tlsf_remove(w: Any, h: int, size: int) -> None:
    fl, sl = _tlsf_map(size)
    hw = h >> 3
    n = w[hw + 2]
    p = w[hw + 3]
    if n != 0:
        _put(w, (n >> 3) + 3, p)
    if p != 0:
        _put(w, (p >> 3) + 2, n)
        return
    _put(w, w[H_HEADS_W] + fl * SL_COUNT + sl, n)
    if n == 0:
        m = w[TABLES_W + fl] & ~(1 << sl)
        _put(w, TABLES_W + fl, m)
        if m == 0:
            _put(w, H_FLMAP, w[H_FLMAP] & ~(1 << fl))


@njit(cache=True)
def _lowest(w: Any, h: int, size: int) -> int:
    """Lowest-addressed block of at least ``size`` bytes among the first SCAN_ENTRIES of
    the list starting at ``h``; 0 if none."""
    best = 0
    for k in range(SCAN_ENTRIES):
        if h == 0:
            break
        if (best == 0 or h < best) and _size(w, h) >= size:
            best = h
        if k + 1 < SCAN_ENTRIES:  # no read of a block that is not looked at
            h = w[(h >> 3) + 2]
    return int(best)


@njit(cache=True)
def _tlsf_find(w: Any, size: int) -> int:
    """A free block of at least ``size`` bytes, or 0 when there is none of a size class
    at or above ``size`` rounded up to its class (the TLSF failure condition).

    1. Candidates from ``size``'s own class: those of the first SCAN_ENTRIES that fit.
    2. TLSF's good fit: round ``size`` up to its class; every block of that class and
       above fits. The bitmaps give the non-empty classes in increasing order; the first
       SCAN_CLASSES of them contribute their heads (read from the table, no block read).
    3. Take the lowest address of all candidates: at most 20, so O(1), and the heap
       packs towards its bottom as with address-ordered first fit.
    """
    # 1.
    fl, sl = _tlsf_map(size)
    best = 0
    if fl < w[H_FLCOUNT]:
        best = _lowest(w, w[w[H_HEADS_W] + fl * SL_COUNT + sl], size)
    # 2.
    if size >= SMALL:
        size += (1 << (63 - _clz(size) - SL_LOG2)) - 1
    fl, sl = _tlsf_map(size)
    if fl >= w[H_FLCOUNT]:
        return best
    slmap = w[TABLES_W + fl] & (-1 << sl)
    for _ in range(SCAN_CLASSES):
        if slmap == 0:
            flmap = w[H_FLMAP] & (-1 << (fl + 1))
            if flmap == 0:
                break
            fl = _ctz(flmap)
            slmap = w[TABLES_W + fl]
        sl = _ctz(slmap)
        slmap &= slmap - 1
        h = w[w[H_HEADS_W] + fl * SL_COUNT + sl]
        # 3.
        if h != 0 and (best == 0 or h < best):
            best = h
    return int(best)

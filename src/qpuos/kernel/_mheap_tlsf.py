"""TLSF's free structure: two-level segregated lists and their bitmaps, in the buffer.

Masmano, Ripoll, Crespo and Real, "TLSF: a new dynamic memory allocator for real-time
systems", ECRTS 2004. Blocks under 512 bytes sit in 32 lists 16 bytes apart (first level
0); above, each power of two (first level) is cut into 32 lists (second level). A
first-level bitmap and one second-level bitmap per first level say which lists are
non-empty, so finding a list whose every block is large enough takes two
count-trailing-zeros. Lists are doubly linked through the free blocks' first payload
words.

Placement (``_tlsf_find``) is two-ended: blocks of at most ``TOP_BLOCK`` bytes (requests
up to 1 KiB: result blocks, descriptors) are carved from the high end of the highest
candidate, everything larger from the low end of the lowest, so small long-lived blocks
collect at the top of the heap instead of fencing the holes that large short-lived ones
leave. To keep the right candidate at each list's head in O(1), a block goes in at the
head when it is nearer that list's end of the heap than the head (lower, or higher for
lists of small blocks), else just behind the head.
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

# Search breadth, chosen on bench_heap's traces over several seeds (see the benchmark's
# fragmentation rows): the first SCAN_ENTRIES blocks of the request's own class, then the
# heads of the first SCAN_CLASSES non-empty classes that surely fit, then the heads of the
# first LEVEL_HEADS non-empty classes of every larger first level (so the search sees
# the whole size range, as first fit does). Heads are read from the tables, not from the
# blocks, so only the own-class blocks and the chosen one are read: on a large pool each
# block read is a cache and TLB miss. All bounds are constants: O(1).
SCAN_ENTRIES = 4
SCAN_CLASSES = 16
LEVEL_HEADS = 2
#: blocks of at most this many bytes (a request of up to 1 KiB) are placed top down
TOP_BLOCK = 1040


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


@njit(cache=True, inline="always")
def _nearer(h: int, other: int, top: bool) -> bool:
    """Whether ``h`` is nearer the end its blocks are placed from than ``other``."""
    return h > other if top else h < other


@njit(cache=True)
def _tlsf_insert(w: Any, h: int, size: int) -> None:
    fl, sl = _tlsf_map(size)
    hd = w[H_HEADS_W] + fl * SL_COUNT + sl
    first = w[hd]
    hw = h >> 3
    if first != 0 and _nearer(first, h, size <= TOP_BLOCK):
        nxt = w[(first >> 3) + 2]  # the head stays; h goes behind it
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
def _own_class(w: Any, h: int, size: int, top: bool) -> int:
    """A block of at least ``size`` bytes among the first SCAN_ENTRIES of the list
    starting at ``h``: the first that fits for a bottom-up request, the highest for a
    top-down one; 0 if none fits."""
    best = 0
    for k in range(SCAN_ENTRIES):
        if h == 0:
            break
        if (best == 0 or _nearer(h, best, top)) and _size(w, h) >= size:
            best = h
            if not top:
                break
        if k + 1 < SCAN_ENTRIES:  # no read of a block that is not looked at
            h = w[(h >> 3) + 2]
    return int(best)


@njit(cache=True)
def _tlsf_find(w: Any, size: int, top: bool) -> int:
    """A free block of at least ``size`` bytes, or 0 when there is none of a size class
    at or above ``size`` rounded up to its class (the TLSF failure condition).

    ``top``: the request is placed top down (the caller carves it from the block's high
    end); candidates are then compared by highest address, else by lowest.

    1. The request's own class (see ``_own_class``). A bottom-up request takes the
       first of its first SCAN_ENTRIES blocks that fits at once: a block of about its
       size (the list keeps a low one at its head), so no larger block is split.
    2. TLSF's good fit: round ``size`` up to its class; every block of that class and
       above fits. The bitmaps give the non-empty classes in increasing order: the
       heads of the first SCAN_CLASSES, then of the first LEVEL_HEADS classes of each
       larger first level, are candidates (read from the table, no block read).
    3. The candidate nearest the request's end of the heap wins. At most 4 blocks and
       16 + 2 * 64 table entries are read: O(1).
    """
    # 1.
    fl, sl = _tlsf_map(size)
    heads = w[H_HEADS_W]
    best = 0
    if fl < w[H_FLCOUNT]:
        best = _own_class(w, w[heads + fl * SL_COUNT + sl], size, top)
        if best != 0 and not top:
            return best
    # 2.
    if size >= SMALL:
        size += (1 << (63 - _clz(size) - SL_LOG2)) - 1
    fl, sl = _tlsf_map(size)
    if fl >= w[H_FLCOUNT]:
        return best
    slmap = w[TABLES_W + fl] & (-1 << sl)
    flmap = w[H_FLMAP] & (-1 << (fl + 1))
    for _ in range(SCAN_CLASSES):
        if slmap == 0:
            if flmap == 0:
                return best
            fl = _ctz(flmap)
            flmap &= flmap - 1
            slmap = w[TABLES_W + fl]
        sl = _ctz(slmap)
        slmap &= slmap - 1
        h = w[heads + fl * SL_COUNT + sl]
        # 3.
        if best == 0 or _nearer(h, best, top):
            best = h
    while flmap != 0:
        fl = _ctz(flmap)
        flmap &= flmap - 1
        slmap = w[TABLES_W + fl]
        for _ in range(LEVEL_HEADS):
            if slmap == 0:
                break
            sl = _ctz(slmap)
            slmap &= slmap - 1
            h = w[heads + fl * SL_COUNT + sl]
            if best == 0 or _nearer(h, best, top):
                best = h
    return int(best)

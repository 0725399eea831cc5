"""First fit's free structure: one doubly linked list of free blocks in address order.

The head lives in the header (``H_FFHEAD``); links are the free blocks' first two payload
words. Allocation walks from the lowest address and takes the first block that fits
(with its alignment gap); a freed block with no free neighbour walks to its place, so
both are O(free blocks): the seed's design, and the reason first fit does not stay flat
as the pool grows.
"""

from __future__ import annotations

from typing import Any

from numba import njit

from qpuos.kernel._mheap_base import _gap, _put, _size
from qpuos.kernel._mheap_layout import H_FFHEAD


@njit(cache=True)
def _ff_unlink(w: Any, h: int) -> int:
    """Remove ``h`` from the list; returns its predecessor (0 at the head)."""
    hw = h >> 3
    n = w[hw + 2]
    p = w[hw + 3]
    if n != 0:
        _put(w, (n >> 3) + 3, p)
    if p != 0:
        _put(w, (p >> 3) + 2, n)
    else:
        _put(w, H_FFHEAD, n)
    return int(p)


@njit(cache=True)
def _ff_link_after(w: Any, p: int, h: int) -> None:
    """Insert ``h`` after ``p`` (at the head when ``p`` is 0)."""
    n = w[H_FFHEAD] if p == 0 else w[(p >> 3) + 2]
    hw = h >> 3
    _put(w, hw + 2, n)
    _put(w, hw + 3, p)
    if n != 0:
        _put(w, (n >> 3) + 3, h)
    if p != 0:
        _put(w, (p >> 3) + 2, h)
    else:
        _put(w, H_FFHEAD, h)


@njit(cache=True)
def _ff_insert(w: Any, h: int) -> None:
    """Insert ``h`` in address order (the O(free blocks) walk of first fit)."""
    p = 0
    c = w[H_FFHEAD]
    while c != 0 and c < h:
        p = c
        c = w[(c >> 3) + 2]
    _ff_link_after(w, p, h)


@njit(cache=True)
def _ff_find(w: Any, need: int, align: int) -> int:
    c = w[H_FFHEAD]
    while c != 0:
        if _size(w, c) >= need + _gap(c, align):
            return int(c)
        c = w[(c >> 3) + 2]
    return 0

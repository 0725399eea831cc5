"""What an arena says when it refuses: kernel result codes turned into qpuos errors.

Messages follow STYLE.md: the observed values, then what to do next.
"""

from __future__ import annotations

from qpuos.errors import (
    DoubleFree,
    HeapCorrupted,
    HeapExhausted,
    InvalidPointer,
    QpuosError,
    QpuosInternalError,
)
from qpuos.kernel._mheap_base import E_DOUBLE, E_INVALID
from qpuos.kernel._mheap_walk import CHECK_MESSAGES

__all__ = ["bad_pointer", "corrupted", "exhausted"]


def corrupted(code: int, at: int, prefix: str = "") -> HeapCorrupted:
    """The error for a broken invariant ``code`` found at byte ``at`` (``_mheap_walk``)."""
    text = CHECK_MESSAGES.get(code, "unknown invariant {at}").format(at=at)
    return HeapCorrupted(f"{prefix}{text}; the arena is marked corrupted for every "
                         "process: stop using it and format a new one with Arena.create()")


def exhausted(op: str, size: int, align: int, largest_block: int, free_bytes: int,
              heap_bytes: int) -> HeapExhausted:
    """The error for a request no free block can serve."""
    largest = max(0, largest_block - 16)
    return HeapExhausted(
        f"cannot {op} {size} bytes (align {align}): the largest free block holds "
        f"{largest} usable bytes of {free_bytes} free in a {heap_bytes}-byte heap; free "
        "blocks, or size the pool with pool_size_for()", size=size, largest=largest)


def bad_pointer(code: int, op: str, offset: int, first: int, end: int) -> QpuosError:
    """The error for an offset that is not a live block; blocks start in [first, end)."""
    again = "pass an offset that alloc() or realloc() returned"
    if code == E_DOUBLE and op == "free":
        return DoubleFree(f"free({offset}): that block is already free")
    if code == E_DOUBLE:
        return InvalidPointer(f"{op}({offset}): that block is free; {again}")
    if code != E_INVALID:
        return QpuosInternalError(f"unexpected arena kernel result {code} from {op}(); "
                                  "this is a bug, please report it")
    if not first <= offset < end:
        why = f"offset is outside the heap (blocks start between {first} and {end - 1})"
    elif offset % 16:
        why = "offset is not 16-byte aligned, so no block starts there"
    else:
        why = "no live block starts at that offset"
    return InvalidPointer(f"{op}({offset}): {why}; {again}")

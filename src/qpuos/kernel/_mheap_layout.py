"""Where an arena keeps its state inside the buffer: word indices, sizes and the layout.

Shared by the Python side (``mheap.py``, ``_mheap_bounds.py``) and the numba kernels
(``_mheap_kernels.py``), which read these module constants as compile-time values.

The buffer, viewed as little-endian int64 words::

    word 0..31    header: magic, version, strategy, pool size, lock word, poison code,
                  undo-log count and high-water mark, fault hook, pid namespace, the
                  layout (heap start/end, bitmap, TLSF table positions), the first-fit
                  free-list head, the TLSF first-level bitmap, a recovery counter
    word 32..     undo log: LOG_CAP pairs (word index, old value)
    then          TLSF only: FL second-level bitmaps, then FL*32 free-list heads
    then          live-block bitmap: one bit per 16-byte granule of the heap, set where a
                  used block's header starts (the exact test behind InvalidPointer)
    then          the heap: blocks, each a 16-byte header and its payload

Block header (2 words at a 16-aligned byte offset ``h``): ``prev_phys`` (byte offset of
the physically previous block, 0 for the first) and ``size | USED`` (whole block, header
included, a multiple of 16). A free block keeps ``next_free`` and ``prev_free`` in its
first two payload words, so the smallest block is 32 bytes.

Lock word: ``generation << 32 | pid``; pid 0 means free. The generation changes on every
release and on every steal, so a compare-and-swap against a word seen earlier cannot
succeed after the lock has changed hands in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from qpuos.errors import HeapCorrupted, HeapLockError, UsageError

__all__ = [
    "FIRST_FIT",
    "STRATEGIES",
    "TLSF",
    "Layout",
    "block_bytes",
    "byte_view",
    "layout_for",
    "read_header",
    "tlsf_class",
    "tlsf_class_floor",
    "words_of",
    "write_header",
]

MAGIC = int.from_bytes(b"qpuHEAP1", "little")
VERSION = 1

FIRST_FIT = 1
TLSF = 2
STRATEGIES = {"first_fit": FIRST_FIT, "tlsf": TLSF}

# header words
H_MAGIC = 0
H_VERSION = 1
H_STRATEGY = 2
H_POOL = 3
H_LOCK = 4
H_POISON = 5
H_POISON_AT = 6
H_LOG_N = 7
H_LOG_HWM = 8
H_CRASH_AT = 9
H_PIDNS = 10
H_HEAP = 11
H_END = 12
H_BITMAP_W = 13
H_FLCOUNT = 14
H_HEADS_W = 15
H_FFHEAD = 16
H_FLMAP = 17
H_RECOVERIES = 18
HEADER_WORDS = 32

LOG_BASE = HEADER_WORDS
LOG_CAP = 128
TABLES_W = LOG_BASE + 2 * LOG_CAP  # TLSF second-level bitmaps start here

# the lock word
PID_MASK = 0xFFFFFFFF
GEN_MASK = 0x7FFFFFFF  # 31 bits, so the word stays a non-negative int64

# blocks
GRANULE = 16
HDR = 16
MIN_BLOCK = 32
USED = 1
FLAG_MASK = 15
MAX_ALIGN = 1 << 16

# TLSF: 32 second-level lists per power of two; blocks under 512 bytes in 16-byte steps
SL_LOG2 = 5
SL_COUNT = 1 << SL_LOG2
FL_SHIFT = SL_LOG2 + 4  # log2(SMALL)
SMALL = 1 << FL_SHIFT

MIN_HEAP = 4 * MIN_BLOCK


def tlsf_class(size: int) -> tuple[int, int]:
    """(first level, second level) list of a block of ``size`` bytes (TLSF mapping)."""
    if size < SMALL:
        return 0, size >> 4
    f = size.bit_length() - 1
    return f - (FL_SHIFT - 1), (size >> (f - SL_LOG2)) - SL_COUNT


def tlsf_class_floor(size: int) -> int:
    """The smallest class boundary >= ``size``: the least block size TLSF will hand out
    for a request whose block needs ``size`` bytes (its good-fit search rounds up)."""
    if size < SMALL:
        return size
    width = 1 << (size.bit_length() - 1 - SL_LOG2)
    return (size + width - 1) // width * width


def block_bytes(request: int) -> int:
    """Bytes of the block that serves a ``request``-byte allocation, header included."""
    return max(MIN_BLOCK, (request + 15) // 16 * 16 + HDR)


@dataclass(frozen=True, slots=True)
class Layout:
    """Byte offsets of an arena's regions for a given pool size and strategy."""

    pool: int
    strategy: int
    fl_count: int
    heads_w: int
    bitmap: int
    heap: int
    end: int

    @property
    def heap_bytes(self) -> int:
        """Bytes of the heap proper (blocks and their headers)."""
        return self.end - self.heap

    @property
    def overhead(self) -> int:
        """Bytes the arena keeps for itself: header, log, tables, bitmap, padding."""
        return self.pool - self.heap_bytes


def layout_for(pool: int, strategy: int) -> Layout:
    """Compute where everything goes in a ``pool``-byte buffer.

    Raises:
        UsageError: the pool is too small to hold the bookkeeping and a few blocks.
    """
    pool &= ~(GRANULE - 1)
    if strategy == TLSF:
        fl_count = tlsf_class(max(pool, SMALL))[0] + 1
        heads_w = TABLES_W + fl_count
        tables_end = (heads_w + fl_count * SL_COUNT) * 8
    else:
        fl_count = 0
        heads_w = TABLES_W
        tables_end = TABLES_W * 8
    bitmap = _round_up(tables_end, 64)
    rest = max(0, pool - bitmap)
    bitmap_bytes = (rest // GRANULE + 63) // 64 * 8
    heap = _round_up(bitmap + bitmap_bytes, 64)
    if pool - heap < MIN_HEAP:
        raise UsageError(f"a buffer of {pool} bytes is too small for an arena: it needs at "
                         f"least {heap + MIN_HEAP} bytes ({heap} of bookkeeping and "
                         f"{MIN_HEAP} of heap); pass a larger buffer")
    return Layout(pool, strategy, fl_count, heads_w, bitmap, heap, pool)


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def byte_view(buffer: Any) -> memoryview:
    """``buffer`` as a writable, contiguous, one-dimensional byte memoryview.

    Raises:
        UsageError: not a buffer, read-only, or not contiguous.
    """
    try:
        mv = memoryview(buffer)
    except TypeError:
        raise UsageError("an arena needs a writable buffer (bytearray, mmap, "
                         f"SharedMemory.buf); got {type(buffer).__name__}") from None
    if mv.readonly:
        raise UsageError("the buffer is read-only; an arena needs a writable one")
    if not mv.c_contiguous:
        raise UsageError("the buffer is not contiguous; pass a contiguous buffer")
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    return mv


def words_of(mv: memoryview, nbytes: int) -> np.ndarray[Any, Any]:
    """The first ``nbytes`` of ``mv`` as int64 words (what the kernels take).

    Raises:
        UsageError: the buffer's address is not 8-byte aligned.
    """
    w = np.frombuffer(mv, dtype=np.int64, count=nbytes // 8)
    if w.ctypes.data % 8:
        raise UsageError("the buffer's address is not 8-byte aligned; the arena's lock "
                         "needs aligned 64-bit words (mmap and SharedMemory always are)")
    return w


def write_header(w: np.ndarray[Any, Any], layout: Layout, pidns: int) -> None:
    """Zero the bookkeeping and write the header, all but the magic number (the caller
    writes it last, once the heap is formatted)."""
    w[: layout.heap >> 3] = 0
    w[H_VERSION] = VERSION
    w[H_STRATEGY] = layout.strategy
    w[H_POOL] = layout.pool
    w[H_PIDNS] = pidns
    w[H_HEAP] = layout.heap
    w[H_END] = layout.end
    w[H_BITMAP_W] = layout.bitmap >> 3
    w[H_FLCOUNT] = layout.fl_count
    w[H_HEADS_W] = layout.heads_w


def read_header(mv: memoryview, pidns: int) -> Layout:
    """Check the header of the arena in ``mv`` and return its layout.

    Raises:
        HeapCorrupted: no arena of this version, or a header that contradicts itself.
        HeapLockError: the arena was created in another PID namespace than ``pidns``.
    """
    if len(mv) < 64:
        raise HeapCorrupted(f"a buffer of {len(mv)} bytes cannot hold an arena; pass the "
                            "buffer Arena.create() formatted")
    head = words_of(mv, 64)
    if int(head[H_MAGIC]) != MAGIC:
        raise HeapCorrupted("no arena in this buffer (bad magic number); format it with "
                            "Arena.create() first")
    if int(head[H_VERSION]) != VERSION:
        raise HeapCorrupted(f"the arena has layout version {int(head[H_VERSION])}, this "
                            f"qpuos reads version {VERSION}; rebuild it")
    strategy, pool = int(head[H_STRATEGY]), int(head[H_POOL])
    if strategy not in STRATEGIES.values():
        raise HeapCorrupted(f"the arena header names strategy {strategy}, which does not "
                            "exist; the header is damaged, rebuild the arena")
    if not 0 < pool <= len(mv):
        raise HeapCorrupted(f"the arena header says the pool is {pool} bytes but the buffer "
                            f"has {len(mv)}; attach the whole buffer that Arena.create() "
                            "formatted")
    try:
        layout = layout_for(pool, strategy)
    except UsageError as exc:
        raise HeapCorrupted(f"the arena header is damaged: {exc}") from None
    w = words_of(mv, layout.pool)
    stored = (int(w[H_HEAP]), int(w[H_END]), int(w[H_BITMAP_W]), int(w[H_FLCOUNT]),
              int(w[H_HEADS_W]))
    if stored != (layout.heap, layout.end, layout.bitmap >> 3, layout.fl_count,
                  layout.heads_w):
        raise HeapCorrupted("the arena header's layout does not match its pool size "
                            f"({pool} bytes); the header is damaged, rebuild the arena")
    ns = int(w[H_PIDNS])
    if ns and pidns and ns != pidns:
        raise HeapLockError("the arena was created in another PID namespace; its lock names "
                            "owners by pid, so every process using it must share one "
                            "namespace")
    return layout

"""Arena allocators over one buffer: TLSF and first fit, shareable between processes.

An ``Arena`` hands out byte offsets into a buffer it does not own (a ``bytearray``, an
``mmap``, ``SharedMemory.buf``). Every piece of allocator state lives in that buffer:
header, lock, undo log, free structures, a live-block bitmap and the block headers. Two
processes that map the same file in ``/dev/shm`` and ``Arena.attach`` it allocate and free
in the same heap. qpuos uses it for the variable-size buffers that ride the ring (pulse
tables, result blocks) and for the emulated controller's DMA region.

Strategies (same block format, same interface):

- ``"tlsf"``: two-level segregated fit (Masmano et al., ECRTS 2004). O(1) alloc and free
  whatever the heap holds: bitmap scans find the non-empty lists whose every block is
  large enough (the request rounded up to its class, at most 1/32 more). Where plain TLSF
  takes the head of the first such list, ours places two-ended. A request of up to 1 KiB
  (16-byte aligned) is carved from the high end of the highest of a bounded set of
  candidates; a larger one takes the first of the first 4 blocks of its own size class
  that fits, else the lowest candidate. Candidates are those 4 blocks and list heads: of
  the first 16 suitable lists, and of the first 2 non-empty lists of each larger power of
  two, each list keeping at its head the block nearest its end of the heap. Small,
  long-lived blocks (results, descriptors) thus gather at the top instead of fencing the
  holes large ones leave; on ``qpuos bench heap``'s traces, over several seeds, this
  fragmented less than first fit.
- ``"first_fit"``: the seed's design. One free list in address order; allocation takes
  the lowest block that fits, splits it and leaves the rest free; freeing coalesces with
  both neighbours through boundary tags. Alloc is O(free blocks), and so is a free that
  has no free neighbour (it walks the list to its place).

Concurrency and crashes. Each operation is one numba kernel call that takes a spinlock
word in the buffer (``generation << 32 | pid``, taken by compare-and-swap), works, and
releases it. A waiter spins a little inside the kernel, then yields from Python. Every
state write is first recorded in an undo log in the header, so when a process dies
holding the lock (SIGKILL, OOM killer, a crash) the state it left is always "some prefix
of one operation": the next process that wants the lock sees the owner's pid is gone
(``kill(pid, 0)`` fails, or ``/proc`` shows a zombie), steals the lock word by
compare-and-swap, rolls the log back, walks the whole heap (``check``) and goes on; a
warning is logged and ``recoveries`` counts it. If the walk finds anything wrong (which a
rollback cannot cause; only stray writes into the bookkeeping can), the arena is marked
corrupted in its header and every operation in every process raises ``HeapCorrupted``
from then on: never silent corruption. Blocks the dead process had allocated stay
allocated (the arena does not track owners). A lock held longer than ``lock_timeout``
by a live process raises ``HeapLockError`` naming it. Processes sharing an arena must
share a PID namespace (``attach`` refuses otherwise). Threads of one process take turns
through the GIL, which every kernel holds while it runs.

Offsets are byte offsets from the start of the buffer to a block's payload, aligned to
``align`` relative to the buffer (``mmap`` and shared memory are page aligned, so the
addresses are too). ``view(offset)`` is a memoryview of the block's usable bytes: the
request rounded up to 16, and up to 16 bytes more.

>>> arena = Arena.create(bytearray(64 * 1024), strategy="tlsf")
>>> a = arena.alloc(100)
>>> arena.view(a)[:5] = b"pulse"
>>> bytes(arena.view(a)[:5]), len(arena.view(a))
(b'pulse', 112)
>>> b = arena.realloc(a, 4000)
>>> bytes(arena.view(b)[:5])
b'pulse'
>>> arena.free(b)
>>> arena.stats().used_blocks, arena.check()
(0, None)
>>> arena.close()
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

import numpy as np

from qpuos.errors import (
    ClosedResourceError,
    UsageError,
)
from qpuos.kernel import _mheap_base as _codes
from qpuos.kernel import _mheap_errors as _errors
from qpuos.kernel import _mheap_kernels as _k
from qpuos.kernel import _mheap_walk as _walk
from qpuos.kernel._mheap_bounds import pool_size_for, worst_case_heap
from qpuos.kernel._mheap_layout import (
    H_CRASH_AT,
    H_LOCK,
    H_MAGIC,
    H_POISON,
    H_POISON_AT,
    H_RECOVERIES,
    HDR,
    MAGIC,
    MAX_ALIGN,
    PID_MASK,
    STRATEGIES,
    Layout,
    byte_view,
    layout_for,
    read_header,
    words_of,
    write_header,
)
from qpuos.kernel._mheap_owner import pid_namespace, wait_for_lock

__all__ = ["Arena", "ArenaStats", "pool_size_for", "worst_case_heap"]

_log = logging.getLogger(__name__)
_NAMES = {v: k for k, v in STRATEGIES.items()}

_pid = os.getpid()  # the lock owner id; module global so the hot path reads it fast


def _refresh_pid() -> None:
    global _pid  # noqa: PLW0603 - the lock owner id must follow fork()
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)
_PIDNS = pid_namespace()


@dataclass(frozen=True, slots=True)
class ArenaStats:
    """A snapshot of an arena, taken under its lock.

    Attributes:
        strategy: ``"tlsf"`` or ``"first_fit"``.
        pool_bytes: bytes of buffer the arena uses.
        heap_bytes: bytes of blocks (the pool less the arena's bookkeeping).
        used_bytes: bytes in used blocks, headers included.
        free_bytes: bytes in free blocks, headers included (``used + free == heap``).
        largest_free: bytes of the largest free block, header included.
        used_blocks: number of live allocations.
        free_blocks: number of free blocks.
        fragmentation: ``1 - largest_free / free_bytes`` (0 when nothing is free).
        recoveries: times a process took the lock over from a dead owner.
    """

    strategy: str
    pool_bytes: int
    heap_bytes: int
    used_bytes: int
    free_bytes: int
    largest_free: int
    used_blocks: int
    free_blocks: int
    fragmentation: float
    recoveries: int


class Arena:
    """An allocator whose whole state lives in a caller-supplied writable buffer.

    Build one with ``Arena.create`` (formats the buffer) or ``Arena.attach`` (uses an
    arena another process or object created). See the module docstring for the design.
    """

    __slots__ = ("_buffer", "_heap", "_heap_bytes", "_layout", "_mv", "_strategy",
                 "_timeout", "_w")

    def __init__(self, buffer: Any, mv: memoryview, w: np.ndarray[Any, Any], layout: Layout,
                 lock_timeout: float) -> None:
        """Private: use ``create`` or ``attach``."""
        self._buffer = buffer
        self._mv: memoryview | None = mv
        self._w: np.ndarray[Any, Any] | None = w
        self._layout = layout
        self._heap = layout.heap
        self._heap_bytes = layout.heap_bytes
        self._strategy = _NAMES[layout.strategy]
        self._timeout = float(lock_timeout)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, buffer: Any, *, strategy: str = "tlsf", lock_timeout: float = 5.0
               ) -> Arena:
        """Format ``buffer`` as an empty arena and return it.

        Args:
            buffer: any writable, contiguous buffer whose address is 8-byte aligned
                (``bytearray``, ``mmap.mmap``, ``SharedMemory.buf``). Its first
                ``len(buffer) // 16 * 16`` bytes become the arena. Nobody else may be
                using an arena in it.
            strategy: ``"tlsf"`` (O(1) operations) or ``"first_fit"``.
            lock_timeout: seconds to wait for a lock held by a live process before
                raising ``HeapLockError``.

        Raises:
            UsageError: unknown strategy, read-only or misaligned buffer, or too small.
        """
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown arena strategy {strategy!r}; use 'tlsf' or "
                             "'first_fit'")
        mv = byte_view(buffer)
        layout = layout_for(len(mv), STRATEGIES[strategy])
        w = words_of(mv, layout.pool)
        write_header(w, layout, _PIDNS)
        _k.init_heap(w)
        w[H_MAGIC] = MAGIC  # last: an attach that sees the magic sees a whole header
        return cls(buffer, mv, w, layout, lock_timeout)

    @classmethod
    def attach(cls, buffer: Any, *, lock_timeout: float = 5.0) -> Arena:
        """Use the arena already in ``buffer`` (made by ``create``, maybe elsewhere).

        Raises:
            HeapCorrupted: the buffer does not hold an arena of this version and layout.
            HeapLockError: the arena was created in another PID namespace.
            UsageError: read-only or misaligned buffer.
        """
        mv = byte_view(buffer)
        layout = read_header(mv, _PIDNS)
        return cls(buffer, mv, words_of(mv, layout.pool), layout, lock_timeout)

    # ---- the hot path: a few integer checks, then one kernel call ------------------------

    def alloc(self, size: int, *, align: int = 16) -> int:
        """Allocate ``size`` bytes; returns the payload's byte offset in the buffer.

        Args:
            size: bytes wanted, at least 1.
            align: power of two up to 65536; the offset is a multiple of it (16 at least).

        Raises:
            HeapExhausted: no free block is large enough (``.size``, ``.largest``).
            UsageError: bad size or align. HeapLockError, HeapCorrupted: see the module.
        """
        w = self._w
        if (w is None or type(size) is not int or type(align) is not int
                or not 0 < size <= self._heap_bytes or not 0 < align <= MAX_ALIGN
                or align & (align - 1)):
            return self._alloc_checked(size, align)
        r: int = _k.alloc(w, size, align, _pid)
        if r > 0:
            return r
        while r == _codes.E_BUSY:
            self._wait()
            r = _k.alloc(w, size, align, _pid)
        return r if r > 0 else self._fail(r, "alloc", size=size, align=align)

    def free(self, offset: int) -> None:
        """Give back the block at ``offset``.

        Raises:
            DoubleFree: the block is already free.
            InvalidPointer: ``offset`` is not a live block (misaligned, out of range, or
                not where a block starts). Nothing is changed in either case.
        """
        w = self._w
        if w is None or type(offset) is not int:
            offset = self._checked_offset(offset)
            w = self._w
        r: int = _k.free(w, offset, _pid)
        while r == _codes.E_BUSY:
            self._wait()
            r = _k.free(w, offset, _pid)
        if r:
            self._fail(r, "free", offset=offset)

    def realloc(self, offset: int, size: int, *, align: int = 16) -> int:
        """Resize the block at ``offset`` to ``size`` bytes, keeping its contents.

        Grows or shrinks in place when it can; otherwise allocates, copies and frees.
        Returns the block's offset (new or unchanged). On ``HeapExhausted`` the old block
        is untouched.
        """
        offset = self._checked_offset(offset)
        size, align = self._checked_request(size, align, "realloc")
        w = self._w
        r: int = _k.realloc(w, offset, size, align, _pid)
        while r == _codes.E_BUSY:
            self._wait()
            r = _k.realloc(w, offset, size, align, _pid)
        return r if r > 0 else self._fail(r, "realloc", offset=offset, size=size,
                                          align=align)

    def view(self, offset: int) -> memoryview:
        """A writable memoryview of the usable bytes of the live block at ``offset``."""
        offset = self._checked_offset(offset)
        n: int = _k.usable(self._w, offset)
        if n < 0:
            self._fail(n, "view", offset=offset)
        assert self._mv is not None
        return self._mv[offset: offset + n]

    def usable_size(self, offset: int) -> int:
        """Usable bytes of the live block at ``offset`` (``len(view(offset))``)."""
        offset = self._checked_offset(offset)
        n: int = _k.usable(self._w, offset)
        return n if n >= 0 else self._fail(n, "usable_size", offset=offset)

    # ---- whole-heap operations ----------------------------------------------------------

    def stats(self) -> ArenaStats:
        """Walk the heap under the lock and summarise it."""
        w = self._open()
        out = _walk.stats(w, _pid)
        while out[0]:
            self._wait()
            out = _walk.stats(w, _pid)
        free, used, largest, nfree, nused = (int(x) for x in out[1:])
        return ArenaStats(self._strategy, self._layout.pool, self._heap_bytes, used, free,
                          largest, nused, nfree, 1.0 - largest / free if free else 0.0,
                          int(w[H_RECOVERIES]))

    def check(self) -> None:
        """Walk the heap and verify every invariant; ``None`` when all hold.

        Checks: the block chain tiles the heap exactly with consistent back links and
        sizes; no two free blocks touch; the live bitmap marks exactly the used blocks;
        every free block is on the right free list exactly once, with consistent links
        (address order for first fit, size class and bitmaps for TLSF); no unfinished
        operation is pending in the undo log.

        Raises:
            HeapCorrupted: the first broken invariant, with where it is. The arena is then
                marked corrupted for every process.
        """
        w = self._open()
        code, at = _walk.check(w, _pid)
        while code == -1:
            self._wait()
            code, at = _walk.check(w, _pid)
        if code:
            raise _errors.corrupted(int(code), int(at))

    def break_lock(self) -> int:
        """Take the lock from its holder as if the holder had died; returns the number of
        writes rolled back (0 if nobody held it). Only for a holder you know is gone but
        that still looks alive (pid reuse); never while it may still run."""
        w = self._open()
        word = int(w[H_LOCK])
        if word & PID_MASK == 0:
            return 0
        return self._recover(word, word & PID_MASK)

    # ---- properties and the resource protocol -------------------------------------------

    @property
    def strategy(self) -> str:
        """``"tlsf"`` or ``"first_fit"``."""
        return self._strategy

    @property
    def pool_bytes(self) -> int:
        """Bytes of the buffer the arena uses."""
        return self._layout.pool

    @property
    def heap_bytes(self) -> int:
        """Bytes available for blocks (headers included)."""
        return self._heap_bytes

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._w is None

    def close(self) -> None:
        """Drop this object's hold on the buffer (idempotent). The arena in the buffer is
        untouched; other processes keep using it. Release views before closing an mmap."""
        if self._w is None:
            return
        self._w = None
        mv, self._mv = self._mv, None
        self._buffer = None
        if mv is not None:
            with contextlib.suppress(BufferError):  # a caller's view still holds it
                mv.release()

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._w is None else "open"
        return (f"<Arena {self._strategy} pool={self._layout.pool} "
                f"heap={self._heap_bytes} {state}>")

    # ---- slow paths ---------------------------------------------------------------------

    def _open(self) -> np.ndarray[Any, Any]:
        w = self._w
        if w is None:
            raise ClosedResourceError("this Arena was closed; attach the buffer again")
        return w

    def _checked_request(self, size: object, align: object, op: str = "alloc"
                         ) -> tuple[int, int]:
        self._open()
        size, align = _index(size, "size"), _index(align, "align")
        if size < 1:
            raise UsageError(f"cannot allocate {size} bytes; ask for at least 1")
        if not 0 < align <= MAX_ALIGN or align & (align - 1):
            raise UsageError(f"align must be a power of two from 1 to {MAX_ALIGN}; "
                             f"got {align}")
        if size > self._heap_bytes:
            self._fail(_codes.E_EXHAUSTED, op, size=size, align=align)
        return size, align

    def _alloc_checked(self, size: object, align: object) -> int:
        size, align = self._checked_request(size, align)
        return self.alloc(size, align=align)

    def _checked_offset(self, offset: object) -> int:
        self._open()
        return _index(offset, "offset")

    def _wait(self) -> None:
        """Wait until the lock is free, or take it over from a dead owner."""
        wait_for_lock(self._open(), me=_pid, timeout=self._timeout, recover=self._recover)

    def _recover(self, word: int, pid: int) -> int:
        w = self._open()
        undone, code, at = (int(x) for x in _walk.recover(w, word, _pid))
        if undone < 0:
            return 0  # someone else recovered or the owner finished meanwhile
        if code:
            raise _errors.corrupted(code, at, f"process {pid} died holding the arena lock; "
                                    f"after rolling back its {undone} writes, ")
        _log.warning("arena: process %d died holding the lock; rolled back %d writes of "
                     "its unfinished operation, heap check clean", pid, undone)
        return undone

    def _fail(self, code: int, op: str, *, size: int = 0, align: int = 16, offset: int = 0
              ) -> NoReturn:
        if code == _codes.E_EXHAUSTED:
            st = self.stats()
            raise _errors.exhausted(op, size, align, st.largest_free, st.free_bytes,
                                    st.heap_bytes)
        if code == _codes.E_POISONED:
            w = self._open()
            raise _errors.corrupted(int(w[H_POISON]), int(w[H_POISON_AT]),
                                    "an earlier check found: ")
        raise _errors.bad_pointer(code, op, offset, self._heap + HDR, self._layout.end)

    def _inject_crash(self, after_writes: int) -> None:
        """Test hook: the ``after_writes``-th logged write of the next operation raises
        RuntimeError, leaving the lock held and the operation half done (0 disarms)."""
        self._open()[H_CRASH_AT] = after_writes


def _index(value: object, what: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise UsageError(f"{what} must be an integer; got {type(value).__name__}")
    return int(value.__index__())

"""``BPF_MAP_TYPE_RINGBUF``: records a program submits, read through shared memory.

Layout (kernel/bpf/ringbuf.c): the map's fd is mmap'd twice. Page 0 is the consumer
page, which this process writes (``consumer_pos``, a u64). From page 1 on, read-only:
the producer page (``producer_pos``) and then the data area of ``size`` bytes mapped
twice in a row, so a record that wraps around the end is still contiguous. Each record
starts with an 8-byte header: a u32 length whose bit 31 means "still being written"
(busy) and bit 30 "discarded", and a u32 page offset the kernel uses. Records are
8-byte aligned.

Memory ordering: the kernel publishes a record by clearing the busy bit with a release
store after writing the payload, and advances ``producer_pos`` with a release store
too; x86-64 (TSO) keeps our loads in program order, so reading the position, then the
header, then the payload sees a whole record. The consumer frees space by one aligned
8-byte store of ``consumer_pos`` through ``memoryview.cast("Q")`` (a single ``mov``,
never ``struct.pack_into``, which CPython may write in pieces). Other architectures
would need acquire loads here: this module refuses them rather than read torn records.

Waiting uses epoll on the map fd: the kernel wakes it when a record is submitted
(unless the program passed BPF_RB_NO_WAKEUP).

>>> with RingBuffer.create(4096) as rb:                           # doctest: +SKIP
...     rb.drain()
[]
"""

from __future__ import annotations

import mmap
import platform
import time

from qpuos._ffi import bpf as _ffi
from qpuos._ffi import consts as _c
from qpuos.errors import ClosedResourceError, UnsupportedArchitecture, UsageError
from qpuos.kernel import syscall as _sc

__all__ = ["RingBuffer"]

_PAGE = mmap.PAGESIZE
_TSO = ("x86_64", "AMD64", "i686")


class RingBuffer:
    """A ring buffer map and this process's consumer side of it.

    Programs write to it with ``ringbuf_output`` (or reserve/submit) through
    ``ld_map_fd(R1, ring)``; :meth:`drain` and :meth:`poll` return the records.

    Attributes:
        size: the data area in bytes (a power of two, a multiple of the page size).
        name: the map's name.
    """

    def __init__(self, fd: int, *, size: int, name: str = "") -> None:
        if platform.machine() not in _TSO:
            raise UnsupportedArchitecture(
                f"the ring buffer consumer relies on x86-64 load ordering; "
                f"{platform.machine()!r} needs acquire loads it does not have yet")
        self._fd = fd
        self.size = size
        self.name = name
        self._mask = size - 1
        self._cons = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(fd, _PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=_PAGE)
        self._cons_pos = memoryview(self._cons).cast("Q")
        self._prod_pos = memoryview(self._prod).cast("Q")
        self._data = memoryview(self._prod)[_PAGE:]
        self._hdr = self._data.cast("I")
        self._epfd = -1

    @classmethod
    def create(cls, size: int, *, name: str = "") -> RingBuffer:
        """A new ring buffer map of ``size`` data bytes.

        Raises:
            UsageError: ``size`` is not a power of two multiple of the page size.
            PermissionError: no CAP_BPF.
        """
        if size < _PAGE or size & (size - 1):
            raise UsageError(f"ring buffer size must be a power of two of at least "
                             f"{_PAGE} bytes (the page size), got {size}")
        attr = _ffi.MapCreateAttr()
        attr.map_type = _ffi.BPF_MAP_TYPE_RINGBUF
        attr.max_entries = size
        attr.map_name = name.encode()[:15]
        fd = _sc.bpf(_c.BPF_MAP_CREATE, _ffi.attr_bytes(attr))
        try:
            return cls(fd, size=size, name=name)
        except BaseException:
            _sc.close(fd)
            raise

    @property
    def fd(self) -> int:
        """The map's file descriptor (for ``ld_map_fd``).

        Raises:
            ClosedResourceError: after close().
        """
        if self._fd < 0:
            raise ClosedResourceError(f"ring buffer {self.name or '<unnamed>'!r} is "
                                      "closed")
        return self._fd

    def pending(self) -> int:
        """Bytes submitted (or being written) that this consumer has not read yet."""
        self.fd  # noqa: B018 - raises when closed
        return int(self._prod_pos[0] - self._cons_pos[0])

    def drain(self, *, limit: int | None = None) -> list[bytes]:
        """Read and release every complete record available now (up to ``limit``).

        Stops at a record still being written; discarded records are skipped.
        """
        self.fd  # noqa: B018 - raises when closed
        out: list[bytes] = []
        cons = self._cons_pos[0]
        prod = self._prod_pos[0]
        hdr, data, mask = self._hdr, self._data, self._mask
        # HOT: one iteration per record
        while cons < prod and (limit is None or len(out) < limit):
            at = cons & mask
            length = hdr[at >> 2]
            if length & _ffi.BPF_RINGBUF_BUSY_BIT:
                break
            n = length & ~(_ffi.BPF_RINGBUF_BUSY_BIT | _ffi.BPF_RINGBUF_DISCARD_BIT)
            if not length & _ffi.BPF_RINGBUF_DISCARD_BIT:
                body = at + _ffi.BPF_RINGBUF_HDR_SZ
                out.append(bytes(data[body:body + n]))
            cons += (n + _ffi.BPF_RINGBUF_HDR_SZ + 7) & ~7
            self._cons_pos[0] = cons
        return out

    def poll(self, timeout_s: float | None = None, *, limit: int | None = None) -> list[bytes]:
        """Wait up to ``timeout_s`` (None: forever) for records, then drain them.

        Returns an empty list when the time runs out with nothing submitted.
        """
        got = self.drain(limit=limit)
        if got:
            return got
        if self._epfd < 0:
            self._epfd = _sc.epoll_create1()
            _sc.epoll_ctl(self._epfd, _sc.EPOLL_CTL_ADD, self.fd, _sc.EPOLLIN)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _sc.epoll_wait(self._epfd, 1, None if left is None else int(left * 1e9))
            got = self.drain(limit=limit)
            if got or (left is not None and left <= 0):
                return got

    def close(self) -> None:
        """Unmap and close (idempotent)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        for view in (self._cons_pos, self._prod_pos, self._hdr, self._data):
            view.release()
        self._cons.close()
        self._prod.close()
        if self._epfd >= 0:
            _sc.close(self._epfd)
            self._epfd = -1
        _sc.close(fd)

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"RingBuffer({self.name!r}, {self.size} bytes, {state})"

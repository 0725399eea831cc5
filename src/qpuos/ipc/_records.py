"""RecordRing: one producer, one consumer, variable-length records. Design in ring.py.

A record is an 8-byte header word ``kind << 32 | length`` then the payload, padded to 8
bytes. A record never splits across the end of the data area: when it does not fit, a
PAD record covers the rest of the area and the record starts at offset 0 (the log-buffer
layout of LMAX and Aeron). The pad and the record are published by the same tail store,
so a consumer never sees a pad without the record after it. Records of up to
``capacity // 2 - 8`` bytes always fit eventually (one of "before the end" and "after
the wrap" has room for anything that size); larger payloads go through the arena hook.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from qpuos.errors import RingEmpty, RingError, RingFull, RingTimeout, UsageError
from qpuos.ipc import _shm
from qpuos.ipc._base import drop_view
from qpuos.ipc._ring_kernels import publish_head, publish_tail
from qpuos.ipc._shm import W_HEAD, W_TAIL
from qpuos.ipc._spsc_base import (
    CONSUMER,
    SpscBase,
    _Busy,
    _Pending,
    byte_view,
    check_capacity,
)
from qpuos.ipc._wait import WaitMode

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["ArenaHook", "RecordRing"]

KIND_DATA, KIND_PAD, KIND_REF = 0, 1, 2
_HDR = 8


class ArenaHook(Protocol):
    """Where payloads too large for the ring live: the shape of ``kernel.mheap.Arena``.

    A hook, not an import (the ring sits beside the allocator, not above it): any object
    with these three methods will do. Both processes must see the same arena (a shared
    mapping). The producer allocates and fills a block; the ring carries
    ``(offset, length)`` in a record of kind REF; the consumer copies the block out and
    frees it (``recv``), or reads it in place and frees it on ``release`` (``peek``).
    """

    def alloc(self, nbytes: int, /) -> int:
        """Reserve at least ``nbytes``; return the block's offset."""
        ...

    def view(self, offset: int, /) -> memoryview:
        """A writable view of the block at ``offset`` (at least as long as asked)."""
        ...

    def free(self, offset: int, /) -> None:
        """Give the block at ``offset`` back."""
        ...


class RecordRing(SpscBase):
    """Lock-free SPSC ring of variable-length records (length-prefixed, 8-byte aligned).

    >>> with RecordRing.create(capacity=256, anonymous=True) as ring:
    ...     ring.send(b"x90 q0")
    ...     n = ring.send_many([b"", b"cx q0,q1", b"measure"])
    ...     view = ring.claim(5)
    ...     view[:] = b"reset"
    ...     ring.publish()
    ...     [ring.recv(timeout=0) for _ in range(2)] + ring.recv_many(10)
    [b'x90 q0', b'', b'cx q0,q1', b'measure', b'reset']
    """

    _KIND = _shm.KIND_RECORDS

    def __init__(self, m: _shm.Mapping, *, wait: WaitMode | None, spin_s: float,
                 arena: ArenaHook | None = None, inline_max: int | None = None,
                 portable: bool = False) -> None:
        super().__init__(m, wait=wait, spin_s=spin_s, portable=portable)
        self._mm: Any = m.mm
        self._mv: Any = memoryview(m.mm)
        self._fenced = self.blocking
        self.max_record = self._cap // 2 - _HDR
        self.arena = arena
        if inline_max is None:
            inline_max = self.max_record
        if not 0 <= inline_max <= self.max_record:
            raise UsageError(f"inline_max={inline_max} must be in 0..{self.max_record} "
                             "(capacity // 2 - 8)")
        self._inline_max = inline_max
        self._claim_views: list[memoryview] = []
        self._peek_views: list[memoryview] = []
        self._peek_refs: list[int] = []
        self._sync_local()

    def _sync_local(self) -> None:
        # Producer: _tail is published, _pend the end of the claimed records.
        # Consumer: _head is the next record to read, _hpub the published head (they
        # differ only while peeked records wait for release()).
        q = self._q
        self._tail = self._pend = int(q[W_TAIL])
        self._head = self._hpub = int(q[W_HEAD])
        self._limit = -1
        self._avail = -1
        self._cix = _Pending(self)
        self._registered_tx = False

    @classmethod
    def create(cls, *, capacity: int = 1 << 16, name: str | None = None,
               anonymous: bool = False, blocking: bool = True, wait: WaitMode | None = None,
               spin_s: float = 50e-6, arena: ArenaHook | None = None,
               inline_max: int | None = None, unlink_on_close: bool = True) -> RecordRing:
        """Create a ring of ``capacity`` data bytes (a power of two, at least 64).

        Args:
            capacity: bytes of the data area; payloads up to ``capacity // 2 - 8`` fit.
            arena: where payloads larger than ``inline_max`` go (optional hook).
            inline_max: largest payload carried in the ring itself.
            name: as ``SpscRing.create``; so are anonymous, blocking, wait, spin_s
                and unlink_on_close.

        Raises:
            UsageError: bad sizes, or the name exists.
        """
        check_capacity(capacity, "bytes")
        if capacity < 64:
            raise UsageError(f"capacity={capacity} bytes is too small; use at least 64")
        m = cls._create_mapping(capacity, slot=0, capacity=capacity, stride=0, name=name,
                                anonymous=anonymous, blocking=blocking, wait=wait)
        ring: RecordRing = cls._open(m, wait=wait, spin_s=spin_s, arena=arena,
                                     inline_max=inline_max)
        ring.unlink_on_close = unlink_on_close
        return ring

    @classmethod
    def attach(cls, name: str, *, wait: WaitMode | None = None, spin_s: float = 50e-6,
               arena: ArenaHook | None = None, inline_max: int | None = None
               ) -> RecordRing:
        """Open an existing ring by name (see ``SpscRing.attach``)."""
        ring: RecordRing = cls._open(_shm.attach_mapping(name), wait=wait, spin_s=spin_s,
                                     arena=arena, inline_max=inline_max)
        return ring

    # -- producer -------------------------------------------------------------------

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Copy one record in and publish it (waits for room as ``SpscRing.send``).

        Raises:
            RingFull / RingTimeout / PeerDied: as ``SpscRing.send``.
            UsageError: the record is larger than ``max_record`` and there is no arena.
        """
        # HOT PATH: header store, slice copy, tail store.
        if type(data) is not bytes:
            data = byte_view(data)
        n = len(data)
        if n > self._inline_max:
            return self._send_big(data, timeout)
        need = _HDR + ((n + 7) & -8)
        t = self._pend
        off = t & self._mask
        if off + need > self._cap or t + need > self._limit:
            t, off = self._room(need, timeout, claim=False)
        off += self._base
        self._q[off >> 3] = n
        self._mm[off + _HDR:off + _HDR + n] = data
        t += need
        self._tail = self._pend = t
        self._ix[W_TAIL] = t   # publish: one aligned 8-byte store (see ring.py)
        return None

    def send_many(self, records: list[Any], *, timeout: float | None = None) -> int:
        """Copy many records in, publishing them together (and whenever the ring fills).

        Returns:
            records sent: all, unless ``timeout`` ran out first (0: what fits now).
        """
        if self._closed:
            raise self._closed_error()
        if self._pend != self._tail:
            raise UsageError("publish() the claimed records before send_many()")
        deadline = self._deadline(timeout)
        q, mm, base, mask, cap = self._q, self._mm, self._base, self._mask, self._cap
        done = 0
        t = self._pend
        try:
            for data in records:
                src = data if type(data) is bytes else byte_view(data)
                n = len(src)
                if n > self._inline_max:
                    self._pend = t
                    self.publish()
                    self._send_big(src, _left(deadline, timeout))
                    t = self._pend
                    done += 1
                    continue
                need = _HDR + ((n + 7) & -8)
                off = t & mask
                if off + need > cap or t + need > self._limit:
                    self._pend = t
                    self.publish()   # let the consumer start on what is there
                    t, off = self._room_for(need, _left(deadline, timeout), claim=True)
                off += base
                q[off >> 3] = n
                mm[off + _HDR:off + _HDR + n] = src
                t += need
                done += 1
        except (RingFull, RingTimeout):
            pass
        finally:  # everything written so far goes out, whatever stopped the loop
            self._pend = t
            self.publish()
        return done

    def claim(self, nbytes: int, *, timeout: float | None = None) -> memoryview:
        """Reserve one record of ``nbytes``; a writable view of its payload.

        Several claims may precede one ``publish()``, which makes them all visible at
        once. The views must not be used after ``publish``.

        Raises:
            RingFull / RingTimeout / PeerDied: as ``send``.
            UsageError: ``nbytes`` is larger than ``max_record``.
        """
        return self._claim(nbytes, timeout, _KIND_DATA_HDR)

    def _claim(self, nbytes: int, timeout: float | None, kind_bits: int) -> memoryview:
        if nbytes < 0 or nbytes > self.max_record:
            raise UsageError(f"a record of {nbytes} bytes does not fit {self.name!r} "
                             f"(max {self.max_record}); use a larger capacity or an arena")
        need = _HDR + ((nbytes + 7) & -8)
        t = self._pend
        off = t & self._mask
        if off + need > self._cap or t + need > self._limit:
            t, off = self._room(need, timeout, claim=True)
        off += self._base
        self._q[off >> 3] = kind_bits | nbytes
        self._pend = t + need
        self._limit = -1   # until publish(), send() takes the slow path (and refuses)
        view: memoryview = self._mv[off + _HDR:off + _HDR + nbytes]
        self._claim_views.append(view)
        return view

    def publish(self) -> None:
        """Make every claimed record visible to the consumer (no-op if none)."""
        if self._closed:
            raise self._closed_error()
        for v in self._claim_views:
            drop_view(v)
        self._claim_views.clear()
        t = self._pend
        delta = t - self._tail
        if not delta:
            return
        self._tail = t
        if self._fenced:
            if publish_tail(self._w, delta):
                self._wake_data()
        else:
            self._ix[W_TAIL] = t

    def _room(self, need: int, timeout: float | None, *, claim: bool) -> tuple[int, int]:
        """Slow path: closed, registration, wrap padding, waiting for room.

        Returns (position, offset in the data area) for a record of ``need`` bytes; a
        pad record fills the end of the area first when the record would not fit there.
        """
        try:
            return self._room_for(need, timeout, claim)
        finally:
            if self._pend != self._tail:   # claims outstanding: keep send() out
                self._limit = -1

    def _room_for(self, need: int, timeout: float | None, claim: bool) -> tuple[int, int]:
        if self._closed:
            raise self._closed_error()
        if not claim and self._pend != self._tail:
            raise UsageError("publish() the claimed records before send()")
        if not self._registered_tx:
            self._tail = self._pend = self._register_producer()
        t = self._pend
        off = t & self._mask
        pad = self._cap - off if off + need > self._cap else 0
        ix, cap = self._ix, self._cap
        self._limit = int(ix[W_HEAD]) + cap

        def ready() -> bool:
            self._limit = int(ix[W_HEAD]) + cap
            return t + pad + need <= self._limit

        if t + pad + need > self._limit and not ready():
            if timeout == 0:
                raise RingFull(f"{self.name!r} has no room for {need} bytes "
                               f"({len(self)} of {cap} in use); the consumer is behind")
            for _ in range(self._fast_spin):
                if ready():
                    break
            else:
                def stall() -> bool:
                    if ready():
                        return True
                    self._check_peer(CONSUMER, "consumer")
                    return False

                if not self._tx_wait.wait(ready, self._deadline(timeout), stall):
                    raise RingTimeout(f"no room for {need} bytes in {self.name!r} within "
                                      f"{timeout} s; the consumer is not keeping up (or is "
                                      "stuck)")
        if pad:  # published together with the record that follows it
            self._q[(self._base + off) >> 3] = (KIND_PAD << 32) | (pad - _HDR)
            t += pad
            self._pend = t
            off = 0
        return t, off

    def _send_big(self, data: Any, timeout: float | None) -> None:
        n = len(data)
        if self.arena is None:
            raise UsageError(f"a record of {n} bytes does not fit {self.name!r} "
                             f"(max {self._inline_max}); use a larger capacity or pass "
                             "arena= to carry large payloads by reference")
        offset = self.arena.alloc(n)
        try:
            self.arena.view(offset)[:n] = data
            view = self._claim(16, timeout, KIND_REF << 32)
        except BaseException:
            self.arena.free(offset)
            raise
        view[:] = offset.to_bytes(8, "little") + n.to_bytes(8, "little")
        self.publish()

    # -- consumer -------------------------------------------------------------------

    def recv(self, *, timeout: float | None = None) -> bytes:
        """Take the next record, copied out (waits as ``SpscRing.recv``).

        Raises:
            RingEmpty / RingTimeout / PeerDied: as ``SpscRing.recv``.
        """
        # HOT PATH: a cached tail, one header load, one slice copy, one store.
        h = self._head
        if h >= self._avail:
            self._avail = self._cix[W_TAIL]
            if h >= self._avail:
                self._data(timeout)
        off = self._base + (h & self._mask)
        hdr = self._q[off >> 3]
        if hdr >> 32:
            return self._recv_special(hdr, off, timeout)
        data: bytes = self._mm[off + _HDR:off + _HDR + hdr]
        h += _HDR + ((hdr + 7) & -8)
        self._head = self._hpub = h
        self._ix[W_HEAD] = h   # free the record: one aligned 8-byte store
        return data

    def _recv_special(self, hdr: int, off: int, timeout: float | None) -> bytes:
        kind = self._kind(hdr, off)
        if kind == KIND_PAD:  # the record that follows starts the area again
            self._head += _HDR + (hdr & 0xFFFFFFFF)
            return self.recv(timeout=timeout)
        arena, offset, size = self._ref(off)
        data = bytes(arena.view(offset)[:size])
        arena.free(offset)
        self._head += _HDR + 16
        self._publish_head()
        return data

    def _kind(self, hdr: int, off: int) -> int:
        kind = hdr >> 32
        if kind not in (KIND_DATA, KIND_PAD, KIND_REF) or (hdr & 0xFFFFFFFF) > self._cap:
            raise RingError(f"record header {hdr:#x} at offset {off - self._base} of "
                            f"{self.name!r} is not valid; the ring is damaged: reset() it")
        return kind

    def _ref(self, off: int) -> tuple[ArenaHook, int, int]:
        if self.arena is None:
            raise UsageError(f"{self.name!r} carries a record by reference to an arena "
                             "block, and this side has no arena; attach with arena=")
        ref = self._mm[off + _HDR:off + _HDR + 16]
        return (self.arena, int.from_bytes(ref[:8], "little"),
                int.from_bytes(ref[8:], "little"))

    def _publish_head(self) -> None:
        h = self._head
        delta = h - self._hpub
        if not delta:
            return
        self._hpub = h
        if self._fenced:
            if publish_head(self._w, delta):
                self._wake_space()
        else:
            self._ix[W_HEAD] = h

    def recv_many(self, max_n: int, *, timeout: float | None = None) -> list[bytes]:
        """Up to ``max_n`` records (waits per ``timeout`` for the first one only); the
        head is published once for all of them."""
        out = [self.recv(timeout=timeout)]
        q, mm, base, mask = self._q, self._mm, self._base, self._mask
        avail = int(self._ix[W_TAIL])
        h = self._head
        while len(out) < max_n and h < avail:
            off = base + (h & mask)
            hdr = q[off >> 3]
            if hdr >> 32:
                if self._kind(hdr, off) == KIND_PAD:
                    h += _HDR + (hdr & 0xFFFFFFFF)
                    continue
                self._head = h
                out.append(self._recv_special(hdr, off, 0))
                h = self._head
                continue
            out.append(mm[off + _HDR:off + _HDR + hdr])
            h += _HDR + ((hdr + 7) & -8)
        self._head = h
        self._publish_head()
        return out

    def peek(self, *, timeout: float | None = None) -> memoryview:
        """The next record's payload in place (read-only).

        Several peeks may precede one ``release()``, which frees them all; the views are
        invalid after it. ``recv`` is refused while peeked records are held.
        """
        if self._closed:
            raise self._closed_error()
        if isinstance(self._cix, _Pending):
            self._cix[W_TAIL]  # first consumer operation: register
        while True:
            h = self._head
            if h >= self._avail:
                self._avail = int(self._ix[W_TAIL])
                if h >= self._avail:
                    self._data(timeout)
            off = self._base + (h & self._mask)
            hdr = int(self._q[off >> 3])
            kind, n = self._kind(hdr, off), hdr & 0xFFFFFFFF
            self._head = h + _HDR + ((n + 7) & -8)
            if kind == KIND_PAD:
                continue
            if kind == KIND_REF:
                arena, offset, size = self._ref(off)
                view = arena.view(offset)[:size].toreadonly()
                self._peek_refs.append(offset)
            else:
                view = self._mv[off + _HDR:off + _HDR + n].toreadonly()
            self._peek_views.append(view)
            self._cix = _Busy()   # recv() refuses until release()...
            self._avail = -1      # ...because its fast path now goes through _cix
            return view

    def peek_many(self, max_n: int, *, timeout: float | None = None) -> list[memoryview]:
        """Up to ``max_n`` peeked records (waits for the first one only)."""
        out = [self.peek(timeout=timeout)]
        while len(out) < max_n:
            try:
                out.append(self.peek(timeout=0))
            except RingEmpty:
                break
        return out

    def release(self) -> None:
        """Free every peeked record (and their arena blocks)."""
        if self._closed:
            raise self._closed_error()
        self._drop_leases()
        self._publish_head()

    def _drop_leases(self) -> None:
        for v in (*self._claim_views, *self._peek_views):
            drop_view(v)
        self._claim_views.clear()
        self._peek_views.clear()
        if self.arena is not None:
            for offset in self._peek_refs:
                self.arena.free(offset)
        self._peek_refs.clear()
        if isinstance(self._cix, _Busy):
            self._cix = self._ix
            self._avail = -1


_KIND_DATA_HDR = KIND_DATA << 32


def _left(deadline: float | None, timeout: float | None) -> float | None:
    """What remains of a timeout (0 stays 0: never wait)."""
    if deadline is None or timeout == 0:
        return timeout
    return max(0.0, deadline - time.perf_counter())


class _FencedRecordRing(RecordRing):
    """RecordRing of a ``blocking=True`` ring: publication through a locked add (see
    ``_FencedSpscRing``). Chosen by ``create``/``attach``."""

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        if type(data) is not bytes:
            data = byte_view(data)
        n = len(data)
        if n > self._inline_max:
            return self._send_big(data, timeout)
        need = _HDR + ((n + 7) & -8)
        t = self._pend
        off = t & self._mask
        if off + need > self._cap or t + need > self._limit:
            t, off = self._room(need, timeout, claim=False)
        off += self._base
        self._q[off >> 3] = n
        self._mm[off + _HDR:off + _HDR + n] = data
        t += need
        delta = t - self._tail
        self._tail = self._pend = t
        if publish_tail(self._w, delta):
            self._wake_data()
        return None

    def recv(self, *, timeout: float | None = None) -> bytes:
        h = self._head
        if h >= self._avail:
            self._avail = self._cix[W_TAIL]
            if h >= self._avail:
                self._data(timeout)
        off = self._base + (h & self._mask)
        hdr = self._q[off >> 3]
        if hdr >> 32:
            return self._recv_special(hdr, off, timeout)
        data: bytes = self._mm[off + _HDR:off + _HDR + hdr]
        h += _HDR + ((hdr + 7) & -8)
        delta = h - self._hpub
        self._head = self._hpub = h
        if publish_head(self._w, delta):
            self._wake_space()
        return data

    send.__doc__ = RecordRing.send.__doc__
    recv.__doc__ = RecordRing.recv.__doc__


RecordRing._FENCED = _FencedRecordRing

"""SpscRing: one producer, one consumer, fixed-size slots. See ring.py for the design."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from qpuos.errors import RingEmpty, RingFull, RingTimeout, UsageError
from qpuos.ipc import _shm
from qpuos.ipc._base import drop_view
from qpuos.ipc._ring_kernels import publish_head, publish_tail
from qpuos.ipc._shm import W_HEAD, W_TAIL
from qpuos.ipc._spsc_base import CONSUMER, SpscBase, _Busy, _Pending, byte_view, check_capacity
from qpuos.ipc._wait import WaitMode

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["SpscRing"]


class SpscRing(SpscBase):
    """Lock-free single-producer single-consumer ring of fixed-size slots in shared memory.

    Each record is exactly ``slot_size`` bytes (a numpy structured dtype of that itemsize
    fits: see ``claim_array``). One process (or thread) sends, one receives; each side
    registers on first use and a second live producer or consumer is refused.

    >>> with SpscRing.create(slot_size=8, capacity=4, anonymous=True) as ring:
    ...     ring.send(b"instr-01")
    ...     n = ring.send_many(b"instr-02instr-03")
    ...     view = ring.claim(1)
    ...     view[:] = b"instr-04"
    ...     ring.publish()
    ...     first = ring.recv(timeout=0)
    ...     out = bytearray(3 * 8)
    ...     got = ring.recv_into(out)
    ...     (first, got, bytes(out[:8]), len(ring))
    (b'instr-01', 3, b'instr-02', 0)
    """

    _KIND = _shm.KIND_SPSC

    def __init__(self, m: _shm.Mapping, *, wait: WaitMode | None, spin_s: float,
                 portable: bool = False) -> None:
        super().__init__(m, wait=wait, spin_s=spin_s, portable=portable)
        self._slot = self.slot_size
        self._sl = _slices(self._base, self._slot, self._cap)
        self._mm: Any = m.mm
        self._mv: Any = memoryview(m.mm)
        self._fenced = self.blocking
        self._claim_view: memoryview | None = None
        self._claimed = 0
        self._claim_limit = -1
        self._peek_view: memoryview | None = None
        self._peeked = 0
        self._sync_local()

    def _sync_local(self) -> None:
        q = self._q
        self._tail = int(q[W_TAIL])
        self._head = int(q[W_HEAD])
        self._limit = -1          # producer: next send takes the slow path (registers)
        self._avail = -1          # consumer: next recv refreshes through _cix
        self._cix: Any = _Pending(self)
        self._registered_tx = False
        self._claim_limit = -1

    @classmethod
    def create(cls, *, slot_size: int, capacity: int = 1024, name: str | None = None,
               anonymous: bool = False, blocking: bool = True, wait: WaitMode | None = None,
               spin_s: float = 50e-6, unlink_on_close: bool = True) -> SpscRing:
        """Create a ring of ``capacity`` slots of ``slot_size`` bytes.

        Args:
            slot_size: bytes per record (every record is exactly this long).
            capacity: slots, a power of two.
            name: the /dev/shm name (default: a random ``qpuos-ring-...``).
            anonymous: back the ring with a memfd instead; its ``name`` is then
                ``/proc/PID/fd/N``, valid while this process runs.
            blocking: allow sleepers (``wait="block"``); costs one numba call
                (~0.2 µs) per publish so that no wake-up is lost. False for the lowest
                latency when both sides spin or yield.
            wait: how this side waits: "spin", "yield" or "block" (default "block" if
                blocking else "yield").
            spin_s: busy-spin before yielding or sleeping.
            unlink_on_close: the creator removes the name on close (default).

        Raises:
            UsageError: bad sizes, or the name exists.
        """
        if slot_size < 1:
            raise UsageError(f"slot_size={slot_size} must be at least 1 byte")
        check_capacity(capacity)
        m = cls._create_mapping(slot_size * capacity, slot=slot_size, capacity=capacity,
                                stride=slot_size, name=name, anonymous=anonymous,
                                blocking=blocking, wait=wait)
        ring: SpscRing = cls._open(m, wait=wait, spin_s=spin_s)
        ring.unlink_on_close = unlink_on_close
        return ring

    @classmethod
    def attach(cls, name: str, *, wait: WaitMode | None = None, spin_s: float = 50e-6
               ) -> SpscRing:
        """Open an existing ring by ``name`` (from the creator's ``ring.name``).

        Raises:
            RingError: no such ring.
            RingCorrupted: the file is not a ring of this kind and layout.
        """
        ring: SpscRing = cls._open(_shm.attach_mapping(name), wait=wait, spin_s=spin_s)
        return ring

    # -- producer -------------------------------------------------------------------

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Copy one record (exactly ``slot_size`` bytes) in and publish it.

        Args:
            data: the record.
            timeout: None waits for room as long as it takes, 0 never waits.

        Raises:
            RingFull: no room and ``timeout == 0``.
            RingTimeout: still no room after ``timeout`` seconds.
            PeerDied: the consumer is gone and the ring is full.
        """
        # HOT PATH: a cached limit, one slice copy, one 8-byte store. Keep it short.
        t = self._tail
        if t >= self._limit:
            t = self._room(1, timeout)
        try:
            self._mm[self._sl[t & self._mask]] = data
        except (IndexError, TypeError, ValueError):
            raise self._bad_record(data) from None
        t += 1
        self._tail = t
        self._ix[W_TAIL] = t   # publish: one aligned 8-byte store (see ring.py)

    def send_many(self, data: Buffer, *, timeout: float | None = None) -> int:
        """Copy many records (a multiple of ``slot_size`` bytes) in, in few publishes.

        Returns:
            records sent: all of them, unless ``timeout`` ran out first (0: what fits).
        """
        src = byte_view(data)
        slot = self._slot
        if len(src) % slot:
            raise UsageError(f"send_many got {len(src)} bytes, not a multiple of "
                             f"slot_size={slot}")
        total = len(src) // slot
        done = 0
        deadline = self._deadline(timeout)
        while done < total:
            try:
                view = self._claim(total - done, deadline, timeout)
            except (RingFull, RingTimeout):
                break
            k = len(view) // slot
            view[:] = src[done * slot:(done + k) * slot]
            self.publish()
            done += k
        return done

    def claim(self, n: int = 1, *, timeout: float | None = None) -> memoryview:
        """Reserve up to ``n`` free slots; a writable view over k of them (1 <= k <= n).

        k is smaller than n when fewer are free or the ring's end comes first (a claim
        never wraps: claim again after ``publish``). Fill the view, then ``publish()``.
        The view must not be used after ``publish``.

        Raises:
            RingFull / RingTimeout / PeerDied: as ``send``.
            UsageError: a claim is already outstanding.
        """
        return self._claim(n, self._deadline(timeout), timeout)

    def claim_array(self, n: int, dtype: Any, *, timeout: float | None = None
                    ) -> np.ndarray[Any, Any]:
        """``claim`` as a numpy array of ``dtype`` (itemsize == slot_size), for bulk writes."""
        dt = np.dtype(dtype)
        if dt.itemsize != self._slot:
            raise UsageError(f"dtype itemsize {dt.itemsize} != slot_size {self._slot}")
        return np.frombuffer(self.claim(n, timeout=timeout), dtype=dt)

    def _claim(self, n: int, deadline: float | None, timeout: float | None) -> memoryview:
        if n < 1:
            raise UsageError(f"claim(n={n}): n must be at least 1")
        t = self._tail
        if t + n > self._limit:   # the cached limit may be stale: look again first
            if t < self._limit:
                self._limit = int(self._ix[W_HEAD]) + self._cap
            if t >= self._limit:
                t = self._room(1, timeout, deadline)
        idx = t & self._mask
        k = min(n, self._limit - t, self._cap - idx)
        off = self._base + idx * self._slot
        view: memoryview = self._mv[off:off + k * self._slot]
        self._claim_view = view
        self._claimed = k
        self._claim_limit = self._limit
        self._limit = -1          # until publish: send() goes to the slow path and refuses
        return view

    def publish(self, n: int | None = None) -> None:
        """Publish the first ``n`` claimed slots (default: all of them)."""
        if self._closed:
            raise self._closed_error()
        k = self._claimed
        if n is None:
            if not k:
                return  # nothing claimed: nothing to do
            n = k
        if not 0 <= n <= k:
            raise UsageError(f"publish(n={n}) but {k} slot(s) are claimed")
        view = self._claim_view
        self._claim_view = None
        self._claimed = 0
        if view is not None:
            drop_view(view)
        if n:
            t = self._tail + n
            self._tail = t
            if self._fenced:
                if publish_tail(self._w, n):
                    self._wake_data()
            else:
                self._ix[W_TAIL] = t
        self._limit = self._claim_limit

    def _room(self, n: int, timeout: float | None, deadline: float | None = None) -> int:
        """Slow path of the producer: closed, registration, claim outstanding, full.

        Returns the tail to write at, with ``self._limit`` refreshed.
        """
        if self._closed:
            raise self._closed_error()
        if self._claimed:
            raise UsageError("publish() the claimed slots before sending or claiming again")
        if not self._registered_tx:
            self._tail = self._register_producer()
        ix, t, cap = self._ix, self._tail, self._cap

        def ready() -> bool:
            self._limit = int(ix[W_HEAD]) + cap
            return self._limit - t >= n

        if ready():
            return t
        if timeout == 0:
            raise RingFull(f"{self.name!r} is full ({cap} slots); the consumer is behind")
        for _ in range(self._fast_spin):
            if ready():
                return t

        def stall() -> bool:
            if ready():
                return True
            self._check_peer(CONSUMER, "consumer")
            return False

        if deadline is None:
            deadline = self._deadline(timeout)
        if not self._tx_wait.wait(ready, deadline, stall):
            raise RingTimeout(f"no room in {self.name!r} within {timeout} s; the consumer "
                              "is not keeping up (or is stuck)")
        return t

    def _bad_record(self, data: Any) -> UsageError:
        try:
            size: object = len(memoryview(data).cast("B"))
        except TypeError:
            size = f"a {type(data).__name__}, not bytes-like"
        return UsageError(f"a record of {self.name!r} is exactly {self._slot} bytes; got "
                          f"{size}")

    # -- consumer -------------------------------------------------------------------

    def recv(self, *, timeout: float | None = None) -> bytes:
        """Take the next record, copied out as bytes.

        Raises:
            RingEmpty: nothing to read and ``timeout == 0``.
            RingTimeout: nothing arrived within ``timeout`` seconds.
            PeerDied: the producer is gone and the ring is empty.
        """
        # HOT PATH: a cached tail (refreshed by one 8-byte load), one slice copy, one store.
        h = self._head
        if h >= self._avail:
            self._avail = self._cix[W_TAIL]
            if h >= self._avail:
                self._data(timeout)
        data: bytes = self._mm[self._sl[h & self._mask]]
        h += 1
        self._head = h
        self._ix[W_HEAD] = h   # free the slot: one aligned 8-byte store
        return data

    def recv_into(self, out: Buffer, *, timeout: float | None = None) -> int:
        """Copy up to ``len(out) // slot_size`` records into ``out``; returns how many.

        Waits (per ``timeout``) for at least one record, then takes what is there.
        """
        dst = byte_view(out)
        want = len(dst) // self._slot
        if want < 1:
            raise UsageError(f"recv_into needs room for one record ({self._slot} bytes); "
                             f"got {len(dst)}")
        got = 0
        while got < want:
            try:  # the first peek waits (or raises RingEmpty), later ones take what is there
                view = self.peek(want - got, timeout=timeout if got == 0 else 0)
            except RingEmpty:
                if not got:
                    raise
                break
            k = len(view) // self._slot
            dst[got * self._slot:(got + k) * self._slot] = view
            self.release()
            got += k
        return got

    def peek(self, n: int = 1, *, timeout: float | None = None) -> memoryview:
        """A read-only view over up to ``n`` records (1 <= k <= n, never wrapping).

        The records stay in the ring until ``release()``; the view is invalid after it.
        """
        if n < 1:
            raise UsageError(f"peek(n={n}): n must be at least 1")
        h = self._head
        if h + n > self._avail:   # the cached tail may be stale: look again first
            self._avail = self._cix[W_TAIL]
            if h >= self._avail:
                self._data(timeout)
        idx = h & self._mask
        k = min(n, self._avail - h, self._cap - idx)
        off = self._base + idx * self._slot
        view: memoryview = self._mv[off:off + k * self._slot].toreadonly()
        self._peek_view = view
        self._peeked = k
        self._cix = _Busy()
        self._avail = -1
        return view

    def peek_array(self, n: int, dtype: Any, *, timeout: float | None = None
                   ) -> np.ndarray[Any, Any]:
        """``peek`` as a read-only numpy array of ``dtype`` (itemsize == slot_size)."""
        dt = np.dtype(dtype)
        if dt.itemsize != self._slot:
            raise UsageError(f"dtype itemsize {dt.itemsize} != slot_size {self._slot}")
        return np.frombuffer(self.peek(n, timeout=timeout), dtype=dt)

    def release(self, n: int | None = None) -> None:
        """Free the first ``n`` peeked records (default: all of them)."""
        if self._closed:
            raise self._closed_error()
        k = self._peeked
        if n is None:
            n = k
        if not 0 <= n <= k or not isinstance(self._cix, _Busy):
            raise UsageError(f"release(n={n}) but {k} record(s) are peeked")
        view = self._peek_view
        self._peek_view = None
        self._peeked = 0
        if view is not None:
            drop_view(view)
        self._cix = self._ix
        if n:
            h = self._head + n
            self._head = h
            if self._fenced:
                if publish_head(self._w, n):
                    self._wake_space()
            else:
                self._ix[W_HEAD] = h

    def _drop_leases(self) -> None:
        for v in (self._claim_view, self._peek_view):
            if v is not None:
                drop_view(v)
        self._claim_view = self._peek_view = None
        self._claimed = self._peeked = 0


_TABLE_MAX = 4096   # slots: up to here a list of slices (~120 bytes each) is cheap


class _SliceOf:
    """Slot ``i``'s byte range, computed (rings too large for a table)."""

    __slots__ = ("_base", "_slot")

    def __init__(self, base: int, slot: int) -> None:
        self._base, self._slot = base, slot

    def __getitem__(self, i: int) -> slice:
        off = self._base + i * self._slot
        return slice(off, off + self._slot)


def _slices(base: int, slot: int, cap: int) -> Any:
    """Slot index -> slice of the mapping. A precomputed slice saves the hot path an add,
    a multiply and three attribute loads (~30 ns a call, measured)."""
    if cap > _TABLE_MAX:
        return _SliceOf(base, slot)
    return [slice(base + i * slot, base + (i + 1) * slot) for i in range(cap)]


class _FencedSpscRing(SpscRing):
    """SpscRing of a ``blocking=True`` ring: publication through a locked add, so a
    sleeping peer is never missed (``_wait.py``). Chosen by ``create``/``attach``."""

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        t = self._tail
        if t >= self._limit:
            t = self._room(1, timeout)
        try:
            self._mm[self._sl[t & self._mask]] = data
        except (IndexError, TypeError, ValueError):
            raise self._bad_record(data) from None
        self._tail = t + 1
        if publish_tail(self._w, 1):
            self._wake_data()

    def recv(self, *, timeout: float | None = None) -> bytes:
        h = self._head
        if h >= self._avail:
            self._avail = self._cix[W_TAIL]
            if h >= self._avail:
                self._data(timeout)
        data: bytes = self._mm[self._sl[h & self._mask]]
        self._head = h + 1
        if publish_head(self._w, 1):
            self._wake_space()
        return data

    send.__doc__ = SpscRing.send.__doc__
    recv.__doc__ = SpscRing.recv.__doc__


SpscRing._FENCED = _FencedSpscRing

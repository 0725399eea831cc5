"""What the two SPSC rings share: roles, first use, the consumer's wait, reset, fork.

``SpscRing`` (fixed slots) and ``RecordRing`` (variable records) differ in their data
layout and hot paths only. Both keep the producer's limit (``head + capacity``) and the
consumer's available tail cached in the object, and send their first operation, a
closed ring and a pending claim or peek through the slow path by setting those caches to
-1 (and the consumer's index accessor to a stand-in), so the hot paths test nothing else.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qpuos.errors import RingEmpty, RingTimeout, UsageError
from qpuos.ipc import _shm
from qpuos.ipc._base import RingBase, _Closed, _word_alive, identity_word, peer_pid
from qpuos.ipc._shm import W_DATA_WAITERS, W_HEAD, W_PEERS, W_SPACE_WAITERS, W_TAIL
from qpuos.kernel.proc import self_identity

__all__ = ["CONSUMER", "PRODUCER", "SpscBase", "byte_view", "check_capacity"]

PRODUCER, CONSUMER = 0, 1


def check_capacity(capacity: int, what: str = "slots") -> None:
    """Capacities are powers of two (index & mask); say so with the nearest ones."""
    if capacity < 2 or capacity & (capacity - 1) or capacity > 1 << 32:
        lo = 1 << max(1, capacity.bit_length() - 1)
        raise UsageError(f"capacity={capacity} {what} is not a power of two in 2..2**32; "
                         f"use {lo} or {lo * 2}")


class _Pending:
    """The consumer's index accessor before its first use: registers, then steps aside."""

    __slots__ = ("_ring",)

    def __init__(self, ring: SpscBase) -> None:
        self._ring = ring

    def __getitem__(self, i: int) -> int:
        r = self._ring
        if r._closed:
            raise r._closed_error()
        r._register(CONSUMER, "consumer", exclusive=True)
        r._cix = r._ix
        return int(r._ix[i])


class _Busy:
    """The consumer's index accessor while a peek is outstanding."""

    __slots__ = ()

    def __getitem__(self, i: int) -> int:
        raise UsageError("release() the records from peek() before recv() or peek() again")


class SpscBase(RingBase):
    """What the two SPSC rings share: roles, the consumer's wait, reset, fork, close."""

    _FENCED: ClassVar[type[SpscBase] | None] = None   # the blocking=True variant
    _head: int
    _avail: int
    _limit: int
    _cix: Any
    _registered_tx: bool

    @classmethod
    def _open(cls, m: _shm.Mapping, **kwargs: Any) -> Any:
        """Build the ring object for mapping ``m``: the fenced variant if it is blocking."""
        kind = cls
        if m.mm[_shm.W_FLAGS * 8] & _shm.FLAG_BLOCKING and cls._FENCED is not None:
            kind = cls._FENCED
        return kind._construct(m, **kwargs)

    def _data(self, timeout: float | None) -> None:
        """Slow path of the consumer: wait until the tail passes our head."""
        ix, h = self._ix, self._head
        if timeout == 0:
            raise RingEmpty(f"{self.name!r} is empty")
        for _ in range(self._fast_spin):  # a hot producer: stay on the fast path's heels
            a = ix[W_TAIL]
            if a > h:
                self._avail = a
                return

        def ready() -> bool:
            a = int(ix[W_TAIL])
            if a > h:
                self._avail = a
                return True
            return False

        def stall() -> bool:
            if ready():
                return True
            self._check_peer(PRODUCER, "producer")
            return False

        if not self._rx_wait.wait(ready, self._deadline(timeout), stall):
            raise RingTimeout(f"nothing arrived on {self.name!r} within {timeout} s")

    def _register_producer(self) -> int:
        """First producer operation of this process: register, return the shared tail."""
        self._register(PRODUCER, "producer", exclusive=True)
        self._registered_tx = True
        return int(self._q[W_TAIL])

    def _sync_local(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Drop every record and start both indices at 0 (no live peer may be attached).

        Use it after a peer died (``PeerDied``) to start clean; a new peer may also just
        attach and carry on from where the indices are.

        Raises:
            UsageError: the other side is alive and attached.
        """
        if self._closed:
            raise self._closed_error()
        me = identity_word(*self_identity())
        for entry, role in ((PRODUCER, "producer"), (CONSUMER, "consumer")):
            word = self._peer_word(entry)
            if word != me and _word_alive(word):
                raise UsageError(f"cannot reset {self.name!r}: its {role} (pid "
                                 f"{peer_pid(word)}) is alive; reset only a ring whose "
                                 "peer died or closed")
        q = self._q
        for i in (W_TAIL, W_HEAD, W_DATA_WAITERS, W_SPACE_WAITERS):
            q[i] = 0
        for entry in (PRODUCER, CONSUMER):
            if self._peer_word(entry) != me:
                q[W_PEERS + entry] = 0
        self._drop_leases()
        self._sync_local()

    def _drop_leases(self) -> None:
        """Forget outstanding claims and peeks (reset, close)."""

    def _on_close(self, closed: _Closed) -> None:
        self._drop_leases()
        super()._on_close(closed)
        self._limit = -1
        self._avail = -1
        self._cix = closed

    def _forked(self) -> None:
        if not self._closed:
            self._limit = -1
            self._avail = -1
            self._cix = _Pending(self)
            self._registered_tx = False


def byte_view(data: Any) -> memoryview:
    try:
        return memoryview(data).cast("B")
    except TypeError as exc:
        raise UsageError(f"expected a contiguous bytes-like object, got "
                         f"{type(data).__name__}: {exc}") from None

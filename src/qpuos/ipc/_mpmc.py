"""MpmcRing: many producers, many consumers, fixed-size slots. Design in ring.py.

Slot ``i`` is ``[seq word][flags word][payload, padded to 8]`` at a fixed stride; the
sequence word protocol is in ``_ring_kernels.py``. Claims name their holder's pid, so a
holder that dies leaves a claim that others can prove dead and repair:

- a writer died after claiming and before publishing: the record never existed. A
  process that finds the claim (a consumer stuck at it, or anyone in ``recover()``)
  steals it with a CAS, marks the slot a tombstone and publishes it; consumers free
  tombstones without returning them.
- a reader died after claiming a record: the record is lost with it (at-most-once for a
  crashed consumer), and the slot is freed for the next lap.

Never a torn record: a record is readable only after its writer's CAS to ``pos + 1``,
which comes after the whole payload.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from qpuos.errors import (
    PeerDied,
    QpuosInternalError,
    RingEmpty,
    RingError,
    RingFull,
    RingTimeout,
    UsageError,
)
from qpuos.ipc import _shm
from qpuos.ipc._base import RingBase, _word_alive, drop_view, identity_word, peer_pid, signed
from qpuos.ipc._ring_kernels import (
    BUSY,
    CLAIMED,
    LAP_MASK,
    PID_MASK,
    PID_SHIFT,
    READING,
    RETRY,
    TOMBSTONE,
    mpmc_claim_read,
    mpmc_claim_write,
    mpmc_consume_many,
    mpmc_finish,
    mpmc_produce_many,
)
from qpuos.ipc._shm import (
    HEADER_BYTES,
    PEER_ENTRIES,
    W_DATA_WAITERS,
    W_HEAD,
    W_PEERS,
    W_RECOVERED,
    W_SPACE_WAITERS,
    W_TAIL,
)
from qpuos.ipc._spsc_base import byte_view, check_capacity
from qpuos.ipc._wait import WaitMode
from qpuos.kernel.atomics import cas, fetch_add
from qpuos.kernel.proc import is_alive, self_identity

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["MpmcRing"]

_CLAIMED, _READING, _LAP = int(CLAIMED), int(READING), int(LAP_MASK)


class MpmcRing(RingBase):
    """Bounded multi-producer multi-consumer ring of fixed-size slots (Vyukov-style).

    Order: each consumer sees each producer's records in the order they were sent.

    >>> with MpmcRing.create(slot_size=4, capacity=8, anonymous=True) as ring:
    ...     ring.send(b"job1")
    ...     n = ring.send_many(b"job2job3")
    ...     out = bytearray(8)
    ...     (ring.recv(timeout=0), ring.recv_into(out), bytes(out))
    (b'job1', 2, b'job2job3')
    """

    _KIND = _shm.KIND_MPMC
    _SINGLE = False

    def __init__(self, m: _shm.Mapping, *, wait: WaitMode | None, spin_s: float,
                 portable: bool = False) -> None:
        super().__init__(m, wait=wait, spin_s=spin_s, portable=portable)
        self._mm: Any = m.mm
        self._mv: Any = memoryview(m.mm)
        self._b = np.frombuffer(m.mm, dtype=np.uint8)
        self._slot = self.slot_size
        self._bw = HEADER_BYTES // 8
        self._sw = self._stride // 8
        self._lease: tuple[int, memoryview, bool] | None = None  # (pos, view, reading)
        self._join()

    def _join(self) -> None:
        pid, _ = self_identity()
        # kept as numba's int64 sees them (bit 63 set: negative), see signed()
        self._tag_w = signed(_CLAIMED | (pid << PID_SHIFT))
        self._tag_r = signed(_CLAIMED | _READING | (pid << PID_SHIFT))
        me = identity_word(*self_identity())
        w = self._w
        for i in range(W_PEERS, W_PEERS + PEER_ENTRIES):
            cur = int(w[i])
            if cur == me or (not _word_alive(cur) and int(cas(w, i, signed(cur), me)) == cur):
                self._hold(i - W_PEERS)
                return
        raise RingError(f"{self.name!r} already has {PEER_ENTRIES} live participants; "
                        "close some before attaching more")

    @classmethod
    def create(cls, *, slot_size: int, capacity: int = 1024, name: str | None = None,
               anonymous: bool = False, blocking: bool = True, wait: WaitMode | None = None,
               spin_s: float = 50e-6, unlink_on_close: bool = True) -> MpmcRing:
        """Create a ring of ``capacity`` slots of ``slot_size`` bytes (see SpscRing.create).

        Publication is a CAS (a full fence) here anyway, so ``blocking`` costs nothing
        extra per message; it only creates the doorbells.
        """
        if slot_size < 1:
            raise UsageError(f"slot_size={slot_size} must be at least 1 byte")
        check_capacity(capacity)
        stride = 16 + ((slot_size + 7) & -8)
        m = cls._create_mapping(capacity * stride, slot=slot_size, capacity=capacity,
                                stride=stride, name=name, anonymous=anonymous,
                                blocking=blocking, wait=wait,
                                prepare=lambda mm: _init_slots(mm, capacity, stride))
        ring: MpmcRing = cls._construct(m, wait=wait, spin_s=spin_s)
        ring.unlink_on_close = unlink_on_close
        return ring

    @classmethod
    def attach(cls, name: str, *, wait: WaitMode | None = None, spin_s: float = 50e-6
               ) -> MpmcRing:
        """Open an existing ring by name and join its participants."""
        ring: MpmcRing = cls._construct(_shm.attach_mapping(name), wait=wait, spin_s=spin_s)
        return ring

    @property
    def recovered(self) -> int:
        """Slots repaired after a participant died holding them (since creation)."""
        return int(self._q[W_RECOVERED])

    # -- producer -------------------------------------------------------------------

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Copy one record (exactly ``slot_size`` bytes) in and publish it.

        Raises:
            RingFull / RingTimeout: no room (``timeout`` 0 / ran out).
            PeerDied: full, and every other participant is gone.
        """
        if self._closed or self._lease is not None:
            self._refuse()
        # HOT PATH: one kernel call claims, a slice copy, one kernel call publishes.
        pos = mpmc_claim_write(self._w, self._tag_w)
        if pos < 0:
            pos = self._claim_slow(False, timeout)
        off = (self._bw + (pos & self._mask) * self._sw + 2) << 3
        try:
            self._mm[off:off + self._slot] = data
        except (IndexError, TypeError, ValueError):
            self._q[(off >> 3) - 1] = int(TOMBSTONE)
            self._finish(pos, False)
            raise UsageError(f"a record of {self.name!r} is exactly {self._slot} bytes; "
                             f"got {_describe(data)}") from None
        sleepers = mpmc_finish(self._w, pos, self._tag_w, False)
        if sleepers:
            self._finished(sleepers, pos, False)

    def send_many(self, data: Buffer, *, timeout: float | None = None) -> int:
        """Copy many records (a multiple of ``slot_size`` bytes) in; one kernel call per
        run of free slots. Returns records sent (all unless ``timeout`` ran out)."""
        if self._closed or self._lease is not None:
            self._refuse()
        src = np.frombuffer(byte_view(data), dtype=np.uint8)
        if len(src) % self._slot:
            raise UsageError(f"send_many got {len(src)} bytes, not a multiple of "
                             f"slot_size={self._slot}")
        total = len(src) // self._slot
        done = 0
        deadline = self._deadline(timeout)
        while True:
            sent: int
            sleepers: int
            sent, sleepers = mpmc_produce_many(self._w, self._b, self._tag_w,
                                               src[done * self._slot:], total - done,
                                               self._slot)
            done += sent
            if sleepers:
                self._wake_data()
            if done == total or timeout == 0:
                return done
            try:  # full: wait for one slot the ordinary way, then carry on in bulk
                pos = self._claim_slow(False, None if deadline is None else
                                       max(0.0, deadline - _now()))
            except (RingFull, RingTimeout):
                return done
            off = (self._bw + (pos & self._mask) * self._sw + 2) << 3
            self._mv[off:off + self._slot] = src[done * self._slot:(done + 1) * self._slot]
            self._finish(pos, False)
            done += 1

    def claim(self, *, timeout: float | None = None) -> memoryview:
        """Reserve one slot; a writable view of it. Fill it, then ``publish()``."""
        if self._closed or self._lease is not None:
            self._refuse()
        pos = mpmc_claim_write(self._w, self._tag_w)
        if pos < 0:
            pos = self._claim_slow(False, timeout)
        off = (self._bw + (pos & self._mask) * self._sw + 2) << 3
        view: memoryview = self._mv[off:off + self._slot]
        self._lease = (pos, view, False)
        return view

    def publish(self) -> None:
        """Publish the claimed slot."""
        self._finish(self._take_lease(False, "publish", "claim"), False)

    # -- consumer -------------------------------------------------------------------

    def recv(self, *, timeout: float | None = None) -> bytes:
        """Take one record, copied out as bytes.

        Raises:
            RingEmpty / RingTimeout: nothing to read (``timeout`` 0 / ran out).
            PeerDied: empty, and every other participant is gone.
        """
        if self._closed or self._lease is not None:
            self._refuse()
        while True:
            # HOT PATH: claim kernel, slice copy, release kernel.
            pos = mpmc_claim_read(self._w, self._tag_r)
            if pos < 0:
                pos = self._claim_slow(True, timeout)
            sw = self._bw + (pos & self._mask) * self._sw
            off = (sw + 2) << 3
            tomb = self._q[sw + 1]
            data: bytes = self._mm[off:off + self._slot]
            sleepers = mpmc_finish(self._w, pos, self._tag_r, True)
            if sleepers:
                self._finished(sleepers, pos, True)
            if not tomb:
                return data

    def recv_into(self, out: Buffer, *, timeout: float | None = None) -> int:
        """Copy up to ``len(out) // slot_size`` records into ``out``; returns how many.

        Waits (per ``timeout``) for the first record, then takes what is there.
        """
        if self._closed or self._lease is not None:
            self._refuse()
        dst = np.frombuffer(byte_view(out), dtype=np.uint8)
        want = len(dst) // self._slot
        if want < 1:
            raise UsageError(f"recv_into needs room for one record ({self._slot} bytes); "
                             f"got {len(dst)}")
        got = 0
        while True:
            n: int
            sleepers: int
            n, sleepers, _ = mpmc_consume_many(self._w, self._b, self._tag_r,
                                               dst[got * self._slot:], want - got,
                                               self._slot)
            got += n
            if sleepers:
                self._wake_space()
            if got:
                return got
            pos = self._claim_slow(True, timeout)  # wait for the first record
            sw = self._bw + (pos & self._mask) * self._sw
            off = (sw + 2) << 3
            tomb = self._q[sw + 1]
            if not tomb:
                dst[:self._slot] = self._b[off:off + self._slot]
                got = 1
            self._finish(pos, True)

    def peek(self, *, timeout: float | None = None) -> memoryview:
        """Claim the next record and return a read-only view of it; ``release()`` frees it."""
        if self._closed or self._lease is not None:
            self._refuse()
        while True:
            pos = mpmc_claim_read(self._w, self._tag_r)
            if pos < 0:
                pos = self._claim_slow(True, timeout)
            sw = self._bw + (pos & self._mask) * self._sw
            if self._q[sw + 1]:
                self._finish(pos, True)
                continue
            off = (sw + 2) << 3
            view: memoryview = self._mv[off:off + self._slot].toreadonly()
            self._lease = (pos, view, True)
            return view

    def release(self) -> None:
        """Free the peeked record."""
        self._finish(self._take_lease(True, "release", "peek"), True)

    # -- slow paths -----------------------------------------------------------------

    def _finish(self, pos: int, reading: bool) -> None:
        """Publish (writer) or free (reader) the claimed slot of ``pos``; wake sleepers."""
        sleepers = mpmc_finish(self._w, pos, self._tag_r if reading else self._tag_w,
                               reading)
        if sleepers:
            self._finished(sleepers, pos, reading)

    def _finished(self, sleepers: int, pos: int, reading: bool) -> None:
        """After a finish that found sleepers to wake, or found its claim gone (a bug)."""
        if sleepers < 0:
            raise QpuosInternalError(
                f"the slot of position {pos} in {self.name!r} is no longer held by this "
                "process: a live claim was taken over; this is a bug")
        if reading:
            self._wake_space()
        else:
            self._wake_data()

    def _take_lease(self, reading: bool, verb: str, noun: str) -> int:
        if self._closed:
            raise self._closed_error()
        lease = self._lease
        if lease is None or lease[2] != reading:
            raise UsageError(f"{verb}() without a {noun}() outstanding")
        self._lease = None
        drop_view(lease[1])
        return lease[0]

    def _refuse(self) -> None:
        if self._closed:
            raise self._closed_error()
        verb = "release" if self._lease is not None and self._lease[2] else "publish"
        raise UsageError(f"{verb}() the outstanding slot first")

    def _claim_slow(self, reading: bool, timeout: float | None) -> int:
        """Wait until a claim succeeds; repairs slots of dead participants meanwhile."""
        kernel = mpmc_claim_read if reading else mpmc_claim_write
        tag = self._tag_r if reading else self._tag_w
        w = self._w
        got = [-1]

        def ready() -> bool:
            pos = kernel(w, tag)
            while pos == RETRY:
                pos = kernel(w, tag)
            got[0] = pos
            return bool(pos >= 0)

        if ready():
            return got[0]
        if timeout == 0:
            if got[0] == BUSY:   # a record is being written: maybe by the dead
                self.recover()
                if ready():
                    return got[0]
            if reading:
                raise RingEmpty(f"{self.name!r} is empty")
            raise RingFull(f"{self.name!r} is full ({self._cap} slots); consumers are "
                           "behind")

        def stall() -> bool:
            self.recover()
            if ready():
                return True
            if not self._others_alive():
                raise PeerDied(f"every other participant of {self.name!r} has exited or "
                               f"closed, and the ring is {'empty' if reading else 'full'}")
            return False

        waiter = self._rx_wait if reading else self._tx_wait
        if not waiter.wait(ready, self._deadline(timeout), stall):
            if reading:
                raise RingTimeout(f"nothing arrived on {self.name!r} within {timeout} s")
            raise RingTimeout(f"no room in {self.name!r} within {timeout} s; the consumers "
                              "are not keeping up (or are stuck)")
        return got[0]

    def _others_alive(self) -> bool:
        me = identity_word(*self_identity())
        seen = False
        for i in range(W_PEERS, W_PEERS + PEER_ENTRIES):
            word = int(self._w[i])
            if word and word != me:
                seen = True
                if _word_alive(word):
                    return True
        return not seen  # nobody else ever joined: keep waiting for them

    def _claimer_alive(self, pid: int) -> bool:
        for i in range(W_PEERS, W_PEERS + PEER_ENTRIES):
            word = int(self._w[i])
            if word and peer_pid(word) == pid and not word >> 63:
                return _word_alive(word)
        return is_alive(pid)

    def recover(self) -> int:
        """Repair the slots at the head and the tail if a dead process holds them.

        Runs by itself whenever a send or receive waits; call it to repair without
        waiting. Returns the number of slots repaired.
        """
        if self._closed:
            raise self._closed_error()
        fixed = 0
        for index in (W_HEAD, W_TAIL):
            pos = int(self._q[index])
            for p in (pos, pos - self._cap):   # this lap, or the previous one still held
                if p >= 0:
                    fixed += self._recover_slot(p)
        return fixed

    def _recover_slot(self, pos: int) -> int:
        sw = self._bw + (pos & self._mask) * self._sw
        s = int(self._q[sw])
        if not s & _CLAIMED or (s & _LAP) != (pos & _LAP):
            return 0
        pid = (s >> PID_SHIFT) & PID_MASK
        if pid == os.getpid() or self._claimer_alive(pid):
            return 0
        w = self._w
        if s & _READING:   # the reader died with record pos: free the slot
            if int(cas(w, sw, signed(s), pos + self._cap)) != s:
                return 0
            self._wake_space()
        else:              # the writer died before publishing pos: publish a tombstone
            if int(cas(w, sw, signed(s), self._tag_w | (pos & _LAP))) != s:
                return 0
            self._q[sw + 1] = int(TOMBSTONE)
            self._finish(pos, False)
        fetch_add(w, W_RECOVERED, 1)
        return 1

    # -- administration -------------------------------------------------------------

    def reset(self) -> None:
        """Drop every record and start again (no other live participant may be attached).

        Raises:
            UsageError: another participant is alive.
        """
        if self._closed:
            raise self._closed_error()
        me = identity_word(*self_identity())
        for i in range(W_PEERS, W_PEERS + PEER_ENTRIES):
            word = int(self._w[i])
            if word and word != me and _word_alive(word):
                raise UsageError(f"cannot reset {self.name!r}: participant pid "
                                 f"{peer_pid(word)} is alive; close it first")
        self._drop_leases()
        q = self._q
        for i in (W_TAIL, W_HEAD, W_DATA_WAITERS, W_SPACE_WAITERS):
            q[i] = 0
        for i in range(W_PEERS, W_PEERS + PEER_ENTRIES):
            if int(self._w[i]) != me:
                q[i] = 0
        _init_slots(self._mm, self._cap, self._stride)

    def _drop_leases(self) -> None:
        lease = self._lease
        if lease is None:
            return
        pos, view, reading = lease
        self._lease = None
        drop_view(view)
        if not reading:  # a half-written record must not be read: publish a tombstone
            self._q[self._bw + (pos & self._mask) * self._sw + 1] = int(TOMBSTONE)
        self._finish(pos, reading)

    def close(self) -> None:
        """Give back an outstanding claim or peek, then close (see ``RingBase.close``)."""
        if not self._closed:
            self._drop_leases()
        super().close()

    def _forked(self) -> None:
        if not self._closed:
            self._lease = None
            self._join()


def _init_slots(mm: Any, capacity: int, stride: int) -> None:
    seq = np.frombuffer(mm, dtype=np.uint64, offset=HEADER_BYTES,
                        count=capacity * stride // 8)
    seq[0::stride // 8] = np.arange(capacity, dtype=np.uint64)
    del seq


def _describe(data: Any) -> str:
    try:
        return str(len(memoryview(data).cast("B")))
    except TypeError:
        return f"a {type(data).__name__}, not bytes-like"


def _now() -> float:
    return time.perf_counter()


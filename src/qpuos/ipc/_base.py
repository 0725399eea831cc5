"""What every ring shares: the header, lifecycle (create, attach, close), peers, waiting.

Subclasses add the data layout and the hot paths. The hot paths read and write the
index words through ``self._ix``: on x86-64 the ``memoryview.cast("Q")`` of the mapping
itself (one ``mov`` per access, see TSO in ``_shm.py``), elsewhere an object that goes
through the numba acquire/release intrinsics. After ``close()`` every accessor the hot
paths touch is replaced by ``_Closed``, so a closed ring raises ``ClosedResourceError``
without a flag test on the hot path.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import math
import mmap
import os
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn, Self

import numpy as np

from qpuos.errors import ClosedResourceError, PeerDied, RingCorrupted, UsageError
from qpuos.ipc import _shm
from qpuos.ipc._ring_kernels import load, store
from qpuos.ipc._shm import (
    HEADER_BYTES,
    KIND_NAMES,
    MAGIC,
    TSO,
    VERSION,
    W_BELL_FDS,
    W_BELL_PID,
    W_CAPACITY,
    W_DATA_WAITERS,
    W_FLAGS,
    W_HEAD,
    W_LAYOUT,
    W_MAGIC,
    W_OWNER_PID,
    W_OWNER_START,
    W_PEERS,
    W_SLOT,
    W_SPACE_WAITERS,
    W_STRIDE,
    W_TAIL,
    Mapping,
)
from qpuos.ipc._wait import Waiter, WaitMode, ring_doorbell
from qpuos.kernel.atomics import cas, words
from qpuos.kernel.proc import is_alive, self_identity

__all__ = ["RingBase", "drop_view", "identity_word", "peer_pid", "signed"]

_CLOSED_BIT = 1 << 63
_PID_BITS = 22
_LIVE_RINGS: weakref.WeakSet[RingBase] = weakref.WeakSet()
# (file, peer entry) -> open ring objects of this process that registered in it: the
# entry is marked closed only when the last of them closes.
_HOLDERS: collections.Counter[tuple[tuple[int, int], int]] = collections.Counter()


def drop_view(view: memoryview | None) -> bool:
    """Release a view handed out by claim/peek, so a stale one cannot be written through.

    Returns False when a numpy array still refers to it: then it lives on until the
    caller drops the array (the memory stays mapped meanwhile).
    """
    if view is None:
        return True
    try:
        view.release()
    except BufferError:
        return False
    return True


def _close_map(mm: mmap.mmap) -> bool:
    """Unmap unless a caller still holds a view (then it goes with the last view)."""
    try:
        mm.close()
    except BufferError:
        return False
    return True


def signed(x: int) -> int:
    """A 64-bit word as numba's int64 takes it (bit 63 set: negative; same bits).

    >>> signed(1 << 63), signed(5)
    (-9223372036854775808, 5)
    """
    return x - (1 << 64) if x >= 1 << 63 else x


def identity_word(pid: int, start: int) -> int:
    """A peer entry: ``start << 22 | pid`` (bit 63 set once that peer has closed)."""
    return ((start & ((1 << 40) - 1)) << _PID_BITS) | pid


def peer_pid(word: int) -> int:
    """The pid in a peer entry."""
    return word & ((1 << _PID_BITS) - 1)


def _word_alive(word: int) -> bool:
    if word == 0 or word & _CLOSED_BIT:
        return False
    return is_alive(peer_pid(word), (word >> _PID_BITS) & ((1 << 40) - 1))


class _Closed:
    """Stands in for the mapping and its views once the ring is closed."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def _raise(self, *_: Any) -> NoReturn:
        raise ClosedResourceError(f"{self._what} is closed; attach it again to use it")

    __getitem__ = __setitem__ = __len__ = _raise


class _AcqRel:
    """Index words through acquire loads and release stores (machines that are not TSO)."""

    __slots__ = ("_w",)

    def __init__(self, w: np.ndarray[Any, Any]) -> None:
        self._w = w

    def __getitem__(self, i: int) -> int:
        return int(load(self._w, i))

    def __setitem__(self, i: int, v: int) -> None:
        store(self._w, i, v)


class RingBase:
    """Common part of SpscRing, RecordRing and MpmcRing (not public)."""

    _KIND: ClassVar[int]
    _SINGLE: ClassVar[bool] = True     # one sleeper per doorbell at most (SPSC)

    def __init__(self, m: Mapping, *, wait: WaitMode | None, spin_s: float,
                 portable: bool = False) -> None:
        self._m = m
        self._closed = False
        self._held: set[int] = set()   # peer entries this object registered in
        self._creator_pid = os.getpid() if m.owner else 0
        self.unlink_on_close = m.owner
        q = memoryview(m.mm).cast("Q")
        self._q: Any = q
        self._w = words(m.mm)
        hdr = [int(q[i]) for i in range(16)]
        kind = hdr[W_LAYOUT] & 0xFFFF
        problem = ""
        if hdr[W_MAGIC] != MAGIC or hdr[W_LAYOUT] >> 16 != VERSION:
            problem = (f"{m.path} is not a qpuos ring of layout version {VERSION} "
                       f"(magic {hdr[W_MAGIC]:#x}, layout {hdr[W_LAYOUT]:#x})")
        elif kind != self._KIND:
            problem = (f"{m.name} is a {KIND_NAMES.get(kind, f'kind {kind}')}; open it "
                       f"with that class, not {self._public}")
        elif (hdr[W_CAPACITY] < 2 or hdr[W_CAPACITY] & (hdr[W_CAPACITY] - 1)
              or HEADER_BYTES + hdr[W_CAPACITY] * max(1, hdr[W_STRIDE]) > len(m.mm)):
            problem = (f"{m.name}: header says {hdr[W_CAPACITY]} x {hdr[W_STRIDE]} bytes "
                       f"but the file has {len(m.mm)}; the ring is damaged")
        if problem:
            self._closed = True
            del self._w
            q.release()
            m.close_fds()
            m.mm.close()
            raise RingCorrupted(problem)
        self.slot_size = hdr[W_SLOT]
        self.capacity = hdr[W_CAPACITY]
        self._stride = hdr[W_STRIDE]
        self.blocking = bool(hdr[W_FLAGS] & _shm.FLAG_BLOCKING)
        self._cap = self.capacity
        self._mask = self.capacity - 1
        self._base = HEADER_BYTES
        # 1. index accessor: plain memoryview on TSO machines, intrinsics elsewhere
        self._portable = portable or not TSO
        self._ix: Any = _AcqRel(self._w) if self._portable else q
        if self.blocking and m.bells is None:
            _shm.open_bells(m, hdr[W_BELL_PID], hdr[W_BELL_FDS])
        if wait is None:
            wait = "block" if self.blocking else "yield"
        bells = m.bells
        self._rx_wait = Waiter(wait, spin_s=spin_s, w=self._w, waiters=W_DATA_WAITERS,
                               fd=bells[0] if bells else None, single=self._SINGLE)
        self._tx_wait = Waiter(wait, spin_s=spin_s, w=self._w, waiters=W_SPACE_WAITERS,
                               fd=bells[1] if bells else None, single=self._SINGLE)
        # plain polls before the Waiter's timed loop (~0.1 ms), unless told not to spin
        self._fast_spin = 2000 if spin_s > 0 else 0
        self._data_bell = bells[0] if bells else -1
        self._space_bell = bells[1] if bells else -1
        _LIVE_RINGS.add(self)

    # -- creation -------------------------------------------------------------------

    @classmethod
    def _construct(cls, m: Mapping, **kwargs: Any) -> Any:
        """``cls(m, **kwargs)``; if that fails, unmap (and, as creator, unlink) ``m``."""
        try:
            return cls(m, **kwargs)
        except BaseException:
            m.close_fds()
            _close_map(m.mm)
            if m.owner and not m.path.startswith("/proc/"):
                _shm.unlink_ring(m.name)
            raise

    @classmethod
    def _create_mapping(cls, data_bytes: int, *, slot: int, capacity: int, stride: int,
                        name: str | None, anonymous: bool, blocking: bool,
                        wait: WaitMode | None,
                        prepare: Callable[[mmap.mmap], None] | None = None) -> Mapping:
        """Create the file, write the header (``prepare`` fills the data area first), and
        only then make it visible under its name."""
        if wait not in (None, "spin", "yield", "block"):
            raise UsageError(f"wait={wait!r} is not a wait mode; use spin, yield or block")
        if wait == "block" and not blocking:
            raise UsageError("wait='block' needs blocking=True (sleepers need the fenced "
                             "publication); use wait='yield' or 'spin'")
        size = HEADER_BYTES + data_bytes
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        m = _shm.create_mapping(size, name=name, anonymous=anonymous, blocking=blocking)
        try:
            q = memoryview(m.mm).cast("Q")
            try:
                q[W_LAYOUT] = (VERSION << 16) | cls._KIND
                q[W_SLOT], q[W_CAPACITY], q[W_STRIDE] = slot, capacity, stride
                q[W_FLAGS] = _shm.FLAG_BLOCKING if blocking else 0
                q[W_OWNER_PID], q[W_OWNER_START] = self_identity()
                if m.bells is not None and anonymous:
                    q[W_BELL_PID] = os.getpid()
                    q[W_BELL_FDS] = m.bells[0] | (m.bells[1] << 32)
                if prepare is not None:
                    prepare(m.mm)
                q[W_MAGIC] = MAGIC   # last: the header is complete
            finally:
                q.release()
            m.publish()
        except BaseException:
            m.discard()
            m.close_fds()
            m.mm.close()
            raise
        return m

    # -- identity and lifecycle -----------------------------------------------------

    @property
    def _public(self) -> str:
        return KIND_NAMES[self._KIND]

    @property
    def name(self) -> str:
        """What ``attach`` takes: a /dev/shm name, or /proc/PID/fd/N for an anonymous ring."""
        return self._m.name

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    @property
    def owner(self) -> bool:
        """Whether this handle created the ring (and unlinks it on close)."""
        return self._m.owner and self._creator_pid == os.getpid()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} queued"
        return (f"<{self._public} {self.name!r} capacity={self.capacity} "
                f"slot_size={self.slot_size} {state}>")

    def __len__(self) -> int:
        """Records (SPSC/MPMC) or bytes (RecordRing) published and not yet released."""
        q = self._q
        return max(0, int(q[W_TAIL]) - int(q[W_HEAD]))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: modules may be gone
            self.close()

    def _closed_error(self) -> ClosedResourceError:
        return ClosedResourceError(f"{self._public} {self.name!r} is closed; "
                                   "attach it again to use it")

    def close(self) -> None:
        """Unmap the ring; the creator also unlinks its name. Idempotent.

        Views handed out by claim/peek keep their memory mapped until they are dropped.
        """
        if self._closed:
            return
        self._closed = True
        self._mark_closed()
        self._release_views()
        self._on_close(_Closed(f"{self._public} {self.name!r}"))
        m = self._m
        m.close_fds()
        _close_map(m.mm)
        if self.owner and self.unlink_on_close and not m.path.startswith("/proc/"):
            _shm.unlink_ring(m.name)
        _LIVE_RINGS.discard(self)

    def unlink(self) -> None:
        """Remove the ring's name now (peers keep their mappings; new attaches fail)."""
        if not self._m.path.startswith("/proc/"):
            _shm.unlink_ring(self._m.name)

    def _release_views(self) -> None:
        for attr in ("_w", "_b"):
            self.__dict__.pop(attr, None)
        for attr in ("_claim_view", "_q", "_mv"):
            v = self.__dict__.get(attr)
            if isinstance(v, memoryview):
                drop_view(v)

    def _on_close(self, closed: _Closed) -> None:
        """Replace every accessor the hot paths use with ``closed`` (subclasses extend)."""
        self._ix = self._q = self._mv = self._mm = closed

    def _hold(self, entry: int) -> None:
        """Count this object as a holder of this process's registration in ``entry``."""
        if entry not in self._held:
            self._held.add(entry)
            _HOLDERS[(self._m.ident, entry)] += 1

    def _mark_closed(self) -> None:
        """Mark this process's peer entries closed (when its last holder closes), so
        peers see it is gone."""
        me = identity_word(*self_identity())
        w = self._w
        for entry in self._held:
            key = (self._m.ident, entry)
            _HOLDERS[key] -= 1
            if _HOLDERS[key] > 0:
                continue
            del _HOLDERS[key]
            if int(w[W_PEERS + entry]) == me:
                cas(w, W_PEERS + entry, me, signed(me | _CLOSED_BIT))
        self._held.clear()

    # -- peers ----------------------------------------------------------------------

    def _register(self, entry: int, role: str, exclusive: bool) -> None:
        """Record this process in peer entry ``entry`` (SPSC: 0 producer, 1 consumer)."""
        me = identity_word(*self_identity())
        w = self._w
        i = W_PEERS + entry
        for _ in range(100):
            cur = int(w[i])
            if cur == me:
                self._hold(entry)
                return
            if exclusive and _word_alive(cur):
                raise UsageError(
                    f"{self._public} {self.name!r} already has a live {role} "
                    f"(pid {peer_pid(cur)}); an SPSC ring takes one {role} at a time: use "
                    "MpmcRing for several, or close the other one first")
            if int(cas(w, i, signed(cur), me)) == cur:
                self._hold(entry)
                return
        raise UsageError(f"could not register as {role} of {self.name!r}: contended")

    def _peer_word(self, entry: int) -> int:
        return int(self._w[W_PEERS + entry])

    def _check_peer(self, entry: int, role: str) -> None:
        """Raise PeerDied if the peer in ``entry`` registered and is gone."""
        word = self._peer_word(entry)
        if word == 0 or _word_alive(word):
            return
        how = "closed its end" if word & _CLOSED_BIT else "died"
        raise PeerDied(f"the {role} of {self.name!r} (pid {peer_pid(word)}) {how}; "
                       "drain what is left, then reset() or wait for a new "
                       f"{role} to attach")

    # -- waiting --------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float | None:
        if timeout is None:
            return None
        if timeout < 0 or math.isnan(timeout):
            raise UsageError(f"timeout={timeout} is not valid; give seconds >= 0 or None")
        return time.perf_counter() + timeout

    def _wake_data(self) -> None:
        if self._data_bell >= 0:
            ring_doorbell(self._data_bell)

    def _wake_space(self) -> None:
        if self._space_bell >= 0:
            ring_doorbell(self._space_bell)

    def _forked(self) -> None:
        """In a forked child: the next operation registers again (subclasses extend)."""


def _after_fork_in_child() -> None:
    # Registrations belong to the parent's pid: the child starts with none.
    _HOLDERS.clear()
    for ring in list(_LIVE_RINGS):
        ring._held.clear()
        ring._forked()


def _close_all_at_exit() -> None:
    # __del__ is not reliable at interpreter shutdown (module globals may already be
    # gone), and a creator that exits normally must not leave its name in /dev/shm.
    for ring in list(_LIVE_RINGS):
        with contextlib.suppress(Exception):
            ring.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)

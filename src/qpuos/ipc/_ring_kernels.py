"""numba kernels of the rings: fenced publication, the MPMC slot protocol, batch copies.

Arguments and results are numpy scalars inside numba and Python ints outside, so the
signatures say ``Any``; the callers in the ring classes are typed.

Everything here works on ``uint64`` word indices into the ring's mapping (``w``, from
``kernel.atomics.words``) and, for copies, the same mapping as ``uint8`` (``b``). All
arithmetic is on ``uint64`` (numba turns ``uint64 op int64`` into float64, so every
constant is a ``np.uint64``). The slot protocol is described in ring.py.

MPMC sequence word of a slot, for position ``pos`` (``LAP`` = low 40 bits of ``pos``)::

    pos                        free for the producer of ``pos``
    CLAIMED | pid<<40 | LAP    a producer is writing it (pid is the writer)
    pos + 1                    full: record ``pos`` is readable
    CLAIMED | READING | pid<<40 | LAP
                               a consumer is reading it
    pos + capacity             free for the producer of ``pos + capacity``

Only the holder of a claim writes the slot body; each transition is one CAS, so a claim
and the identity of its holder appear together (a process killed right after its CAS
leaves a claim naming it, never an anonymous hole).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from qpuos.ipc._shm import (
    HEADER_BYTES,
    W_CAPACITY,
    W_DATA_WAITERS,
    W_HEAD,
    W_SPACE_WAITERS,
    W_STRIDE,
    W_TAIL,
)
from qpuos.kernel import atomics

# The intrinsics are typed for Python ints; here they get numpy uint64s (numba turns
# uint64-with-int64 arithmetic into float64), so they are seen through Any.
cas: Any = atomics.cas
fetch_add: Any = atomics.fetch_add
load_acquire: Any = atomics.load_acquire
store_release: Any = atomics.store_release

__all__ = [
    "BUSY", "CLAIMED", "EMPTY", "FULL", "LAP_MASK", "PID_MASK", "PID_SHIFT", "READING",
    "RETRY", "TOMBSTONE", "arm", "disarm", "load", "mpmc_claim_read", "mpmc_claim_write",
    "mpmc_consume_many", "mpmc_finish", "mpmc_produce_many", "publish_head",
    "publish_tail", "store",
]

CLAIMED = np.uint64(1 << 63)
READING = np.uint64(1 << 62)
PID_SHIFT = 40
PID_MASK = (1 << 22) - 1
LAP_MASK = np.uint64((1 << 40) - 1)
TOMBSTONE = np.uint64(1)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_SHIFT = np.uint64(3)
_BASE = np.uint64(HEADER_BYTES // 8)

FULL, EMPTY, BUSY, RETRY = np.int64(-1), np.int64(-2), np.int64(-3), np.int64(-4)


@njit(cache=True)
def load(w: Any, i: Any) -> Any:
    """Acquire load of word ``i`` (the non-x86 path of the rings' index reads)."""
    return np.int64(load_acquire(w, i))


@njit(cache=True)
def store(w: Any, i: Any, v: Any) -> Any:
    """Release store of word ``i`` (the non-x86 path of the rings' index writes)."""
    store_release(w, i, v)


@njit(cache=True)
def publish_tail(w: Any, delta: Any) -> Any:
    """Advance the SPSC tail by ``delta``; True if the consumer sleeps and must be woken.

    The locked add is a full fence: the sleeper flag is read after the tail is visible
    (the waker's half of the no-lost-wake-up protocol in ``_wait.py``). The flag is taken
    with a CAS, so only one publication writes the doorbell per sleep. The word indices
    are baked in: numba's dispatch costs per argument, and this runs once per message.
    """
    fetch_add(w, W_TAIL, delta)
    if load_acquire(w, W_DATA_WAITERS) == _ZERO:
        return False
    return cas(w, W_DATA_WAITERS, _ONE, _ZERO) == _ONE


@njit(cache=True)
def publish_head(w: Any, delta: Any) -> Any:
    """Advance the SPSC head by ``delta``; True if the producer sleeps on a full ring
    and must be woken (as ``publish_tail``)."""
    fetch_add(w, W_HEAD, delta)
    if load_acquire(w, W_SPACE_WAITERS) == _ZERO:
        return False
    return cas(w, W_SPACE_WAITERS, _ONE, _ZERO) == _ONE


@njit(cache=True)
def arm(w: Any, waiters: Any, single: Any) -> Any:
    """Announce a sleeper (full fence, before the sleeper re-checks its condition)."""
    if single:
        cas(w, waiters, _ZERO, _ONE)
    else:
        fetch_add(w, waiters, _ONE)


@njit(cache=True)
def disarm(w: Any, waiters: Any, single: Any) -> Any:
    """Withdraw a sleeper announced by ``arm``."""
    if single:
        cas(w, waiters, _ONE, _ZERO)
    else:
        fetch_add(w, waiters, np.uint64(0xFFFFFFFFFFFFFFFF))


@njit(cache=True, inline="always")
def _slot_word(w: Any, pos: Any) -> Any:
    """Word index of the sequence word of the slot of ``pos`` (layout from the header)."""
    return _BASE + (pos & (w[W_CAPACITY] - _ONE)) * (w[W_STRIDE] >> _SHIFT)


@njit(cache=True)
def mpmc_claim_write(w: Any, tag: Any) -> Any:
    """Claim the slot at the tail for writing: its position, or FULL / RETRY."""
    for _ in range(64):
        pos = load_acquire(w, W_TAIL)
        sw = _slot_word(w, pos)
        s = load_acquire(w, sw)
        if s == pos:
            if cas(w, sw, pos, np.uint64(tag) | (pos & LAP_MASK)) == pos:
                w[sw + _ONE] = _ZERO    # flags: a record, not a tombstone
                cas(w, W_TAIL, pos, pos + _ONE)
                return np.int64(pos)
        elif s & CLAIMED:
            if (s & LAP_MASK) != (pos & LAP_MASK):
                return FULL          # still held for the previous lap
            cas(w, W_TAIL, pos, pos + _ONE)   # claimed this lap: help the tail on
        elif s < pos:
            return FULL              # previous lap not consumed yet
        else:
            cas(w, W_TAIL, pos, pos + _ONE)   # this lap is past: the tail is stale
    return RETRY


@njit(cache=True)
def mpmc_claim_read(w: Any, tag: Any) -> Any:
    """Claim the slot at the head for reading: its position, or EMPTY / BUSY / RETRY.

    BUSY: the record at the head is being written (its writer may have died).
    """
    for _ in range(64):
        pos = load_acquire(w, W_HEAD)
        sw = _slot_word(w, pos)
        s = load_acquire(w, sw)
        full = pos + _ONE
        if s == full:
            if cas(w, sw, full, np.uint64(tag) | (pos & LAP_MASK)) == full:
                cas(w, W_HEAD, pos, full)
                return np.int64(pos)
        elif s & CLAIMED:
            if (s & LAP_MASK) != (pos & LAP_MASK):
                return EMPTY         # the previous lap's reader still holds it
            if not s & READING:
                return BUSY
            cas(w, W_HEAD, pos, full)  # another consumer has it: help the head on
        elif s <= pos:
            return EMPTY
        else:
            cas(w, W_HEAD, pos, full)  # already consumed: the head is stale
    return RETRY


@njit(cache=True)
def mpmc_finish(w: Any, pos: Any, tag: Any, reading: Any) -> Any:
    """Hand the claimed slot of ``pos`` on: publish it (writer) or free it for the next
    lap (reader). Returns the sleepers to wake on the other side, or -1 if this claim
    is not held.

    The CAS is the release of the slot body and a full fence before reading the
    sleeper count (no lost wake-up, see ``_wait.py``).
    """
    p = np.uint64(pos)
    sw = _slot_word(w, p)
    claimed = np.uint64(tag) | (p & LAP_MASK)
    if reading:
        new = p + w[W_CAPACITY]
        waiters = W_SPACE_WAITERS
    else:
        new = p + _ONE
        waiters = W_DATA_WAITERS
    if cas(w, sw, claimed, new) != claimed:
        return np.int64(-1)
    return np.int64(load_acquire(w, waiters))


@njit(cache=True)
def mpmc_produce_many(w: Any, b: Any, tag: Any, src: Any, n: Any, slot: Any
                      ) -> Any:
    """Claim, fill and publish up to ``n`` slots from ``src``: (records sent, sleepers)."""
    sent = 0
    sleepers = 0
    for i in range(n):
        pos = mpmc_claim_write(w, tag)
        while pos == RETRY:
            pos = mpmc_claim_write(w, tag)
        if pos < 0:
            break
        off = (_slot_word(w, np.uint64(pos)) + np.uint64(2)) << _SHIFT
        b[off:off + np.uint64(slot)] = src[i * slot:(i + 1) * slot]
        s = mpmc_finish(w, pos, tag, False)
        sleepers = max(sleepers, s)
        sent += 1
    return sent, sleepers


@njit(cache=True)
def mpmc_consume_many(w: Any, b: Any, tag: Any, dst: Any, n: Any, slot: Any
                      ) -> Any:
    """Claim, copy out and free up to ``n`` records: (got, sleepers, last claim code)."""
    got = 0
    sleepers = 0
    code = np.int64(0)
    while got < n:
        pos = mpmc_claim_read(w, tag)
        while pos == RETRY:
            pos = mpmc_claim_read(w, tag)
        if pos < 0:
            code = pos
            break
        sw = _slot_word(w, np.uint64(pos))
        if w[sw + _ONE] != TOMBSTONE:
            off = (sw + np.uint64(2)) << _SHIFT
            dst[got * slot:(got + 1) * slot] = b[off:off + np.uint64(slot)]
            got += 1
        s = mpmc_finish(w, pos, tag, True)
        sleepers = max(sleepers, s)
    return got, sleepers, code

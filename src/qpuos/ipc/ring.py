"""Zero-copy shared-memory rings between processes: SPSC, variable-length SPSC, MPMC.

The host pushes the instruction stream to the controller through a ring and results
come back through another; no system call on the hot path, no copy beyond the one into
and out of the slot (or none: ``claim``/``publish`` and ``peek``/``release`` hand out
views of the shared memory itself).

Design
======

Ownership
---------
- The **creator** owns the name: it made the file (``/dev/shm/NAME``, or a memfd for an
  anonymous ring), and its ``close()`` unlinks it; attachers never unlink. Peers that
  already mapped the ring keep working after the unlink (see ``_shm.py``).
- The **producer** owns the tail word and every slot between head and tail that it has
  not published; the **consumer** owns the head word and every published slot it has
  not released. Nobody writes a word or a byte it does not own, so SPSC needs no
  read-modify-write at all: each index has exactly one writer.
- In the MPMC ring a slot is owned by whoever holds its claim, and a claim is a CAS on
  the slot's sequence word that writes the holder's pid (``_ring_kernels.py``); head and
  tail are hints any participant may help forward.
- Header page (4 KiB): constants on line 0; tail, head, and each doorbell's sleeper
  word on 128-byte blocks of their own (no false sharing, adjacent-line prefetch
  included); participants ``(start time, pid)`` at the end. Data area from 4 KiB.

Memory ordering
---------------
Indices count records (or bytes) from 0 and never wrap; the slot is ``index & mask``.
A record is published by one aligned 8-byte store of the tail after its payload, and
freed by one 8-byte store of the head after it was read.

- x86-64 is TSO: stores are not reordered with older stores, loads not with older
  loads, stores not with older loads (only a load may pass an older store), and an
  aligned 8-byte ``memoryview.cast("Q")`` store is a single ``mov``. So the producer's
  "payload, then tail", the consumer's "tail, then payload" and its "payload, then
  head" are ordered by program order alone: SPSC needs no fence and no numba call on
  x86. Never ``struct.pack_into`` for a shared word: CPython zeroes the field before
  writing it, so a reader can see 0 (a test greps this package for it).
- The guard: any other machine (``_shm.TSO`` false) reads and writes indices through
  the acquire/release intrinsics of ``kernel/atomics.py`` instead (the state-machine
  tests run that path too).
- Sleeping needs more: "write my index, then read the sleeper flag" must not be
  reordered, and x86 does reorder a load before an older store. A ring created with
  ``blocking=True`` therefore publishes with a locked add (``publish_tail``: one numba
  call, ~0.2 µs a side; ``qpuos bench ring`` shows 0.74 against 0.39 µs one-way); the
  argument is in ``_wait.py``. ``blocking=False`` rings spin or yield and keep the
  plain store. (An asymmetric fence, ``membarrier``, would give sleepers for free; it
  needs a raw syscall from ``qpuos/_ffi``.)
- MPMC claims and publishes with CAS (sequentially consistent), so the same full fence
  comes free with every publication.

Crash safety
------------
- A producer killed mid-write has not stored the tail (SPSC) or has not made its CAS to
  "full" (MPMC): the partial record is invisible. SPSC: the next producer starts at the
  shared tail and overwrites it. MPMC: the claim names the dead pid, and a waiting
  consumer (or ``recover()``) turns the slot into a tombstone that consumers skip.
- Liveness is ``/proc/PID/stat`` with the start time recorded at registration (a pid
  reused by another process, or a zombie not yet reaped, counts as dead).
- A consumer waiting on an empty ring whose producer died gets ``PeerDied`` (a producer
  on a full ring, likewise); what was published before the death is still delivered
  first. ``reset()`` empties the ring when no live peer is attached.

Limits, known and accepted:

- Processes must share a PID namespace (liveness reads ``/proc``).
- A sleeper killed while asleep on an MPMC doorbell leaves the sleeper count raised:
  every later publication then also writes the doorbell (a system call) until
  ``reset()``. SPSC sleepers use a flag that the next publication clears.
- A payload a producer put in the arena and died before publishing stays allocated
  (the arena does not know owners).
- ``reset()`` rewinds the shared indices; other handles of the same ring in the same
  process keep stale caches, so close or reset them too.
- One handle per role per process is the intended use; a ring handle is not for
  sharing between threads that both send (or both receive) at once.

Waiting: ``_wait.py`` (busy-spin, spin-then-yield, spin-then-block on a FIFO doorbell,
no lost wake-ups, timeouts). Errors: ``RingFull``/``RingEmpty`` (both ``WouldBlock``)
with ``timeout=0``, ``RingTimeout``, ``PeerDied``, ``RingCorrupted``, and
``ClosedResourceError`` after ``close()``.

Which ring
----------
``SpscRing``: fixed-size records, one producer, one consumer: the fastest (a send or a
receive is a handful of bytecodes). ``RecordRing``: variable-length records (wrap by
pad records; large payloads by reference through an arena hook). ``MpmcRing``: several
producers and consumers, fixed-size records, claims through numba CAS.

>>> ring = SpscRing.create(slot_size=16, capacity=8, anonymous=True)
>>> peer = SpscRing.attach(ring.name)      # in another process, usually
>>> ring.send(b"x q0; measure q0")
>>> peer.recv(timeout=1.0)
b'x q0; measure q0'
>>> peer.close(); ring.close(); ring.closed
True
"""

from __future__ import annotations

from qpuos.ipc._mpmc import MpmcRing
from qpuos.ipc._records import ArenaHook, RecordRing
from qpuos.ipc._shm import unlink_ring
from qpuos.ipc._spsc import SpscRing
from qpuos.ipc._wait import WaitMode

__all__ = ["ArenaHook", "MpmcRing", "RecordRing", "SpscRing", "WaitMode", "unlink_ring"]

"""The arena allocators: interface, bad use, attach, alignment, corruption and the lock.

Multi-process and SIGKILL tests are in ``test_mheap_procs.py``, the stateful model test
in ``test_mheap_state.py``, the pool-size bounds in ``test_mheap_bounds.py``.
"""

from __future__ import annotations

import logging
import mmap
import os
import subprocess
import sys
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest

from qpuos.errors import (
    ClosedResourceError,
    DoubleFree,
    HeapCorrupted,
    HeapExhausted,
    HeapLockError,
    InvalidPointer,
    UsageError,
)
from qpuos.kernel import _mheap_layout as L  # noqa: N812 - the layout, read as L.H_LOCK
from qpuos.kernel.mheap import Arena, ArenaStats

STRATEGIES = ("tlsf", "first_fit")


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def arena(strategy: str) -> Any:
    with Arena.create(bytearray(64 * 1024), strategy=strategy) as a:
        yield a


def words(a: Arena) -> np.ndarray[Any, Any]:
    w = a._w
    assert w is not None
    return w


def blocks(a: Arena) -> list[tuple[int, int, bool]]:
    """(header offset, size, used) of every block, walked in Python."""
    w = words(a)
    out = []
    h, end = int(w[L.H_HEAP]), int(w[L.H_END])
    while h < end:
        sw = int(w[(h >> 3) + 1])
        out.append((h, sw & ~L.FLAG_MASK, bool(sw & L.USED)))
        h += sw & ~L.FLAG_MASK
    return out


def state(a: Arena) -> tuple[Any, ...]:
    """Everything an operation may change except the lock, log and counters."""
    w = words(a)
    free_links = tuple((h, int(w[(h >> 3) + 2]), int(w[(h >> 3) + 3]))
                       for h, _, used in blocks(a) if not used)
    return (tuple(blocks(a)), free_links, int(w[L.H_FFHEAD]), int(w[L.H_FLMAP]),
            bytes(w[L.TABLES_W: int(w[L.H_HEAP]) >> 3]))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the interface --------------------------------------------------------------------

def test_alloc_view_free_round_trip(arena: Arena) -> None:
    heap = arena.heap_bytes
    a = arena.alloc(100)
    b = arena.alloc(1)
    assert a % 16 == 0 and b % 16 == 0 and a != b
    assert arena.usable_size(a) == len(arena.view(a)) == 112
    assert arena.usable_size(b) == 16
    arena.view(a)[:] = b"x" * 112
    arena.view(b)[:] = b"y" * 16
    assert bytes(arena.view(a)) == b"x" * 112
    st = arena.stats()
    assert (st.used_blocks, st.used_bytes) == (2, 128 + 32)
    assert st.used_bytes + st.free_bytes == st.heap_bytes == heap
    arena.free(a)
    arena.free(b)
    st = arena.stats()
    assert (st.used_blocks, st.free_blocks, st.free_bytes, st.fragmentation) == (0, 1, heap,
                                                                              0.0)
    arena.check()


def test_stats_is_a_frozen_slotted_dataclass(arena: Arena) -> None:
    st = arena.stats()
    assert isinstance(st, ArenaStats) and not hasattr(st, "__dict__")
    with pytest.raises(AttributeError):
        st.free_bytes = 0  # type: ignore[misc]


def test_fragmentation_is_one_minus_largest_over_free(arena: Arena) -> None:
    offs = [arena.alloc(1000) for _ in range(20)]
    for o in offs[::2]:
        arena.free(o)
    st = arena.stats()
    assert st.free_blocks == 11
    assert st.fragmentation == pytest.approx(1 - st.largest_free / st.free_bytes)
    assert 0 < st.fragmentation < 1


@pytest.mark.parametrize("align", [1, 2, 8, 16, 32, 64, 256, 4096, 65536])
def test_alignment_is_honoured(strategy: str, align: int) -> None:
    a = Arena.create(bytearray(512 * 1024), strategy=strategy)
    offs = []
    for size in (1, 17, 300, 5000):
        o = a.alloc(size, align=align)
        assert o % max(align, 16) == 0
        assert a.usable_size(o) >= size
        a.view(o)[:] = bytes([size % 251]) * a.usable_size(o)
        offs.append((o, size))
        a.check()
    for o, size in offs:
        assert bytes(a.view(o)) == bytes([size % 251]) * a.usable_size(o)
        a.free(o)
    a.check()
    assert a.stats().free_blocks == 1


def test_first_fit_takes_the_lowest_block_that_fits() -> None:
    a = Arena.create(bytearray(64 * 1024), strategy="first_fit")
    x, _, y, _ = (a.alloc(n) for n in (200, 16, 400, 16))
    a.free(x)
    a.free(y)
    assert a.alloc(100) == x  # the lower hole, though the higher one fits too
    assert a.alloc(300) == y


def test_tlsf_picks_a_block_of_a_large_enough_class() -> None:
    a = Arena.create(bytearray(256 * 1024), strategy="tlsf")
    x, _, y, _ = (a.alloc(n) for n in (2000, 2000, 20000, 2000))
    a.free(x)
    a.free(y)
    assert a.alloc(15000) == y  # x is too small
    assert a.alloc(1500) == x  # the lowest of the classes that surely fit
    a.check()


def test_tlsf_takes_its_own_class_before_splitting_a_larger_block() -> None:
    a = Arena.create(bytearray(256 * 1024), strategy="tlsf")
    big, _, fit, _ = (a.alloc(n) for n in (20000, 2000, 3000, 2000))
    a.free(big)
    a.free(fit)
    assert a.alloc(3000) == fit  # the lower, larger block stays whole
    assert a.alloc(19000) == big


def test_tlsf_places_small_blocks_top_down_and_large_ones_bottom_up() -> None:
    a = Arena.create(bytearray(64 * 1024), strategy="tlsf")
    large = [a.alloc(3000) for _ in range(3)]
    small = [a.alloc(n) for n in (100, 1024, 16)]
    assert large == sorted(large) and large[0] == a.pool_bytes - a.heap_bytes + 16
    assert small == sorted(small, reverse=True)
    assert small[0] + a.usable_size(small[0]) == a.pool_bytes  # ends at the heap's end
    assert a.alloc(100, align=64) < small[-1]  # aligned requests stay bottom up
    a.check()


@pytest.mark.parametrize(("size", "top"), [(2000, False), (100, True)])
def test_tlsf_list_keeps_its_placement_end_at_its_head(size: int, top: bool) -> None:
    # six holes of one class, freed in placement order: pushed at the head, the one a
    # request wants (lowest, or highest for small blocks) would sit sixth, beyond the
    # four blocks a search looks at; kept at the head, it is found
    a = Arena.create(bytearray(64 * 1024), strategy="tlsf")
    blocks = [a.alloc(size) for _ in range(12)]
    assert (blocks[0] > blocks[1]) == top
    for o in blocks[::2]:
        a.free(o)
    assert a.alloc(size) == blocks[0]
    a.check()


def test_realloc_shrinks_grows_in_place_and_moves(arena: Arena) -> None:
    a = arena.alloc(1100)  # over 1 KiB: TLSF places it bottom up, as first fit does
    arena.view(a)[:1000] = bytes(range(250)) * 4
    assert arena.realloc(a, 200) == a and arena.usable_size(a) == 208
    assert bytes(arena.view(a)) == bytes(range(208))
    assert arena.realloc(a, 3000) == a  # the tail it gave back is still free
    assert bytes(arena.view(a)[:200]) == bytes(range(200))
    wall = arena.alloc(2000)
    b = arena.realloc(a, 6000)
    assert b != a and bytes(arena.view(b)[:200]) == bytes(range(200))
    with pytest.raises(InvalidPointer, match=rf"^view\({a}\): that block is free; pass an "
                       r"offset that alloc\(\) or realloc\(\) returned$"):
        arena.view(a)
    c = arena.realloc(b, 100, align=4096)
    assert c % 4096 == 0 and bytes(arena.view(c)[:100]) == bytes(range(100))
    arena.free(c)
    arena.free(wall)
    arena.check()
    assert arena.stats().used_blocks == 0


def test_realloc_that_cannot_fit_leaves_the_block_alone(arena: Arena) -> None:
    a = arena.alloc(100)
    arena.alloc(16)  # a wall: no growing in place
    arena.view(a)[:] = b"k" * 112
    before = state(arena)
    with pytest.raises(HeapExhausted, match=r"^cannot realloc \d+ bytes"):
        arena.realloc(a, arena.heap_bytes - 120)
    assert state(arena) == before and bytes(arena.view(a)) == b"k" * 112


# ---- bad use raises and corrupts nothing ----------------------------------------------

def test_exhaustion_reports_size_and_largest(arena: Arena) -> None:
    big = arena.alloc(40_000)
    before = state(arena)
    largest = arena.stats().largest_free - 16
    with pytest.raises(HeapExhausted, match=r"^cannot alloc 30000 bytes \(align 16\): the "
                       rf"largest free block holds {largest} usable bytes of \d+ free in a "
                       r"\d+-byte heap; free blocks, or size the pool with pool_size_for"
                       r"\(\)$") as info:
        arena.alloc(30_000)
    assert (info.value.size, info.value.largest) == (30_000, largest)
    assert state(arena) == before
    with pytest.raises(HeapExhausted):
        arena.alloc(10 ** 30)
    arena.free(big)
    arena.check()


def test_double_free_and_invalid_pointers_change_nothing(arena: Arena) -> None:
    a = arena.alloc(64)
    b = arena.alloc(64)
    arena.free(a)
    before = state(arena)
    with pytest.raises(DoubleFree, match=rf"^free\({a}\): that block is already free$"):
        arena.free(a)
    for bad, why in ((b + 16, "no live block starts at that offset"),
                     (b + 8, "offset is not 16-byte aligned, so no block starts there"),
                     (b - 16, "no live block starts at that offset"),
                     (0, "offset is outside the heap"),
                     (-16, "offset is outside the heap"),
                     (10 ** 12, "offset is outside the heap")):
        with pytest.raises(InvalidPointer, match=rf"^free\({bad}\): {why}"):
            arena.free(bad)
        with pytest.raises(InvalidPointer):
            arena.view(bad)
        with pytest.raises(InvalidPointer):
            arena.realloc(bad, 10)
    assert state(arena) == before
    arena.free(b)
    with pytest.raises(DoubleFree):
        arena.free(b)  # merged with its free neighbours, still recognised
    arena.check()


def test_forged_header_in_user_data_is_not_a_block(arena: Arena) -> None:
    a = arena.alloc(256)
    w = np.frombuffer(arena.view(a), dtype=np.int64)
    w[0], w[1] = a - 16, 64 | 1  # looks like a used 64-byte block at a + 16
    with pytest.raises(InvalidPointer):
        arena.free(a + 32)
    arena.free(a)
    arena.check()


@pytest.mark.parametrize(("size", "align", "message"), [
    (0, 16, r"^cannot allocate 0 bytes; ask for at least 1$"),
    (-5, 16, r"^cannot allocate -5 bytes"),
    (10, 3, r"^align must be a power of two from 1 to 65536; got 3$"),
    (10, 0, r"^align must be a power of two"),
    (10, 1 << 17, r"^align must be a power of two"),
    (1.5, 16, r"^size must be an integer; got float$"),
    (True, 16, r"^size must be an integer; got bool$"),
])
def test_bad_requests_are_usage_errors(arena: Arena, size: Any, align: Any, message: str
                                       ) -> None:
    with pytest.raises(UsageError, match=message):
        arena.alloc(size, align=align)


def test_numpy_integers_are_accepted(arena: Arena) -> None:
    o = arena.alloc(np.int32(40), align=np.int64(64))
    assert o % 64 == 0
    arena.free(np.int64(o))


def test_closed_arena_refuses_everything(arena: Arena) -> None:
    a = arena.alloc(10)
    arena.close()
    arena.close()
    assert arena.closed and "closed" in repr(arena)
    for call in (lambda: arena.alloc(10), lambda: arena.free(a), lambda: arena.view(a),
                 lambda: arena.realloc(a, 5), arena.stats, arena.check,
                 lambda: arena.usable_size(a)):
        with pytest.raises(ClosedResourceError, match=r"^this Arena was closed"):
            call()


# ---- buffers and attaching -------------------------------------------------------------

def test_works_over_mmap_and_shared_memory(strategy: str) -> None:
    with mmap.mmap(-1, 1 << 20) as m:
        a = Arena.create(m, strategy=strategy)
        o = a.alloc(5000, align=4096)
        v = a.view(o)
        v[:4] = b"dma!"
        del v
        b = Arena.attach(m)
        assert bytes(b.view(o)[:4]) == b"dma!" and b.strategy == strategy
        b.free(o)
        a.check()
        a.close()
        b.close()
    shm = shared_memory.SharedMemory(create=True, size=1 << 20)
    try:
        with Arena.create(shm.buf, strategy=strategy) as a:
            a.free(a.alloc(100))
            a.check()
    finally:
        shm.close()
        shm.unlink()


def test_buffers_that_cannot_hold_an_arena() -> None:
    with pytest.raises(UsageError, match=r"^the buffer is read-only"):
        Arena.create(bytes(1 << 16))
    with pytest.raises(UsageError, match=r"^an arena needs a writable buffer .*got int$"):
        Arena.create(12)
    with pytest.raises(UsageError, match=r"^a buffer of 2048 bytes is too small"):
        Arena.create(bytearray(2048))
    with pytest.raises(UsageError, match=r"^the buffer's address is not 8-byte aligned"):
        Arena.create(memoryview(bytearray(1 << 16))[4:])
    with pytest.raises(UsageError, match=r"^unknown arena strategy 'best'"):
        Arena.create(bytearray(1 << 16), strategy="best")


def test_attach_validates_the_header(strategy: str) -> None:
    buf = bytearray(1 << 16)
    with pytest.raises(HeapCorrupted, match=r"^no arena in this buffer \(bad magic"):
        Arena.attach(buf)
    Arena.create(buf, strategy=strategy).close()
    w = np.frombuffer(buf, dtype=np.int64)
    assert Arena.attach(buf).strategy == strategy
    with pytest.raises(HeapCorrupted, match=r"^the arena header says the pool is 65536 "
                       r"bytes but the buffer has 32768"):
        Arena.attach(memoryview(buf)[: 1 << 15])
    for word, value, message in (
            (L.H_VERSION, 9, r"^the arena has layout version 9, this qpuos reads version 1"),
            (L.H_STRATEGY, 7, r"^the arena header names strategy 7"),
            (L.H_HEAP, 4096, r"^the arena header's layout does not match"),
            (L.H_PIDNS, 12345, r"^the arena was created in another PID namespace")):
        old = int(w[word])
        w[word] = value
        with pytest.raises((HeapCorrupted, HeapLockError), match=message):
            Arena.attach(buf)
        w[word] = old
    Arena.attach(buf).check()


# ---- check() finds broken invariants and poisons the arena -----------------------------

@pytest.mark.parametrize("damage", ["size", "prev", "used_flag", "free_link", "bitmap"])
def test_check_finds_damage_and_poisons(strategy: str, damage: str) -> None:
    a = Arena.create(bytearray(1 << 16), strategy=strategy)
    offs = [a.alloc(200) for _ in range(6)]
    a.free(offs[1])
    a.free(offs[3])
    w = words(a)
    h = offs[2] - 16
    free_h = offs[1] - 16
    if damage == "size":
        w[(h >> 3) + 1] += 16
    elif damage == "prev":
        w[h >> 3] += 16
    elif damage == "used_flag":
        w[(h >> 3) + 1] &= ~L.USED
    elif damage == "free_link":
        w[(free_h >> 3) + 3] = 16
    else:
        w[int(w[L.H_BITMAP_W])] ^= 1 << 40
    with pytest.raises(HeapCorrupted, match=r"; the arena is marked corrupted for every "
                       r"process: stop using it and format a new one with Arena.create\(\)$"):
        a.check()
    other = Arena.attach(a._buffer)
    with pytest.raises(HeapCorrupted, match=r"^an earlier check found: "):
        other.alloc(10)
    with pytest.raises(HeapCorrupted):
        a.free(offs[0])


# ---- the lock ---------------------------------------------------------------------------

def test_lock_held_by_a_live_process_times_out(arena: Arena) -> None:
    w = words(arena)
    live = os.getppid()
    w[L.H_LOCK] = (5 << 32) | live
    arena._timeout = 0.2
    with pytest.raises(HeapLockError, match=rf"^the arena lock has been held by pid {live} "
                       r"\(alive\) for over 0.2 s"):
        arena.alloc(10)
    assert arena.break_lock() == 0
    arena.check()
    arena.free(arena.alloc(10))


def test_lock_of_a_dead_process_is_taken_over(arena: Arena,
                                              caplog: pytest.LogCaptureFixture) -> None:
    w = words(arena)
    pid = dead_pid()
    w[L.H_LOCK] = (7 << 32) | pid
    with caplog.at_level(logging.WARNING, logger="qpuos.kernel.mheap"):
        o = arena.alloc(10)
    assert f"process {pid} died holding the lock; rolled back 0 writes" in caplog.text
    assert arena.stats().recoveries == 1
    arena.free(o)
    arena.check()


def test_dead_owner_over_damaged_heap_is_refused(arena: Arena) -> None:
    o = arena.alloc(100)
    w = words(arena)
    w[((o - 16) >> 3) + 1] = 8  # an impossible block size
    pid = dead_pid()
    w[L.H_LOCK] = pid
    with pytest.raises(HeapCorrupted, match=rf"^process {pid} died holding the arena lock; "
                       r"after rolling back its 0 writes, block at byte \d+ has an impossible "
                       r"size"):
        arena.alloc(10)
    with pytest.raises(HeapCorrupted):
        arena.alloc(10)


def test_unreadable_undo_log_is_refused(arena: Arena) -> None:
    w = words(arena)
    w[L.H_LOG_N] = 1
    w[L.LOG_BASE] = L.H_LOCK  # a log entry may never name the lock word
    w[L.H_LOCK] = dead_pid()
    with pytest.raises(HeapCorrupted, match=r"the undo log is unreadable \(entry 0\)"):
        arena.stats()


def _op(a: Arena, kind: str, live: list[int]) -> None:
    if kind == "alloc":
        a.alloc(700)  # TLSF: carved from the top of a block
    elif kind == "alloc_large":
        a.alloc(3000)  # TLSF: from the bottom
    elif kind == "alloc_aligned":
        a.alloc(300, align=1024)
    elif kind == "free":
        a.free(live[2])  # both neighbours free: the longest free
    elif kind == "realloc_move":
        a.realloc(live[0], 5000)
    else:
        a.realloc(live[4], 20)


@pytest.mark.parametrize("kind", ["alloc", "alloc_large", "alloc_aligned", "free",
                                  "realloc_move", "realloc_shrink"])
def test_an_operation_cut_short_anywhere_is_rolled_back(strategy: str, kind: str,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    """Crash the operation after its k-th state write, for every k: the next operation
    (by this process, or by another once the owner is dead) rolls it back exactly."""
    caplog.set_level(logging.ERROR, logger="qpuos.kernel.mheap")
    a = Arena.create(bytearray(1 << 16), strategy=strategy)
    live = [a.alloc(n) for n in (300, 40, 500, 60, 900, 50)]
    for o in live:
        a.view(o)[:] = b"\xab" * a.usable_size(o)  # what a move copies is not zeros
    a.free(live[1])
    a.free(live[3])
    before = state(a)
    k = 1
    while True:
        a._inject_crash(k)
        try:
            _op(a, kind, live)
        except RuntimeError as exc:
            assert "injected crash" in str(exc)
        else:
            break  # the operation wrote fewer than k words: it completed
        if k % 2:
            words(a)[L.H_LOCK] = dead_pid()  # as if another process had died there
        a.check()  # recovers first
        assert state(a) == before, f"crash after write {k} was not rolled back"
        k += 1
    a._inject_crash(0)
    assert k > 3 and a.stats().recoveries == k - 1
    assert int(words(a)[L.H_LOG_HWM]) < L.LOG_CAP // 2
    a.check()

"""``pool_size_for``: adversaries never exhaust a pool of that size, and do exhaust less.

The adversary is the doubling attack: allocate blocks of s bytes until ``max_live`` is
reached, free every block whose freeing keeps each hole smaller than the next size's
block, double s, until s reaches ``largest``. It never exceeds ``max_live`` and works
against any allocator that cannot move blocks. Hypothesis adds random sequences.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import HeapExhausted, UsageError
from qpuos.kernel._mheap_layout import STRATEGIES, block_bytes, layout_for
from qpuos.kernel.mheap import Arena, pool_size_for, worst_case_heap

CASES = [(4096, 512, 32), (8192, 1024, 16), (16384, 4096, 16), (65536, 4096, 64)]


def doubling_attack(arena: Arena, max_live: int, largest: int, smallest: int) -> int:
    """Run the attack; returns the most heap it occupied: bytes outside the largest free
    block (TLSF fills small blocks from the heap's top, the rest from its bottom)."""
    heap0 = arena.pool_bytes - arena.heap_bytes
    live: dict[int, int] = {}
    high = 0
    s = smallest
    while True:
        while sum(live.values()) + s <= max_live:
            o = arena.alloc(s)
            live[o] = s
            high = max(high, arena.heap_bytes - arena.stats().largest_free)
        if s >= largest:
            return high
        s = min(2 * s, largest)
        limit = block_bytes(s)
        offs = sorted(live)
        kept_end = heap0
        for o, nxt in itertools.pairwise(offs):
            if nxt - 16 - kept_end < limit:  # the hole freeing o would leave
                arena.free(o)
                del live[o]
            else:
                kept_end = o + arena.usable_size(o)


def arena_with_heap(heap: int, strategy: str) -> Arena:
    """An arena whose heap is just ``heap`` bytes (rounded up to 16)."""
    pool = heap + 2048
    while layout_for(pool, STRATEGIES[strategy]).heap_bytes < heap:
        pool += 16
    return Arena.create(bytearray(pool), strategy=strategy)


@pytest.mark.parametrize("strategy", ["tlsf", "first_fit"])
@pytest.mark.parametrize(("max_live", "largest", "smallest"), CASES)
def test_doubling_attack_is_held_by_the_bound_and_beats_smaller_pools(
        strategy: str, max_live: int, largest: int, smallest: int) -> None:
    pool = pool_size_for(max_live, largest, strategy=strategy, min_request=smallest)
    with Arena.create(bytearray(pool), strategy=strategy) as arena:
        high = doubling_attack(arena, max_live, largest, smallest)
        arena.check()
    bound = worst_case_heap(max_live, largest, strategy=strategy, min_request=smallest)
    assert 3 * max_live < high < bound  # real fragmentation, yet within the bound
    with arena_with_heap(high * 3 // 4, strategy) as small, pytest.raises(HeapExhausted):
        doubling_attack(small, max_live, largest, smallest)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), strategy=st.sampled_from(["tlsf", "first_fit"]),
       smallest=st.integers(8, 64), align=st.sampled_from([16, 64]))
def test_random_sequences_never_exhaust_a_bounded_pool(data: st.DataObject, strategy: str,
                                                       smallest: int, align: int) -> None:
    largest = data.draw(st.integers(smallest, 1024), label="largest")
    max_live = data.draw(st.integers(largest, 4096), label="max_live")
    pool = pool_size_for(max_live, largest, strategy=strategy, min_request=smallest,
                         max_align=align)
    arena = Arena.create(bytearray(pool), strategy=strategy)
    live: list[tuple[int, int]] = []
    for _ in range(data.draw(st.integers(1, 300), label="ops")):
        total = sum(n for _, n in live)
        if live and data.draw(st.booleans()):
            off, _ = live.pop(data.draw(st.integers(0, len(live) - 1)))
            arena.free(off)
            continue
        size = data.draw(st.integers(smallest, largest))
        if total + size <= max_live:
            live.append((arena.alloc(size, align=data.draw(st.sampled_from([16, align]))),
                         size))
    arena.check()
    arena.close()


def test_bound_arguments_and_shape() -> None:
    for strategy in ("tlsf", "first_fit"):
        a = pool_size_for(1 << 16, 4096, strategy=strategy, min_request=256)
        assert a % 16 == 0
        assert layout_for(a, STRATEGIES[strategy]).heap_bytes >= worst_case_heap(
            1 << 16, 4096, strategy=strategy, min_request=256)
        assert pool_size_for(1 << 17, 4096, strategy=strategy, min_request=256) > a
        assert pool_size_for(1 << 16, 8192, strategy=strategy, min_request=256) > a
        assert pool_size_for(1 << 16, 4096, strategy=strategy, min_request=512) < a
        assert pool_size_for(1 << 16, 4096, strategy=strategy, min_request=256,
                             max_align=4096) > a
    # TLSF's class rounding costs a little over first fit
    assert pool_size_for(1 << 20, 1 << 16, min_request=1024) > pool_size_for(
        1 << 20, 1 << 16, strategy="first_fit", min_request=1024)
    with pytest.raises(UsageError, match=r"^need 1 <= min_request <= largest <= max_live; "
                       r"got min_request=1, largest=100, max_live=50$"):
        pool_size_for(50, 100)
    with pytest.raises(UsageError, match=r"^unknown strategy 'buddy'"):
        pool_size_for(100, 10, strategy="buddy")
    with pytest.raises(UsageError, match=r"^max_align must be a power of two"):
        pool_size_for(100, 10, max_align=3)

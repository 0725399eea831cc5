"""The allocators against a model: a set of intervals, each with a byte pattern.

One ``RuleBasedStateMachine`` drives a TLSF arena and a first-fit arena with the same
operations (including bad pointers, double frees and operations cut short by the crash
hook). After every step, for each arena: ``check()`` is clean, live blocks neither
overlap nor leave the heap, every live block still holds its pattern, and the bytes are
conserved (used blocks plus free blocks make up the heap exactly).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qpuos.errors import DoubleFree, HeapExhausted, InvalidPointer
from qpuos.kernel._mheap_layout import block_bytes, tlsf_class_floor
from qpuos.kernel.mheap import Arena

POOL = 32 * 1024
STRATEGIES = ("tlsf", "first_fit")
SIZES = st.one_of(st.integers(1, 64), st.integers(1, 9000))
ALIGNS = st.sampled_from([1, 16, 16, 16, 32, 256, 4096])

logging.getLogger("qpuos.kernel.mheap").setLevel(logging.ERROR)  # recoveries are expected


def pattern(arena: Arena, off: int) -> np.ndarray:
    return np.frombuffer(arena.view(off), dtype=np.uint8)


class ArenaModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.arenas = {s: Arena.create(bytearray(POOL), strategy=s) for s in STRATEGIES}
        # strategy -> handle -> (offset, tag)
        self.live: dict[str, dict[int, tuple[int, int]]] = {s: {} for s in STRATEGIES}
        self.counter = 0

    def handles(self) -> list[int]:
        return sorted(set().union(*(set(m) for m in self.live.values())))

    def _new_tag(self) -> int:
        self.counter += 1
        return self.counter % 251 + 1

    def _fill(self, s: str, handle: int, off: int) -> None:
        tag = self._new_tag()
        pattern(self.arenas[s], off)[:] = tag
        self.live[s][handle] = (off, tag)

    def _exhausted_means_nothing_fits(self, s: str, exc: HeapExhausted, size: int,
                                      align: int) -> None:
        st_ = self.arenas[s].stats()
        assert exc.size == size
        assert exc.largest == max(0, st_.largest_free - 16)
        if align <= 16:
            need = block_bytes(size)
            limit = tlsf_class_floor(need) if s == "tlsf" else need
            assert st_.largest_free < limit, (s, st_.largest_free, limit)

    @rule(size=SIZES, align=ALIGNS)
    def alloc(self, size: int, align: int) -> None:
        handle = self.counter + 1000
        for s, a in self.arenas.items():
            before = a.stats()
            try:
                off = a.alloc(size, align=align)
            except HeapExhausted as exc:
                assert a.stats() == before
                self._exhausted_means_nothing_fits(s, exc, size, align)
                continue
            assert off % max(align, 16) == 0
            assert size <= a.usable_size(off) <= (size + 15) // 16 * 16 + 16
            self._fill(s, handle, off)

    @rule(size=st.integers(1, 9000))
    def fill(self, size: int) -> None:
        """Allocate ``size`` bytes until the arena refuses (at most 64 times)."""
        for s, a in self.arenas.items():
            for _ in range(64):
                try:
                    off = a.alloc(size)
                except HeapExhausted as exc:
                    self._exhausted_means_nothing_fits(s, exc, size, 16)
                    break
                self._fill(s, self.counter + 1000, off)

    @precondition(lambda self: self.handles())
    @rule(data=st.data(), again=st.booleans())
    def free(self, data: st.DataObject, again: bool) -> None:
        handle = data.draw(st.sampled_from(self.handles()))
        for s, a in self.arenas.items():
            if handle in self.live[s]:
                off, _ = self.live[s].pop(handle)
                a.free(off)
                if again:
                    before = a.stats()
                    try:
                        a.free(off)
                    except DoubleFree:
                        pass
                    else:
                        raise AssertionError("a second free() was accepted")
                    assert a.stats() == before

    @precondition(lambda self: self.handles())
    @rule(data=st.data(), size=SIZES, align=st.sampled_from([16, 16, 64, 1024]))
    def realloc(self, data: st.DataObject, size: int, align: int) -> None:
        handle = data.draw(st.sampled_from(self.handles()))
        for s, a in self.arenas.items():
            if handle not in self.live[s]:
                continue
            off, tag = self.live[s][handle]
            keep = min(a.usable_size(off), (size + 15) // 16 * 16)
            try:
                new = a.realloc(off, size, align=align)
            except HeapExhausted as exc:
                assert exc.size == size
                continue  # the invariants check the old block is intact
            assert new % align == 0
            assert (pattern(a, new)[:keep] == tag).all(), "realloc lost the contents"
            self._fill(s, handle, new)

    @rule(data=st.data())
    def bad_pointer(self, data: st.DataObject) -> None:
        for s, a in self.arenas.items():
            offs = {off for off, _ in self.live[s].values()}
            off = data.draw(st.one_of(
                st.integers(-64, POOL + 64),
                st.sampled_from(sorted(offs)).map(lambda o: o + 16) if offs
                else st.just(-1)))
            if off in offs:
                continue
            before = a.stats()
            try:
                a.free(off)
            except (InvalidPointer, DoubleFree):
                pass
            else:
                raise AssertionError(f"free({off}) of no live block was accepted")
            assert a.stats() == before

    @rule(k=st.integers(1, 30), size=SIZES, data=st.data())
    def crash(self, k: int, size: int, data: st.DataObject) -> None:
        """An alloc, or a free, cut short after its k-th write; the next operation rolls
        it back, so the model does not change unless the operation finished."""
        for s, a in self.arenas.items():
            before = a.stats()
            mine = sorted(self.live[s])
            a._inject_crash(k)
            if mine and data.draw(st.booleans()):
                handle = data.draw(st.sampled_from(mine))
                try:
                    a.free(self.live[s][handle][0])
                except RuntimeError:
                    a.check()
                    assert a.stats().recoveries == before.recoveries + 1
                    assert a.stats().used_bytes == before.used_bytes
                else:
                    del self.live[s][handle]
            else:
                try:
                    off = a.alloc(size)
                except RuntimeError:
                    a.check()
                    assert a.stats().free_bytes == before.free_bytes
                except HeapExhausted:
                    pass
                else:
                    self._fill(s, self.counter + 1000, off)
            a._inject_crash(0)

    @invariant()
    def heap_is_consistent_and_blocks_intact(self) -> None:
        for s, a in self.arenas.items():
            a.check()
            spans = sorted((off - 16, off + a.usable_size(off)) for off, _ in
                           self.live[s].values())
            heap_start = a.pool_bytes - a.heap_bytes
            overlaps = {(x, y) for x, y in itertools.pairwise(spans)
                        if x[1] > y[0]}
            assert overlaps == set()
            assert all(heap_start <= lo and hi <= a.pool_bytes for lo, hi in spans)
            broken = {h for h, (off, tag) in self.live[s].items()
                      if not (pattern(a, off) == tag).all()}
            assert broken == set()
            st_ = a.stats()
            assert st_.used_blocks == len(spans)
            assert st_.used_bytes == sum(hi - lo for lo, hi in spans)
            assert st_.used_bytes + st_.free_bytes == st_.heap_bytes

    def teardown(self) -> None:
        for a in self.arenas.values():
            a.close()


ArenaModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestArenaModel = ArenaModel.TestCase

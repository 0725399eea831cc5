"""The ring buffer: records a program submits read back through mmap, in order, across
the wrap, with discarded records skipped and a full ring dropping, not corrupting."""

from __future__ import annotations

import struct
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from qpuos.bpf.asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R10,
    Insn,
    Label,
    add,
    call,
    exit_,
    jeq,
    jgt,
    jne,
    ld_map_fd,
    load,
    mov,
    store,
)
from qpuos.bpf.loader import BpfProgram, ProgType, load_program
from qpuos.bpf.ringbuf import RingBuffer
from qpuos.errors import ClosedResourceError, UsageError

pytestmark = pytest.mark.needs_bpf


def _output_program(ring: RingBuffer, words: int) -> BpfProgram:
    """Submits ``words`` u64s with ringbuf_output: args[0], then 1, 2, ..."""
    base = -8 * words
    prog: list[Insn | Label] = [mov(R6, R1), load(R7, R6, 0), store(R10, base, R7)]
    prog += [store(R10, base + 8 * i, i) for i in range(1, words)]
    prog += [ld_map_fd(R1, ring), mov(R2, R10), add(R2, base), mov(R3, 8 * words),
             mov(R4, 0), call("ringbuf_output"), mov(R0, 0), exit_()]
    return load_program(prog, prog_type=ProgType.RAW_TRACEPOINT, name="rb_out")


def _run(prog: BpfProgram, *args: int) -> None:
    prog.test_run(ctx=struct.pack(f"<{len(args)}Q", *args))


def _record(seq: int, words: int) -> bytes:
    return struct.pack(f"<{words}Q", seq, *range(1, words))


def test_a_record_reads_back() -> None:
    with RingBuffer.create(4096, name="rb") as ring, _output_program(ring, 4) as prog:
        assert ring.drain() == []
        _run(prog, 0xABCDEF)
        assert ring.pending() == 8 + 32
        assert ring.drain() == [_record(0xABCDEF, 4)]
        assert ring.pending() == 0


def test_records_stay_whole_and_in_order_across_the_wrap() -> None:
    words = 63  # 504 bytes + 8 of header: 512 per record, 7 fit (the kernel keeps a byte)
    got: list[bytes] = []
    with RingBuffer.create(4096) as ring, _output_program(ring, words) as prog:
        for rnd in range(4):
            for i in range(5):
                _run(prog, rnd * 5 + i)
            got += ring.poll(0.0)
    assert got == [_record(seq, words) for seq in range(20)]


def test_a_full_ring_drops_new_records_and_keeps_the_old() -> None:
    words = 63
    with RingBuffer.create(4096) as ring, _output_program(ring, words) as prog:
        for seq in range(10):
            _run(prog, seq)
        assert ring.drain(limit=3) == [_record(s, words) for s in range(3)]
        assert ring.drain() == [_record(s, words) for s in range(3, 7)]


def test_discarded_records_are_skipped() -> None:
    with RingBuffer.create(4096) as ring:
        prog = [
            mov(R6, R1),
            ld_map_fd(R1, ring), mov(R2, 16), mov(R3, 0), call("ringbuf_reserve"),
            jeq(R0, 0, "out"),
            load(R7, R6, 0), store(R0, 0, R7), store(R0, 8, 0),
            mov(R1, R0), mov(R2, 0),
            load(R7, R6, 8), jne(R7, 0, "discard"),
            call("ringbuf_submit"), mov(R0, 0), exit_(),
            Label("discard"), call("ringbuf_discard"),
            Label("out"), mov(R0, 0), exit_(),
        ]
        with load_program(prog, prog_type=ProgType.RAW_TRACEPOINT, name="rb_discard") as p:
            for seq, drop in ((1, 0), (2, 1), (3, 0)):
                _run(p, seq, drop)
        assert [struct.unpack("<QQ", r)[0] for r in ring.drain()] == [1, 3]


def test_poll_times_out_empty_and_bad_sizes_are_refused() -> None:
    with RingBuffer.create(8192) as ring:
        assert ring.poll(0.01) == []
    with pytest.raises(UsageError, match=r"^ring buffer size must be a power of two of at "
                                         r"least 4096 bytes \(the page size\), got 5000$"):
        RingBuffer.create(5000)
    ring = RingBuffer.create(4096, name="done")
    ring.close()
    ring.close()
    with pytest.raises(ClosedResourceError, match=r"^ring buffer 'done' is closed$"):
        ring.drain()
    assert repr(ring) == "RingBuffer('done', 4096 bytes, closed)"


_MAX_WORDS = 63  # 504 bytes of payload: the most one stack buffer here holds


def _sized_output_program(ring: RingBuffer) -> BpfProgram:
    """Submits args[1] bytes (a multiple of 8, at most 504) starting with args[0]."""
    base = -8 * _MAX_WORDS
    prog: list[Insn | Label] = [mov(R6, R1), load(R7, R6, 0), store(R10, base, R7)]
    prog += [store(R10, base + 8 * i, i) for i in range(1, _MAX_WORDS)]
    prog += [load(R3, R6, 8), jgt(R3, 8 * _MAX_WORDS, "out"),
             ld_map_fd(R1, ring), mov(R2, R10), add(R2, base), mov(R4, 0),
             call("ringbuf_output"), Label("out"), mov(R0, 0), exit_()]
    return load_program(prog, prog_type=ProgType.RAW_TRACEPOINT, name="rb_sized")


class RingAgainstDeque(RuleBasedStateMachine):
    """The ring holds what a deque holds, and refuses a record exactly when the bytes
    not yet consumed plus the record (header included, 8-aligned) would reach its size:
    the kernel keeps one byte free."""

    def __init__(self) -> None:
        super().__init__()
        self.ring = RingBuffer.create(4096)
        self.prog = _sized_output_program(self.ring)
        self.model: deque[bytes] = deque()
        self.seq = 0

    def _used(self) -> int:
        return sum(len(r) + 8 for r in self.model)

    @rule(words=st.integers(1, _MAX_WORDS))
    def submit(self, words: int) -> None:
        self.seq += 1
        _run(self.prog, self.seq, 8 * words)
        if self._used() + 8 * words + 8 <= 4095:
            self.model.append(_record(self.seq, words))

    @rule(limit=st.integers(1, 4))
    def drain_some(self, limit: int) -> None:
        got = self.ring.drain(limit=limit)
        want = [self.model.popleft() for _ in range(min(limit, len(self.model)))]
        assert got == want

    @invariant()
    def pending_matches(self) -> None:
        assert self.ring.pending() == self._used()

    def teardown(self) -> None:
        self.prog.close()
        self.ring.close()


RingAgainstDeque.TestCase.settings = settings(max_examples=25, stateful_step_count=30,
                                              deadline=None)
TestRingAgainstDeque = RingAgainstDeque.TestCase
TestRingAgainstDeque.pytestmark = [pytest.mark.needs_bpf]  # type: ignore[attr-defined]

"""The perf event array: samples a program sends with perf_event_output read back
from the per-CPU perf rings, exactly (count and bytes), across the ring's end, with
losses counted; and a tracepoint program's records for a child's write(2) calls."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qpuos._ffi import bpf as _ffi
from qpuos.bpf.asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R10,
    Insn,
    Label,
    add,
    call,
    exit_,
    jne,
    ld_map_fd,
    load,
    mov,
    rsh,
    store,
)
from qpuos.bpf.attach import attach_tracepoint
from qpuos.bpf.btf import Btf
from qpuos.bpf.loader import BpfProgram, ProgType, load_program
from qpuos.bpf.perf import PerfEventArray, PerfRecord, online_cpus
from qpuos.errors import ClosedResourceError, UsageError

needs_bpf = pytest.mark.needs_bpf


def _output_program(events: PerfEventArray, words: int, extra: int = 0) -> BpfProgram:
    """A raw tracepoint program sending ``8 * words + extra`` bytes: args[0], 1, 2, ..."""
    base = -8 * (words + 1)
    prog: list[Insn | Label] = [mov(R6, R1), load(R7, R6, 0), store(R10, base, R7)]
    prog += [store(R10, base + 8 * i, i) for i in range(1, words + 1)]
    prog += [mov(R1, R6), ld_map_fd(R2, events), mov(R3, _ffi.BPF_F_CURRENT_CPU, width=32),
             mov(R4, R10), add(R4, base), mov(R5, 8 * words + extra),
             call("perf_event_output"), mov(R0, 0), exit_()]
    return load_program(prog, prog_type=ProgType.RAW_TRACEPOINT, name="perf_out")


def _send(prog: BpfProgram, seq: int) -> None:
    prog.test_run(ctx=struct.pack("<Q", seq))


@pytest.fixture
def one_cpu() -> Iterator[int]:
    """Pin this thread to one CPU for the test (test runs then use one ring)."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def test_online_cpus_match_the_scheduler() -> None:
    assert set(os.sched_getaffinity(0)) <= set(online_cpus())


def test_bad_page_counts_are_refused() -> None:
    with pytest.raises(UsageError, match="power of two, got 3"):
        PerfEventArray.create(pages=3)


def test_mmap_page_offsets_match_the_kernel(vmlinux: Btf) -> None:
    for field, offset in (("data_head", _ffi.PERF_MMAP_DATA_HEAD),
                          ("data_tail", _ffi.PERF_MMAP_DATA_TAIL),
                          ("data_offset", _ffi.PERF_MMAP_DATA_OFFSET),
                          ("data_size", _ffi.PERF_MMAP_DATA_SIZE)):
        assert vmlinux.member_offset("perf_event_mmap_page", field) == offset, field


@needs_bpf
def test_samples_read_back_exactly(one_cpu: int) -> None:
    with PerfEventArray.create(pages=1, name="pe") as events, \
            _output_program(events, 3, extra=4) as prog:
        assert events.cpus == online_cpus()
        assert events.drain() == []
        for seq in range(5):
            _send(prog, 1000 + seq)
        assert events.pending() == 5 * (8 + 4 + 28)
        got = events.drain()
        assert events.pending() == 0
    want = [struct.pack("<QQQI", 1000 + s, 1, 2, 3) for s in range(5)]
    assert got == [PerfRecord(one_cpu, w) for w in want]
    assert events.lost == 0


@needs_bpf
def test_unaligned_payloads_come_back_zero_padded(one_cpu: int) -> None:
    with PerfEventArray.create(pages=1) as events, _output_program(events, 2) as prog:
        _send(prog, 7)
        (rec,) = events.poll(0.0)
    assert rec.data == struct.pack("<QQI", 7, 1, 0)


@needs_bpf
def test_records_stay_whole_in_order_across_the_ring_end(one_cpu: int) -> None:
    words = 30  # 240 + 4 bytes of payload + 4 of length + 8 of header: 256 per record
    got: list[bytes] = []
    with PerfEventArray.create(pages=1) as events, \
            _output_program(events, words, extra=4) as prog:
        per_round = events.ring_size // 256 - 3  # keep the ring from filling
        for rnd in range(4):
            for i in range(per_round):
                _send(prog, rnd * per_round + i)
            got += [r.data for r in events.drain()]
        assert events.lost == 0
    assert got == [struct.pack(f"<{words + 1}Q", seq, *range(1, words + 1))[:-4]
                   for seq in range(4 * per_round)]


@needs_bpf
def test_a_full_ring_reports_exactly_the_lost_records(one_cpu: int) -> None:
    with PerfEventArray.create(pages=1) as events, \
            _output_program(events, 30, extra=4) as prog:
        fit = (events.ring_size - 1) // 256  # the kernel never fills the last byte
        for seq in range(fit + 7):
            _send(prog, seq)
        first = events.drain()
        _send(prog, 999)  # the kernel reports the loss with the next record it writes
        second = events.drain()
    assert [int.from_bytes(r.data[:8], "little") for r in first] == list(range(fit))
    assert [int.from_bytes(r.data[:8], "little") for r in second] == [999]
    assert events.lost == 7


def _write_reporter(tgid: int, events: PerfEventArray) -> list[Insn | Label]:
    """For each write(2) entry of process ``tgid``, send 12 bytes: pid_tgid (u64) and
    the ``count`` argument as u32 (sys_enter_write's record has it at offset 32)."""
    return [mov(R6, R1), call("get_current_pid_tgid"), mov(R7, R0), rsh(R0, 32),
            jne(R0, tgid, "out"),
            store(R10, -16, R7), load(R1, R6, 32), store(R10, -8, R1, size=4),
            mov(R1, R6), ld_map_fd(R2, events), mov(R3, _ffi.BPF_F_CURRENT_CPU, width=32),
            mov(R4, R10), add(R4, -16), mov(R5, 12), call("perf_event_output"),
            Label("out"), mov(R0, 0), exit_()]


@needs_bpf
def test_a_tracepoint_program_sends_one_record_per_write(
        writer: Any, tracefs: Path) -> None:
    child = writer(9)
    with PerfEventArray.create(pages=2) as events:
        with load_program(_write_reporter(child.pid, events), prog_type=ProgType.TRACEPOINT,
                          name="pe_write") as prog, \
                attach_tracepoint(prog, "syscalls", "sys_enter_write", tracefs=tracefs):
            child.go()
        got = events.drain()
    want = struct.pack("<QI", child.pid << 32 | child.pid, 1)
    assert [r.data for r in got] == [want] * 9
    assert events.lost == 0


@needs_bpf
def test_closed_arrays_refuse_use() -> None:
    events = PerfEventArray.create(pages=1)
    events.close()
    events.close()
    with pytest.raises(ClosedResourceError, match="is closed"):
        events.drain()
    with pytest.raises(ClosedResourceError):
        _ = events.fd
    assert "closed" in repr(events)

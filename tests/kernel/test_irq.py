"""The interrupt vector table: registration, sources, top halves, statistics."""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from qpuos.errors import ClosedResourceError, InvalidVector, IrqError, UsageError, VectorInUse
from qpuos.kernel import syscall as sc
from qpuos.kernel._epoll import Epoll
from qpuos.kernel._irq_sources import NO_EVENT
from qpuos.kernel.irq import (
    NUM_VECTORS,
    EventSource,
    FdSource,
    IrqSource,
    SignalSource,
    TimerSource,
    UioSource,
    VectorTable,
    doorbell,
)

WAIT = 10 * 10**9  # every wait below is bounded by this


class FakeSource(IrqSource):
    """An in-memory source: queued values, a made-up fd number."""

    kind = "fake"

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.values: deque[Any] = deque()
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def ack(self) -> Any:
        return self.values.popleft() if self.values else NO_EVENT

    def close(self) -> None:
        self.closed = True


class FakePoller:
    """Reports the registered fds whose fake source has values (tokens in fd order)."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}
        self.sources: dict[int, FakeSource] = {}
        self.closed = False

    def register(self, fd: int, token: int) -> None:
        if fd in self.fds:
            raise FileExistsError(17, "File exists")
        self.fds[fd] = token

    def unregister(self, fd: int) -> None:
        del self.fds[fd]

    def poll(self, timeout_ns: int | None) -> list[int]:
        return [tok for fd, tok in sorted(self.fds.items())
                if fd in self.sources and self.sources[fd].values]

    def close(self) -> None:
        self.closed = True


def _fake_table() -> tuple[VectorTable, FakePoller]:
    poller = FakePoller()
    return VectorTable(poller=poller, clock=iter(range(0, 10**12, 10)).__next__), poller


def _add_fake(table: VectorTable, poller: FakePoller, vector: int, fd: int,
              **kw: Any) -> FakeSource:
    src = FakeSource(fd)
    poller.sources[fd] = src
    table.register(vector, src, **kw)
    return src


def _poll_until(table: VectorTable, n: int = 1) -> list[tuple[int, Any, int]]:
    """Poll (each wait bounded) until ``n`` interrupts were delivered."""
    out: list[tuple[int, Any, int]] = []
    for _ in range(100):
        out += table.poll(WAIT)
        if len(out) >= n:
            return out
    raise AssertionError(f"only {len(out)} of {n} interrupts arrived")


# ---------------------------------------------------------------------- registration


@pytest.mark.parametrize("bad", [-1, 256, 1000, "3", 3.0, True, None])
def test_invalid_vector_numbers_are_refused(bad: Any) -> None:
    table, poller = _fake_table()
    with pytest.raises(InvalidVector, match=rf"^vector {re.escape(repr(bad))} is not a vector "
                                            r"number 0\.\.255$"):
        table.register(bad, FakeSource(5))
    assert poller.fds == {}


def test_occupied_vector_is_refused_with_a_free_one_suggested() -> None:
    table, poller = _fake_table()
    _add_fake(table, poller, 32, 5, name="doorbell")
    with pytest.raises(VectorInUse, match=r"^vector 32 already has a handler \(fake fd=5 "
                                          r"'doorbell'\); unregister\(32\) first or use "
                                          r"free vector 33$"):
        table.register(32, FakeSource(6))
    assert table.vectors() == [32]


def test_same_fd_on_two_vectors_and_unknown_vectors_are_refused() -> None:
    table, poller = _fake_table()
    src = _add_fake(table, poller, 1, 5, name="a")
    with pytest.raises(IrqError, match=r"^fd 5 is already the source of vector 1 \('a'\); "
                                       r"one source per vector$"):
        table.register(2, src)
    with pytest.raises(IrqError, match=r"^vector 9 has no source registered; register\(9, "
                                       r"source, handler\) first$"):
        table.unregister(9)


def test_regular_files_cannot_be_sources(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    with VectorTable() as table:
        with pytest.raises(IrqError, match=r"^cannot poll fd fd=\d+ for vector 3: "
                                           r"\[Errno 1\] Operation not permitted"):
            table.register(3, FdSource(fd))
        assert len(table) == 0
    os.close(fd)


def test_unregister_hands_the_source_back_and_tells_listeners() -> None:
    table, poller = _fake_table()
    src = _add_fake(table, poller, 7, 5)
    gone: list[int] = []
    table.add_unregister_listener(gone.append)
    assert 7 in table and len(table) == 1
    assert table.unregister(7) is src
    assert (gone, table.vectors(), poller.fds, src.closed) == ([7], [], {}, False)


def test_free_vector_wraps_and_reports_a_full_table() -> None:
    table, poller = _fake_table()
    for v in range(NUM_VECTORS):
        if v != 3:
            _add_fake(table, poller, v, 1000 + v)
    assert table.free_vector(200) == 3
    _add_fake(table, poller, 3, 999)
    assert table.free_vector() is None
    with pytest.raises(VectorInUse, match=r"\(table full\)$"):
        table.register(5, FakeSource(5000))


def test_close_closes_sources_and_poller_and_is_idempotent() -> None:
    table, poller = _fake_table()
    src = _add_fake(table, poller, 7, 5)
    table.close()
    table.close()
    assert src.closed and poller.closed and table.closed
    with pytest.raises(ClosedResourceError, match=r"^this vector table was closed"):
        table.register(8, FakeSource(6))


# -------------------------------------------------------------------- top halves


def test_top_half_value_is_what_gets_delivered_and_counted() -> None:
    table, poller = _fake_table()
    src = _add_fake(table, poller, 32, 5, name="bell")
    src.values += [4]
    table.register(33, _stub(poller, 6, [1]), lambda v: f"handled {v}")
    assert [(v, x) for v, x, _ in table.poll(0)] == [(32, 4), (33, "handled 1")]
    assert table.poll(0) == []
    s = table.stats(32)
    assert (s.count, s.errors, s.spurious, s.name, s.source) == (1, 0, 0, "bell", "fake fd=5")
    assert s.top_half is None  # no handler: the acknowledge alone is not timed
    handled = table.stats(33)
    assert handled.top_half is not None and handled.top_half.samples == 1


def _stub(poller: FakePoller, fd: int, values: list[Any]) -> FakeSource:
    src = FakeSource(fd)
    src.values += values
    poller.sources[fd] = src
    return src


def test_vectors_firing_together_are_dispatched_by_priority_then_number() -> None:
    table, poller = _fake_table()
    for vector, fd, prio in [(10, 1, 0), (11, 2, 5), (12, 3, 5), (13, 4, -1), (9, 5, 0)]:
        table.register(vector, _stub(poller, fd, ["x"]), priority=prio)
    assert [v for v, _, _ in table.poll(0)] == [11, 12, 9, 10, 13]


def test_a_raising_handler_is_contained_counted_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    table, poller = _fake_table()
    calls: list[int] = []

    def flaky(value: int) -> int:
        calls.append(value)
        if value == 1:
            raise ValueError("sensor glitch")
        return value

    table.register(40, _stub(poller, 5, [1, 2]), flaky, name="flaky")
    with caplog.at_level(logging.ERROR, logger="qpuos.kernel.irq"):
        assert table.poll(0) == []  # dropped, not delivered
    assert [(v, x) for v, x, _ in table.poll(0)] == [(40, 2)]
    s = table.stats(40)
    assert (s.count, s.errors, s.last_error) == (2, 1, "ValueError: sensor glitch")
    assert calls == [1, 2]
    (record,) = caplog.records
    assert record.getMessage().startswith("vector 40 (flaky, fake fd=5): handler raised "
                                          "ValueError: sensor glitch; the interrupt was "
                                          "dropped and the loop goes on")


def test_spurious_wakeups_are_counted_not_delivered() -> None:
    with VectorTable() as table:
        src = EventSource()
        table.register(1, src)
        src.fire()
        sc.eventfd_read(src.fileno())  # someone else drains it before the top half
        assert table.dispatch([1]) == []
        assert table.stats(1).spurious == 1


def test_format_table_reads_like_proc_interrupts() -> None:
    table, poller = _fake_table()
    table.register(32, _stub(poller, 5, [1]), name="doorbell", priority=3)
    table.register(7, _stub(poller, 6, []), name="idle")
    table.poll(0)
    lines = table.format_table().splitlines()
    assert lines[0].split()[:5] == ["VEC", "COUNT", "ERR", "OVERRUN", "SPUR"]
    assert lines[1].split() == ["7:", "0", "0", "0", "0", "-", "-", "-", "0", "fake", "fd=6",
                                "idle"]
    row = lines[2].split()
    assert row[:5] == ["32:", "1", "0", "0", "0"] and row[-4:] == ["3", "fake", "fd=5",
                                                                    "doorbell"]


# ---------------------------------------------------------------------- real sources


def test_eventfd_doorbell_through_epoll() -> None:
    with VectorTable() as table:
        src = EventSource()
        table.register(32, src, lambda n: n * 10)
        doorbell(src.fileno(), 3)
        src.fire(1)
        assert [(v, x) for v, x, _ in _poll_until(table)] == [(32, 40)]
        assert table.poll(0) == []


@pytest.mark.parametrize("precise", [True, False])
def test_epoll_waits_end_at_their_deadline_never_before(precise: bool) -> None:
    fd = sc.eventfd2(0, sc.EFD_CLOEXEC | sc.EFD_NONBLOCK)
    try:
        with Epoll(precise_timeouts=precise) as ep:
            ep.register(fd, 7)
            deadline = time.monotonic_ns() + 2_000_000
            assert ep.poll_until(deadline) == []
            assert time.monotonic_ns() >= deadline
            assert ep.poll(0) == []  # the alarm that ended it was read: not ready again
            assert ep.poll_until(time.monotonic_ns() - 1) == []  # already past: at once
            sc.eventfd_write(fd, 1)
            far = time.monotonic_ns() + 60 * 10**9
            assert ep.poll_until(far) == [7]  # woken by the fd before the deadline
            assert sc.eventfd_read(fd) == 1
            assert ep.poll(1_000_000) == [] and ep.poll(0) == []
    finally:
        sc.close(fd)


def test_epoll_spin_polls_until_ready_or_the_limit() -> None:
    fds = [sc.eventfd2(0, sc.EFD_CLOEXEC | sc.EFD_NONBLOCK) for _ in range(2)]
    try:
        with Epoll() as ep:
            ep.register(fds[0], 3)
            ep.register(fds[1], 4)
            limit = time.monotonic_ns() + 1_000_000
            assert ep.spin(limit) == [] and time.monotonic_ns() >= limit
            sc.eventfd_write(fds[1], 1)
            assert ep.spin(None) == [4]
            sc.eventfd_write(fds[0], 1)
            assert sorted(ep.spin(None)) == [3, 4]  # level-triggered: 4 is still unread
            ep.unregister(fds[1])
            assert ep.spin(time.monotonic_ns()) == [3]
        with pytest.raises(ClosedResourceError, match=r"^this epoll set was closed"):
            ep.poll(0)
        with pytest.raises(ClosedResourceError, match=r"^this epoll set was closed"):
            ep.poll_until(time.monotonic_ns() + 1_000_000)
    finally:
        for fd in fds:
            sc.close(fd)


def test_timer_one_shot_fires_once_with_its_lateness_recorded() -> None:
    with VectorTable() as table:
        t = TimerSource(first_ns=1_000_000)
        due = t.next_expiry_ns()
        assert due is not None
        table.register(0, t, name="tick")
        assert table.next_timer_expiry_ns() == due
        assert [(v, x) for v, x, _ in _poll_until(table)] == [(0, 1)]
        assert t.last_expiry_ns() == due and t.next_expiry_ns() is None
        s = table.stats(0)
        assert s.lateness is not None and s.lateness.samples == 1 and s.lateness.min_ns >= 0
        assert "one-shot" in s.source


def test_periodic_timer_counts_every_expiry_as_ticks_or_overruns() -> None:
    with VectorTable() as table:
        t = TimerSource(period_ns=500_000)
        table.register(0, t)
        delivered = [x for _, x, _ in _poll_until(table, 3)]
        s = table.stats(0)
        assert s.count == len(delivered) and s.overruns == sum(delivered) - len(delivered)
        assert t.next_expiry_ns() == t.last_expiry_ns() + 500_000  # type: ignore[operator]
        t.disarm()
        assert t.next_expiry_ns() is None


def test_timer_ticks_by_the_clock_and_its_timerfd_is_read_before_the_next_wait() -> None:
    with VectorTable() as table:
        t = TimerSource(first_ns=1_000_000)
        table.register(0, t)
        assert [(v, x) for v, x, _ in _poll_until(table)] == [(0, 1)]
        assert table.poll(0) == []  # the drain reads the timerfd: the tick, not again
        assert table.poller.poll(0) == []  # and the fd is no longer readable
        s = table.stats(0)
        assert (s.count, s.spurious, s.overruns) == (1, 0, 0)


def test_a_loop_that_dispatches_itself_reads_the_timerfd_on_the_next_report() -> None:
    with VectorTable() as table:
        t = TimerSource(first_ns=1_000_000)
        table.register(0, t)
        delivered = []
        for _ in range(2000):  # capped: the tick is due within 1 ms
            tokens = table.poller.poll(10_000_000)
            delivered += [(v, x) for v, x, _ in table.dispatch(tokens)]
            if delivered:
                break
        assert delivered == [(0, 1)]
        assert table.dispatch(table.poller.poll(0)) == []  # reported again: read, absorbed
        assert table.poller.poll(0) == []
        assert table.stats(0).count == 1


def test_timer_arguments_are_checked() -> None:
    with pytest.raises(UsageError, match=r"^a one-shot timer needs first_ns or at_ns; a "
                                         r"periodic one needs period_ns$"):
        TimerSource()
    with pytest.raises(UsageError, match=r"^give the first expiry as first_ns \(relative\) "
                                         r"or at_ns \(absolute\), not both$"):
        TimerSource(first_ns=5, at_ns=5)
    with pytest.raises(UsageError, match=r"must be positive"):
        TimerSource(period_ns=-5)


def test_signals_arrive_as_interrupts_and_the_mask_is_restored() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with VectorTable() as table:
        src = SignalSource([signal.SIGUSR1])
        assert signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        table.register(2, src, name="usr1")
        sc.tgkill(os.getpid(), sc.gettid(), signal.SIGUSR1)
        ((vector, infos, _),) = _poll_until(table)
        assert (vector, [(i.signo, i.pid) for i in infos]) == (2, [(signal.SIGUSR1,
                                                                   os.getpid())])
        sc.tgkill(os.getpid(), sc.gettid(), signal.SIGUSR1)  # pending at close: drained
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_signal_source_refuses_uncatchable_signals() -> None:
    with pytest.raises(UsageError, match=r"^signals \[9, 19\] cannot be delivered through a "
                                         r"signalfd"):
        SignalSource([signal.SIGKILL, signal.SIGSTOP, signal.SIGUSR1])
    with pytest.raises(UsageError, match=r"^a SignalSource needs at least one signal"):
        SignalSource([])


def test_any_readable_fd_is_a_source_and_eof_masks_it() -> None:
    r, w = os.pipe()
    with VectorTable() as table:
        table.register(5, FdSource(r, read_size=64, owns_fd=True), name="pipe")
        os.write(w, b"hello")
        assert [(v, x) for v, x, _ in _poll_until(table)] == [(5, b"hello")]
        os.close(w)
        assert table.poll(WAIT) == []
        s = table.stats(5)
        assert s.masked and s.spurious == 1
        assert table.poll(0) == []  # no longer polled: no interrupt storm
    with pytest.raises(OSError):
        os.fstat(r)  # owned: closed with the table


def test_fd_source_without_read_leaves_draining_to_the_handler() -> None:
    r, w = os.pipe()
    with VectorTable() as table:
        table.register(5, FdSource(r, read_size=None), lambda _: os.read(r, 100))
        os.write(w, b"abc")
        assert [x for _, x, _ in _poll_until(table)] == [b"abc"]
    os.close(r)
    os.close(w)
    with pytest.raises(UsageError, match=r"^read_size must be positive or None, got 0$"):
        FdSource(0, read_size=0)


def test_uio_source_reads_the_interrupt_count(tmp_path: Path) -> None:
    path = tmp_path / "uio0"
    os.mkfifo(path)  # stands in for /dev/uio0: a readable node with 4-byte counts
    assert stat.S_ISFIFO(path.stat().st_mode)
    with VectorTable() as table:
        src = UioSource(str(path), rearm=False)
        table.register(3, src, name="edu")
        writer = os.open(path, os.O_WRONLY)
        os.write(writer, (20).to_bytes(4, "little"))
        assert [(v, x) for v, x, _ in _poll_until(table)] == [(3, 20)]
        assert src.describe().startswith(f"uio {path} fd=")
        os.close(writer)


def test_closed_sources_refuse_use() -> None:
    src = EventSource()
    src.close()
    src.close()
    with pytest.raises(ClosedResourceError, match=r"^this eventfd source was closed$"):
        src.fire()





def test_timer_ticks_by_the_clock_are_delivered_once() -> None:
    with VectorTable() as table:
        t = TimerSource(at_ns=10**15 * 9, period_ns=1_000)  # far future: never by kernel
        table.register(0, t)
        first = t.next_expiry_ns()
        assert first is not None
        assert t.expire(first - 1) is NO_EVENT
        assert table.expire_timers(first - 1) == []
        assert t.expire(first + 2_500) == 3  # ticks at +0, +1000, +2000
        assert (t.last_expiry_ns(), t.next_expiry_ns()) == (first + 2_000, first + 3_000)
        assert t.expire(first + 2_900) is NO_EVENT
        ((vector, value, _),) = table.expire_timers(first + 3_000)
        assert (vector, value) == (0, 1)
        s = table.stats(0)
        assert (s.count, s.overruns) == (1, 0)  # expire() on the source is not counted


def test_timer_backstop_moves_the_kernel_timer_not_the_ticks() -> None:
    with VectorTable() as table:
        t = TimerSource(first_ns=5 * 10**9)
        table.register(0, t)
        nominal = t.next_expiry_ns()
        table.timer_backstop_ns = 10 * 10**9
        assert t.backstop_ns == 10 * 10**9 and t.next_expiry_ns() == nominal
        remaining, _ = sc.timerfd_gettime(t.fileno())
        assert remaining > 10 * 10**9  # the kernel fires 10 s after the nominal tick
        table.register(1, t2 := TimerSource(first_ns=10**9))
        assert t2.backstop_ns == 10 * 10**9  # applied to timers registered later
        with pytest.raises(UsageError, match=r"^backstop lag must not be negative"):
            t.set_backstop(-1)

"""The GC guard: measurement per generation, policies, budgets, valves, restoration."""

from __future__ import annotations

import gc
import logging
import mmap
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from qpuos.errors import ClosedResourceError, RealtimeError, UsageError
from qpuos.kernel.scheduler import Scheduler, sleep_until
from qpuos.rt import DegradeEvidence, GCGuard
from qpuos.rt._hist import _Histogram
from qpuos.rt._predict import _PauseModel


def _guard_callbacks() -> list[object]:
    return [cb for cb in gc.callbacks if isinstance(getattr(cb, "__self__", None), GCGuard)]


@pytest.fixture(autouse=True)
def gc_state() -> Iterator[None]:
    """Every test must leave the collector as it found it; this checks, then repairs.

    (hypothesis adds a gc callback of its own while it runs: only the guard's count.)
    """
    before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
    try:
        yield
        assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == before
        assert _guard_callbacks() == []
    finally:
        gc.set_threshold(*before[1])
        (gc.enable if before[0] else gc.disable)()
        for cb in _guard_callbacks():
            gc.callbacks.remove(cb)  # type: ignore[arg-type]


def _cycles(n: int) -> None:
    """Make ``n`` unreachable self-cycles: garbage only the collector frees."""
    for _ in range(n):
        d: dict[str, Any] = {}
        d["self"] = d


# ----------------------------------------------------------------- histogram, model


@given(st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.9, 0.999, 1.0]))
def test_histogram_quantile_is_never_below_and_at_most_a_sixteenth_above(
        values: list[int], q: float) -> None:
    h = _Histogram()
    for v in values:
        h.record(v)
    s = sorted(values)
    true = s[max(0, -(-len(s) * int(q * 1000) // 1000) - 1)]
    got = h.quantile(q)
    assert true <= got <= true + true // 16 + 1
    assert (h.n, h.total, h.max) == (len(values), sum(values), max(values))


def test_histogram_of_nothing_is_zero() -> None:
    assert _Histogram().quantile(0.5) == 0


def test_pause_model_learns_a_line_and_shrugs_off_an_outlier() -> None:
    m = _PauseModel(base_ns=5000, per_object_ns=200)
    assert m.mean(10) == 7000  # the prior until three pauses are seen
    for i in range(200):
        m.update(i * 7 % 500, 1000 + 30 * (i * 7 % 500))
    assert abs(m.mean(400) - 13_000) < 13_000 * 0.03
    calm = m.predict(400)
    assert calm >= m.mean(400)
    m.update(400, 10**9)  # the VM lost the CPU for a second
    assert m.predict(400) < 3 * calm  # clipped: a wider margin for a while, not 1 s
    fresh = _PauseModel(base_ns=5000, per_object_ns=200)
    fresh.update(5, 5 * 10**6)  # even as the very first sample
    assert fresh.predict(5) < 100_000


def test_a_starved_guard_relearns_from_its_prior() -> None:
    with GCGuard("scheduled") as guard:
        for _ in range(50):
            guard._models[0].update(0, 10**6)  # as if young collections took 1 ms
        for _ in range(999):
            guard.idle(50_000)
        assert guard.stats().inside_idle == 0
        guard.idle(50_000)  # the thousandth skipped window: back to the prior
        guard.idle(50_000)
        stats = guard.stats()
    assert (stats.idle_skipped, stats.inside_idle) == (1000, 1)


# -------------------------------------------------------------------------- surface


def test_unknown_policy_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^GC policy 'fast' is not one of default, frozen, "
                                         r"scheduled$"):
        GCGuard("fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"budget_ns": 0}, {"max_pending": 0},
                                    {"young_ratio": 20, "max_young_collections": 10},
                                    {"max_rss_growth": 0}, {"slack_ns": -1}])
def test_bounds_out_of_range_are_usage_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(UsageError, match=r"^GCGuard bounds out of range \(budget_ns="):
        GCGuard("scheduled", **kwargs)  # type: ignore[arg-type]


def test_guard_is_a_resource_entered_once() -> None:
    guard = GCGuard("default")
    with pytest.raises(RealtimeError, match=r"^this GCGuard is not active; use it as "):
        guard.idle(None)
    with guard as g:
        assert g is guard
        with pytest.raises(RealtimeError, match=r"^this GCGuard is already active"), guard:
            pass
        with pytest.raises(RealtimeError, match=r"^another GCGuard \(policy 'frozen'\) is "
                                                r"active|^another GCGuard \(policy 'default'"), \
                GCGuard("frozen"):
            pass
    guard.close()
    for call in (guard.idle, lambda _: guard.check(), lambda _: guard.collect_full()):
        with pytest.raises(ClosedResourceError, match=r"^this GCGuard was closed"):
            call(None)
    with pytest.raises(ClosedResourceError, match=r"^this GCGuard was closed"), guard:
        pass
    assert guard.stats().policy == "default"  # the figures outlive the guard


@pytest.mark.parametrize("policy", ["default", "frozen", "scheduled"])
def test_every_policy_restores_the_collector(policy: str) -> None:
    saved = (gc.isenabled(), gc.get_threshold())
    gc.disable()
    gc.set_threshold(123, 7, 5)
    try:
        guard = GCGuard(policy, max_pending=5000)  # type: ignore[arg-type]
        with guard:
            assert guard._cb in gc.callbacks
            if policy == "scheduled":
                assert (gc.isenabled(), gc.get_threshold()) == (True, (5000, 100, 2**31 - 1))
            else:
                assert (gc.isenabled(), gc.get_threshold()) == (False, (123, 7, 5))
            assert (gc.get_freeze_count() > 0) == (policy == "frozen")
        assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == \
            (False, (123, 7, 5), 0)
        assert guard._cb not in gc.callbacks
    finally:
        gc.set_threshold(*saved[1])
        (gc.enable if saved[0] else gc.disable)()


def test_frozen_policy_leaves_an_earlier_freeze_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with GCGuard("frozen"):
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen  # unfreeze() cannot tell whose they are
    finally:
        gc.unfreeze()


# ----------------------------------------------------------------------- measuring


def test_pauses_are_recorded_per_generation() -> None:
    with GCGuard("default") as guard:
        for gen in (0, 1, 2):
            _cycles(100)
            gc.collect(gen)
        stats = guard.stats()
    assert [g.generation for g in stats.generations] == [0, 1, 2]
    for g in stats.generations:
        assert g.count >= 1, g
        assert g.collected >= 100, g
        assert 0 < g.p50_ns <= g.p999_ns <= g.max_ns <= g.total_ns, g
    assert stats.external >= 3
    assert stats.inside_idle == stats.asked == stats.valve == 0


def test_collect_full_is_counted_as_asked() -> None:
    with GCGuard("scheduled") as guard:
        _cycles(50)
        found = guard.collect_full()
        stats = guard.stats()
    assert found >= 50
    assert stats.asked == 2  # the start-up promotion, then the full collection
    assert stats.generations[2].count >= 1


# -------------------------------------------------------------------------- budgets


def test_degrade_fires_with_evidence_when_a_pause_breaks_the_budget() -> None:
    seen: list[DegradeEvidence] = []
    with GCGuard("default", budget_ns=10**9, on_degrade=seen.append) as guard:
        with guard.phase("issue", budget_ns=1):
            _cycles(200)
            gc.collect(0)
            assert seen == []  # queued: delivered at the phase's exit, a safe point
        (ev,) = seen
        stats = guard.stats()
    assert (ev.kind, ev.phase, ev.generation, ev.budget_ns) == ("pause", "issue", 0, 1)
    assert ev.measured_ns > ev.budget_ns
    assert ev.collected >= 200
    assert ev.detail.startswith("generation 0 collection took ")
    assert ev.detail.endswith(" µs, budget 0.0 µs (phase 'issue')")
    assert stats.degrade == 1


def test_phases_nest_and_restore_their_budgets() -> None:
    seen: list[DegradeEvidence] = []
    with GCGuard("default", budget_ns=10**9, on_degrade=seen.append) as guard:
        outer, inner = guard.phase("shot"), guard.phase("readout", budget_ns=1)
        with outer:
            with inner:
                gc.collect(0)
            gc.collect(0)  # back under the outer phase's generous budget
        gc.collect(0)
        guard.check()
    assert [(e.kind, e.phase) for e in seen] == [("pause", "readout")]
    with pytest.raises(UsageError, match=r"^phase 'x' budget_ns must be at least 1, got 0$"):
        guard.phase("x", budget_ns=0)


def test_pending_garbage_past_the_budget_is_reported_once() -> None:
    seen: list[DegradeEvidence] = []
    with GCGuard("scheduled", budget_ns=1, slack_ns=0, on_degrade=seen.append) as guard:
        _cycles(10)
        guard.idle(1)  # no collection fits in 1 ns
        guard.idle(1)
        stats = guard.stats()
    assert [e.kind for e in seen] == ["pending"]
    assert seen[0].measured_ns > seen[0].budget_ns == 1
    assert (stats.inside_idle, stats.idle_calls, stats.idle_skipped) == (0, 2, 2)


# ---------------------------------------------------------------- schedule, valves


def test_scheduled_policy_collects_only_in_idle_windows_of_a_real_loop() -> None:
    """A 1 kHz periodic task on the kernel scheduler, the guard as its idle hook."""
    seen: list[DegradeEvidence] = []
    history: deque[dict[str, Any]] = deque(maxlen=64)
    with GCGuard("scheduled", on_degrade=seen.append) as guard, \
            Scheduler(idle_hook=guard.idle) as sched:

        async def control() -> None:
            due = time.monotonic_ns()
            for i in range(200):
                due += 1_000_000
                history.append({"seq": i, "tags": [i, i]})  # survivors
                _cycles(3)  # and garbage
                await sleep_until(due)

        sched.run(control(), timeout_ns=30 * 10**9)
        guard.check()
        stats = guard.stats()
    assert stats.inside_idle > 0
    assert stats.automatic == stats.external == 0
    assert stats.outside_idle == stats.asked + stats.valve  # no surprise collection
    assert stats.asked == 1  # the start-up promotion
    assert sum(e.kind == "valve" for e in seen) == stats.valve


def test_young_valve_fires_when_the_loop_never_idles(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[DegradeEvidence] = []
    with caplog.at_level(logging.WARNING, logger="qpuos.rt.gcguard"), \
            GCGuard("scheduled", max_pending=300, on_degrade=seen.append) as guard:
        _cycles(1000)  # the interpreter collects at 301 pending, inside this loop
        assert seen == []
        guard.check()
        stats = guard.stats()
    assert stats.valve >= 1
    assert stats.inside_idle == 0
    assert seen[0].kind == "valve"
    assert seen[0].pending > 300
    assert [e.kind for e in seen] == ["valve"] * stats.valve
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("GC safety valve: the interpreter collected generation 0 "
                               "outside an idle window: ")
    assert 1 <= len(lines) <= stats.valve  # at most one line a second


def test_generation_one_valve_when_no_window_fits_it() -> None:
    seen: list[DegradeEvidence] = []
    with GCGuard("scheduled", young_ratio=1, max_young_collections=3,
                 on_degrade=seen.append) as guard:
        for _ in range(3):
            gc.collect(0)  # someone else's young collections
        guard.idle(None)
        stats = guard.stats()
    assert stats.valve == 1
    assert [(e.kind, e.generation, e.phase) for e in seen] == [("valve", 1, "idle")]
    assert stats.external == 3


def test_memory_valve_collects_old_garbage_when_memory_grows() -> None:
    seen: list[DegradeEvidence] = []
    with GCGuard("scheduled", max_rss_growth=8 * 2**20, rss_every_ns=0,
                 on_degrade=seen.append) as guard:
        blocks: list[dict[str, Any]] = []
        for _ in range(48):
            # A fresh mapping, every page written: resident memory grows whatever
            # the C allocator kept from earlier tests in this process (it could hand
            # a bytearray pages that are resident already).
            data = mmap.mmap(-1, 2**20)
            data.write(b"\x01" * 2**20)
            d: dict[str, Any] = {"data": data}
            d["self"] = d
            blocks.append(d)
        gc.collect(1)  # promote them to the old generation, where idle never looks
        del blocks, d, data  # now 48 MiB of cyclic garbage no young collection can find
        guard.idle(None)
        stats = guard.stats()
    valves = [e for e in seen if e.kind == "valve"]
    assert [(e.generation, e.collected >= 48) for e in valves] == [(2, True)]
    assert "resident memory grew" in valves[0].detail
    assert stats.valve == 1


# ---------------------------------------------------------------- state machine


class ScheduledLoop(RuleBasedStateMachine):
    """A loop that allocates, idles with random windows and enters phases.

    Model: the guard collects outside idle windows only as an announced valve, every
    valve reaches ``on_degrade`` by the next safe point, and the interpreter keeps the
    guard's thresholds.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[DegradeEvidence] = []
        self.saved = (gc.isenabled(), gc.get_threshold())
        self.guard = GCGuard("scheduled", max_pending=2000, on_degrade=self.seen.append)
        self.keep: deque[list[int]] = deque(maxlen=200)
        self.idle_calls = 0

    @initialize()
    def enter(self) -> None:
        self.guard.__enter__()

    @rule(garbage=st.integers(0, 3000), survivors=st.integers(0, 50))
    def work(self, garbage: int, survivors: int) -> None:
        _cycles(garbage)
        self.keep.extend([i] for i in range(survivors))

    @rule(window=st.sampled_from([None, 0, 1_000, 10_000, 100_000, 10_000_000]))
    def idle(self, window: int | None) -> None:
        self.guard.idle(window)
        self.idle_calls += 1
        self.check_delivered()

    @rule(budget=st.integers(1, 10**6), garbage=st.integers(0, 500))
    def phase(self, budget: int, garbage: int) -> None:
        with self.guard.phase("step", budget_ns=budget):
            _cycles(garbage)
        self.check_delivered()

    @precondition(lambda self: self.guard._entered)
    @invariant()
    def only_valves_outside_idle(self) -> None:
        s = self.guard.stats()
        assert s.automatic == s.external == 0
        assert s.outside_idle == s.asked + s.valve
        assert s.idle_calls == self.idle_calls
        assert gc.get_threshold() == (2000, 100, 2**31 - 1)

    def check_delivered(self) -> None:
        # Any allocation may start a valve, stats() included: so sandwich what was
        # delivered between what had happened before and after the safe point.
        before = self.guard.stats()
        self.guard.check()
        delivered = (sum(e.kind == "valve" for e in self.seen), len(self.seen))
        after = self.guard.stats()
        assert before.valve <= delivered[0] <= after.valve
        assert before.degrade <= delivered[1] <= after.degrade

    def teardown(self) -> None:
        self.guard.close()
        assert (gc.isenabled(), gc.get_threshold()) == self.saved
        assert self.guard._cb not in gc.callbacks


TestScheduledLoop = ScheduledLoop.TestCase
TestScheduledLoop.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)

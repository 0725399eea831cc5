"""Staged rollouts on both registry backends: stages open as devices report success, a
burst of failures halts the rollout, and a halted rollout assigns nothing more."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from qpuos.errors import UsageError
from qpuos.firmware.fleet import Registry, SqliteRegistry, open_registry
from qpuos.firmware.rollout import parse_stages


def _fleet(reg: Registry, n: int) -> list[str]:
    ids = [f"dev-{i:02d}" for i in range(n)]
    for dev in ids:
        reg.seen(dev, version="1.0")
    return ids


def _targeted(reg: Registry, version: str) -> set[str]:
    return {r.device_id for r in reg.devices() if r.target_version == version}


def test_stages_open_as_devices_report_success(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        ids = _fleet(reg, 20)
        st0 = reg.start_rollout("2.0", stages=[10, 50, 100], max_failure_rate=0.2)
        assert (st0.state, st0.stage, st0.stage_size, st0.members) == ("running", 0, 2, 20)
        assert _targeted(reg, "2.0") == set(ids[:2])
        reg.report(ids[0], version="1.0", result="current")  # asked before: no attempt
        assert reg.rollout().failed == 0  # type: ignore[union-attr]
        reg.report(ids[0], version="2.0", result="updated")
        assert reg.rollout().stage == 0  # type: ignore[union-attr]
        reg.report(ids[1], version="2.0", result="updated")
        now = reg.rollout()
        assert now is not None and (now.stage, now.stage_size) == (1, 8)
        assert _targeted(reg, "2.0") == set(ids[:10])
        # stage 2 needs ceil(0.8 * 8) = 7 successes: one failure is tolerated
        reg.report(ids[2], version="1.0", result="rolled-back")
        for dev in ids[3:10]:
            reg.report(dev, version="2.0", result="updated")
        now = reg.rollout()
        assert now is not None and (now.stage, now.state) == (2, "running")
        assert _targeted(reg, "2.0") == set(ids)
        for dev in ids[10:]:
            reg.report(dev, version="2.0", result="updated")
        done = reg.rollout()
        assert done is not None and (done.state, done.stage, done.reason) == ("done", 3, None)


def test_a_burst_of_failures_halts_the_rollout(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        ids = _fleet(reg, 10)
        reg.start_rollout("2.0", stages=[50, 100], max_failure_rate=0.2)
        reg.report(ids[0], version="2.0", result="updated")
        reg.report(ids[1], version="1.0", result="rolled-back")  # 1 of 5: tolerated
        assert reg.rollout().state == "running"  # type: ignore[union-attr]
        reg.report(ids[2], version="1.0", result="rolled-back")  # 2 of 5: 40 % > 20 %
        halted = reg.rollout()
        assert halted is not None and halted.state == "halted"
        assert (halted.stage, halted.succeeded, halted.failed) == (0, 1, 2)
        assert halted.reason is not None and "2 of 5 devices failed" in \
            halted.reason and "40%" in halted.reason
        # the rest of stage 1 succeeding changes nothing: the halt is final
        reg.report(ids[3], version="2.0", result="updated")
        reg.report(ids[4], version="2.0", result="updated")
        assert reg.rollout() == halted
        assert _targeted(reg, "2.0") == set(ids[:5])
        assert {r.target_version for r in reg.devices() if r.device_id in ids[5:]} == {None}


def test_a_halted_rollout_never_assigns_its_target(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        ids = _fleet(reg, 4)
        reg.set_target("1.5", devices=ids[2:])  # the later stage's current target
        reg.start_rollout("2.0", stages=[50, 100], max_failure_rate=0.0)
        reg.report(ids[0], version="1.0", result="rolled-back")
        assert reg.rollout().state == "halted"  # type: ignore[union-attr]
        for dev in ids:  # every device keeps checking in and reporting
            reg.seen(dev, version="1.0")
            reg.report(dev, version="2.0" if dev == ids[1] else "1.0", result="updated")
        newcomer = reg.seen("dev-new", version="1.0")
        assert newcomer.target_version is None
        assert [r.target_version for r in reg.devices()] == ["2.0", "2.0", "1.5", "1.5",
                                                             None]
        assert reg.rollout().state == "halted"  # type: ignore[union-attr]


def test_devices_already_running_the_version_count_as_done(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        _fleet(reg, 3)
        reg.seen("dev-00", version="2.0")
        state = reg.start_rollout("2.0", stages=[30, 100], max_failure_rate=0.5)
        # stage 1 is dev-00 alone, already on 2.0: stage 2 opens at once
        assert (state.stage, state.state) == (1, "running")
        assert _targeted(reg, "2.0") == {"dev-00", "dev-01", "dev-02"}


def test_concurrent_reports_open_each_stage_once(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        ids = _fleet(reg, 40)
        reg.start_rollout("2.0", stages=[50, 100], max_failure_rate=0.1)

    def report(part: list[str]) -> None:
        with open_registry(registry_where) as mine:
            for dev in part:
                mine.report(dev, version="2.0", result="updated")

    def in_threads(devs: list[str]) -> None:
        threads = [threading.Thread(target=report, args=(devs[k::4],)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    in_threads(ids[:20])
    with open_registry(registry_where) as reg:
        half = reg.rollout()
        assert half is not None and (half.stage, half.state) == (1, "running")
        assert (half.succeeded, half.failed, half.stage_size) == (0, 0, 20)
        assert _targeted(reg, "2.0") == set(ids)
    in_threads(ids[20:])
    with open_registry(registry_where) as reg:
        done = reg.rollout()
        assert done is not None and (done.state, done.stage) == ("done", 2)
        assert sum(r.reports for r in reg.devices()) == 40


@pytest.mark.parametrize(("text", "why"), [("10,5,100", "increasing"), ("10,50", "ending"),
                                            ("0,100", "1..100"), ("a,b", "integers")])
def test_bad_stages_are_refused(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        parse_stages(text)


def test_a_bad_failure_rate_is_refused(registry_where: str) -> None:
    with open_registry(registry_where) as reg, pytest.raises(UsageError, match=r"1\.5 is outside"):
        reg.start_rollout("2.0", stages=[100], max_failure_rate=1.5)
    with open_registry(registry_where) as reg:
        assert reg.rollout() is None


class RolloutMachine(RuleBasedStateMachine):
    """Random reports against a SQLite registry, checked against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        self.reg = SqliteRegistry(f"{self._dir.name}/f.db")
        self.ids = _fleet(self.reg, 10)
        self.stages = (20, 60, 100)
        self.rate = 0.25
        self.reg.start_rollout("2.0", stages=self.stages, max_failure_rate=self.rate)
        self.stage, self.state = 0, "running"
        self.outcome: dict[str, str] = {}
        self.running: dict[str, str] = {}

    def _stage_of(self, i: int) -> int:
        return 0 if i < 2 else 1 if i < 6 else 2

    @rule(i=st.integers(0, 9), ok=st.booleans())
    def report(self, i: int, ok: bool) -> None:
        dev = self.ids[i]
        self.reg.report(dev, version="2.0" if ok else "1.0",
                        result="updated" if ok else "rolled-back")
        self.running[dev] = "2.0" if ok else "1.0"
        if self.state != "running" or self._stage_of(i) > self.stage or dev in self.outcome:
            return
        self.outcome[dev] = "s" if ok else "f"
        while self.state == "running":
            members = [d for j, d in enumerate(self.ids) if self._stage_of(j) == self.stage]
            got = [self.outcome.get(d) for d in members]
            bad, good = got.count("f"), got.count("s")
            if bad / len(members) > self.rate:
                self.state = "halted"
            elif good >= math.ceil((1 - self.rate) * len(members)):
                self.stage += 1
                if self.stage == len(self.stages):
                    self.state = "done"
                    break
                for j, d in enumerate(self.ids):  # already on 2.0 when the stage opens
                    if self._stage_of(j) == self.stage and self.running.get(d) == "2.0":
                        self.outcome[d] = "s"
            else:
                break

    @invariant()
    def matches_the_model(self) -> None:
        now = self.reg.rollout()
        assert now is not None and (now.state, now.stage) == (self.state, self.stage)
        opened = self.stage + (self.state != "done")
        want = {d for j, d in enumerate(self.ids) if self._stage_of(j) < opened}
        assert _targeted(self.reg, "2.0") == want

    def teardown(self) -> None:
        self.reg.close()
        self._dir.cleanup()


RolloutMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25,
                                            deadline=None)
test_rollout_state_machine = RolloutMachine.TestCase

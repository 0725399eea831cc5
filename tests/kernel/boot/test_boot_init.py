"""PID 1's logic that runs anywhere: config, report lines, steps, signals and reaping."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qpuos.kernel.boot.init import BootConfig, Step, format_stage, run_steps
from qpuos.kernel.boot.qemu import parse_log


def test_config_round_trips_through_json() -> None:
    config = BootConfig(ticks=5, modules=("/lib/modules/uio.ko",),
                        steps=(Step("a", "m:f", {"n": 3, "s": "x"}), Step("b", "m:g")))
    assert BootConfig.from_json(config.to_json()) == config
    assert config.to_json() == BootConfig.from_json(config.to_json()).to_json()


def test_stage_lines_parse_back_on_the_host() -> None:
    lines = [format_stage("loop", True, 2.5, 0.125, "20 ticks\nsecond line"),
             format_stage("edu-irqs", False, 3.0, 1.0, "DeviceFault: lost")]
    stages, summary = parse_log(lines)
    assert [(s.name, s.ok, s.t_s, s.dt_s, s.detail) for s in stages] == [
        ("loop", True, 2.5, 0.125, "20 ticks second line"),
        ("edu-irqs", False, 3.0, 1.0, "DeviceFault: lost")]
    assert summary == ""


def test_steps_run_in_order_and_a_failure_does_not_stop_the_rest() -> None:
    lines: list[str] = []
    steps = (Step("timer", "qpuos.kernel.boot.selftest:timer_loop", {"ticks": 3}),
             Step("bad-entry", "no-colon"),
             Step("raises", "qpuos.kernel.boot.selftest:edu_registers"),
             Step("missing", "qpuos.kernel.boot.selftest:nope"))
    assert run_steps(steps, lines.append) == 1
    stages, _ = parse_log(lines)
    assert [(s.name, s.ok) for s in stages] == [("timer", True), ("bad-entry", False),
                                                 ("raises", False), ("missing", False)]
    assert stages[1].detail == "UsageError: self-test entry 'no-colon' is not 'module:function'"
    assert stages[2].detail.startswith("DeviceFault: no edu PCI device (1234:11e8)")
    assert stages[3].detail.startswith("AttributeError: module 'qpuos.kernel.boot.selftest'")


def test_pid1_reaps_children_and_catches_sigterm() -> None:
    # in a child interpreter: the handlers would otherwise stay in the test process
    code = ("from qpuos.kernel.boot.init import _Pid1\n"
            "p = _Pid1(); p.install(); print(p.prove()); print(p.caught)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert out[0].endswith("reaped with status 7; SIGTERM caught")
    assert out[1] == "['SIGTERM']"


@pytest.mark.parametrize("entry", ["qpuos.kernel.boot.selftest:__doc__"])
def test_a_non_callable_entry_fails_its_step(entry: str) -> None:
    lines: list[str] = []
    assert run_steps((Step("doc", entry),), lines.append) == 0
    assert lines[0].endswith(f"UsageError: self-test entry '{entry}' is not callable")

"""The image boots under QEMU: every stage reported, the edu interrupts counted, a
host-compiled program executed and kprobes counted in the guest, a failing self-test
fails `qpuos boot run`. One boot for the session (conftest), one
more for the failing image, one cut short by a timeout."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from qpuos.errors import BootError, BootFailed
from qpuos.kernel.boot._cli import add_boot_parser
from qpuos.kernel.boot.image import KernelFiles, build_image
from qpuos.kernel.boot.init import BootConfig, Step
from qpuos.kernel.boot.qemu import BootResult, boot

pytestmark = pytest.mark.needs_qemu

STAGES = ["mounts", "kernel", "runtime", "signals", "modules", "loop", "edu-registers",
          "edu-irqs", "circuit", "kprobe"]


def test_every_stage_is_reported_and_passes(booted: BootResult) -> None:
    assert [s.name for s in booted.stages] == STAGES, booted.log
    assert [s.name for s in booted.stages if not s.ok] == []
    assert booted.summary.startswith(f"QPUOS SUMMARY ALLOK {len(STAGES)}/{len(STAGES)}")
    assert booted.ok and not booted.timed_out
    assert "reboot: Power down" in booted.log


def test_stage_times_are_ordered_and_main_was_seen(booted: BootResult) -> None:
    times = [s.t_s for s in booted.stages if s.name != "kernel"]
    assert times == sorted(times)
    assert booted.boot_to_main_s is not None and booted.boot_to_main_s < booted.wall_s
    kernel = booted.stage("kernel")
    assert kernel is not None and re.fullmatch(r"handed over to /init at [\d.]+ s",
                                               kernel.detail)


def test_edu_registers_read_back_the_device(booted: BootResult) -> None:
    stage = booted.stage("edu-registers")
    assert stage is not None
    assert stage.detail == "ID 0x010000ed, liveness ok, factorial(10) = 3628800"


def test_edu_interrupts_arrive_in_the_vector_table_with_the_right_count(
        booted: BootResult, default_config: BootConfig) -> None:
    irqs = default_config.steps[1].args["n"]
    stage = booted.stage("edu-irqs")
    assert stage is not None and stage.ok, stage
    assert re.match(rf"^{irqs} edu interrupts via /dev/uio\d+: vector 32 count {irqs},",
                    stage.detail)


def test_a_program_compiled_on_the_host_runs_in_the_guest(booted: BootResult) -> None:
    stage = booted.stage("circuit")
    assert stage is not None and stage.ok, stage
    m = re.fullmatch(r"GHZ-4 compiled on the host for line:4 \((\d+) records, (\d+) swaps?\),"
                     r" simulated in the guest: max \|dp\| (\S+)", stage.detail)
    assert m is not None, stage.detail
    assert int(m[1]) >= 6 and int(m[2]) >= 1 and float(m[3]) <= 1e-9


def test_kprobes_count_getpid_calls_exactly_in_the_guest(booted: BootResult,
                                                         default_config: BootConfig) -> None:
    """The host has no kprobe PMU; the guest's kernel must have one: the stage passes."""
    calls = next(s.args["calls"] for s in default_config.steps if s.name == "kprobe")
    stage = booted.stage("kprobe")
    assert stage is not None
    assert stage.ok, f"the guest could not run kprobes: {stage.detail}"
    assert re.fullmatch(rf"kprobe and kretprobe on __x64_sys_getpid each counted exactly "
                        rf"{calls} getpid calls of this thread \(kernel 6\.1\.\S+\)",
                        stage.detail), stage.detail


def test_a_failing_self_test_makes_boot_run_fail(tmp_path: Path, kernel: KernelFiles,
                                                 default_config: BootConfig,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "failing"
    failing = "def check():\n    raise AssertionError('deliberately failing self-test')\n"
    steps = (default_config.steps[0], Step("doomed", "doomed_step:check"))
    build_image(image, BootConfig(ticks=3, modules=default_config.modules, steps=steps),
                kernel=kernel, extra_modules={"doomed_step": failing})
    parser = argparse.ArgumentParser(prog="qpuos")
    add_boot_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["boot", "run", "--image", str(image), "--timeout", "180"])
    with pytest.raises(BootFailed, match=r"^boot of .* failed: stages failed: doomed; "):
        args.func(args)
    out = capsys.readouterr().out
    assert "QPUOS STAGE doomed FAIL" in out
    assert "AssertionError: deliberately failing self-test" in out
    assert "QPUOS SUMMARY FAILED 7/8" in out
    assert "QPUOS STAGE edu-registers OK" in out


def test_a_timeout_is_a_failed_result(booted: BootResult, tmp_path: Path,
                                      kernel: KernelFiles) -> None:
    image = tmp_path / "img"
    build_image(image, BootConfig(), kernel=kernel)
    result = boot(image, kernel, timeout_s=0.3)
    assert result.timed_out and not result.ok and result.summary == ""


def test_boot_without_an_image_is_a_boot_error(tmp_path: Path, kernel: KernelFiles) -> None:
    with pytest.raises(BootError, match=r"^no image at .*initramfs\.cpio\.gz; build one "
                                        r"with `qpuos boot build`$"):
        boot(tmp_path, kernel)

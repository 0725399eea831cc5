"""The boot image's kprobe stage, on the host: symbol lookup, refusals that say why,
and the stage itself where this kernel has a kprobe PMU (the guest's has; the boot
tests assert the stage passes there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qpuos.bpf.attach import KPROBE_PMU
from qpuos.bpf.guest_checks import boot_step, getpid_symbol, kprobe_check
from qpuos.errors import BpfError


def test_the_getpid_symbol_prefers_this_architectures_entry(tmp_path: Path) -> None:
    syms = tmp_path / "kallsyms"
    syms.write_text("ffff0000 T sys_getpid\nffff0010 T __ia32_sys_getpid\n"
                    "ffff0020 t __se_sys_getpid\nffff0030 T __x64_sys_getpid\n"
                    "ffff0040 T __x64_sys_getppid\n")
    assert getpid_symbol(syms) == "__x64_sys_getpid"
    syms.write_text("ffff0000 T sys_getpid\nffff0010 T __ia32_sys_getpid\n")
    assert getpid_symbol(syms) == "sys_getpid"


def test_no_getpid_symbol_is_a_bpf_error_listing_what_was_found(tmp_path: Path) -> None:
    syms = tmp_path / "kallsyms"
    syms.write_text("ffff0010 T __ia32_sys_getpid\nffff0040 T __x64_sys_getppid\n")
    with pytest.raises(BpfError, match=r"^no getpid entry point in .*kallsyms \(found "
                                       r"\['__ia32_sys_getpid'\]\); kprobes need one of "
                                       r"__x64_sys_getpid, "):
        getpid_symbol(syms)


def test_a_kernel_without_the_kprobe_pmu_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(BpfError, match=rf"^{re.escape(str(tmp_path / 'none'))} is absent: "
                                       r"kernel \S+ has no kprobe PMU \(CONFIG_KPROBE_EVENTS\)"):
        kprobe_check(pmu=tmp_path / "none")


def test_the_boot_step_names_the_check_and_needs_no_data() -> None:
    step, files = boot_step(data_dir="/etc/qpuos/data", calls=7)
    assert (step.name, step.entry, step.args, files) == (
        "kprobe", "qpuos.bpf.guest_checks:kprobe_check", {"calls": 7}, {})


@pytest.mark.needs_bpf
@pytest.mark.skipif(not KPROBE_PMU.is_dir(),
                    reason=f"{KPROBE_PMU} is absent: this kernel has no kprobe PMU "
                           "(the boot image's kernel has: tests/kernel/boot runs it there)")
def test_the_stage_counts_exactly_on_a_kernel_with_kprobes() -> None:
    assert re.fullmatch(r"kprobe and kretprobe on \S+ each counted exactly 13 getpid calls "
                        r"of this thread \(kernel \S+\)", kprobe_check(calls=13))

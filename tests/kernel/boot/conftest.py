"""Shared fixtures of the boot tests: the QEMU/kernel probe and one boot per session.

The session's image carries every stage: the kernel layer's (edu registers and
interrupts) and those of the layers above it (``circuit``, ``kprobe``).

Booting under TCG takes seconds, so the image is booted once per test session and
every stage is asserted from that one log. Under pytest-xdist each worker is its own
session: the first worker boots, the others wait on a lock and read its result.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from pathlib import Path

import pytest

from qpuos.kernel.boot._cli import provided_steps
from qpuos.kernel.boot.image import PYTHON, KernelFiles, build_image, find_kernel
from qpuos.kernel.boot.init import BootConfig, Step
from qpuos.kernel.boot.qemu import BootResult, Stage, boot, qemu_binary

IRQS = 20
STEPS = (Step("edu-registers", "qpuos.kernel.boot.selftest:edu_registers"),
         Step("edu-irqs", "qpuos.kernel.boot.selftest:edu_irqs", {"n": IRQS}))
MODULES = ("/lib/modules/uio.ko", "/lib/modules/uio_pci_generic.ko")
BOOT_TIMEOUT_S = 180.0


def qemu_refusal() -> str | None:
    """Why the boot tests cannot run here, or None."""
    if not os.path.exists(PYTHON):
        return f"{PYTHON} is absent (scripts/ci_boot_deps.sh installs it)"
    if qemu_binary() is None:
        return "qemu-system-x86_64 is not installed (scripts/ci_boot_deps.sh)"
    if find_kernel() is None:
        return "no kernel cache in .cache/boot (scripts/ci_boot_deps.sh fills it)"
    return None


@pytest.fixture(autouse=True)
def _skip_without_qemu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_qemu") is not None:
        reason = qemu_refusal()
        if reason is not None:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def kernel() -> KernelFiles:
    """The cached guest kernel (tests using it carry needs_qemu)."""
    found = find_kernel()
    if found is None:
        pytest.skip("no kernel cache in .cache/boot (scripts/ci_boot_deps.sh fills it)")
    return found


def _result_to_json(r: BootResult) -> str:
    return json.dumps(dataclasses.asdict(r))


def _result_from_json(text: str) -> BootResult:
    raw = json.loads(text)
    raw["stages"] = tuple(Stage(**s) for s in raw["stages"])
    return BootResult(**raw)


@pytest.fixture(scope="session")
def provided() -> tuple[tuple[Step, ...], dict[str, bytes]]:
    """The steps of the layers above the kernel (circuit, kprobe) and their data files,
    as ``qpuos boot build`` adds them (the program is compiled here, on the host)."""
    steps, files = provided_steps()
    return tuple(steps), files


@pytest.fixture(scope="session")
def default_config(provided: tuple[tuple[Step, ...], dict[str, bytes]]) -> BootConfig:
    """The config of the session's boot: uio modules, edu registers, IRQS interrupts,
    then the circuit and kprobe stages."""
    return BootConfig(modules=MODULES, steps=STEPS + provided[0])


@pytest.fixture(scope="session")
def booted(tmp_path_factory: pytest.TempPathFactory, kernel: KernelFiles,
           default_config: BootConfig,
           provided: tuple[tuple[Step, ...], dict[str, bytes]]) -> BootResult:
    """The default image built and booted once for the whole run (shared by workers)."""
    base = tmp_path_factory.getbasetemp()
    # xdist workers have basetemp <run>/popen-gwN; the run's folder is shared by them
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cached = shared / "qpuos-boot-result.json"
    with open(shared / "qpuos-boot.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.exists():
            return _result_from_json(cached.read_text())
        image = shared / "qpuos-boot-image"
        build_image(image, default_config, kernel=kernel, data_files=provided[1])
        result = boot(image, kernel, timeout_s=BOOT_TIMEOUT_S)
        cached.write_text(_result_to_json(result))
        return result


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A fresh folder for one image."""
    return tmp_path / "image"

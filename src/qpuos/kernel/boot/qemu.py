"""Boot the image under QEMU and read the staged report from the serial console.

QEMU runs the Debian cloud kernel with the image as initramfs and the ``edu`` PCI
device, under TCG (``-accel tcg -cpu max``: KVM is nested on this machine kind and
hangs a stock kernel; ``-cpu max`` gives RDRAND, which with ``random.trust_cpu=on``
avoids a 3-6 s entropy stall before Python can seed its hashes). The console is the
first serial port on QEMU's stdout; each line is stamped with the host's monotonic
clock as it arrives. QEMU exits 0 after a power-off and after a panic alike
(``panic=-1 -no-reboot``), so the verdict is the guest's ``QPUOS SUMMARY`` line.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qpuos.errors import BootError
from qpuos.kernel.boot.image import IMAGE_NAME, KernelFiles

__all__ = ["BootResult", "Stage", "boot", "parse_log", "qemu_binary"]

QEMU = "qemu-system-x86_64"
_APPEND = "console=ttyS0 quiet panic=-1 random.trust_cpu=on"
_STAGE = re.compile(r"^QPUOS STAGE (\S+) (OK|FAIL) t=([\d.]+) dt=([\d.]+) ?(.*)$")
_SUMMARY = re.compile(r"^QPUOS SUMMARY (ALLOK|FAILED) (\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage line: name, verdict, guest boot time (s), duration (s), detail."""

    name: str
    ok: bool
    t_s: float
    dt_s: float
    detail: str


@dataclass(frozen=True, slots=True)
class BootResult:
    """What one boot showed.

    Attributes:
        ok: a ``QPUOS SUMMARY ALLOK`` line arrived and every stage passed.
        stages: the stage lines in order.
        summary: the summary line ("" when none arrived: a panic or a timeout).
        boot_to_main_s: QEMU start -> ``QPUOS MAIN`` on the host's clock (None: never).
        wall_s: QEMU start -> exit (or the timeout).
        timed_out: QEMU was killed at the timeout.
        log: the whole console output.
    """

    ok: bool
    stages: tuple[Stage, ...]
    summary: str
    boot_to_main_s: float | None
    wall_s: float
    timed_out: bool
    log: str

    def stage(self, name: str) -> Stage | None:
        """The stage called ``name``, or None."""
        return next((s for s in self.stages if s.name == name), None)


def parse_log(lines: list[str]) -> tuple[tuple[Stage, ...], str]:
    """The stages and the summary line ("" if none) of a console log.

    >>> stages, summary = parse_log(["noise", "QPUOS STAGE loop OK t=1.200 dt=0.100 up",
    ...                              "QPUOS SUMMARY ALLOK 1/1 t=1.3"])
    >>> stages[0].name, stages[0].ok, stages[0].t_s, summary
    ('loop', True, 1.2, 'QPUOS SUMMARY ALLOK 1/1 t=1.3')
    """
    stages, summary = [], ""
    for raw in lines:
        line = raw.strip()
        m = _STAGE.match(line)
        if m:
            stages.append(Stage(m.group(1), m.group(2) == "OK", float(m.group(3)),
                                float(m.group(4)), m.group(5)))
        elif _SUMMARY.match(line):
            summary = line
    return tuple(stages), summary


def qemu_binary() -> str | None:
    """The path of ``qemu-system-x86_64``, or None if it is not installed."""
    return shutil.which(QEMU)


def boot(image_dir: str | os.PathLike[str], kernel: KernelFiles, *,
         timeout_s: float = 120.0, memory_mb: int = 256,
         on_line: Callable[[float, str], None] | None = None) -> BootResult:
    """Boot ``image_dir/initramfs.cpio.gz`` and collect the guest's report.

    Args:
        image_dir: the directory ``qpuos boot build`` wrote.
        kernel: the guest kernel (``find_kernel()``).
        timeout_s: kill QEMU after this long (TCG on a busy host: allow 60 s or more).
        memory_mb: guest memory.
        on_line: called with (seconds since QEMU start, line) for each console line.

    Returns:
        The result; ``ok`` is the verdict. A timeout is a failed result, not an error.

    Raises:
        BootError: QEMU or the image is missing, or QEMU cannot start.
    """
    qemu = qemu_binary()
    image = Path(image_dir) / IMAGE_NAME
    if qemu is None:
        raise BootError(f"{QEMU} is not installed; run scripts/ci_boot_deps.sh")
    if not image.is_file():
        raise BootError(f"no image at {image}; build one with `qpuos boot build`")
    cmd = [qemu, "-machine", "pc", "-m", str(memory_mb), "-nographic", "-serial", "stdio",
           "-monitor", "none", "-no-reboot", "-nodefaults", "-accel", "tcg", "-cpu", "max",
           "-kernel", str(kernel.vmlinuz), "-initrd", str(image), "-device", "edu",
           "-append", _APPEND]
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as exc:
        raise BootError(f"cannot start {qemu}: {exc}") from exc
    assert proc.stdout is not None
    lines: list[str] = []
    main_at: float | None = None
    timed_out = False
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = t0 + timeout_s - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            now = time.monotonic() - t0
            for raw in done:
                line = raw.decode(errors="replace").rstrip("\r")
                lines.append(line)
                if main_at is None and "QPUOS MAIN" in line:
                    main_at = now
                if on_line is not None:
                    on_line(now, line)
    if timed_out:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    wall = time.monotonic() - t0
    if buf:
        lines.append(buf.decode(errors="replace"))
    stages, summary = parse_log(lines)
    ok = summary.startswith("QPUOS SUMMARY ALLOK") and all(s.ok for s in stages)
    return BootResult(ok, stages, summary, main_at, wall, timed_out, "\n".join(lines))

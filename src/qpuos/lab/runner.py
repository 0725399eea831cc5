"""Run the lab: the chosen probes in turn, the machine record, the noise score.

The noise score has two parts. The load average before and after the run, per CPU: a
machine already busier than its CPUs (load / CPUs > 1) stretches every timing. And the
repeat spread: the median relative interquartile range of all the repeats of a probe.
When either says the machine was too busy, the report carries a warning: the knees may
then be the neighbours' doing, and the confidences are lower for it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from qpuos.errors import UsageError
from qpuos.lab import (
    probe_allocation,
    probe_concurrency,
    probe_ffi,
    probe_monitoring,
    probe_specialization,
    probe_syscalls,
)
from qpuos.lab.model import PROBE_NAMES, Finding, ProbeResult, Size, check_size
from qpuos.lab.scenarios import Scenario, load_scenarios

__all__ = [
    "BUSY_LOAD_PER_CPU",
    "BUSY_SPREAD",
    "PROBES",
    "LabReport",
    "Noise",
    "machine_record",
    "parse_only",
    "run_lab",
]

ProbeRun = Callable[..., ProbeResult]

PROBES: dict[str, ProbeRun] = {
    "concurrency": probe_concurrency.run,
    "allocation": probe_allocation.run,
    "syscalls": probe_syscalls.run,
    "ffi": probe_ffi.run,
    "specialization": probe_specialization.run,
    "monitoring": probe_monitoring.run,
}
"""Probe name -> its ``run(*, size, progress, seed)``, in the order the lab runs them."""
if tuple(PROBES) != PROBE_NAMES:  # pragma: no cover - caught by any test run
    raise ImportError("qpuos.lab.runner.PROBES and model.PROBE_NAMES disagree")

BUSY_LOAD_PER_CPU = 1.0
"""Load average per CPU above which the machine counts as too busy to trust."""
BUSY_SPREAD = 0.25
"""Median relative interquartile range of repeats above which a probe counts as noisy."""


@dataclass(frozen=True, slots=True)
class Noise:
    """How quiet the machine was: load per CPU and repeat spread, and the verdict."""

    load_before: tuple[float, ...]
    load_after: tuple[float, ...]
    cpus: int
    spread: dict[str, float]
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The noise record of report.json."""
        return {"load_before": list(self.load_before), "load_after": list(self.load_after),
                "cpus": self.cpus, "repeat_spread": {k: round(v, 4) for k, v in
                                                     self.spread.items()},
                "too_busy": bool(self.warnings), "warnings": list(self.warnings)}


@dataclass(frozen=True, slots=True)
class LabReport:
    """Everything one ``qpuos lab`` run found."""

    size: Size
    results: tuple[ProbeResult, ...]
    scenarios: tuple[Scenario, ...]
    machine: dict[str, Any]
    versions: dict[str, str]
    noise: Noise
    seconds: float
    started: str

    @property
    def findings(self) -> list[Finding]:
        """Every threshold found, probe by probe."""
        return [f for r in self.results for f in r.findings]


def parse_only(names: str | Sequence[str] | None) -> list[str]:
    """The probes to run, from a comma-separated string (or a list); None for all.

    Raises:
        UsageError: a name that is not a probe (the message lists the valid ones).

    >>> parse_only("ffi, syscalls")
    ['syscalls', 'ffi']
    """
    if names is None:
        return list(PROBES)
    raw = names.split(",") if isinstance(names, str) else list(names)
    wanted = {n.strip() for n in raw if n.strip()}
    unknown = sorted(wanted - set(PROBES))
    if unknown or not wanted:
        shown = ", ".join(unknown) if unknown else "(none given)"
        raise UsageError(f"unknown probe name(s): {shown}; valid: {', '.join(PROBES)}")
    return [n for n in PROBES if n in wanted]


def _load() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return ()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(),
           "implementation": platform.python_implementation()}
    for pkg in ("qpuos", "numpy", "numba", "cffi", "psutil", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine_record() -> dict[str, Any]:
    """CPU count, kernel, architecture, CPU model and host name of this machine.

    >>> machine_record()["cpus"] >= 1
    True
    """
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count() or 1, "kernel": platform.release(),
            "machine": platform.machine(), "cpu_model": model, "node": platform.node()}


def _noise(before: tuple[float, ...], after: tuple[float, ...], cpus: int,
           results: Sequence[ProbeResult]) -> Noise:
    warnings = []
    worst = max([before[0] if before else 0.0, after[0] if after else 0.0])
    if worst / cpus > BUSY_LOAD_PER_CPU:
        warnings.append(f"load average reached {worst:.2f} on {cpus} CPUs (over "
                        f"{BUSY_LOAD_PER_CPU:g} per CPU): other work shared the machine; "
                        "rerun on a quiet machine before trusting the knees")
    spread = {r.probe: r.spread for r in results}
    for name, s in spread.items():
        if s > BUSY_SPREAD:
            warnings.append(f"{name}: repeats spread {100 * s:.0f} % (median IQR / "
                            f"median, over {100 * BUSY_SPREAD:.0f} %): too noisy to trust "
                            "closely")
    return Noise(before, after, cpus, spread, tuple(warnings))


def run_lab(*, size: str = "quick", only: str | Sequence[str] | None = None,
            bench_dir: str | Path = "out", seed: int = 0,
            progress: Callable[[str, float], None] | None = None) -> LabReport:
    """Run the chosen probes and read the scenario table.

    Args:
        size: ``tiny``, ``quick`` or ``full``.
        only: probe names (comma-separated or a list); None for all.
        bench_dir: where the other benchmarks' JSON files are.
        seed: seed of sweep orders and bootstraps.
        progress: told ``(probe name, fraction of that probe done)``.

    Returns:
        The whole run.

    Raises:
        UsageError: an unknown size or probe name.

    >>> r = run_lab(size="tiny", only="specialization", bench_dir="/nonexistent")
    >>> [p.probe for p in r.results]
    ['specialization']
    """
    checked = check_size(size)
    names = parse_only(only)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    before = _load()
    t0 = time.perf_counter()
    results = []
    for name in names:
        def tick(frac: float, name: str = name) -> None:
            if progress is not None:
                progress(name, frac)
        tick(0.0)
        results.append(PROBES[name](size=checked, progress=tick, seed=seed))
        tick(1.0)
    machine = machine_record()
    noise = _noise(before, _load(), int(machine["cpus"]), results)
    return LabReport(checked, tuple(results), tuple(load_scenarios(bench_dir)), machine,
                     _versions(), noise, time.perf_counter() - t0, started)

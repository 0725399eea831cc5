"""What every ``qpuos bench`` shares: the machine record, the JSON shape, geometric means.

The JSON each benchmark writes (DESIGN.md)::

    {"benchmark": NAME, "command": ..., "machine": {cpus, load_before, load_after, kernel},
     "versions": {...}, "results": [{"impl", "metric", "value", "unit", ...}, ...],
     "targets": [{"name", "measured", "goal", "unit", "met"}, ...]}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from qpuos._atomic import atomic_write_text

__all__ = ["BenchRecord", "Target", "geomean", "shared_dir", "versions"]


def geomean(values: Iterable[float]) -> float:
    """Geometric mean of positive values (nan for none)."""
    vals = list(values)
    if not vals:
        return math.nan
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def shared_dir() -> Path:
    """The shared folder beside the checkout (``QPUOS_SHARED`` overrides)."""
    env = os.environ.get("QPUOS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` plus Python's."""
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class Target:
    """One goal of the benchmark's issue and whether this run met it."""

    name: str
    measured: float
    goal: float
    unit: str
    met: bool


@dataclass
class BenchRecord:
    """Accumulates results and targets, then writes the JSON."""

    name: str
    packages: tuple[str, ...] = ()
    results: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    load_before: list[float] = field(default_factory=_load)

    def add(self, impl: str, metric: str, value: float, unit: str, **extra: Any) -> None:
        """Record one measured value."""
        self.results.append({"impl": impl, "metric": metric, "value": value, "unit": unit,
                             **extra})

    def target(self, name: str, measured: float, goal: float, unit: str, *,
               at_most: bool = True) -> Target:
        """Record a target: met when ``measured <= goal`` (or ``>=`` with at_most=False)."""
        met = measured <= goal if at_most else measured >= goal
        t = Target(name, measured, goal, unit, bool(met and not math.isnan(measured)))
        self.targets.append(t)
        return t

    def print_targets(self, console: Any) -> None:
        """Print the targets as a table: measured, goal, and whether it was met."""
        from rich.table import Table

        table = Table(title="targets")
        for col in ("target", "measured", "goal", "met"):
            table.add_column(col)
        for tg in self.targets:
            if tg.unit.endswith("/s") and tg.goal >= 1e6:
                shown = f"{tg.measured / 1e6:.4g} M{tg.unit}"
                goal = f"{tg.goal / 1e6:g} M"
            else:
                shown, goal = f"{tg.measured:.4g} {tg.unit}", f"{tg.goal:.4g}"
            table.add_row(tg.name, shown, goal, "[green]yes[/]" if tg.met else "[red]no[/]")
        console.print(table)

    def to_json(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON document DESIGN.md specifies."""
        doc: dict[str, Any] = {
            "benchmark": self.name,
            "command": "qpuos bench " + self.name + " " + shlex.join(sys.argv[3:])
            if sys.argv[1:2] == ["bench"] else shlex.join(sys.argv),
            "machine": {"cpus": os.cpu_count(), "load_before": self.load_before,
                        "load_after": _load(), "kernel": platform.release(),
                        "machine": platform.machine()},
            "versions": versions("qpuos", *self.packages),
            "results": self.results,
            "targets": [dataclasses.asdict(t) for t in self.targets],
        }
        if extra:
            doc.update(extra)
        return doc

    def write(self, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
              ) -> None:
        """Write the JSON atomically."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_json(extra), indent=1) + "\n")

"""What a probe returns: its sweeps (as plot panels), its findings, and what it missed.

A probe sweeps, repeats, and runs a detector of :mod:`qpuos.lab.knee` over each sweep it
means to search. Every search ends as either a :class:`Finding` (a threshold, with the
ratio it costs and the confidence from the repeats) or a :class:`Miss` (no threshold in
the swept range, and why), so a report can always say what was looked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from qpuos.errors import UsageError

__all__ = ["PROBE_NAMES", "SIZES", "Finding", "Mark", "Miss", "Panel", "ProbeResult",
           "Progress", "Series", "Size", "check_size", "relative_spread"]

Size = Literal["tiny", "quick", "full"]
"""How big a sweep is: ``tiny`` for tests (seconds), ``quick`` for ``qpuos lab --quick``
(tens of seconds per probe), ``full`` for ``qpuos lab`` (minutes per probe)."""

SIZES: tuple[Size, ...] = ("tiny", "quick", "full")

PROBE_NAMES: tuple[str, ...] = ("concurrency", "allocation", "syscalls", "ffi",
                                "specialization", "monitoring")
"""The probes, in the order the lab runs them (the names report.json uses)."""

Progress = Callable[[float], None]
"""Called by a probe with the fraction of its sweep done (0..1)."""


def check_size(size: str) -> Size:
    """Return ``size`` if it is one of :data:`SIZES`, else raise UsageError.

    >>> check_size("quick")
    'quick'
    """
    for s in SIZES:
        if size == s:
            return s
    raise UsageError(f"unknown sweep size {size!r}; use one of {', '.join(SIZES)}")


@dataclass(frozen=True, slots=True)
class Series:
    """One measured curve: the repeats at each sweep point."""

    label: str
    x: tuple[float, ...]
    reps: tuple[tuple[float, ...], ...]

    @classmethod
    def of(cls, label: str, x: Sequence[float], reps: Sequence[Sequence[float]]) -> Series:
        """Build from any sequences (converted to float tuples)."""
        return cls(label, tuple(float(v) for v in x),
                   tuple(tuple(float(v) for v in r) for r in reps))

    def medians(self) -> list[float]:
        """The median of the repeats at each point."""
        return [float(np.median(r)) for r in self.reps]

    def quartiles(self) -> tuple[list[float], list[float]]:
        """The 25th and 75th percentiles at each point (for error bars)."""
        return ([float(np.percentile(r, 25)) for r in self.reps],
                [float(np.percentile(r, 75)) for r in self.reps])


@dataclass(frozen=True, slots=True)
class Mark:
    """A vertical line on a panel: where a threshold was found."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Panel:
    """One plot: several series on shared axes, with the thresholds marked."""

    title: str
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    log_x: bool = True
    log_y: bool = True
    marks: tuple[Mark, ...] = ()
    hline: float | None = None
    categories: tuple[str, ...] = ()
    """When set, x is 0..len-1 and these name the bars (a bar chart, not a curve)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One threshold found: the record ``report.json`` lists under ``findings``."""

    probe: str
    quantity: str
    threshold: float
    unit: str
    ratio: float
    confidence: float
    text: str

    def to_json(self) -> dict[str, Any]:
        """The record exactly as the report's ``findings`` list holds it."""
        ratio = self.ratio if math.isfinite(self.ratio) else None
        return {"probe": self.probe, "quantity": self.quantity,
                "threshold": _round(self.threshold), "unit": self.unit,
                "ratio": None if ratio is None else round(ratio, 3),
                "confidence": round(self.confidence, 3), "text": self.text}


def _round(v: float) -> float | int:
    """Integers stay integers; others keep 4 significant digits."""
    if float(v).is_integer():
        return int(v)
    return float(f"{v:.4g}")


@dataclass(frozen=True, slots=True)
class Miss:
    """A quantity searched for where no threshold showed in the swept range."""

    probe: str
    quantity: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Everything one probe measured and concluded."""

    probe: str
    title: str
    panels: tuple[Panel, ...]
    findings: tuple[Finding, ...]
    misses: tuple[Miss, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    spread: float = field(default=0.0)

    def searched(self) -> set[str]:
        """Every quantity this probe looked for (found or missed)."""
        return {f.quantity for f in self.findings} | {m.quantity for m in self.misses}


def relative_spread(panels: Sequence[Panel]) -> float:
    """Median relative interquartile range of the repeats over all points of all panels.

    The noise score's repeat part: 0.05 means the middle half of the repeats usually
    lies within 5 % of their median.

    >>> s = Series.of("a", [1, 2], [[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    >>> relative_spread([Panel("p", "x", "y", (s,))])
    0.0
    """
    vals = []
    for p in panels:
        for s in p.series:
            for r in s.reps:
                med = float(np.median(r))
                if len(r) > 1 and med > 0:
                    q1, q3 = np.percentile(r, [25, 75])
                    vals.append(float(q3 - q1) / med)
    return float(np.median(vals)) if vals else 0.0

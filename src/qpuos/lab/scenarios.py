"""The scenario table: "can Python do X" answered from the other benchmarks' JSON files.

Each ``qpuos bench NAME --json FILE`` writes the document DESIGN.md specifies (see
``benchmarks/_common.py``): ``{"benchmark", "command", "machine", "versions",
"results": [{"impl", "metric", "value", "unit", ...}], "targets": [{"name",
"measured", "goal", "unit", "met"}]}``. The lab reads every ``*.json`` in a folder
whose ``benchmark`` names one of :data:`SCENARIOS` and turns its targets into rows:
measured Y against goal Z, met or not, with the implementations the run compared (its
anchors). A benchmark with no file shows as not run, with the command that makes one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SCENARIOS", "Scenario", "ScenarioRow", "load_scenarios"]

SCENARIOS: tuple[tuple[str, str], ...] = (
    ("ring", "move instructions between processes through shared memory in microseconds"),
    ("irq", "answer a device's doorbell (an interrupt) within microseconds"),
    ("gc", "keep garbage-collection pauses inside a controller's budget"),
    ("issue", "issue each instruction at its timestamp"),
    ("fw", "ship signed firmware to a fleet over TLS 1.3"),
    ("boot", "boot a trimmed Python as a controller's PID 1"),
    ("route", "route circuits onto a device as well as Qiskit"),
    ("heap", "run an arena allocator at a million operations a second"),
    ("syscall", "make raw system calls through its own gate"),
    ("bpf", "load and run eBPF programs with no clang"),
)
"""(benchmark name, what it asks Python to do), in the order the report lists them."""


@dataclass(frozen=True, slots=True)
class ScenarioRow:
    """One target of a benchmark run: measured against goal."""

    name: str
    measured: float
    goal: float
    unit: str
    met: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark's answer (``rows`` empty and ``source`` None when it was not run)."""

    name: str
    question: str
    source: str | None
    command: str
    anchors: tuple[str, ...]
    rows: tuple[ScenarioRow, ...]

    def verdict(self) -> str:
        """"yes", "partly", "no" or "not run", from the targets met."""
        if not self.rows:
            return "not run"
        met = sum(r.met for r in self.rows)
        return "yes" if met == len(self.rows) else ("no" if met == 0 else "partly")


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _documents(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable benchmark document in ``folder`` (others are skipped)."""
    docs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("benchmark"), str):
            docs.append((path, doc))
    return docs


def load_scenarios(folder: str | Path) -> list[Scenario]:
    """The scenario table from the benchmark JSON files in ``folder``.

    When several files hold the same benchmark, the one named ``bench_NAME.json`` wins,
    else the first by name. A missing folder gives a table where nothing was run.

    Args:
        folder: where ``qpuos bench NAME --json ...`` wrote its files.

    Returns:
        One :class:`Scenario` per entry of :data:`SCENARIOS`, in that order.

    >>> [s.verdict() for s in load_scenarios("/nonexistent")][:2]
    ['not run', 'not run']
    """
    folder = Path(folder)
    by_name: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, doc in _documents(folder):
        name = doc["benchmark"]
        if name not in by_name or path.name == f"bench_{name}.json":
            by_name[name] = (path, doc)
    out = []
    for name, question in SCENARIOS:
        hint = f"qpuos bench {name} --json {folder / f'bench_{name}.json'}"
        if name not in by_name:
            out.append(Scenario(name, question, None, hint, (), ()))
            continue
        path, doc = by_name[name]
        rows = tuple(
            ScenarioRow(str(t.get("name", "?")), _number(t.get("measured")),
                        _number(t.get("goal")), str(t.get("unit", "")), bool(t.get("met")))
            for t in doc.get("targets", []) if isinstance(t, dict))
        impls = dict.fromkeys(str(r.get("impl")) for r in doc.get("results", [])
                              if isinstance(r, dict) and r.get("impl") is not None)
        out.append(Scenario(name, question, str(path), str(doc.get("command", hint)),
                            tuple(impls), rows))
    return out

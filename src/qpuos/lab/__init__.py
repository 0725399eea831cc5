"""The thresholds lab: where Python's limits are on this machine, found and shown.

Six probes sweep a parameter with repeats and let a knee or step detector
(:mod:`qpuos.lab.knee`) locate each threshold, with a confidence from the repeats; a
scenario table reads the other benchmarks' results; :func:`write_report` writes a
self-contained HTML page and a JSON file. ``qpuos lab`` runs it all.

Names load on first use, so that ``qpuos`` building its parser (which imports
``qpuos.lab._cli``) does not pay for numpy, numba or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qpuos.lab.knee import (
        Knee,
        find_crossover,
        find_hinge,
        find_inverse_crossing,
        find_step,
    )
    from qpuos.lab.model import PROBE_NAMES, Finding, Miss, Panel, ProbeResult, Series
    from qpuos.lab.report import write_report
    from qpuos.lab.runner import PROBES, LabReport, run_lab
    from qpuos.lab.scenarios import Scenario, load_scenarios

__all__ = [
    "PROBES",
    "PROBE_NAMES",
    "Finding",
    "Knee",
    "LabReport",
    "Miss",
    "Panel",
    "ProbeResult",
    "Scenario",
    "Series",
    "find_crossover",
    "find_hinge",
    "find_inverse_crossing",
    "find_step",
    "load_scenarios",
    "run_lab",
    "write_report",
]

_HOME = {
    "Knee": "knee", "find_crossover": "knee", "find_hinge": "knee",
    "find_inverse_crossing": "knee", "find_step": "knee",
    "PROBE_NAMES": "model", "Finding": "model", "Miss": "model", "Panel": "model",
    "ProbeResult": "model", "Series": "model",
    "write_report": "report",
    "PROBES": "runner", "LabReport": "runner", "run_lab": "runner",
    "Scenario": "scenarios", "load_scenarios": "scenarios",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'qpuos.lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"qpuos.lab.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

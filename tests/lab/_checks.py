"""Shared checks for the probe smoke tests: a result is well formed."""

from __future__ import annotations

import math
from types import ModuleType

from qpuos.lab.model import ProbeResult


def check_result(result: ProbeResult, module: ModuleType) -> None:
    """Every quantity searched exactly once; findings, panels and notes well formed."""
    assert result.probe == module.PROBE
    names = [f.quantity for f in result.findings] + [m.quantity for m in result.misses]
    assert sorted(names) == sorted(module.QUANTITIES), names
    for f in result.findings:
        assert f.probe == module.PROBE
        assert math.isfinite(f.threshold), f
        assert f.unit and f.text, f
        assert 0.0 <= f.confidence <= 1.0, f
        record = f.to_json()
        assert set(record) == {"probe", "quantity", "threshold", "unit", "ratio",
                               "confidence", "text"}
    for m in result.misses:
        assert m.probe == module.PROBE and m.reason, m
    assert result.panels, "a probe shows at least one sweep"
    for p in result.panels:
        assert p.series, p.title
        for s in p.series:
            assert len(s.x) == len(s.reps) > 0, (p.title, s.label)
            assert all(len(r) > 0 and all(math.isfinite(v) for v in r) for r in s.reps)
        if p.categories:
            assert all(len(s.x) == len(p.categories) for s in p.series)
    assert result.seconds > 0
    assert result.spread >= 0

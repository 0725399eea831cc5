"""The runner: probe selection, the noise score, a tiny run end to end."""

from __future__ import annotations

import pytest

from qpuos.errors import UsageError
from qpuos.lab.model import Panel, ProbeResult, Series
from qpuos.lab.runner import PROBES, _noise, parse_only, run_lab


def test_parse_only_keeps_run_order() -> None:
    assert parse_only(None) == list(PROBES)
    assert parse_only("monitoring,ffi") == ["ffi", "monitoring"]
    assert parse_only(["syscalls"]) == ["syscalls"]


def test_unknown_probe_names_list_the_valid_ones() -> None:
    with pytest.raises(UsageError, match=r"^unknown probe name\(s\): gpu, nope; valid: "
                                         r"concurrency, allocation, syscalls, ffi, "
                                         r"specialization, monitoring$"):
        parse_only("nope,ffi,gpu")
    with pytest.raises(UsageError, match=r"^unknown probe name\(s\): \(none given\); "):
        parse_only(" , ")


def _result(spread: float) -> ProbeResult:
    s = Series.of("a", [1], [[1.0]])
    return ProbeResult("ffi", "t", (Panel("p", "x", "y", (s,)),), (), (), (), 1.0, spread)


def test_noise_warns_when_busy_or_spread() -> None:
    quiet = _noise((0.5, 0.5, 0.5), (0.6, 0.5, 0.5), 2, [_result(0.01)])
    assert quiet.warnings == ()
    busy = _noise((4.0, 1.0, 1.0), (1.0, 1.0, 1.0), 2, [_result(0.5)])
    assert len(busy.warnings) == 2
    assert busy.warnings[0].startswith("load average reached 4.00 on 2 CPUs")
    assert busy.warnings[1].startswith("ffi: repeats spread 50 %")
    assert busy.to_json()["too_busy"] is True


def test_tiny_run_reports_progress(tmp_path: object) -> None:
    seen: list[tuple[str, float]] = []
    report = run_lab(size="tiny", only="syscalls,specialization", bench_dir="/nonexistent",
                     progress=lambda n, f: seen.append((n, f)))
    assert [r.probe for r in report.results] == ["syscalls", "specialization"]
    assert seen[0] == ("syscalls", 0.0) and seen[-1] == ("specialization", 1.0)
    assert report.findings == [f for r in report.results for f in r.findings]
    assert report.noise.cpus >= 1 and report.versions["python"]

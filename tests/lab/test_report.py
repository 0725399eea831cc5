"""The report: report.json's findings as specified, a self-contained page that renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qpuos.lab.model import Finding, Mark, Miss, Panel, ProbeResult, Series
from qpuos.lab.report import render_html, render_panel, write_report
from qpuos.lab.runner import LabReport, Noise, machine_record
from qpuos.lab.scenarios import load_scenarios

_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report(tmp_path: Path) -> LabReport:
    xs = [16.0 * i for i in range(1, 20)]
    reps = [[50.0 + (i % 3), 51.0, 49.0] if x <= 160 else [75.0, 76.0, 74.0]
            for i, x in enumerate(xs)]
    result = ProbeResult(
        "allocation", "Allocation", (
            Panel("bytes(n)", "bytes", "ns", (Series.of("bytes(n)", xs, reps),),
                  log_x=False, log_y=False, marks=(Mark(160.0, "160"),)),
            Panel("routes", "route", "ns", (Series.of("ns", [0, 1], [[3.0, 4.0], [9.0]]),),
                  log_x=False, log_y=False, categories=("a <b>", "c")),
        ),
        (Finding("allocation", "small_object_size", 160.0, "bytes", 1.5, 0.97,
                 "allocations above 160 bytes cost 1.5x <&>"),),
        (Miss("allocation", "page_size", "no step"),), ("a note",), 1.0, 0.02)
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench_ring.json").write_text(json.dumps({
        "benchmark": "ring", "command": "qpuos bench ring", "results": [
            {"impl": "SpscRing", "metric": "p50", "value": 0.4, "unit": "us"}],
        "targets": [{"name": "p50", "measured": 0.4, "goal": 0.6, "unit": "us",
                     "met": True}]}))
    noise = Noise((3.0, 2.0, 1.0), (4.0, 2.0, 1.0), 2, {"allocation": 0.02},
                  ("load average reached 4.00 on 2 CPUs",))
    return LabReport("tiny", (result,), tuple(load_scenarios(bench)), machine_record(),
                     {"python": "3.11"}, noise, 1.5, "2026-01-01T00:00:00Z")


def test_json_findings_are_exactly_the_issue_records(tmp_path: Path) -> None:
    page, doc_path = write_report(_report(tmp_path), tmp_path / "out")
    doc = json.loads(doc_path.read_text())
    assert doc["findings"] == [{
        "probe": "allocation", "quantity": "small_object_size", "threshold": 160,
        "unit": "bytes", "ratio": 1.5, "confidence": 0.97,
        "text": "allocations above 160 bytes cost 1.5x <&>"}]
    assert doc["noise"]["too_busy"] is True
    assert doc["machine"]["cpus"] >= 1 and doc["versions"]["python"] == "3.11"
    verdicts = {s["benchmark"]: s["verdict"] for s in doc["scenarios"]}
    assert verdicts["ring"] == "yes" and verdicts["irq"] == "not run"
    assert page.is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html",
                                                                    "report.json"]


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    text = render_html(_report(tmp_path))
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*""", text,
                          flags=re.IGNORECASE)
    assert external == []
    assert "<link" not in text and "<script" not in text
    assert text.count('src="data:image/png;base64,') == 2
    assert "cost 1.5x &lt;&amp;&gt;" in text
    assert "Too busy to trust" in text
    assert "searched, none found" in text


def test_panel_renders_to_png() -> None:
    s = Series.of("a", [1, 2, 4, 8], [[1.0, 1.2], [1.1], [2.0], [4.0, 4.1]])
    data = render_panel(Panel("t", "x", "y", (s,), marks=(Mark(2.0, "2"),), hline=1.5))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(_CHROMIUM is None, reason="headless Chromium is not installed "
                                              "(scripts/ci_lab_deps.sh installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from PIL import Image

    page, _ = write_report(_report(tmp_path), tmp_path / "out")
    shot = tmp_path / "shot.png"
    assert _CHROMIUM is not None
    proc = subprocess.run(
        [_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}): " \
                           f"{proc.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 10.0, "the screenshot is blank"
    # the plots are there: a good share of the page is neither white nor near-white
    assert (pixels < 200).mean() > 0.01

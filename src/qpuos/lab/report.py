"""The lab's output: a self-contained ``report.html`` and ``report.json``.

The HTML has no external reference at all: styles inline, every plot a PNG embedded as
a ``data:`` URI (matplotlib's Agg canvas, no pyplot state). One section per probe: its
findings with their confidence, what it searched for and did not find, its notes, and
its sweep plots with the knees marked (median of the repeats, interquartile bars).

``report.json`` holds ``findings`` exactly as the issue specifies (one record per
threshold: probe, quantity, threshold, unit, ratio, confidence, text) beside the
machine, versions, noise score, per-probe detail and the scenario table. Both files are
written together, atomically (:func:`qpuos._atomic.write_files_atomically`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from qpuos._atomic import write_files_atomically
from qpuos.lab.model import Panel, ProbeResult
from qpuos.lab.runner import LabReport
from qpuos.lab.scenarios import Scenario

__all__ = ["render_html", "render_panel", "report_json", "write_report"]

_STYLE = """
body{font-family:sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f0f0f0}.warn{background:#fff3cd;
border:1px solid #e0c060;padding:.6em;margin:.5em 0}.miss{color:#666}
.plots img{max-width:49%;margin:.2em 0}.yes{color:#176b2c}.no{color:#a31515}
.partly{color:#8a6d00}.muted{color:#777}
"""


def render_panel(panel: Panel, *, dpi: int = 90) -> bytes:
    """One panel as a PNG: medians with interquartile bars, knees as dashed lines.

    >>> from qpuos.lab.model import Series
    >>> s = Series.of("a", [1, 2, 4], [[1.0, 1.1], [1.0, 1.2], [3.0, 3.1]])
    >>> render_panel(Panel("t", "x", "y", (s,)))[:4]
    b'\\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if panel.categories:
        for s in panel.series:
            lo, hi = s.quartiles()
            med = s.medians()
            ax.bar(range(len(med)), med, yerr=[[m - a for m, a in zip(med, lo, strict=True)],
                                               [b - m for m, b in zip(med, hi, strict=True)]],
                   color="#4878a8", capsize=3)
        ax.set_xticks(range(len(panel.categories)), panel.categories, rotation=25,
                      ha="right", fontsize=8)
    else:
        for s in panel.series:
            lo, hi = s.quartiles()
            med = s.medians()
            ax.errorbar(s.x, med, yerr=[[max(0.0, m - a) for m, a in zip(med, lo, strict=True)],
                                        [max(0.0, b - m) for m, b in zip(med, hi, strict=True)]],
                        marker="o", markersize=3, capsize=2, linewidth=1.2, label=s.label)
        if panel.log_x:
            ax.set_xscale("log")
        if panel.log_y and all(v > 0 for s in panel.series for v in s.medians()):
            ax.set_yscale("log")
        for mark in panel.marks:
            ax.axvline(mark.x, color="#c03030", linestyle="--", linewidth=1.2)
            ax.annotate(f"knee: {mark.label}", (mark.x, 0.96), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=7, color="#c03030")
        if panel.hline is not None:
            ax.axhline(panel.hline, color="#888", linestyle=":", linewidth=1)
        if len(panel.series) > 1:
            ax.legend(fontsize=7)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.x_label, fontsize=9)
    ax.set_ylabel(panel.y_label, fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _e(v: object) -> str:
    return html.escape(str(v))


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _threshold(v: float, unit: str) -> str:
    if unit == "seconds" and v < 1:
        return f"{v * 1e6:,.0f} us" if v < 1e-3 else f"{v * 1e3:.3g} ms"
    return f"{_fmt(v)} {_e(unit)}"


def _probe_section(r: ProbeResult) -> str:
    parts = [f'<section id="{_e(r.probe)}"><h2>{_e(r.title)} '
             f'<span class="muted">({_e(r.probe)}, {r.seconds:.1f} s, repeat spread '
             f'{100 * r.spread:.1f} %)</span></h2>']
    if r.findings:
        parts.append("<table><tr><th>quantity</th><th>threshold</th><th>ratio</th>"
                     "<th>confidence</th><th>finding</th></tr>")
        for f in r.findings:
            parts.append(f"<tr><td>{_e(f.quantity)}</td><td>{_threshold(f.threshold, f.unit)}"
                         f"</td><td>x{_fmt(f.ratio)}</td>"
                         f"<td>{100 * f.confidence:.0f} %</td><td>{_e(f.text)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No threshold found in the swept ranges.</p>")
    for m in r.misses:
        parts.append(f'<p class="miss">searched, none found: <b>{_e(m.quantity)}</b>: '
                     f"{_e(m.reason)}</p>")
    if r.notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in r.notes) + "</ul>")
    parts.append('<div class="plots">')
    for p in r.panels:
        data = base64.b64encode(render_panel(p)).decode("ascii")
        parts.append(f'<img alt="{_e(p.title)}" src="data:image/png;base64,{data}">')
    parts.append("</div></section>")
    return "\n".join(parts)


def _scenario_section(scenarios: tuple[Scenario, ...]) -> str:
    rows = ["<section id=\"scenarios\"><h2>Scenarios: can Python ...</h2><table>"
            "<tr><th>benchmark</th><th>can Python ...</th><th>verdict</th>"
            "<th>measured vs goal</th><th>compared</th></tr>"]
    for s in scenarios:
        if not s.rows:
            detail = f'<span class="muted">no JSON: run <code>{_e(s.command)}</code></span>'
        else:
            detail = "<br>".join(
                f"{_e(t.name)}: measured {_fmt(t.measured)} {_e(t.unit)}, goal "
                f"{_fmt(t.goal)} ({'met' if t.met else 'not met'})" for t in s.rows)
        verdict = s.verdict()
        rows.append(f"<tr><td>{_e(s.name)}</td><td>{_e(s.question)}</td>"
                    f'<td class="{verdict.replace(" ", "-")}">{_e(verdict)}</td>'
                    f"<td>{detail}</td><td>{_e(', '.join(s.anchors))}</td></tr>")
    rows.append("</table></section>")
    return "\n".join(rows)


def render_html(report: LabReport) -> str:
    """The whole report as one self-contained HTML page."""
    n = report.noise
    head = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>qpuos lab: Python's thresholds on {_e(report.machine['node'])}</title>"
            f"<style>{_STYLE}</style></head><body>",
            "<h1>qpuos lab: where Python's limits are on this machine</h1>",
            f"<p>{_e(report.started)}, {_e(report.size)} sweep, {report.seconds:.0f} s. "
            f"Machine: {_e(report.machine['cpu_model'])}, {report.machine['cpus']} CPUs, "
            f"{_e(report.machine['machine'])}, Linux {_e(report.machine['kernel'])}. "
            "Versions: " + _e(", ".join(f"{k} {v}" for k, v in report.versions.items()))
            + f". Load average before {_e(list(n.load_before))}, after "
            f"{_e(list(n.load_after))}.</p>"]
    for w in n.warnings:
        head.append(f'<div class="warn">Too busy to trust: {_e(w)}</div>')
    head.append("<h2>Findings</h2><p>Every threshold below was located by a knee or step "
                "detector on a sweep with repeats; the confidence is the fraction of "
                "bootstrap resamples of the repeats that find it again.</p><table>"
                "<tr><th>probe</th><th>quantity</th><th>threshold</th><th>confidence</th>"
                "<th>finding</th></tr>")
    for f in report.findings:
        head.append(f'<tr><td><a href="#{_e(f.probe)}">{_e(f.probe)}</a></td>'
                    f"<td>{_e(f.quantity)}</td><td>{_threshold(f.threshold, f.unit)}</td>"
                    f"<td>{100 * f.confidence:.0f} %</td><td>{_e(f.text)}</td></tr>")
    head.append("</table>")
    body = [_probe_section(r) for r in report.results]
    return "\n".join([*head, *body, _scenario_section(report.scenarios), "</body></html>"])


def _clean(v: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def report_json(report: LabReport) -> dict[str, Any]:
    """The report.json document (``findings`` as the issue specifies)."""
    probes = [{
        "probe": r.probe, "title": r.title, "seconds": round(r.seconds, 2),
        "repeat_spread": round(r.spread, 4),
        "findings": [f.to_json() for f in r.findings],
        "misses": [{"quantity": m.quantity, "reason": m.reason} for m in r.misses],
        "notes": list(r.notes),
        "panels": [{"title": p.title, "x_label": p.x_label, "y_label": p.y_label,
                    "categories": list(p.categories),
                    "marks": [{"x": m.x, "label": m.label} for m in p.marks],
                    "series": [{"label": s.label, "x": list(s.x),
                                "median": s.medians(), "repeats": [list(x) for x in s.reps]}
                               for s in p.series]} for p in r.panels],
    } for r in report.results]
    scenarios = [{"benchmark": s.name, "question": s.question, "verdict": s.verdict(),
                  "source": s.source, "command": s.command, "anchors": list(s.anchors),
                  "targets": [{"name": t.name, "measured": t.measured, "goal": t.goal,
                               "unit": t.unit, "met": t.met} for t in s.rows]}
                 for s in report.scenarios]
    doc: dict[str, Any] = _clean({
        "lab": "qpuos lab", "size": report.size, "started": report.started,
        "seconds": round(report.seconds, 2), "machine": report.machine,
        "versions": report.versions, "noise": report.noise.to_json(),
        "findings": [f.to_json() for f in report.findings], "probes": probes,
        "scenarios": scenarios})
    return doc


def write_report(report: LabReport, out: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out`` (created), atomically.

    Args:
        report: the run to write.
        out: the folder.

    Returns:
        The paths of the HTML and the JSON file.

    Raises:
        OSError: the folder cannot be created or written (nothing half-written is left).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    page, doc = folder / "report.html", folder / "report.json"
    write_files_atomically({str(page): render_html(report).encode("utf-8"),
                            str(doc): (json.dumps(report_json(report), indent=1)
                                       + "\n").encode("utf-8")})
    return page, doc

"""Pictures: the schedule Gantt chart.

matplotlib is imported inside the functions (with the non-interactive Agg backend) so
importing qpuos stays fast and needs no display.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from pathlib import Path

from qpuos._atomic import atomic_write_bytes
from qpuos.errors import UsageError
from qpuos.quantum.timing import Schedule

__all__ = ["PLOT_FORMATS", "plot_format", "plot_gantt", "render_gantt"]

#: File types the charts can be written as, by suffix.
PLOT_FORMATS = ("png", "svg", "pdf")

_COLOURS = {"1q": "#4C78A8", "2q": "#F58518", "swap": "#E45756", "measure": "#54A24B",
            "reset": "#9D9D9D"}


def _kind(name: str, width: int) -> str | None:
    if name == "barrier":
        return None
    if name in ("swap", "measure", "reset"):
        return name
    return "2q" if width == 2 else "1q"


def plot_format(path: str | os.PathLike[str]) -> str:
    """The chart format a path asks for, by suffix.

    Raises:
        UsageError: the suffix is not one of ``PLOT_FORMATS``.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise UsageError(f"cannot write a chart as {suffix or 'a file without suffix'!r} "
                         f"({os.fspath(path)}); use one of: {', '.join(PLOT_FORMATS)}")
    return suffix


def plot_gantt(sched: Schedule, path: str | os.PathLike[str], *, title: str = "") -> None:
    """Write ``render_gantt`` to ``path`` atomically, in the format its suffix names."""
    atomic_write_bytes(path, render_gantt(sched, fmt=plot_format(path), title=title))


def render_gantt(sched: Schedule, *, fmt: str = "png", title: str = "") -> bytes:
    """Draw each physical qubit's timeline: gates, SWAPs and measurements coloured.

    Only qubits the schedule uses get a row. Returns the file contents in ``fmt``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    bars: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    used: set[int] = set()
    for op in sched.ops:
        inst = sched.circuit.instructions[op.index]
        kind = _kind(inst.name, len(inst.qubits))
        if kind is None:
            continue
        for q in inst.qubits:
            used.add(q)
            bars[(q, kind)].append((op.start_ns, max(op.duration_ns, 0.5)))
    rows = {q: i for i, q in enumerate(sorted(used))}
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(12, height))
    for (q, kind), spans in bars.items():
        ax.broken_barh(spans, (rows[q] - 0.4, 0.8), facecolors=_COLOURS[kind],
                       edgecolor="none")
    ax.set_yticks(list(rows.values()), [f"q{q}" for q in rows])
    ax.set_ylim(-0.8, len(rows) - 0.2)
    ax.invert_yaxis()
    ax.set_xlabel("time (ns)")
    ax.set_title(title or f"schedule ({sched.policy.upper()}), makespan "
                 f"{sched.makespan_ns:,.0f} ns")
    kinds = sorted({k for _, k in bars})
    ax.legend(handles=[Patch(color=_COLOURS[k], label=k) for k in kinds],
              loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    plt.close(fig)
    return buf.getvalue()

"""Pictures: the schedule Gantt chart.

matplotlib is imported inside the functions (with the non-interactive Agg backend) so
importing qpuos stays fast and needs no display.
"""

from __future__ import annotations

import os
from collections import defaultdict

from qpuos._atomic import atomic_write
from qpuos.quantum.timing import Schedule

__all__ = ["plot_gantt"]

_COLOURS = {"1q": "#4C78A8", "2q": "#F58518", "swap": "#E45756", "measure": "#54A24B",
            "reset": "#9D9D9D"}


def _kind(name: str, width: int) -> str | None:
    if name == "barrier":
        return None
    if name in ("swap", "measure", "reset"):
        return name
    return "2q" if width == 2 else "1q"


def plot_gantt(sched: Schedule, path: str | os.PathLike[str], *, title: str = "") -> None:
    """Draw each physical qubit's timeline: gates, SWAPs and measurements coloured.

    Only qubits the schedule uses get a row. The file type follows ``path``'s suffix
    (png, svg, pdf); the file is written atomically.
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
    suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    with atomic_write(path) as fh:
        fig.savefig(fh, format=suffix, dpi=110)
    plt.close(fig)

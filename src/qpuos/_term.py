"""Terminal output: the one place that imports rich."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["console", "print_devices", "print_report", "print_table", "progress_bars"]

console = Console(highlight=False)

_REPORT_ROWS = (
    ("device", "device", "{}"),
    ("logical / physical qubits", None, ""),
    ("layout", "layout_method", "{}"),
    ("swaps", "swaps", "{:,}"),
    ("two-qubit gates (in -> out)", None, ""),
    ("depth (in -> out)", None, ""),
    ("two-qubit depth (in -> out)", None, ""),
    ("makespan", "makespan_ns", "{:,.0f} ns"),
    ("compile time", "compile_seconds", "{:.3f} s"),
    ("verified", None, ""),
)


def print_report(report: Mapping[str, Any], outputs: Mapping[str, str | None]) -> None:
    """Print a compile report as a two-column table, then where files went."""
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    derived = {
        "logical / physical qubits":
            f"{report['num_logical_qubits']} / {report['num_physical_qubits']}",
        "two-qubit gates (in -> out)":
            f"{report['input_num_two_qubit_gates']:,} -> {report['num_two_qubit_gates']:,}",
        "depth (in -> out)": f"{report['input_depth']:,} -> {report['depth']:,}",
        "two-qubit depth (in -> out)":
            f"{report['input_two_qubit_depth']:,} -> {report['two_qubit_depth']:,}",
        "verified": (f"yes ({report['verify_method']}, {report['verify_seconds']:.3f} s)"
                     if report["verified"] else "skipped"),
    }
    for label, key, fmt in _REPORT_ROWS:
        value = fmt.format(report[key]) if key else derived[label]
        if key == "makespan_ns" and report.get("durations_nominal"):
            value += " (nominal durations: the device gives none)"
        t.add_row(label, value)
    console.print(t)
    for what, path in outputs.items():
        if path:
            console.print(f"wrote {what}: {path}")


def _short(source: str, width: int = 48) -> str:
    """The first clause of a device's source note (the whole note is in --json)."""
    head = source
    for stop in (";", ". ", " (", ","):
        head = head.split(stop, maxsplit=1)[0]
    return head if len(head) <= width else head[: width - 1] + "…"


def print_devices(rows: Iterable[Any]) -> None:
    """Print the built-in device table."""
    t = Table(title="built-in devices")
    for col in ("name", "qubits", "edges", "native 2q", "figures"):
        t.add_column(col, no_wrap=True)
    t.add_column("source", overflow="fold")
    for r in rows:
        t.add_row(r.name, str(r.num_qubits), str(r.num_edges), r.native_2q or "-",
                  "typical" if r.has_figures else "-", _short(r.source))
    console.print(t)
    console.print("generated: line:N, ring:N, grid:RxC, heavy_hex:D; or a JSON file path. "
                  "`qpuos devices --json` has the full sources.")


_VERDICTS = {"pass": "[green]pass[/]", "FAIL": "[red]FAIL[/]"}


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *,
                label_columns: int = 2) -> None:
    """Print a titled table: the first ``label_columns`` columns are labels (left, the
    first bold), the rest values (right-aligned); "pass"/"FAIL" cells are coloured."""
    t = Table(title=title, title_justify="left")
    for i, head in enumerate(headers):
        t.add_column(head, style="bold" if i == 0 else None,
                     justify="left" if i < label_columns else "right")
    for r in rows:
        t.add_row(*(_VERDICTS.get(cell, cell) for cell in r))
    console.print(t)


@contextmanager
def progress_bars(names: Sequence[str]) -> Iterator[Callable[[str, float], None]]:
    """One progress bar per name; yields ``update(name, fraction_done)``."""
    with Progress(TextColumn("{task.description:<15}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        tasks = {n: bar.add_task(n, total=1.0) for n in names}

        def update(name: str, frac: float) -> None:
            bar.update(tasks[name], completed=min(1.0, frac))

        yield update

"""``qpuos lab``: argument parsing and terminal output only; the work is in the library.

``add_lab_parser(subparsers)`` adds the command to the ``qpuos`` parser; ``lab_main`` runs
it standalone (the same exit codes: 0 done, 2 bad input, 130 interrupted).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qpuos.errors import QpuosError

__all__ = ["add_lab_parser", "lab_main"]

_EPILOG = """exit codes:
  0  the report was written (whether or not thresholds were found)
  2  bad input: unknown probe name, an output folder that cannot be written
130  interrupted
"""


def _cmd_lab(args: argparse.Namespace) -> int:
    from qpuos._term import console, progress_bars
    from qpuos.lab.report import write_report
    from qpuos.lab.runner import parse_only, run_lab

    names = parse_only(args.only)          # a bad name fails before any work
    Path(args.out).mkdir(parents=True, exist_ok=True)   # so does an unusable folder
    with progress_bars(names) as progress:
        report = run_lab(size="quick" if args.quick else "full", only=names,
                         bench_dir=args.bench_dir, progress=progress)
    page, doc = write_report(report, args.out)
    for f in report.findings:
        console.print(f"[bold]{f.probe}[/] {f.quantity}: {f.text} "
                      f"(confidence {100 * f.confidence:.0f} %)", soft_wrap=True)
    missed = [m for r in report.results for m in r.misses]
    if missed:
        console.print(f"searched, none found: {', '.join(m.quantity for m in missed)}",
                      soft_wrap=True)
    for w in report.noise.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    console.print(f"{len(report.findings)} thresholds in {report.seconds:.0f} s; "
                  f"wrote {page} and {doc}", soft_wrap=True)
    return 0


def add_lab_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``qpuos lab [--quick] [--only NAMES] --out DIR [--bench-dir DIR]``.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The new sub-parser (its ``func`` default runs the command).

    >>> p = argparse.ArgumentParser(prog="qpuos")
    >>> _ = add_lab_parser(p.add_subparsers(dest="command"))
    >>> p.parse_args(["lab", "--quick", "--out", "o"]).bench_dir
    'out'
    """
    p = subparsers.add_parser(
        "lab", help="find where Python's limits are on this machine (HTML report)",
        description="Sweep concurrency, allocation, system-call batching, foreign calls, "
                    "interpreter specialisation and monitoring overhead; locate each "
                    "threshold with a knee detector; write DIR/report.html and "
                    "DIR/report.json.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller sweeps: a few minutes instead of up to half an hour")
    p.add_argument("--only", metavar="NAMES",
                   help="comma-separated probes to run (default all: concurrency,"
                        "allocation,syscalls,ffi,specialization,monitoring)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--bench-dir", default="out", metavar="DIR",
                   help="where `qpuos bench NAME --json` files are (default: out)")
    p.set_defaults(func=_cmd_lab)
    parser: argparse.ArgumentParser = p
    return parser


def lab_main(argv: Sequence[str] | None = None) -> int:
    """Run ``qpuos lab`` on its own: parse ``argv``, run, map errors to exit codes.

    >>> lab_main(["--only", "nope", "--out", "/tmp/x"])
    2
    """
    parser = argparse.ArgumentParser(prog="qpuos")
    sub = parser.add_subparsers(dest="command")
    add_lab_parser(sub)
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except QpuosError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

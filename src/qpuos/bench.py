"""``qpuos bench NAME``: find ``benchmarks/bench_NAME.py`` and run its ``main``.

Benchmarks live at the top of the source tree, outside the package and outside the
tests (they compare with anchors such as Qiskit and are never run as tests). They are
available from a source checkout; an installed wheel has none.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from qpuos.errors import UsageError

__all__ = ["benchmarks_dir", "run_benchmark"]


def benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder of this source tree (``QPUOS_BENCHMARKS`` overrides)."""
    env = os.environ.get("QPUOS_BENCHMARKS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark(name: str, argv: Sequence[str]) -> int:
    """Run benchmark ``name`` with its own arguments; returns its exit code."""
    folder = benchmarks_dir()
    available = sorted(p.stem.removeprefix("bench_") for p in folder.glob("bench_*.py"))
    path = folder / f"bench_{name}.py"
    if not path.is_file():
        where = f"available: {', '.join(available)}" if available else \
            f"no benchmarks found in {folder} (run from a source checkout)"
        raise UsageError(f"unknown benchmark {name!r}; {where}")
    spec = importlib.util.spec_from_file_location(f"qpuos_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load benchmark {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # benchmarks import their shared helpers (_common)
    try:
        spec.loader.exec_module(module)
        return int(module.main(list(argv)))
    finally:
        sys.path.remove(str(folder))

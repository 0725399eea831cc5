"""Probe: what a foreign call costs, and the batch length where one native call wins.

1. Nanoseconds per call of the same trivial operation through each route: a pure
   Python function, a builtin (``abs``), ctypes, cffi ABI mode, cffi API mode (when a C
   compiler is present), a numba function and a numpy ufunc on a scalar.
2. A sum of squares over a batch of ``n`` floats: a Python loop against one call to
   numpy (``np.dot``) and one call to a numba kernel, n swept over powers of two.
   :func:`~qpuos.lab.knee.find_crossover` finds the batch length from which the native
   call stays cheaper.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qpuos._ffi.lab import cffi_abi_labs, cffi_api_labs, ctypes_labs
from qpuos.lab._measure import ns_per_op, sweep
from qpuos.lab.knee import find_crossover
from qpuos.lab.model import (
    Finding,
    Mark,
    Miss,
    Panel,
    ProbeResult,
    Progress,
    Series,
    Size,
    check_size,
    relative_spread,
)

__all__ = ["PROBE", "QUANTITIES", "run"]

PROBE = "ffi"
QUANTITIES = ("numpy_batch", "numba_batch")
# size -> (calls per measurement, repeats, largest batch as a power of two, build cffi API)
_PLAN = {"tiny": (2_000, 3, 7, False), "quick": (50_000, 9, 11, True),
         "full": (300_000, 21, 13, True)}


def _py_identity(x: int) -> int:
    return x


def _loop_calls(fn: Callable[[int], object]) -> Callable[[int], object]:
    def body(n: int) -> None:
        for _ in range(n):
            fn(-3)
    return body


def _routes(build_api: bool, folder: Path) -> tuple[list[tuple[str, Callable[[int], object]]],
                                                    list[str]]:
    notes: list[str] = []
    routes: list[tuple[str, Callable[[int], object]]] = [
        ("python def", _py_identity), ("builtin abs", abs), ("ctypes labs", ctypes_labs())]
    abi = cffi_abi_labs()
    if abi is None:
        notes.append("cffi is not installed: its ABI and API routes were not measured")
    else:
        routes.append(("cffi ABI labs", abi))
        if build_api:
            try:
                routes.append(("cffi API labs", cffi_api_labs(folder)))
            except OSError as exc:
                notes.append(f"cffi API mode not measured: {exc}")
        else:
            notes.append("cffi API mode not measured at this size (it compiles C)")
    from qpuos.lab import _kernels  # numba: imported only when the probe runs

    routes.append(("numba identity", _kernels.identity))
    routes.append(("numpy ufunc (scalar)", np.negative))
    for _, fn in routes:
        fn(-3)                                   # compile / bind before timing
    return routes, notes


def _py_sum_squares(values: list[float]) -> float:
    s = 0.0
    for v in values:
        s += v * v
    return s


def _batch_ns(kind: str, n: int, calls: int) -> float:
    values = [float(i) for i in range(n)]
    arr: npt.NDArray[np.float64] = np.array(values)
    fn: Callable[[], object]
    if kind == "python":
        def fn() -> object:
            return _py_sum_squares(values)
    elif kind == "numpy":
        def fn() -> object:
            return np.dot(arr, arr)
    else:
        from qpuos.lab import _kernels

        def fn() -> object:
            return _kernels.sum_squares(arr)
    reps = max(1, calls // max(1, n))
    t0 = time.perf_counter_ns()
    for _ in range(reps):
        fn()
    return (time.perf_counter_ns() - t0) / reps


def run(*, size: Size = "quick", progress: Progress | None = None,
        seed: int = 0) -> ProbeResult:
    """Time each foreign-call route, then sweep batch lengths; find the crossovers.

    Args:
        size: ``tiny`` (tests), ``quick`` or ``full``.
        progress: told the fraction done.
        seed: seed of the sweep order and the bootstrap.

    Returns:
        The probe's panels, findings and misses.

    >>> run(size="tiny").searched() == set(QUANTITIES)
    True
    """
    t_start = time.perf_counter()
    calls, repeats, top, build_api = _PLAN[check_size(size)]
    with tempfile.TemporaryDirectory(prefix="qpuos-lab-cffi-") as tmp:
        routes, notes = _routes(build_api, Path(tmp))
        call_reps = sweep(list(range(len(routes))), repeats,
                          lambda i: ns_per_op(_loop_calls(routes[i][1]), calls),
                          progress=progress, seed=seed, share=0.4)
    batches = [2 ** i for i in range(top)]
    batch_reps: dict[str, list[list[float]]] = {}
    for i, kind in enumerate(("python", "numpy", "numba")):
        def measure(n: int, kind: str = kind) -> float:
            return _batch_ns(kind, n, calls)
        batch_reps[kind] = sweep(batches, repeats, measure, progress=progress,
                                 seed=seed + i, done=0.4 + 0.2 * i, share=0.2)
    findings: list[Finding] = []
    misses: list[Miss] = []
    marks: list[Mark] = []
    for kind, label in (("numpy", "np.dot"), ("numba", "a numba kernel")):
        k = find_crossover(batches, batch_reps["python"], batch_reps[kind], seed=seed)
        quantity = f"{kind}_batch"
        if k is None:
            py = Series.of("", batches, batch_reps["python"]).medians()
            nat = Series.of("", batches, batch_reps[kind]).medians()
            why = ("cheaper from the smallest batch" if nat[0] < py[0]
                   else f"not cheaper for good within 1..{batches[-1]}")
            misses.append(Miss(PROBE, quantity, f"one call to {label} is {why}"))
            continue
        findings.append(Finding(
            PROBE, quantity, k.x_after, "items", k.ratio, k.confidence,
            f"from {k.x_after:g} items one call to {label} beats a Python loop "
            f"(sum of squares; {k.ratio:.0f}x faster at {batches[-1]:,} items)"))
        marks.append(Mark(k.x_after, kind))
    labels = tuple(name for name, _ in routes)
    meds = Series.of("", range(len(routes)), call_reps).medians()
    notes.append("ns per call: " + ", ".join(f"{n} {m:.0f}" for n, m in zip(labels, meds,
                                                                          strict=True)))
    panels = (
        Panel("one trivial call through each route", "route", "ns per call",
              (Series.of("ns per call", range(len(routes)), call_reps),), log_x=False,
              log_y=False, categories=labels),
        Panel("sum of squares over n floats: Python loop vs one native call", "n (items)",
              "ns per batch", tuple(Series.of(lbl, batches, batch_reps[k]) for k, lbl in
                                    (("python", "Python loop"), ("numpy", "np.dot"),
                                     ("numba", "numba kernel"))), marks=tuple(marks)),
    )
    return ProbeResult(PROBE, "Foreign calls", panels, tuple(findings), tuple(misses),
                       tuple(notes), time.perf_counter() - t_start, relative_spread(panels))

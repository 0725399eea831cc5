"""The end-to-end demonstration behind ``qpuos demo``: every layer on one path.

Two circuits, GHZ and the QFT of a basis state, are compiled for ``ibm_falcon_27``,
encoded as ISA records and run on one emulated controller (pinned to the last CPU and
asking for SCHED_FIFO, granted where permitted), inside the qpuos scheduler. Each
result is checked against the circuit's exact distribution (chi-square, alpha = 0.001;
GHZ must moreover show only all-zeros and all-ones), and the report gives every
layer's figure: compile (SWAPs, makespan), ring latency, issue lateness, GC pauses and
what the real-time profile was granted. The Gantt charts of both schedules are saved.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpuos.device._checks import ChiSquare, chi_square, exact_distribution
from qpuos.device._results import RunResult
from qpuos.device.driver import Qpu
from qpuos.kernel.scheduler import Scheduler
from qpuos.quantum.compile import CompileResult, compile_circuit
from qpuos.quantum.device import load_device
from qpuos.quantum.qasm import parse_qasm
from qpuos.quantum.routing import RoutingOptions

__all__ = ["DemoCase", "DemoReport", "demo_circuits", "run_demo"]

_HEAD = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'


def demo_circuits(*, ghz_qubits: int = 5, qft_qubits: int = 5, basis: int = 0b10110
                  ) -> dict[str, str]:
    """OpenQASM sources of the demo's circuits: ``{"ghz": ..., "qft": ...}``.

    >>> sorted(demo_circuits())
    ['ghz', 'qft']
    """
    n = ghz_qubits
    ghz = [f"qreg q[{n}];", f"creg c[{n}];", "h q[0];"]
    ghz += [f"cx q[{i}],q[{i + 1}];" for i in range(n - 1)]
    ghz.append("measure q -> c;")
    m = qft_qubits
    qft = [f"qreg q[{m}];", f"creg c[{m}];"]
    qft += [f"x q[{i}];" for i in range(m) if basis >> i & 1]
    for j in reversed(range(m)):
        qft.append(f"h q[{j}];")
        qft += [f"cp({math.pi / 2 ** (j - k)!r}) q[{k}],q[{j}];" for k in reversed(range(j))]
    qft.append("measure q -> c;")
    return {"ghz": _HEAD + "\n".join(ghz) + "\n", "qft": _HEAD + "\n".join(qft) + "\n"}


@dataclass(frozen=True, slots=True)
class DemoCase:
    """One circuit of the demo: its compile, its run and its check."""

    name: str
    compiled: CompileResult
    result: RunResult
    check: ChiSquare
    ok: bool


@dataclass(frozen=True, slots=True)
class DemoReport:
    """Everything the demo did.

    Attributes:
        cases: the GHZ and QFT cases.
        controller_start_s: seconds until both the controller was ready and the
            circuits compiled (they overlap; numba compiles on a fresh machine).
        charts: the Gantt charts written.
        ok: every check passed.
    """

    cases: tuple[DemoCase, ...]
    controller_start_s: float
    charts: tuple[str, ...]
    ok: bool


def run_demo(out_dir: str | os.PathLike[str], *, shots: int = 2000, seed: int = 7,
             pin: bool = True) -> DemoReport:
    """Compile, run and check the demo circuits; save their Gantt charts in ``out_dir``.

    Args:
        out_dir: where the charts go (created if missing).
        shots: shots per circuit.
        seed: routing and measurement seed.
        pin: pin the controller to the last CPU and ask for SCHED_FIFO.

    Returns:
        The report; ``ok`` says whether every check passed.
    """
    from qpuos._atomic import write_files_atomically
    from qpuos.plot import render_gantt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # a bad folder fails before any work
    device = load_device("ibm_falcon_27")
    cpus = {max(os.sched_getaffinity(0))} if pin else None
    t0 = time.perf_counter()
    # The controller starts (and, on a fresh machine, compiles its numba kernels) in
    # its own process while this one compiles the circuits: the two overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        opening = pool.submit(Qpu.open, device, cpus=cpus, fifo_priority=10 if pin else None)
        try:
            compiled = {name: compile_circuit(parse_qasm(src), device,
                                              options=RoutingOptions(seed=seed))
                        for name, src in demo_circuits().items()}
        except BaseException:
            opening.result().close()
            raise
        qpu = opening.result()
    started = time.perf_counter() - t0

    async def main() -> list[RunResult]:
        async with qpu:
            await qpu.run(compiled["ghz"], shots=10, seed=seed)  # first-job warm-up
            return [await qpu.run(c, shots=shots, seed=seed + i)
                    for i, c in enumerate(compiled.values())]

    with Scheduler() as sched:
        results: list[RunResult] = sched.run(main())
    cases = []
    for (name, comp), res in zip(compiled.items(), results, strict=True):
        check = chi_square(res.counts, exact_distribution(comp.logical))
        ok = check.ok
        if name == "ghz":
            width = comp.logical.num_clbits
            ok = ok and set(res.counts) <= {"0" * width, "1" * width}
        cases.append(DemoCase(name, comp, res, check, ok))
    files = {str(out / f"demo_{c.name}_gantt.png"): render_gantt(
        c.compiled.schedule, title=f"{c.name} on ibm_falcon_27: makespan "
        f"{c.compiled.schedule.makespan_ns:,.0f} ns, {c.compiled.routed.swaps} SWAPs")
        for c in cases}
    write_files_atomically(files)
    return DemoReport(tuple(cases), started, tuple(files), all(c.ok for c in cases))


def demo_table(report: DemoReport) -> tuple[list[str], list[list[str]]]:
    """The layer-by-layer report as a table: column headers, then one row per figure
    (layer, figure, one value per circuit), for the CLI's terminal helper to print."""
    cs = report.cases
    headers = ["layer", "figure", *(c.name.upper() for c in cs)]
    rows: list[list[str]] = []

    def row(layer: str, figure: str, fmt: Any) -> None:
        rows.append([layer, figure, *(fmt(c) for c in cs)])

    row("compile", "qubits / SWAPs", lambda c: f"{c.compiled.logical.num_qubits} / "
        f"{c.compiled.routed.swaps}")
    row("", "makespan", lambda c: f"{c.compiled.schedule.makespan_ns:,.0f} ns")
    row("isa", "records (END included)", lambda c: f"{c.result.num_instructions}")
    row("driver", "dilation (wall/schedule)", lambda c: f"x{c.result.dilation:.1f}")
    row("ring", "first record -> controller", lambda c: _us(c.result.ring_latency_ns))
    row("controller", "issue lateness p50 / p99",
        lambda c: f"{_us(c.result.lateness.p50_ns)} / {_us(c.result.lateness.p99_ns)}")
    row("", "issue lateness max", lambda c: _us(c.result.lateness.max_ns))
    row("", "execute (wall)", lambda c: _us(c.result.execute_ns))
    row("", "shots", lambda c: f"{c.result.shots} "
        + ("replayed" if c.result.trajectory else "sampled"))
    row("gc guard", "GC runs so far (max pause)", lambda c: _gc(c.result.gc))
    row("kernel", "end to end", lambda c: _us(c.result.end_to_end_ns))
    row("check", "chi-square / bound", lambda c: f"{c.check.statistic:.1f} / "
        f"{c.check.bound:.1f}")
    row("", "result", lambda c: "pass" if c.ok else "FAIL")
    return headers, rows


def demo_summary(report: DemoReport) -> list[str]:
    """The lines printed under the table: top counts, the controller, the charts."""
    cs = report.cases
    lines = []
    for c in cs:
        top = sorted(c.result.counts.items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"{c.name}: " + ", ".join(f"{k}: {v}" for k, v in top)
                     + (" ..." if len(c.result.counts) > 4 else ""))
    lines.append(f"controller: pid {cs[0].result.controller_pid}, started in "
                 f"{report.controller_start_s:.2f} s (with the compiles); real-time: "
                 + "; ".join(cs[0].result.realtime.splitlines()))
    lines.extend(f"wrote {path}" for path in report.charts)
    return lines


def _us(ns: float) -> str:
    return f"{ns / 1000:,.1f} µs"


def _gc(gc: dict[str, Any]) -> str:
    gens = gc.get("generations") or []
    count = sum(int(g.get("count", 0)) for g in gens)
    worst = max((int(g.get("max_ns", 0)) for g in gens), default=0)
    return f"{count} ({_us(worst)})"

"""``qpuos bench issue``: instruction issue through the whole path, pinned vs not.

The path measured: ISA records (pre-encoded) -> the driver's claim/publish into the
shared-memory ring (refilled while the controller consumes) -> the controller process
(numba issue loop, state vector on 10 qubits) -> results in the DMA arena ->
completion eventfd -> the driver's coroutine in the qpuos scheduler.

The program: a random circuit on a 10-qubit line (``line_device(10)``): one- and
two-qubit gates (``u``, ``sx``, ``rz``, ``x``, ``cx`` on edges), timed by the nominal
duration model, measured at the end.

Two configurations, same run, rounds interleaved (A, B, A, B ...):

- pinned+guarded: the controller pinned to the last CPU, SCHED_FIFO asked for (granted
  where permitted: the report says), GC guard policy "scheduled";
- unpinned+default: no pinning, SCHED_OTHER, the interpreter's default GC.

Two runs per round and configuration:

1. throughput: dilation 0 (every record due at once, the controller issues as fast as
   it can); instructions/s = records / end-to-end time of ``run_records`` (push, ring,
   execute, sample, interrupt, read back);
2. lateness: the driver's dilation (``pick_dilation``); issue lateness = actual issue
   time - dilated timestamp, per record, pooled over rounds: p50 / p99 / max.

Targets (issue [device] 7): lateness p99 <= 50 µs pinned and guarded; >= 200k
instructions/s sustained on a 10-qubit register.

``--quick``: 20k records, 2 rounds: seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import BenchRecord

GATES_1Q = ("u", "sx", "rz", "x")


def _program(n_records: int, seed: int) -> tuple[Any, Any]:
    from qpuos.quantum.circuit import Circuit
    from qpuos.quantum.device import line_device
    from qpuos.quantum.isa import encode
    from qpuos.quantum.timing import DurationModel, schedule

    rng = np.random.default_rng(seed)
    nq = 10
    c = Circuit.with_registers([("q", nq)], [("c", nq)])
    for _ in range(n_records - nq - 1):
        if rng.random() < 0.3:
            a = int(rng.integers(nq - 1))
            c.append("cx", [a, a + 1] if rng.random() < 0.5 else [a + 1, a])
        else:
            name = GATES_1Q[int(rng.integers(len(GATES_1Q)))]
            params = rng.uniform(-3, 3, {"u": 3, "rz": 1}.get(name, 0))
            c.append(name, [int(rng.integers(nq))], [float(x) for x in params])
    for q in range(nq):
        c.append("measure", [q], clbits=[q])
    return line_device(nq), encode(schedule(c, DurationModel(), policy="asap"))


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench issue``."""
    p = argparse.ArgumentParser(prog="qpuos bench issue", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_issue.json"),
                   help="where to write the results (default out/bench_issue.json)")
    p.add_argument("--records", type=int, default=200_000,
                   help="instructions per run (default 200000)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    p.add_argument("--seed", type=int, default=3, help="circuit seed (default 3)")
    p.add_argument("--quick", action="store_true", help="20k records, 2 rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.rounds = 20_000, 2
    if args.records < 100 or args.rounds < 1:
        print("UsageError: --records must be >= 100 and --rounds >= 1", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    from qpuos.device import Qpu, pick_dilation
    from qpuos.kernel.scheduler import Scheduler

    console = Console()
    rec = BenchRecord("issue", packages=("numpy", "numba"))
    device, recs = _program(args.records, args.seed)
    last_cpu = max(os.sched_getaffinity(0))
    configs: dict[str, dict[str, Any]] = {
        "pinned+guarded": dict(cpus={last_cpu}, fifo_priority=10, gc_policy="scheduled"),
        "unpinned+default": dict(cpus=None, fifo_priority=None, gc_policy="default"),
    }
    factor = pick_dilation(recs["start_ns"], 10)
    console.print(f"program: {len(recs):,} records on 10 qubits, makespan "
                  f"{recs['start_ns'][-1] / 1e3:,.1f} µs, lateness runs at dilation "
                  f"x{factor:.1f}")
    rate: dict[str, list[float]] = {k: [] for k in configs}
    late: dict[str, list[Any]] = {k: [] for k in configs}
    realtime: dict[str, str] = {}
    gc_stats: dict[str, Any] = {}

    async def body() -> None:
        qpus = {k: Qpu.open(device, **v) for k, v in configs.items()}
        try:
            for r in range(args.rounds):
                order = list(configs) if r % 2 == 0 else list(reversed(configs))
                for name in order:
                    qpu = qpus[name]
                    t0 = time.perf_counter()
                    res = await qpu.run_records(recs, shots=100, seed=r, dilation=0.0,
                                                timeout_s=120)
                    rate[name].append(len(recs) / (time.perf_counter() - t0))
                    res = await qpu.run_records(recs, shots=100, seed=r, timeout_s=300)
                    late[name].append(res.lateness_ns)
                    realtime[name] = res.realtime
                    gc_stats[name] = res.gc
                    console.print(f"round {r + 1}/{args.rounds} {name}: "
                                  f"{rate[name][-1] / 1e3:,.0f}k instr/s, lateness p99 "
                                  f"{np.percentile(res.lateness_ns, 99) / 1e3:.1f} µs")
        finally:
            for q in qpus.values():
                q.close()

    with Scheduler() as sched:
        sched.run(body())

    table = Table(title=f"instruction issue, {len(recs):,} records x {args.rounds} rounds")
    for col in ("configuration", "instr/s (median)", "lateness p50", "p99", "max"):
        table.add_column(col, justify="right")
    summary: dict[str, tuple[float, float]] = {}
    for name in configs:
        sample = np.concatenate(late[name])
        p50, p99 = np.percentile(sample, [50, 99])
        mx = float(sample.max())
        med = float(np.median(rate[name]))
        summary[name] = (med, float(p99))
        rec.add(name, "instructions_per_s", med, "instr/s", runs=rate[name])
        rec.add(name, "lateness_p50", float(p50) / 1e3, "us")
        rec.add(name, "lateness_p99", float(p99) / 1e3, "us")
        rec.add(name, "lateness_max", mx / 1e3, "us")
        table.add_row(name, f"{med / 1e3:,.0f}k", f"{p50 / 1e3:.1f} µs",
                      f"{p99 / 1e3:.1f} µs", f"{mx / 1e3:.1f} µs")
    console.print(table)
    for name in configs:
        console.print(f"{name}: " + "; ".join(realtime[name].splitlines()))
    rec.target("lateness p99, pinned+guarded", summary["pinned+guarded"][1] / 1e3, 50.0, "us")
    rec.target("instructions/s, 10 qubits, pinned+guarded", summary["pinned+guarded"][0],
               200_000.0, "instr/s", at_most=False)
    rec.print_targets(console)
    load = os.getloadavg()
    console.print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                  f"(before: {' '.join(str(x) for x in rec.load_before)})")
    rec.write(args.json, extra={"records": len(recs), "rounds": args.rounds,
                                "dilation": factor, "realtime": realtime, "gc": gc_stats})
    console.print(f"wrote {args.json}")
    return 0

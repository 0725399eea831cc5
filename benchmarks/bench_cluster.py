"""``qpuos bench cluster``: random circuits of 20-26 qubits, time per layer, same run:

- ``qpuos simulate``: the single-process simulator (serial numba kernels, fused gates);
- ``qiskit-aer``: ``AerSimulator(method="statevector")``, if installed, with its default
  threads (OpenMP over every core) and with one thread (like for like with the serial
  simulator);
- ``sharded N pairwise|barrier``: ``ShardedSimulator`` with N = 1, 2, 4 Ray shard actors
  in each safe sync mode (Ray started locally, one CPU per core).

A layer is a random ``u3`` on every qubit, then ``cx`` on a random pairing of all
qubits (the pairing changes each layer, so global qubits are hit as often as local
ones). Each cell runs ``--repeat`` times with the order of implementations rotated;
tables show the median. Sharded runs also record the bytes exchanged per global gate.

Memory: with ``--memory-limit`` unset, the limit is set to exactly what one of four
shards needs for the largest register, then that register is run on 1 shard (refused:
it does not fit one shard) and on 4 (runs): the sharded run handles what one shard
cannot.

Targets (issue [cluster] 8): single-process simulator within 2x of qiskit-aer per gate
(default threads, largest size); pairwise mode faster than barrier mode (4 shards,
geometric mean over sizes); the sharded run handles a register over one shard's limit.

``--quick``: 16 and 18 qubits, 2 layers, one repeat: a smoke test in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _common import BenchRecord, geomean


def random_layers(n: int, layers: int, seed: int) -> Any:
    """``layers`` layers of u3 on every qubit then cx on a random pairing."""
    from qpuos.quantum.circuit import Circuit

    rng = np.random.default_rng(seed)
    c = Circuit(num_qubits=n)
    for _ in range(layers):
        for q in range(n):
            c.append("u3", [q], rng.uniform(0, 2 * np.pi, 3).tolist())
        perm = rng.permutation(n)
        for a, b in zip(perm[0::2], perm[1::2], strict=False):
            c.append("cx", [int(a), int(b)])
    return c


def _aer_runner(threads: int | None) -> Callable[[Any], float] | None:
    try:
        from qiskit_aer import AerSimulator
    except ImportError:
        return None
    from qpuos.quantum.qiskit_interop import to_qiskit

    opts: dict[str, Any] = {"method": "statevector"}
    if threads is not None:
        opts["max_parallel_threads"] = threads
    sim = AerSimulator(**opts)

    def run(circuit: Any) -> float:
        qc = to_qiskit(circuit)
        qc.save_statevector()
        t0 = time.perf_counter()
        result = sim.run(qc, shots=1).result()
        elapsed = time.perf_counter() - t0
        if not result.success:
            raise RuntimeError(f"qiskit-aer failed: {result.status}")
        return elapsed

    return run


def _single(circuit: Any) -> float:
    from qpuos.quantum.statevector import simulate

    t0 = time.perf_counter()
    simulate(circuit)
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench cluster``."""
    p = argparse.ArgumentParser(prog="qpuos bench cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_cluster.json"),
                   help="where to write the results (default out/bench_cluster.json)")
    p.add_argument("--qubits", default="20,22,24,26",
                   help="register sizes, comma-separated (default 20,22,24,26)")
    p.add_argument("--layers", type=int, default=4, help="layers per circuit (default 4)")
    p.add_argument("--repeat", type=int, default=3, help="runs per cell (default 3)")
    p.add_argument("--seed", type=int, default=11, help="circuit seed (default 11)")
    p.add_argument("--quick", action="store_true",
                   help="16 and 18 qubits, 2 layers, 1 repeat: seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.qubits, args.layers, args.repeat = "16,18", 2, 1
    try:
        sizes = sorted({int(x) for x in args.qubits.split(",") if x.strip()})
    except ValueError:
        print(f"UsageError: --qubits must be integers, got {args.qubits!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 6 or args.layers < 1 or args.repeat < 1:
        print("UsageError: sizes must be >= 6 qubits, layers and repeat >= 1",
              file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    from qpuos.cluster import ShardedSimulator, ShardError
    from qpuos.cluster._shard_worker import peak_bytes

    console = Console()
    rec = BenchRecord("cluster", packages=("numpy", "numba", "ray", "qiskit-aer"))
    impls: list[tuple[str, Callable[[Any], float]]] = [("qpuos simulate", _single)]
    for label, threads in (("qiskit-aer", None), ("qiskit-aer 1 thread", 1)):
        runner = _aer_runner(threads)
        if runner is not None:
            impls.append((label, runner))
    if len(impls) == 1:
        console.print("qiskit-aer is not installed: its rows are skipped")
    sim = ShardedSimulator(shards=4)
    stats_of: dict[tuple[int, str], Any] = {}

    def sharded(count: int, mode: str) -> Callable[[Any], float]:
        def run(circuit: Any) -> float:
            st = sim.run(circuit, shards=count, mode=mode)  # type: ignore[arg-type]
            stats_of[(circuit.num_qubits, f"sharded {count} {mode}")] = st
            return float(st.elapsed_s)
        return run

    for count in (1, 2, 4):
        for mode in ("pairwise", "barrier"):
            impls.append((f"sharded {count} {mode}", sharded(count, mode)))
    per_layer: dict[tuple[int, str], float] = {}
    try:
        for n in sizes:
            circuit = random_layers(n, args.layers, args.seed + n)
            gates = len(circuit.instructions)
            for _name, run in impls:  # warm-up: numba, actors, Ray's object store
                run(random_layers(min(n, 12), 1, 0))
            samples: dict[str, list[float]] = {name: [] for name, _ in impls}
            for r in range(args.repeat):
                order = impls[r % len(impls):] + impls[:r % len(impls)]
                for name, run in order:
                    samples[name].append(run(circuit))
            for name, _ in impls:
                med = statistics.median(samples[name])
                per_layer[(n, name)] = med / args.layers
                extra: dict[str, Any] = {"qubits": n, "layers": args.layers,
                                         "runs_s": samples[name]}
                st = stats_of.get((n, name))
                if st is not None:
                    extra |= {"swaps": st.swaps, "global_gates": st.global_gates,
                              "bytes_exchanged": st.bytes_exchanged}
                    rec.add(name, "bytes_per_global_gate", st.bytes_per_global_gate, "B",
                            qubits=n)
                rec.add(name, "time_per_layer", med / args.layers, "s", **extra)
                rec.add(name, "time_per_gate", med / gates, "s", qubits=n)
            console.print(f"{n} qubits done")
        mem = _memory_check(max(sizes), args.layers, args.seed, peak_bytes, ShardError)
    finally:
        sim.close()

    table = Table(title=f"time per layer (median of {args.repeat}), {args.layers} layers")
    table.add_column("implementation")
    for n in sizes:
        table.add_column(f"{n} q", justify="right")
    for name, _ in impls:
        table.add_row(name, *(f"{per_layer[(n, name)] * 1e3:,.1f} ms" for n in sizes))
    console.print(table)
    bytes_table = Table(title="bytes exchanged per global gate (pairwise)")
    bytes_table.add_column("shards")
    for n in sizes:
        bytes_table.add_column(f"{n} q", justify="right")
    for count in (2, 4):
        bytes_table.add_row(str(count), *(
            f"{stats_of[(n, f'sharded {count} pairwise')].bytes_per_global_gate / 2**20:,.1f}"
            " MiB" for n in sizes))
    console.print(bytes_table)
    console.print(f"memory limit {mem['limit']:,} B per shard, {mem['qubits']} qubits: "
                  f"1 shard -> {mem['one_shard']}; 4 shards -> {mem['four_shards']}")

    big = max(sizes)
    if (big, "qiskit-aer") in per_layer:
        rec.target("single-process / qiskit-aer per gate (largest size)",
                   per_layer[(big, "qpuos simulate")] / per_layer[(big, "qiskit-aer")],
                   2.0, "x")
    ratio = geomean(per_layer[(n, "sharded 4 pairwise")] / per_layer[(n, "sharded 4 barrier")]
                    for n in sizes)
    rec.target("pairwise / barrier time, 4 shards (geomean)", ratio, 1.0, "x")
    rec.target("register over one shard's limit runs on 4 shards",
               1.0 if mem["handled"] else 0.0, 1.0, "bool", at_most=False)
    rec.print_targets(console)
    rec.write(args.json, {"memory": mem})
    console.print(f"wrote {args.json}")
    return 0


def _memory_check(n: int, layers: int, seed: int, peak_bytes: Any,
                  shard_error: Any) -> dict[str, Any]:
    """Limit each shard to what one of four needs; 1 shard must be refused, 4 must run."""
    from qpuos.cluster import ShardedSimulator

    limit = peak_bytes(n, 2)
    circuit = random_layers(n, layers, seed)
    out: dict[str, Any] = {"qubits": n, "limit": limit}
    with ShardedSimulator(shards=4, memory_limit=limit) as limited:
        limited.run(random_layers(12, 1, 0), shards=4)  # warm-up: fresh actors
        try:
            limited.run(circuit, shards=1)
            out["one_shard"] = "ran (the limit did not hold)"
            refused = False
        except shard_error as exc:
            out["one_shard"] = f"refused: {exc}"
            refused = True
        st = limited.run(circuit, shards=4, mode="pairwise")
        out["four_shards"] = f"ran in {st.elapsed_s:.2f} s, norm {limited.norm():.12f}"
        out["handled"] = refused and abs(limited.norm() - 1.0) < 1e-9
    return out

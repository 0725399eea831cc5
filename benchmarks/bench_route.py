"""``qpuos bench route``: qpuos's layout+routing+timing beside Qiskit level 3, same run.

For every circuit of a benchmark set (``manifest.json`` listing file and device), both
compilers get the same input (final measurements and barriers stripped, as the anchor
runner does) and the same seed. Reported per circuit and as geometric means:

- swaps: SWAPs inserted (Qiskit's are counted after its routing stage, before they are
  decomposed and optimised);
- depth with each SWAP as three CX, and two-qubit depth;
- makespan: both outputs scheduled ALAP by the same duration model on the device's figures;
- seconds: qpuos layout+routing+timing (verification timed apart) vs Qiskit's whole
  ``transpile`` at optimisation level 3.

Targets (issue [compile]): gmean (swaps+1) ratio <= 0.95; 0 swaps wherever Qiskit finds 0;
gmean makespan ratio <= 0.9; total time ratio <= 3; random-CX n=100 on Eagle <= 60 s;
every output verified with no coupling violation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from _common import BenchRecord, geomean, shared_dir
from qpuos.quantum.circuit import Circuit, Instruction
from qpuos.quantum.device import Device, load_device
from qpuos.quantum.qasm import dump_qasm, load_qasm
from qpuos.quantum.qiskit_interop import from_qiskit
from qpuos.quantum.routing import RoutingOptions, warm_up
from qpuos.quantum.timing import DurationModel, schedule


def strip_final_measurements(circuit: Circuit) -> Circuit:
    """Drop barriers, and measurements that nothing after them depends on."""
    keep: list[Instruction] = []
    later_q: set[int] = set()
    later_c: set[int] = set()
    for inst in reversed(circuit.instructions):
        if inst.name == "barrier":
            continue
        if (inst.name == "measure" and inst.qubits[0] not in later_q
                and inst.clbits[0] not in later_c):
            continue
        keep.append(inst)
        later_q.update(inst.qubits)
        later_c.update(inst.clbits)
        if inst.condition is not None:
            later_c.update(circuit.creg(inst.condition.creg).bits)
    out = circuit.copy_empty()
    out.instructions = keep[::-1]
    return out


def expand_swaps(circuit: Circuit) -> Circuit:
    """Each ``swap`` as three ``cx``, for depth comparisons with decomposed outputs."""
    out = circuit.copy_empty()
    for inst in circuit.instructions:
        if inst.name == "swap":
            a, b = inst.qubits
            out.instructions += [Instruction("cx", (a, b)), Instruction("cx", (b, a)),
                                 Instruction("cx", (a, b))]
        else:
            out.instructions.append(inst)
    return out


def run_qpuos(circuit: Circuit, device: Device, seed: int, trials: int | None,
              objective: str = "swaps") -> dict[str, Any]:
    """Compile with qpuos; return the metrics."""
    from qpuos.quantum.compile import compile_circuit

    res = compile_circuit(circuit, device, options=RoutingOptions(
        seed=seed, layout_trials=trials, objective=objective))  # type: ignore[arg-type]
    routed = expand_swaps(res.circuit)
    v = res.verification
    return {"swaps": res.routed.swaps, "depth": routed.depth(),
            "two_qubit_depth": routed.depth(two_qubit_only=True),
            "makespan_ns": res.schedule.makespan_ns, "seconds": res.compile_seconds,
            "verified": bool(v and v.ok), "verify_method": v.method if v else None,
            "verify_seconds": v.seconds if v else 0.0,
            "coupling_violations": len(v.coupling_violations) if v else -1}


def run_qiskit(circuit: Circuit, device: Device, seed: int) -> dict[str, Any]:
    """Transpile with Qiskit at level 3; return the same metrics."""
    from qiskit import qasm2
    from qiskit.transpiler import CouplingMap, StagedPassManager
    from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

    qc = qasm2.loads(dump_qasm(circuit),
                     custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    cmap = CouplingMap([list(e) for e in device.edges] + [[b, a] for a, b in device.edges])
    pm = generate_preset_pass_manager(optimization_level=3, coupling_map=cmap,
                                      basis_gates=["cx", "u"], seed_transpiler=seed)
    t0 = time.perf_counter()
    out = pm.run(qc)
    seconds = time.perf_counter() - t0
    routing_only = StagedPassManager(stages=["init", "layout", "routing"], init=pm.init,
                                     layout=pm.layout, routing=pm.routing).run(qc)
    swaps = int(routing_only.count_ops().get("swap", 0))
    ours = from_qiskit(out)
    model = DurationModel.from_device(device, device.edges)
    edges = {(min(a, b), max(a, b)) for a, b in device.edges}
    violations = sum(1 for i in ours.instructions if i.is_two_qubit_gate
                     and (min(i.qubits), max(i.qubits)) not in edges)
    return {"swaps": swaps, "depth": ours.depth(),
            "two_qubit_depth": ours.depth(two_qubit_only=True),
            "makespan_ns": schedule(ours, model, policy="alap").makespan_ns,
            "seconds": seconds, "coupling_violations": violations}


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench route``."""
    p = argparse.ArgumentParser(prog="qpuos bench route", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", dest="set_dir", type=Path,
                   default=shared_dir() / "bench" / "quantum",
                   help="folder with manifest.json and the circuits")
    p.add_argument("--json", type=Path, default=Path("out/bench_route.json"),
                   help="where to write the results (default out/bench_route.json)")
    p.add_argument("--filter", default="", help="only circuits whose file contains this")
    p.add_argument("--seed", type=int, default=42, help="seed for both compilers (42)")
    p.add_argument("--trials", type=int, default=None,
                   help="qpuos random layout trials (default: by circuit size)")
    p.add_argument("--objective", choices=("swaps", "makespan"), default="swaps",
                   help="qpuos trial objective (default swaps; the targets assume swaps)")
    args = p.parse_args(argv)
    manifest_path = args.set_dir / "manifest.json"
    if not manifest_path.is_file():
        print(f"UsageError: no manifest.json in {args.set_dir}", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())
    devices_dir = args.set_dir.parent.parent / "devices"
    entries = [e for e in manifest["circuits"] if args.filter in e["file"]]

    from rich.progress import Progress

    rec = BenchRecord("route", packages=("qiskit", "numba", "numpy"))
    warm_up()  # numba compiles before anything is timed (Qiskit's router is prebuilt)
    rows: list[dict[str, Any]] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("routing", total=len(entries))
        for e in entries:
            name = Path(e["file"]).stem
            progress.update(task, description=name)
            circuit = strip_final_measurements(load_qasm(args.set_dir / e["file"]))
            dev_file = devices_dir / f"{e['device']}.json"
            device = load_device(str(dev_file) if dev_file.is_file() else e["device"])
            ours = run_qpuos(circuit, device, args.seed, args.trials, args.objective)
            theirs = run_qiskit(circuit, device, args.seed)
            for impl, m in (("qpuos", ours), ("qiskit_l3", theirs)):
                for metric, unit in (("swaps", "count"), ("depth", "layers"),
                                     ("two_qubit_depth", "layers"), ("makespan_ns", "ns"),
                                     ("seconds", "s")):
                    rec.add(impl, metric, m[metric], unit, circuit=name, device=device.name)
            rows.append({"circuit": name, "device": device.name, "qpuos": ours,
                         "qiskit": theirs, "optimal_depth": e.get("known_optimal_depth")})
            progress.advance(task)
    _summarise(rec, rows)
    rec.write(args.json, extra={"circuits": rows})
    print(f"wrote {args.json}")
    return 0


def _summarise(rec: BenchRecord, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="qpuos vs Qiskit 2.x level 3 (same seed, same run)")
    for col in ("circuit", "device", "swaps q/k", "depth q/k", "makespan µs q/k",
                "seconds q/k", "verified"):
        t.add_column(col, justify="left" if col in ("circuit", "device") else "right")
    for r in rows:
        q, k = r["qpuos"], r["qiskit"]
        t.add_row(r["circuit"], r["device"], f"{q['swaps']}/{k['swaps']}",
                  f"{q['depth']}/{k['depth']}",
                  f"{q['makespan_ns'] / 1e3:.1f}/{k['makespan_ns'] / 1e3:.1f}",
                  f"{q['seconds']:.2f}/{k['seconds']:.2f}",
                  ("yes" if q["verify_method"] == "structural" else "yes, sv")
                  if q["verified"] else "NO")
    console = Console(width=max(120, Console().width))
    console.print(t)
    if not rows:
        return
    swap_ratio = geomean((r["qpuos"]["swaps"] + 1) / (r["qiskit"]["swaps"] + 1) for r in rows)
    span_ratio = geomean(r["qpuos"]["makespan_ns"] / r["qiskit"]["makespan_ns"]
                         for r in rows if r["qiskit"]["makespan_ns"] > 0)
    depth_ratio = geomean(r["qpuos"]["depth"] / r["qiskit"]["depth"]
                          for r in rows if r["qiskit"]["depth"] > 0)
    q_time = sum(r["qpuos"]["seconds"] for r in rows)
    k_time = sum(r["qiskit"]["seconds"] for r in rows)
    missed_zero = sum(1 for r in rows if r["qiskit"]["swaps"] == 0 and r["qpuos"]["swaps"])
    unverified = sum(1 for r in rows if not r["qpuos"]["verified"])
    violations = sum(max(0, r["qpuos"]["coupling_violations"]) for r in rows)
    for impl, metric, value, unit in (
            ("ratio", "gmean_swaps_plus1_ratio", swap_ratio, "x"),
            ("ratio", "gmean_makespan_ratio", span_ratio, "x"),
            ("ratio", "gmean_depth_ratio", depth_ratio, "x"),
            ("qpuos", "total_seconds", q_time, "s"),
            ("qiskit_l3", "total_seconds", k_time, "s")):
        rec.add(impl, metric, value, unit)
    rec.target("gmean (qpuos swaps+1)/(qiskit swaps+1)", swap_ratio, 0.95, "x")
    rec.target("circuits where qiskit finds 0 swaps and qpuos does not", missed_zero, 0,
               "count")
    rec.target("gmean makespan ratio qpuos/qiskit (ALAP, device durations)", span_ratio, 0.9,
               "x")
    rec.target("total compile time ratio qpuos/qiskit", q_time / k_time if k_time else
               math.nan, 3.0, "x")
    big = [r for r in rows if r["circuit"] == "gen_randcx_n100_g1500"]
    if big:
        rec.target("randcx n100 on ibm_eagle_127 compile seconds",
                   big[0]["qpuos"]["seconds"], 60.0, "s")
    rec.target("unverified outputs", unverified, 0, "count")
    rec.target("coupling violations", violations, 0, "count")
    rec.print_targets(console)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))

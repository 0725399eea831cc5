"""The ``qpuos`` command. Thin: parse arguments, call the library, print.

Exit codes: 0 success; 2 bad input (unreadable or invalid file, unknown device, circuit
wider than the device, bad option) or a device error (the controller faulted, died or
timed out); 3 a compiled result failed its own verification (a bug in qpuos); 4 a
``qpuos demo`` result failed its statistical check; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from qpuos import __version__
from qpuos._argtypes import nonneg_int, positive_int
from qpuos.errors import QpuosError, UsageError, VerificationError

__all__ = ["main"]

EXIT_OK, EXIT_BAD_INPUT, EXIT_VERIFY_FAILED, EXIT_CHECK_FAILED = 0, 2, 3, 4

_EPILOG = """exit codes:
  0  success
  2  bad input: unreadable or invalid file, unknown device, circuit wider than device;
     or a device error: the QPU controller faulted, died or timed out
  3  the compiled result failed its own verification (a bug in qpuos: please report)
  4  qpuos demo: a result failed its statistical check
"""


def _cmd_compile(args: argparse.Namespace) -> int:
    from qpuos._atomic import write_files_atomically
    from qpuos._term import print_report
    from qpuos.quantum.compile import compile_circuit
    from qpuos.quantum.device import load_device
    from qpuos.quantum.qasm import dump_qasm, load_qasm
    from qpuos.quantum.routing import RoutingOptions

    if args.plot:
        from qpuos.plot import plot_format

        plot_format(args.plot)  # a bad suffix fails before any work or any write
    circuit = load_qasm(args.input)
    device = load_device(args.device)
    options = RoutingOptions(seed=args.seed, layout_trials=args.trials,
                             objective=args.objective, noise_aware=not args.hop_only)
    result = compile_circuit(circuit, device, options=options, verify=not args.no_verify,
                             optimize=not args.no_optimize, policy=args.policy)
    report = result.report()
    report["input"] = str(args.input)
    files: dict[str, bytes] = {}  # all written together, or none
    if args.output:
        files[args.output] = dump_qasm(result.circuit).encode()
    if args.report:
        files[args.report] = (json.dumps(report, indent=2) + "\n").encode()
    if args.plot:
        from qpuos.plot import plot_format, render_gantt

        files[args.plot] = render_gantt(
            result.schedule, fmt=plot_format(args.plot),
            title=f"{Path(args.input).name} on {device.name}: makespan "
                  f"{result.schedule.makespan_ns:,.0f} ns, {result.routed.swaps} SWAPs")
    write_files_atomically(files)
    print_report(report, outputs={"circuit": args.output, "report": args.report,
                                  "plot": args.plot})
    return EXIT_OK


def _cmd_devices(args: argparse.Namespace) -> int:
    from qpuos._term import print_devices
    from qpuos.quantum.device import describe_devices

    rows = describe_devices()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print_devices(rows)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from qpuos._atomic import atomic_write_text
    from qpuos.device import run_on_device
    from qpuos.quantum.compile import compile_circuit
    from qpuos.quantum.device import load_device
    from qpuos.quantum.qasm import load_qasm
    from qpuos.quantum.routing import RoutingOptions

    circuit = load_qasm(args.input)
    device = load_device(args.device)
    compiled = compile_circuit(circuit, device, options=RoutingOptions(seed=args.seed or 0))
    result = run_on_device(compiled, shots=args.shots, seed=args.seed)
    lat = result.lateness
    print(f"{args.input} on {device.name}: {result.shots} shots, "
          f"{compiled.routed.swaps} SWAPs, makespan {compiled.schedule.makespan_ns:,.0f} ns")
    for key, n in sorted(result.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:16]:
        print(f"  {key}  {n}")
    if len(result.counts) > 16:
        print(f"  ... {len(result.counts) - 16} more outcomes (all of them in --json)")
    print(f"issue lateness p50 {lat.p50_ns / 1e3:.1f} us, p99 {lat.p99_ns / 1e3:.1f} us, "
          f"max {lat.max_ns / 1e3:.1f} us over {lat.count} records (dilation "
          f"x{result.dilation:.1f}); ring {result.ring_latency_ns / 1e3:.1f} us; "
          f"end to end {result.end_to_end_ns / 1e6:.2f} ms")
    if args.json:
        report = result.to_json()
        report.update(input=str(args.input), device=device.name, seed=args.seed,
                      swaps=compiled.routed.swaps,
                      makespan_ns=compiled.schedule.makespan_ns)
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from qpuos._term import console, print_table
    from qpuos.device.demo import demo_summary, demo_table, run_demo

    report = run_demo(args.out, shots=args.shots, pin=not args.no_pin)
    print_table("qpuos demo: ibm_falcon_27, emulated controller", *demo_table(report))
    for line in demo_summary(report):
        console.print(line)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _cmd_bench(args: argparse.Namespace) -> int:
    from qpuos.bench import run_benchmark

    return run_benchmark(args.name, args.rest)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qpuos", description="qpuos: a quantum-processor operating layer.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"qpuos {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser(
        "compile", help="route and time an OpenQASM 2.0 circuit on a device",
        description="Lay out, route and schedule IN.qasm on a device, then verify the "
                    "result independently.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("input", metavar="IN.qasm", help="OpenQASM 2.0 file")
    c.add_argument("--device", "-d", required=True, metavar="NAME_OR_JSON",
                   help="built-in name (see `qpuos devices`), line:N, ring:N, grid:RxC, "
                        "heavy_hex:D, or a device JSON file")
    c.add_argument("-o", "--output", metavar="OUT.qasm",
                   help="write the routed circuit (one register q over physical qubits)")
    c.add_argument("--report", metavar="R.json", help="write the compile report as JSON")
    c.add_argument("--plot", metavar="GANTT.png", help="write the schedule as a Gantt chart")
    c.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    c.add_argument("--trials", type=positive_int, default=None,
                   help="random layout trials of the SABRE search (default: by circuit "
                        "size, 200 for small circuits down to 20)")
    c.add_argument("--objective", choices=("swaps", "makespan"), default="swaps",
                   help="what picks the best trial (default swaps, ties by makespan)")
    c.add_argument("--policy", choices=("alap", "asap"), default="alap",
                   help="scheduling policy (default alap)")
    c.add_argument("--hop-only", action="store_true",
                   help="ignore per-edge durations and errors when routing")
    c.add_argument("--no-optimize", action="store_true",
                   help="skip the exact peephole passes: the output keeps every inserted "
                        "SWAP as `swap` and every input gate as written")
    c.add_argument("--no-verify", action="store_true", help="skip the independent check")
    c.set_defaults(func=_cmd_compile)

    d = sub.add_parser("devices", help="list the built-in devices",
                       description="List the built-in coupling graphs and generator forms.")
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d.set_defaults(func=_cmd_devices)

    r = sub.add_parser(
        "run", help="compile a circuit and run it on the emulated QPU",
        description="Compile IN.qasm for a device, stream it to an emulated QPU controller "
                    "and print the counts (Qiskit's bit order) and the latency figures.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("input", metavar="IN.qasm", help="OpenQASM 2.0 file")
    r.add_argument("--device", "-d", required=True, metavar="NAME_OR_JSON",
                   help="built-in name, generator form or device JSON (see compile)")
    r.add_argument("--shots", type=positive_int, default=1000, help="shots (default 1000)")
    r.add_argument("--json", metavar="R.json",
                   help="write counts and latency statistics as JSON (atomically)")
    r.add_argument("--seed", type=nonneg_int, default=None,
                   help="routing and measurement seed (default: routing 0, random draws)")
    r.set_defaults(func=_cmd_run)

    m = sub.add_parser(
        "demo", help="GHZ and QFT end to end on ibm_falcon_27, checked, with a report",
        description="Compile GHZ and QFT circuits for ibm_falcon_27, run them on an "
                    "emulated controller, check the counts against the exact distributions "
                    "and report every layer; saves the Gantt charts.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--out", default="out", metavar="DIR",
                   help="folder for the Gantt charts (default out)")
    m.add_argument("--shots", type=positive_int, default=2000, help="shots per circuit")
    m.add_argument("--no-pin", action="store_true",
                   help="do not pin the controller or ask for SCHED_FIFO")
    m.set_defaults(func=_cmd_demo)

    b = sub.add_parser(
        "bench", help="run a benchmark beside its anchor (e.g. `qpuos bench route`)",
        description="Run a benchmark from benchmarks/ beside its anchor; it writes JSON and "
                    "exits 0 whether or not its targets are met. `qpuos bench NAME --help` "
                    "shows a benchmark's own options.")
    b.add_argument("name", metavar="NAME", help="benchmark name, e.g. route")
    b.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")
    b.set_defaults(func=_cmd_bench)
    _mount_groups(sub)
    return p


def _mount_groups(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The command groups each layer keeps beside its code (``LAYER/_cli.py``)."""
    from qpuos.bpf._cli import add_trace_parser
    from qpuos.cluster._cli import add_cluster_parser
    from qpuos.firmware._cli import add_fw_parser
    from qpuos.kernel.boot._cli import add_boot_parser
    from qpuos.lab._cli import add_lab_parser

    add_boot_parser(sub)
    add_cluster_parser(sub)
    add_fw_parser(sub)
    add_lab_parser(sub)
    add_trace_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qpuos`` command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except VerificationError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    except QpuosError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{type(exc).__name__}: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UnicodeDecodeError as exc:
        print(f"{UsageError.__name__}: input is not UTF-8 text ({exc.reason})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

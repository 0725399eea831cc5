"""``qpuos cluster run`` and ``qpuos cluster status``: argument parsing and printing only.

``add_cluster_parser(subparsers)`` adds the ``cluster`` command group to the ``qpuos``
parser; each command sets ``func`` and returns an exit code. Heavy imports (Ray, numba)
happen inside the commands. Errors are ``QpuosError``s, which ``qpuos`` prints as
``ClassName: message`` with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from qpuos._argtypes import positive_int

__all__ = ["add_cluster_parser"]

_SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(text: str) -> int:
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_SUFFIX else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _SIZE_SUFFIX[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text}")
    return int(value)


def _cmd_run(args: argparse.Namespace) -> int:
    from qpuos.cluster.shards import ShardedSimulator
    from qpuos.quantum.qasm import load_qasm

    circuit = load_qasm(args.input)
    with ShardedSimulator(shards=args.shards, memory_limit=args.memory_limit,
                          address=args.address,
                          backend="inline" if args.inline else "ray") as sim:
        stats = sim.run(circuit, mode=args.mode)
        counts = sim.sample(args.shots, seed=args.seed)
    if args.json:
        print(json.dumps({"input": str(args.input), "shots": args.shots, "counts": counts,
                          "sync": dataclasses.asdict(stats)
                          | {"bytes_per_global_gate": stats.bytes_per_global_gate}},
                         indent=2))
        return 0
    print(f"{args.input}: {circuit.num_qubits} qubits over {stats.shards} shard(s), "
          f"mode {stats.mode}, {args.shots} shots")
    width = max((len(k) for k in counts), default=0)
    for key, n in counts.items():
        print(f"  {key:>{width}}  {n:>8,}  {n / max(args.shots, 1):7.2%}")
    print(_sync_text(stats))
    return 0


def _sync_text(stats: Any) -> str:
    rows = [
        ("global gates", f"{stats.global_gates:,} moved data, {stats.free_global_gates:,} "
                         "ran in place (diagonal or control on a global qubit)"),
        ("swaps", f"{stats.swaps:,} ({stats.exchanges:,} swapped straight back: exchanges)"),
        ("bytes exchanged", f"{stats.bytes_exchanged:,} "
                            f"({stats.bytes_per_global_gate:,.0f} per global gate)"),
        ("epochs", f"{stats.epochs:,}"),
        ("barrier waits", f"{stats.barrier_waits:,}"),
        ("acquire checks", f"{stats.acquire_checks:,} passed"),
        ("stale reads", f"{stats.stale_reads:,}"),
        ("elapsed", f"{stats.elapsed_s:.3f} s"),
    ]
    return "sync statistics:\n" + "\n".join(f"  {k:<16} {v}" for k, v in rows)


def _cmd_status(args: argparse.Namespace) -> int:
    from qpuos.cluster._ray import ensure_ray

    ray = ensure_ray(address=args.address)
    nodes = ray.nodes()
    total = ray.cluster_resources()
    free = ray.available_resources()
    info = {
        "ray": ray.__version__,
        "address": args.address or "local (started on demand)",
        "nodes": [{"id": n.get("NodeID", "")[:12], "address": n.get("NodeManagerAddress"),
                   "alive": bool(n.get("Alive")),
                   "cpus": n.get("Resources", {}).get("CPU", 0.0),
                   "memory_bytes": int(n.get("Resources", {}).get("memory", 0)),
                   "object_store_bytes": int(n.get("Resources", {}).get(
                       "object_store_memory", 0))}
                  for n in nodes],
        "cpus": {"total": total.get("CPU", 0.0), "free": free.get("CPU", 0.0)},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    alive = sum(n["alive"] for n in info["nodes"])
    print(f"Ray {info['ray']} at {info['address']}: {alive} of {len(nodes)} node(s) alive, "
          f"CPUs {info['cpus']['free']:g} free of {info['cpus']['total']:g}")
    for n in info["nodes"]:
        print(f"  {n['id']}  {n['address']:<15}  {'alive' if n['alive'] else 'dead ':<5}  "
              f"{n['cpus']:g} CPUs  memory {n['memory_bytes'] / 2**30:.1f} GiB  "
              f"object store {n['object_store_bytes'] / 2**30:.1f} GiB")
    return 0


def add_cluster_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``qpuos cluster run|status`` to the ``qpuos`` subparsers; returns the group.

    >>> p = argparse.ArgumentParser(prog="qpuos")
    >>> _ = add_cluster_parser(p.add_subparsers(dest="command"))
    >>> a = p.parse_args(["cluster", "run", "x.qasm", "--shards", "4", "--mode", "barrier"])
    >>> a.shards, a.mode, a.shots, a.func.__name__
    (4, 'barrier', 1000, '_cmd_run')
    """
    c = subparsers.add_parser(
        "cluster", help="run circuits on a Ray cluster (sharded state vector)",
        description="Distributed execution on Ray: a state vector sharded over actors "
                    "with explicit sync modes. A local Ray starts on demand; --address "
                    "joins a running one. Exit codes: 0 success, 2 bad input or a "
                    "cluster error.")
    sub = c.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)

    r = sub.add_parser(
        "run", help="simulate IN.qasm on a sharded state vector and sample it",
        description="Simulate IN.qasm (unitary gates, terminal measurements) on a state "
                    "vector split over Ray actors (the top log2(SHARDS) qubits pick the "
                    "shard), then print counts per bitstring and the sync statistics.")
    r.add_argument("input", metavar="IN.qasm", help="OpenQASM 2.0 file")
    r.add_argument("--shards", type=positive_int, default=4,
                   help="shards, a power of two (default 4)")
    r.add_argument("--shots", type=positive_int, default=1000, help="shots (default 1000)")
    r.add_argument("--mode", choices=("barrier", "pairwise"), default="pairwise",
                   help="sync mode: barrier (cluster-wide epoch per swap, sequentially "
                        "consistent) or pairwise (partners only, acquire/release; default)")
    r.add_argument("--seed", type=int, default=None, help="sampling seed")
    r.add_argument("--memory-limit", type=_size, default=None, metavar="SIZE",
                   help="largest peak memory one shard may use (e.g. 512M); a register "
                        "that does not fit is refused with the shard count that would")
    r.add_argument("--address", default=None,
                   help="Ray cluster to join (host:port, ray://..., auto)")
    r.add_argument("--inline", action="store_true",
                   help="run the shards in this process, in order (no Ray)")
    r.add_argument("--json", action="store_true", help="print JSON instead of text")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("status", help="show the Ray cluster's nodes and resources",
                       description="Join (or start) Ray and list its nodes, CPUs, "
                                   "memory and object store.")
    s.add_argument("--address", default=None,
                   help="Ray cluster to join (default: start a local one)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=_cmd_status)
    return c  # type: ignore[no-any-return]

"""``qpuos bench bpf``: BTF parse time, program load time, map read rate, trace overhead.

1. BTF: ``Btf.load_vmlinux()`` (read the file, find every type record, gather kinds and
   name offsets), then the first by-name lookup ``member_offset("task_struct", "pid")``.
   Anchor: ``bpftool btf dump file /sys/kernel/btf/vmlinux format raw`` (a C program
   that parses and prints every type), run in the same rounds, when bpftool is
   installed (apt: bpftool). Target (issue [bpf] 9): parse <= 0.3 s.
2. Program load: ``load_program`` of the 16-instruction syscall counter that
   ``qpuos trace`` uses (assemble, BPF_PROG_LOAD, close), without and with the verifier
   log.
3. Map reads: every element of a 1024-entry array map, through ``m[i]`` (encode
   key, one bpf(2) call, decode) and through ``lookup_raw``; for contrast the same
   BPF_MAP_LOOKUP_ELEM through the generic gate ``kernel.syscall.bpf`` (which views
   the attribute buffer on every call), and the floor: a ``PreparedCall`` with nothing
   but the key byte stores around it.
4. Trace overhead: this process writes one byte to /dev/null in a loop, untraced and
   then with ``SyscallCounter`` counting its own system calls (the raw tracepoint
   program runs on every system call of the machine, filtered by tgid); rounds
   alternate. Quality: the counter must count exactly the writes made.

Rounds interleave the implementations; the figures are medians over rounds (minimum
for the BTF parse, whose noise is one-sided).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import BenchRecord
from qpuos._ffi import bpf as ffi
from qpuos._ffi import consts
from qpuos._ffi.libc import PreparedCall, WritableBuffer, address_of, sizeof
from qpuos.bpf import ArrayMap, Btf, ProgType, SyscallCounter, load_program
from qpuos.bpf.trace import syscall_counter_program
from qpuos.kernel import syscall as sc

VMLINUX = "/sys/kernel/btf/vmlinux"


def _btf_parse() -> tuple[float, float]:
    t0 = time.perf_counter()
    btf = Btf.load_vmlinux()
    t1 = time.perf_counter()
    btf.member_offset("task_struct", "pid")
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _bpftool_dump(bpftool: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([bpftool, "btf", "dump", "file", VMLINUX, "format", "raw"],
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def _load_time(n: int, *, log: bool) -> float:
    prog = syscall_counter_program(os.getpid())
    with ArrayMap.create(value="Q", max_entries=1024) as counts:
        t0 = time.perf_counter()
        for _ in range(n):
            load_program(prog, prog_type=ProgType.RAW_TRACEPOINT, maps={"counts": counts},
                         verifier_log=log).close()
        return (time.perf_counter() - t0) / n


def _map_reads(m: ArrayMap, how: str) -> float:
    n = m.max_entries
    if how in ("gate", "floor"):
        key, value = bytearray(4), bytearray(8)
        kb, vb = WritableBuffer(key), WritableBuffer(value)
        attr = ffi.MapElemAttr()
        attr.map_fd, attr.key, attr.value = m.fd, kb.address, vb.address
        if how == "gate":
            view, bpf, cmd = ffi.attr_bytes(attr), sc.bpf, consts.BPF_MAP_LOOKUP_ELEM
            t0 = time.perf_counter()
            for i in range(n):
                key[0], key[1] = i & 0xFF, i >> 8
                bpf(cmd, view)
            return n / (time.perf_counter() - t0)
        call = PreparedCall(sc.syscall_number("bpf"), consts.BPF_MAP_LOOKUP_ELEM,
                            address_of(attr), sizeof(attr)).call
        t0 = time.perf_counter()
        for i in range(n):
            key[0], key[1] = i & 0xFF, i >> 8
            call()
        return n / (time.perf_counter() - t0)
    get = m.lookup_raw if how == "raw" else m.__getitem__
    t0 = time.perf_counter()
    for i in range(n):
        get(i)
    return n / (time.perf_counter() - t0)


def _write_loop(n: int, fd: int) -> float:
    write = os.write
    t0 = time.perf_counter_ns()
    for _ in range(n):
        write(fd, b"x")
    return (time.perf_counter_ns() - t0) / n


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench bpf``."""
    p = argparse.ArgumentParser(prog="qpuos bench bpf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_bpf.json"),
                   help="where to write the results (default out/bench_bpf.json)")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--loads", type=int, default=100,
                   help="program loads per round (default 100)")
    p.add_argument("--writes", type=int, default=200_000,
                   help="writes per round for the trace overhead (default 200000)")
    p.add_argument("--quick", action="store_true",
                   help="3 rounds, 10 loads, 20000 writes: seconds, for a smoke run")
    args = p.parse_args(argv)
    rounds, loads, writes = (3, 10, 20_000) if args.quick else \
        (args.rounds, args.loads, args.writes)
    if min(rounds, loads, writes) < 1:
        print("UsageError: --rounds, --loads and --writes must be >= 1", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rec = BenchRecord("bpf", packages=("numpy",))
    bpftool = shutil.which("bpftool")
    parse, lookup, tool = [], [], []
    loads_plain, loads_log = [], []
    reads: dict[str, list[float]] = {"getitem": [], "raw": [], "gate": [], "floor": []}
    plain_ns, traced_ns = [], []
    exact = True
    devnull = os.open(os.devnull, os.O_WRONLY)
    with console.status("") as status, ArrayMap.create(value="Q", max_entries=1024) as m:
        for r in range(rounds):
            status.update(f"round {r + 1}/{rounds}: BTF")
            a, b = _btf_parse()
            parse.append(a)
            lookup.append(b)
            if bpftool:
                tool.append(_bpftool_dump(bpftool))
            status.update(f"round {r + 1}/{rounds}: program loads")
            loads_plain.append(_load_time(loads, log=False))
            loads_log.append(_load_time(loads, log=True))
            status.update(f"round {r + 1}/{rounds}: map reads")
            for how, samples in reads.items():
                samples.append(_map_reads(m, how))
            status.update(f"round {r + 1}/{rounds}: trace overhead")
            plain_ns.append(_write_loop(writes, devnull))
            with SyscallCounter(os.getpid()) as counter:
                before = counter.counts().get(sc.syscall_number("write"), 0)
                traced_ns.append(_write_loop(writes, devnull))
                counted = counter.counts().get(sc.syscall_number("write"), 0) - before
            exact = exact and counted == writes
    os.close(devnull)

    med = statistics.median
    table = Table(title=f"eBPF loader ({rounds} rounds, medians; BTF parse: minimum)")
    for col in ("measure", "qpuos", "anchor / floor"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    tool_s = min(tool) if tool else float("nan")
    table.add_row("vmlinux BTF parse, s", f"{min(parse):.4f}",
                  f"bpftool dump {tool_s:.4f}" if tool else "bpftool not installed")
    table.add_row("first lookup task_struct.pid, ms", f"{med(lookup) * 1e3:.2f}", "")
    table.add_row("program load (16 insns), µs", f"{med(loads_plain) * 1e6:.0f}",
                  f"with verifier log {med(loads_log) * 1e6:.0f}")
    table.add_row("array map reads, M/s, m\\[i]", f"{med(reads['getitem']) / 1e6:.3f}",
                  f"floor {med(reads['floor']) / 1e6:.3f}")
    table.add_row("array map reads, M/s, lookup_raw", f"{med(reads['raw']) / 1e6:.3f}",
                  f"kernel.syscall.bpf {med(reads['gate']) / 1e6:.3f}")
    table.add_row("write(2) loop, ns/call, untraced -> traced",
                  f"{med(plain_ns):.0f} -> {med(traced_ns):.0f}",
                  f"overhead {med(traced_ns) - med(plain_ns):.0f} ns")
    table.add_row("writes counted exactly", "yes" if exact else "NO", "")
    console.print(table)

    rec.add("qpuos", "btf_parse_s", round(min(parse), 5), "s", median=round(med(parse), 5))
    rec.add("qpuos", "btf_first_lookup_ms", round(med(lookup) * 1e3, 3), "ms")
    rec.add("bpftool", "btf_dump_s", round(tool_s, 5) if tool else None, "s",
            installed=bool(bpftool))
    rec.add("qpuos", "prog_load_us", round(med(loads_plain) * 1e6, 1), "µs", insns=16)
    rec.add("qpuos", "prog_load_with_log_us", round(med(loads_log) * 1e6, 1), "µs", insns=16)
    impl = {"getitem": "qpuos m[i]", "raw": "qpuos lookup_raw",
            "gate": "kernel.syscall.bpf per element", "floor": "prepared bpf(2) call floor"}
    for how, vals in reads.items():
        rec.add(impl[how], "map_reads_per_s", round(med(vals)), "1/s")
    rec.add("untraced", "write_ns_per_call", round(med(plain_ns), 1), "ns")
    rec.add("qpuos trace", "write_ns_per_call", round(med(traced_ns), 1), "ns",
            counted_exactly=exact)
    rec.add("qpuos trace", "overhead_ns_per_syscall", round(med(traced_ns) - med(plain_ns), 1),
            "ns")
    rec.target("vmlinux BTF parse", round(min(parse), 4), 0.3, "s")
    rec.print_targets(console)
    load = os.getloadavg()
    console.print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                  f"(before: {' '.join(f'{x:.2f}' for x in rec.load_before)})")
    rec.write(args.json, extra={"rounds": rounds, "loads": loads, "writes": writes})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))

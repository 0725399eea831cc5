"""``qpuos bench ring``: 64-byte messages between two processes, qpuos rings beside the
usual Python transports, same run.

For each transport, a child process (fork) echoes or consumes while the parent drives:

- latency: ping-pong, every round trip timed (``perf_counter_ns``); one-way = RTT / 2;
  p50, p99, p99.9, max. Each message is copied in and out (``recv`` returns ``bytes``).
- throughput, single: the parent sends N messages one call each, the child receives them
  one call each (copied out) and acknowledges the last; messages / second.
- throughput, batched: many messages per call (qpuos: ``send_many`` of 256 records /
  ``recv_into`` a 256-record buffer, RecordRing ``recv_many``; pipes and queues: one
  4 KiB write of 64 messages). The consumer gets the bytes copied out in bulk and does
  no per-message Python work in any transport, so this measures the transport alone
  (the research baseline's 1.8 M/s for os.pipe included slicing out each message).

Every cell runs ``--repeat`` times (default 5, a fresh child each time, repeats
outermost so that other tenants' noise spreads over all transports); the tables show
the median, p50 with its [min-max] over the runs, and the JSON keeps every run.

Transports: qpuos SpscRing (``blocking=False, wait="spin"``: the latency target's
configuration; and ``blocking=True``, spin-then-block, the default), RecordRing, MpmcRing,
``multiprocessing.Queue``, ``multiprocessing.Pipe``, ``os.pipe``, faster-fifo when it is
importable, and the floor: a bare 8-byte counter bounced through shared memory (no
payload, no ring). All of it twice: pinned (parent on CPU 0, child on CPU 1) and
unpinned.

Targets (issue [ring], pinned, same run): SpscRing one-way p50 <= 0.6 µs and p99 <= 2 µs;
p50 at least 50x lower than multiprocessing.Queue; batched >= 10 M msgs/s.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _common import BenchRecord

MSG = 64
BATCH = 256            # records per send_many / recv_into (qpuos)
PIPE_BATCH = 64        # messages per 4 KiB write (pipes, queues)
WARMUP = 1000
STOP = b"\xff" * MSG     # ends an echo child
RUN_LIMIT_S = 120      # SIGALRM: no run may hang the benchmark
CTX = mp.get_context("fork")


class Sizes:
    """How much to measure; the caps keep slow transports from dominating the run.

    (Plain classes, not dataclasses: ``qpuos bench`` loads this file without
    registering it in ``sys.modules``, which dataclasses need.)
    """

    def __init__(self, lat: int = 20_000, single: int = 200_000, batched: int = 4_000_000,
                 cap_s: float = 2.0) -> None:
        self.lat = lat            # round trips per latency run
        self.single = single      # messages, one per call
        self.batched = batched    # messages, in batches
        self.cap_s = cap_s        # stop a latency run after this long

    def scaled(self, f: float) -> Sizes:
        return Sizes(max(2000, int(self.lat * f)), max(20_000, int(self.single * f)),
                     max(200_000, int(self.batched * f)), self.cap_s * max(f, 0.25))


def _no_close(state: Any) -> None:
    """Nothing to release (the queue and pipe objects go with the garbage)."""


class Transport:
    """One way of moving bytes between two processes, in both directions."""

    def __init__(self, name: str, make: Callable[[], Any], ends: Callable[[Any, str], Any],
                 *, slow: float = 1.0, batch: bool = True,
                 close: Callable[[Any], None] = _no_close) -> None:
        self.name = name
        self.make = make          # -> state shared by parent and child
        self.ends = ends          # (state, "parent" | "child") -> endpoint
        self.slow = slow          # scale for message counts
        self.batch = batch
        self.close = close


# -- endpoints: each has send(bytes), recv() -> bytes, send_batch(bytes), recv_batch() --


class _RingEnd:
    def __init__(self, cls: Any, names: tuple[str, str], side: str, wait: str) -> None:
        a, b = names if side == "parent" else names[::-1]
        self.tx = cls.attach(a, wait=wait)
        self.rx = cls.attach(b, wait=wait)
        self.send, self.recv = self.tx.send, self.rx.recv
        self.kind = cls.__name__
        self.buf = bytearray(MSG * BATCH)

    def send_batch(self, data: bytes) -> None:
        if self.kind == "RecordRing":
            recs = [data[i:i + MSG] for i in range(0, len(data), MSG)]
            self.tx.send_many(recs)
        else:
            self.tx.send_many(data)

    def recv_batch(self) -> int:
        if self.kind == "RecordRing":
            return len(self.rx.recv_many(BATCH))
        return int(self.rx.recv_into(self.buf))

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


def _ring_transport(label: str, cls: Any, *, wait: str, blocking: bool,
                    **kw: Any) -> Transport:
    def make() -> Any:
        return [cls.create(blocking=blocking, wait=wait, **kw) for _ in range(2)]

    def ends(rings: Any, side: str) -> _RingEnd:
        return _RingEnd(cls, (rings[0].name, rings[1].name), side, wait)

    def close(rings: Any) -> None:
        for r in rings:
            r.close()

    return Transport(label, make, ends, close=close)


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class _FdEnd:
    """os.pipe: 64-byte writes are atomic (<= PIPE_BUF), so a 64-byte read is a message."""

    def __init__(self, fds: tuple[int, int, int, int], side: str) -> None:
        r1, w1, r2, w2 = fds
        self.r, self.w = (r2, w1) if side == "parent" else (r1, w2)

    def send(self, data: bytes) -> None:
        os.write(self.w, data)

    def recv(self) -> bytes:
        return os.read(self.r, MSG)

    def send_batch(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.w, view[:4096]):]

    def recv_batch(self) -> int:
        return len(os.read(self.r, 65536)) // MSG   # whole messages: writes are 4 KiB


class _ConnEnd:
    def __init__(self, conns: tuple[Any, Any], side: str) -> None:
        self.c = conns[0] if side == "parent" else conns[1]
        self.send, self.recv = self.c.send_bytes, self.c.recv_bytes

    def send_batch(self, data: bytes) -> None:
        for i in range(0, len(data), MSG * PIPE_BATCH):
            self.c.send_bytes(data[i:i + MSG * PIPE_BATCH])

    def recv_batch(self) -> int:
        return len(self.c.recv_bytes()) // MSG


class _QueueEnd:
    def __init__(self, queues: tuple[Any, Any], side: str) -> None:
        self.tx, self.rx = queues if side == "parent" else queues[::-1]
        self.send, self.recv = self.tx.put, self.rx.get

    def send_batch(self, data: bytes) -> None:
        for i in range(0, len(data), MSG * PIPE_BATCH):
            self.tx.put(data[i:i + MSG * PIPE_BATCH])

    def recv_batch(self) -> int:
        return len(self.rx.get()) // MSG


def transports() -> tuple[list[Transport], list[str]]:
    """Every transport to measure, and notes on those skipped."""
    from qpuos.ipc import MpmcRing, RecordRing, SpscRing

    out = [
        _ring_transport("qpuos SpscRing spin", SpscRing, wait="spin", blocking=False,
                        slot_size=MSG, capacity=1024),
        _ring_transport("qpuos SpscRing spin-then-block", SpscRing, wait="block",
                        blocking=True, slot_size=MSG, capacity=1024),
        _ring_transport("qpuos RecordRing spin", RecordRing, wait="spin", blocking=False,
                        capacity=1 << 17),
        _ring_transport("qpuos MpmcRing spin", MpmcRing, wait="spin", blocking=False,
                        slot_size=MSG, capacity=1024),
        Transport("multiprocessing.Queue", lambda: (CTX.Queue(), CTX.Queue()), _QueueEnd,
                  slow=0.2),
        Transport("multiprocessing.Pipe", CTX.Pipe, _ConnEnd, slow=0.3),
        Transport("os.pipe", lambda: (*os.pipe(), *os.pipe()), _FdEnd, slow=0.5,
                  close=_close_fds),
    ]
    notes = []
    try:
        import faster_fifo  # type: ignore[import-not-found]
    except ImportError:
        notes.append("faster-fifo is not installed: skipped")
    else:
        out.append(Transport("faster_fifo.Queue",
                             lambda: (faster_fifo.Queue(), faster_fifo.Queue()), _QueueEnd,
                             slow=0.2))
    return out, notes


# -- the child ---------------------------------------------------------------------------


def _child(t: Transport, state: Any, job: str, n: int, cpu: set[int] | None,
           ack_fd: int) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, cpu)
    end = t.ends(state, "child")
    os.write(ack_fd, b"r")                    # attached and ready
    if job == "echo":
        send, recv = end.send, end.recv
        while True:
            m = recv()
            send(m)
            if m == STOP:
                break
    elif job == "single":
        recv = end.recv
        for _ in range(n):
            recv()
        os.write(ack_fd, b"d")
    else:
        got = 0
        while got < n:
            got += end.recv_batch()
        os.write(ack_fd, b"d")
    if hasattr(end, "close"):
        end.close()


def _run(t: Transport, job: str, n: int, pinned: bool,
         drive: Callable[[Any], Any]) -> Any:
    """Start the child for ``job``, call ``drive(parent end)``, join the child."""
    state = t.make()
    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(RUN_LIMIT_S)
    proc = CTX.Process(target=_child,
                       args=(t, state, job, n, {1} if pinned else None, w), daemon=True)
    proc.start()
    try:
        if os.read(r, 1) != b"r":
            raise RuntimeError(f"{t.name}: child did not start")
        end = t.ends(state, "parent")
        result = drive((end, r))
        if hasattr(end, "close"):
            end.close()
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            raise RuntimeError(f"{t.name}: child did not finish its {job} run")
        return result
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if proc.is_alive():
            proc.kill()
        os.close(r)
        os.close(w)
        t.close(state)


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError(f"a benchmark run took more than {RUN_LIMIT_S} s")


def latency(t: Transport, sz: Sizes, pinned: bool) -> np.ndarray[Any, Any]:
    """One-way latencies in µs (RTT / 2) of up to ``sz.lat`` round trips."""
    n = WARMUP + sz.lat
    msg = bytes(range(MSG))

    def drive(arg: Any) -> np.ndarray[Any, Any]:
        end, _ = arg
        send, recv, pc = end.send, end.recv, time.perf_counter_ns
        lat = np.zeros(n, dtype=np.int64)
        stop = pc() + int(sz.cap_s * 1e9)
        done = n
        for i in range(n):
            t0 = pc()
            send(msg)
            recv()
            t1 = pc()
            lat[i] = t1 - t0
            if t1 > stop and i > WARMUP + 500:
                done = i + 1
                break
        send(STOP)
        recv()
        return lat[WARMUP:done] / 2000.0

    result: np.ndarray[Any, Any] = _run(t, "echo", n, pinned, drive)
    return result


def throughput(t: Transport, n: int, pinned: bool, batched: bool) -> float:
    """Messages per second, first send to the child's acknowledgement of the last."""
    msg = bytes(range(MSG))
    block = msg * BATCH if batched else msg

    def drive(arg: Any) -> float:
        end, ack = arg
        t0 = time.perf_counter()
        if batched:
            send_batch = end.send_batch
            for _ in range(n // BATCH):
                send_batch(block)
        else:
            send = end.send
            for _ in range(n):
                send(msg)
        if os.read(ack, 1) != b"d":
            raise RuntimeError(f"{t.name}: no acknowledgement")
        return n / (time.perf_counter() - t0)

    n = n // BATCH * BATCH if batched else n
    return float(_run(t, "batched" if batched else "single", n, pinned, drive))


def bare_floor(sz: Sizes, pinned: bool) -> np.ndarray[Any, Any]:
    """The floor: an 8-byte counter bounced through shared memory, nothing else."""
    mm = mmap.mmap(-1, 4096)
    n = WARMUP + sz.lat

    def child(cpu: set[int] | None) -> None:
        if cpu is not None:
            os.sched_setaffinity(0, cpu)
        q = memoryview(mm).cast("Q")
        for i in range(1, n + 1):
            while q[0] != i:
                pass
            q[16] = i

    proc = CTX.Process(target=child, args=({1} if pinned else None,), daemon=True)
    proc.start()
    q = memoryview(mm).cast("Q")
    lat = np.zeros(n, dtype=np.int64)
    pc = time.perf_counter_ns
    for i in range(1, n + 1):
        t0 = pc()
        q[0] = i
        while q[16] != i:
            pass
        lat[i - 1] = pc() - t0
    proc.join(30)
    q.release()
    mm.close()
    return lat[WARMUP:] / 2000.0


# -- driver ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench ring``."""
    p = argparse.ArgumentParser(prog="qpuos bench ring", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_ring.json"),
                   help="where to write the results (default out/bench_ring.json)")
    p.add_argument("--quick", action="store_true",
                   help="one run per cell with a quarter of the counts (~10 s)")
    p.add_argument("--repeat", type=int, default=5,
                   help="runs per cell; tables show the median (default 5)")
    p.add_argument("--only", default="", help="only transports whose name contains this")
    args = p.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("UsageError: this benchmark needs two CPUs", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print("UsageError: --repeat must be at least 1", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.progress import Progress

    sz = Sizes().scaled(0.25) if args.quick else Sizes()
    repeat = 1 if args.quick else args.repeat
    rec = BenchRecord("ring", packages=("numpy", "numba"))
    all_t, notes = transports()
    chosen = [t for t in all_t if args.only in t.name]
    saved_cpus = os.sched_getaffinity(0)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task("ring", total=2 * repeat * (1 + len(chosen)))
        # Repeats outermost: noise from other tenants spreads over every transport.
        for r in range(repeat):
            for pinned in (True, False):
                mode = "pinned" if pinned else "unpinned"
                os.sched_setaffinity(0, {0} if pinned else saved_cpus)
                try:
                    progress.update(task, description=f"run {r + 1}, {mode}: floor")
                    runs.setdefault((FLOOR, mode), []).append(
                        _stats(bare_floor(sz, pinned)))
                    progress.advance(task)
                    for t in chosen:
                        progress.update(task, description=f"run {r + 1}, {mode}: {t.name}")
                        tsz = sz.scaled(t.slow)
                        one = _stats(latency(t, tsz, pinned))
                        one["single_msgs_per_s"] = throughput(t, tsz.single, pinned,
                                                              batched=False)
                        one["batched_msgs_per_s"] = throughput(
                            t, tsz.batched, pinned, batched=True) if t.batch else np.nan
                        runs.setdefault((t.name, mode), []).append(one)
                        progress.advance(task)
                finally:
                    os.sched_setaffinity(0, saved_cpus)
    order = [FLOOR] + [t.name for t in chosen]
    cells = sorted(runs.items(), key=lambda kv: (kv[0][1] != "pinned",
                                                 order.index(kv[0][0])))
    rows = [_row(rec, name, mode, cell) for (name, mode), cell in cells]
    _targets(rec, rows)
    _print(Console(width=max(120, Console().width)), rows, rec, notes, repeat)
    rec.write(args.json, extra={"notes": notes, "message_bytes": MSG, "batch": BATCH,
                                "repeat": repeat, "rows": rows})
    print(f"wrote {args.json}")
    return 0


FLOOR = "shared-memory 8-byte counter (floor)"
_UNITS = {"p50_us": ("one_way_p50", "us"), "p99_us": ("one_way_p99", "us"),
          "p999_us": ("one_way_p99.9", "us"), "max_us": ("one_way_max", "us"),
          "single_msgs_per_s": ("throughput_single", "msgs/s"),
          "batched_msgs_per_s": ("throughput_batched", "msgs/s")}


def _stats(lat: np.ndarray[Any, Any]) -> dict[str, float]:
    p50, p99, p999 = (float(x) for x in np.percentile(lat, [50, 99, 99.9]))
    return {"p50_us": p50, "p99_us": p99, "p999_us": p999, "max_us": float(lat.max())}


def _row(rec: BenchRecord, name: str, mode: str, cell: list[dict[str, float]]
         ) -> dict[str, Any]:
    """Median over the runs of a cell (and the spread), recorded in ``rec``."""
    row: dict[str, Any] = {"impl": name, "mode": mode, "runs": len(cell)}
    for key, (metric, unit) in _UNITS.items():
        vals = [c[key] for c in cell if key in c and not np.isnan(c[key])]
        if not vals:
            row[key] = None
            continue
        row[key] = float(np.median(vals))
        row[key + "_range"] = [float(min(vals)), float(max(vals))]
        rec.add(name, metric, row[key], unit, mode=mode, runs=vals)
    return row


def _targets(rec: BenchRecord, rows: list[dict[str, Any]]) -> None:
    def get(name: str, key: str, mode: str = "pinned") -> float:
        for r in rows:
            if r["impl"] == name and r["mode"] == mode and r[key] is not None:
                return float(r[key])
        return float("nan")

    spsc = "qpuos SpscRing spin"
    rec.target("SpscRing one-way p50, pinned (64 B copied in and out)",
               get(spsc, "p50_us"), 0.6, "us")
    rec.target("SpscRing one-way p99, pinned", get(spsc, "p99_us"), 2.0, "us")
    queue = get("multiprocessing.Queue", "p50_us")
    if not np.isnan(queue):   # (not measured when --only leaves it out)
        rec.target("multiprocessing.Queue p50 / SpscRing p50, pinned",
                   queue / get(spsc, "p50_us"), 50.0, "x", at_most=False)
    rec.target("SpscRing batched throughput, pinned", get(spsc, "batched_msgs_per_s"),
               10e6, "msgs/s", at_most=False)


def _print(console: Any, rows: list[dict[str, Any]], rec: BenchRecord,
           notes: list[str], repeat: int) -> None:
    from rich.table import Table

    t = Table(title=f"64-byte messages between two processes: median of {repeat} run(s) "
                    f"(one-way = RTT/2; batched: {BATCH} per call for qpuos, "
                    f"{PIPE_BATCH} for pipes/queues)")
    for col in ("transport", "mode", "p50 µs [min-max]", "p99 µs", "p99.9 µs", "max µs",
                "msgs/s single", "msgs/s batched"):
        t.add_column(col, justify="left" if col in ("transport", "mode") else "right")

    def rate(x: float | None) -> str:
        if x is None or np.isnan(x):
            return "-"
        return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"

    def spread(r: dict[str, Any], key: str, fmt: str) -> str:
        lo_hi = r.get(key + "_range")
        if not lo_hi or r["runs"] < 2:
            return format(r[key], fmt)
        return f"{r[key]:{fmt}} [{lo_hi[0]:{fmt}}-{lo_hi[1]:{fmt}}]"

    for r in rows:
        t.add_row(r["impl"], r["mode"], spread(r, "p50_us", ".2f"),
                  f"{r['p99_us']:.2f}", f"{r['p999_us']:.1f}", f"{r['max_us']:.0f}",
                  rate(r["single_msgs_per_s"]), rate(r["batched_msgs_per_s"]))
    console.print(t)
    rec.print_targets(console)
    for note in notes:
        console.print(f"note: {note}")
    with contextlib.suppress(OSError):
        load = os.getloadavg()
        console.print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))

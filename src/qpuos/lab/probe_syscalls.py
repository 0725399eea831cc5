"""Probe: the batch size past which Python's per-record cost outweighs the system call.

``R`` tiny records are written ``B`` per system call, B swept over powers of two, over
three transports: a pipe (``b"".join`` + ``os.write``), a file (``os.writev``) and a
UNIX socket pair (``socket.sendmsg`` with one buffer per record). The cost per record
falls like ``1 / B`` while the call dominates and flattens once the Python work per
record does; :func:`~qpuos.lab.knee.find_hinge` in log-log space finds the bend.

The calls are counted, not assumed: ``/proc/self/io``'s ``syscw`` (write-side calls
through the VFS: ``write``/``writev`` on pipes and files) is read around every
measurement. ``sendmsg`` does not pass through the VFS counters, so the socket
transport's count shows as unavailable. The socket's sender is non-blocking and drains
the other end itself when the kernel's buffer is full (tiny sends fill it fast).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qpuos.lab._measure import sweep
from qpuos.lab.knee import find_hinge
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

__all__ = ["PROBE", "QUANTITIES", "read_syscw", "run"]

PROBE = "syscalls"
QUANTITIES = ("pipe_batch", "file_batch", "socket_batch")
_RECORD = b"0123456789abcdef"      # 16 bytes
# size -> (records per measurement, largest batch as a power of two, repeats)
_PLAN = {"tiny": (256, 8, 3), "quick": (2048, 11, 15), "full": (2048, 11, 41)}


def read_syscw() -> int | None:
    """Write-side system calls of this process so far (``/proc/self/io``), or None.

    >>> c = read_syscw()
    >>> c is None or c >= 0
    True
    """
    try:
        text = Path("/proc/self/io").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return None


class _Transports:
    """The three writers, each sending ``records`` in batches of ``b``; owns the fds."""

    def __init__(self, records: int) -> None:
        self.records = [_RECORD] * records
        self.pipe_r, self.pipe_w = os.pipe()
        self.sock_a, self.sock_b = socket.socketpair()
        self.sock_a.setblocking(False)
        self.sock_b.setblocking(False)
        fd, self.path = tempfile.mkstemp(prefix="qpuos-lab-")
        self.file = fd

    def close(self) -> None:
        for fd in (self.pipe_r, self.pipe_w, self.file):
            os.close(fd)
        self.sock_a.close()
        self.sock_b.close()
        os.unlink(self.path)

    def pipe(self, b: int) -> None:
        recs, w = self.records, self.pipe_w
        for i in range(0, len(recs), b):
            os.write(w, b"".join(recs[i:i + b]))
        left = len(recs) * len(_RECORD)
        while left > 0:
            left -= len(os.read(self.pipe_r, left))

    def file_(self, b: int) -> None:
        recs, fd = self.records, self.file
        for i in range(0, len(recs), b):
            os.writev(fd, recs[i:i + b])
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)

    def socket_(self, b: int) -> None:
        recs, send = self.records, self.sock_a.sendmsg
        left = len(recs) * len(_RECORD)
        for i in range(0, len(recs), b):
            try:
                send(recs[i:i + b])
            except BlockingIOError:      # the kernel charges ~1 KiB per tiny send: drain
                left -= self._drain()
                send(recs[i:i + b])
        while left > 0:
            left -= self._drain()

    def _drain(self) -> int:
        got = 0
        try:
            while True:
                got += len(self.sock_b.recv(1 << 16))
        except BlockingIOError:
            return got


def _timed(write: Callable[[int], None], b: int, n: int,
           calls: dict[int, list[float]] | None) -> float:
    before = read_syscw()
    t0 = time.perf_counter_ns()
    write(b)
    dt = time.perf_counter_ns() - t0
    after = read_syscw()
    if calls is not None and before is not None and after is not None:
        calls.setdefault(b, []).append(after - before)
    return dt / n


def run(*, size: Size = "quick", progress: Progress | None = None,
        seed: int = 0) -> ProbeResult:
    """Sweep the batch size over three transports; find where batching stops paying.

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
    n, top, repeats = _PLAN[check_size(size)]
    batches = [2 ** i for i in range(top)]
    tr = _Transports(n)
    counted: dict[str, dict[int, list[float]]] = {"pipe": {}, "file": {}}
    try:
        kinds: list[tuple[str, str, Callable[[int], None]]] = [
            ("pipe", "pipe: join + write", tr.pipe),
            ("file", "file: writev", tr.file_),
            ("socket", "socket pair: sendmsg", tr.socket_)]
        reps: dict[str, list[list[float]]] = {}
        for i, (key, _, write) in enumerate(kinds):
            log = counted.get(key)
            reps[key] = sweep(batches, repeats,
                              lambda b, w=write, c=log: _timed(w, b, n, c),  # type: ignore[misc]
                              progress=progress, seed=seed + i, done=i / 3, share=1 / 3)
    finally:
        tr.close()
    findings: list[Finding] = []
    misses: list[Miss] = []
    marks: list[Mark] = []
    for key, label, _ in kinds:
        knee = find_hinge(batches, reps[key], seed=seed)
        quantity = f"{key}_batch"
        if knee is None:
            misses.append(Miss(PROBE, quantity, f"{label}: per-record cost follows one "
                                                f"power law over batches 1..{batches[-1]}"))
            continue
        first = Series.of("", batches, reps[key]).medians()[0]
        findings.append(Finding(
            PROBE, quantity, knee.x, "records", first / knee.at, knee.confidence,
            f"{label}: past {knee.x:g} records per call the per-record Python cost "
            f"dominates ({knee.at:.0f} ns/record there vs {first:.0f} ns one call each: "
            f"x{first / knee.at:.1f} saved; batching all {batches[-1]} saves only "
            f"x{knee.at / knee.after:.2f} more)"))
        marks.append(Mark(knee.x, key))
    call_series = [Series.of(f"{key} ({'write' if key == 'pipe' else 'writev'})",
                             sorted(c), [[v / n for v in c[b]] for b in sorted(c)])
                   for key, c in counted.items() if c]
    panels = [Panel("cost per record vs records per system call", "records per call (B)",
                    "ns per record", tuple(Series.of(lbl, batches, reps[k])
                                           for k, lbl, _ in kinds), marks=tuple(marks))]
    notes = ["socket pair: sendmsg is not counted by /proc/self/io (not a VFS write)"]
    if call_series:
        panels.append(Panel("system calls per record, counted in /proc/self/io",
                            "records per call (B)", "calls per record",
                            tuple(call_series)))
        for s in call_series:
            notes.append(f"{s.label}: counted {s.medians()[0] * n:.0f} calls for {n} "
                         f"records at B=1, {s.medians()[-1] * n:.0f} at B={s.x[-1]:g}")
    else:
        notes.append("/proc/self/io is not readable here: calls were not counted")
    return ProbeResult(PROBE, "System-call batching", tuple(panels), tuple(findings),
                       tuple(misses), tuple(notes), time.perf_counter() - t_start,
                       relative_spread(panels))

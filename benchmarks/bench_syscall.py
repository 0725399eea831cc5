"""``qpuos bench syscall``: the raw syscall gate's ABI exactness and cost, beside os and C.

1. ABI stress: a battery of calls through the gate, from several threads at once
   (errno is per thread; the gate must never report another thread's). Valid calls
   must return what the ``os`` module or the kernel says they should (success rate);
   deliberately failing calls must raise exactly the documented errno, as the right
   ``OSError`` subclass (errno accuracy). The failing calls are chosen to give the same
   errno as root and as a user, plus a few privileged ones when the capability is held.
2. ns per call, median of ``--repeat`` timeit runs of ``--calls`` calls: the generic
   gate ``syscall(nr, *args)``, a prepared call (arguments built once), the typed
   wrappers, the ``os`` module, and a C program built with gcc at run time into a
   temporary folder (never committed) making the same calls in a tight loop.

Targets (issue [kernel] 5): gate <= 1 µs per call; success rate 100 %; errno
accuracy 100 %.
"""

from __future__ import annotations

import argparse
import errno
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import BenchRecord
from qpuos._ffi import consts as c
from qpuos._ffi.libc import PreparedCall, WritableBuffer
from qpuos.kernel import syscall as sc

C_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int reps = atoi(argv[2]);
    int fd = open("/dev/zero", O_RDONLY);
    char buf[8];
    volatile long sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (long i = 0; i < n; i++) sink += syscall(SYS_getpid);
        double t1 = now();
        for (long i = 0; i < n; i++) sink += getpid();
        double t2 = now();
        for (long i = 0; i < n; i++) sink += syscall(SYS_read, fd, buf, 1);
        double t3 = now();
        for (long i = 0; i < n; i++) sink += read(fd, buf, 1);
        double t4 = now();
        printf("syscall_getpid %.1f\ngetpid %.1f\nsyscall_read %.1f\nread %.1f\n",
               (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, (t4 - t3) / n);
    }
    return (int)(sink & 0);
}
"""


def _cap(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


# ------------------------------------------------------------------- ABI battery


def _closing(make: Callable[[], int], then: Callable[[int], object]) -> Callable[[], object]:
    def run() -> object:
        fd = make()
        try:
            return then(fd)
        finally:
            sc.close(fd)
    return run


def _efd() -> int:
    return sc.eventfd2(0, sc.EFD_CLOEXEC | sc.EFD_NONBLOCK)


def _futex_mismatch() -> object:
    word = WritableBuffer(bytearray(4))  # kept alive across the call: the word is 0
    return sc.futex(word.address, c.FUTEX_WAIT, 1)


def _failing_calls() -> dict[str, tuple[Callable[[], object], int]]:
    nr = sc.syscall_number
    calls: dict[str, tuple[Callable[[], object], int]] = {
        "close(-1)": (lambda: sc.close(-1), errno.EBADF),
        "read(-1)": (lambda: sc.syscall(nr("read"), -1, 0, 0), errno.EBADF),
        "eventfd2 bad flags": (lambda: sc.eventfd2(0, 0x2), errno.EINVAL),
        "eventfd read empty": (_closing(_efd, sc.eventfd_read), errno.EAGAIN),
        "eventfd write 2**64-1": (_closing(_efd, lambda fd: sc.eventfd_write(fd, 2**64 - 1)),
                                  errno.EINVAL),
        "timerfd_create bad clock": (lambda: sc.timerfd_create(12345, 0), errno.EINVAL),
        "timerfd_settime on eventfd": (_closing(_efd, lambda fd: sc.timerfd_settime(fd, 1)),
                                       errno.EINVAL),
        "timerfd_settime negative": (_closing(sc.timerfd_create,
                                              lambda fd: sc.timerfd_settime(fd, -1)),
                                     errno.EINVAL),
        "signalfd4 bad flags": (lambda: sc.signalfd4(-1, [signal.SIGUSR1], 0x1), errno.EINVAL),
        "epoll_create1 bad flags": (lambda: sc.epoll_create1(0x1), errno.EINVAL),
        "epoll_ctl DEL unknown fd": (_closing(sc.epoll_create1, lambda ep: _closing(
            _efd, lambda fd: sc.epoll_ctl(ep, sc.EPOLL_CTL_DEL, fd))()), errno.ENOENT),
        "epoll_wait maxevents 0": (_closing(sc.epoll_create1,
                                            lambda ep: sc.epoll_wait(ep, 0, 0)), errno.EINVAL),
        "futex bad op": (lambda: sc.futex(0, 99, 0), errno.ENOSYS),
        "futex NULL": (lambda: sc.futex(0, c.FUTEX_WAIT, 0), errno.EFAULT),
        "futex value differs": (_futex_mismatch, errno.EAGAIN),
        "memfd_create bad flags": (lambda: sc.memfd_create("x", 0x100), errno.EINVAL),
        "mlockall(0)": (lambda: sc.mlockall(0), errno.EINVAL),
        "sched_setattr bad policy": (lambda: sc.sched_setattr(
            0, sc.SchedAttributes(policy=12345)), errno.EINVAL),
        "sched_getattr no such pid": (lambda: sc.sched_getattr(2**30), errno.ESRCH),
        "perf_event_open size 1": (lambda: sc.perf_event_open(sc.PerfEventConfig(
            c.PERF_TYPE_SOFTWARE, c.PERF_COUNT_SW_TASK_CLOCK, size=1)), errno.E2BIG),
        "kill no such pid": (lambda: sc.syscall(nr("kill"), 2**30, 0), errno.ESRCH),
        "mount missing target": (lambda: sc.mount("none", "/nonexistent/q", "tmpfs"),
                                 errno.ENOENT),
        "reboot bad magic": (lambda: sc.syscall(nr("reboot"), 1, 2, 0, 0),
                             errno.EINVAL if _cap(22) else errno.EPERM),
    }
    if _cap(21):  # CAP_SYS_ADMIN: checked after the fs type lookup
        calls["mount unknown fs type (root)"] = (
            lambda: sc.mount("none", "/tmp", "qpuos-nofs"), errno.ENODEV)
    if _cap(39) or _cap(21):  # CAP_BPF
        calls["bpf unknown command (root)"] = (lambda: sc.bpf(0xFFFF, bytearray(64)),
                                               errno.EINVAL)
    return calls


def _valid_calls() -> dict[str, Callable[[], bool]]:
    def eventfd_roundtrip() -> bool:
        fd = _efd()
        try:
            sc.eventfd_write(fd, 12345)
            return sc.eventfd_read(fd) == 12345
        finally:
            sc.close(fd)

    def timerfd_roundtrip() -> bool:
        fd = sc.timerfd_create()
        try:
            sc.timerfd_settime(fd, 10**9, 5 * 10**8)
            value, interval = sc.timerfd_gettime(fd)
            return 0 < value <= 10**9 and interval == 5 * 10**8
        finally:
            sc.close(fd)

    def epoll_roundtrip() -> bool:
        ep, fd = sc.epoll_create1(), _efd()
        try:
            sc.epoll_ctl(ep, sc.EPOLL_CTL_ADD, fd, sc.EPOLLIN, 77)
            sc.eventfd_write(fd, 1)
            return sc.epoll_wait(ep, 4, 0) == [(77, c.EPOLLIN)]
        finally:
            sc.close(ep)
            sc.close(fd)

    def memfd_roundtrip() -> bool:
        fd = sc.memfd_create("bench")
        try:
            return sc.write(fd, b"abc") == 3 and os.fstat(fd).st_size == 3
        finally:
            sc.close(fd)

    return {
        "getpid": lambda: sc.syscall(sc.syscall_number("getpid")) == os.getpid(),
        "gettid": lambda: sc.gettid() == threading.get_native_id(),
        "eventfd write/read": eventfd_roundtrip,
        "timerfd settime/gettime": timerfd_roundtrip,
        "epoll ctl/wait": epoll_roundtrip,
        "memfd write": memfd_roundtrip,
        "futex wake nobody": lambda: sc.futex_wake(bytearray(4), 0, 1) == 0,
        "sched_getattr self": lambda: sc.sched_getattr(0).policy in (
            c.SCHED_NORMAL, c.SCHED_BATCH, c.SCHED_IDLE, c.SCHED_FIFO, c.SCHED_RR),
    }


def abi_stress(rounds: int, threads: int) -> dict[str, Any]:
    """Run both batteries ``rounds`` times in each of ``threads`` threads."""
    failing, valid = _failing_calls(), _valid_calls()
    lock = threading.Lock()
    tally: dict[str, Any] = {"ok": 0, "valid": 0, "exact": 0, "failing": 0,
                             "wrong": {}}

    def worker() -> None:
        ok = exact = nv = nf = 0
        wrong: dict[str, str] = {}
        for _ in range(rounds):
            for name, call in valid.items():
                nv += 1
                try:
                    if call():
                        ok += 1
                    else:
                        wrong[name] = "returned a wrong value"
                except OSError as exc:
                    wrong[name] = f"raised {exc!r}"
            for name, (call, want) in failing.items():
                nf += 1
                try:
                    call()
                    wrong[name] = "did not fail"
                except OSError as exc:
                    expected_type = type(OSError(want, ""))
                    if exc.errno == want and type(exc) is expected_type:
                        exact += 1
                    else:
                        wrong[name] = (f"{errno.errorcode.get(exc.errno or 0)} "
                                       f"{type(exc).__name__}, expected "
                                       f"{errno.errorcode[want]} {expected_type.__name__}")
        with lock:
            tally["ok"] += ok
            tally["valid"] += nv
            tally["exact"] += exact
            tally["failing"] += nf
            tally["wrong"].update(wrong)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    tally["cases_valid"] = sorted(valid)
    tally["cases_failing"] = {k: errno.errorcode[v] for k, (_, v) in failing.items()}
    return tally


# ------------------------------------------------------------------------- timing


def _time(stmt: Callable[[], object], calls: int, repeat: int) -> tuple[float, float]:
    runs = timeit.repeat(stmt, number=calls, repeat=repeat)
    per = [r / calls * 1e9 for r in runs]
    return statistics.median(per), min(per)


def python_timings(calls: int, repeat: int) -> dict[str, tuple[float, float]]:
    zero = os.open("/dev/zero", os.O_RDONLY)
    buf = bytearray(8)
    addr = WritableBuffer(buf).address
    nr_getpid, nr_read = sc.syscall_number("getpid"), sc.syscall_number("read")
    syscall = sc.syscall
    prepared_getpid = PreparedCall(nr_getpid).call
    prepared_read = PreparedCall(nr_read, zero, addr, 1).call
    efd = sc.eventfd2(2**31, sc.EFD_CLOEXEC | sc.EFD_SEMAPHORE)
    efd_os = os.eventfd(2**31, os.EFD_CLOEXEC | os.EFD_SEMAPHORE)
    cases: dict[str, Callable[[], object]] = {
        "qpuos syscall(getpid)": lambda: syscall(nr_getpid),
        "qpuos prepared getpid": prepared_getpid,
        "os.getpid()": os.getpid,
        "qpuos syscall(read, 1 B)": lambda: syscall(nr_read, zero, addr, 1),
        "qpuos prepared read 1 B": prepared_read,
        "qpuos read() wrapper 1 B": lambda: sc.read(zero, 1),
        "os.read(fd, 1)": lambda: os.read(zero, 1),
        "qpuos eventfd_read()": lambda: sc.eventfd_read(efd),
        "os.eventfd_read()": lambda: os.eventfd_read(efd_os),
    }
    out = {name: _time(fn, calls, repeat) for name, fn in cases.items()}
    for fd in (zero, efd, efd_os):
        os.close(fd)
    return out


def c_timings(calls: int, repeat: int) -> tuple[dict[str, tuple[float, float]], str]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return {}, "no C compiler found: C baseline skipped"
    with tempfile.TemporaryDirectory(prefix="qpuos-bench-") as tmp:
        src, exe = Path(tmp) / "floor.c", Path(tmp) / "floor"
        src.write_text(C_SOURCE)
        build = subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], capture_output=True,
                               text=True, timeout=120, check=False)
        if build.returncode:
            return {}, f"gcc failed: {build.stderr.strip()[:200]}"
        run = subprocess.run([str(exe), str(calls), str(repeat)], capture_output=True,
                             text=True, timeout=300, check=True)
    samples: dict[str, list[float]] = {}
    for line in run.stdout.split("\n"):
        if line.strip():
            name, ns = line.split()
            samples.setdefault(name, []).append(float(ns))
    names = {"syscall_getpid": "C syscall(SYS_getpid)", "getpid": "C getpid()",
             "syscall_read": "C syscall(SYS_read, 1 B)", "read": "C read(fd, 1)"}
    return ({names[k]: (statistics.median(v), min(v)) for k, v in samples.items()},
            f"{Path(gcc).name} -O2")


# --------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench syscall``."""
    p = argparse.ArgumentParser(prog="qpuos bench syscall", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_syscall.json"),
                   help="where to write the results (default out/bench_syscall.json)")
    p.add_argument("--calls", type=int, default=200_000,
                   help="calls per timing run (default 200000)")
    p.add_argument("--repeat", type=int, default=7, help="timing runs per case (default 7)")
    p.add_argument("--rounds", type=int, default=300,
                   help="ABI battery rounds per thread (default 300)")
    p.add_argument("--threads", type=int, default=4,
                   help="threads running the ABI battery at once (default 4)")
    args = p.parse_args(argv)
    if min(args.calls, args.repeat, args.rounds, args.threads) < 1:
        print("UsageError: --calls, --repeat, --rounds and --threads must be at least 1",
              file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rec = BenchRecord("syscall")
    with console.status("ABI stress: valid and deliberately failing calls"):
        abi = abi_stress(args.rounds, args.threads)
    with console.status("timing the gate, the os module and C"):
        py = python_timings(args.calls, args.repeat)
        cc, c_note = c_timings(args.calls * 5, args.repeat)

    success = abi["ok"] / abi["valid"]
    accuracy = abi["exact"] / abi["failing"]
    rec.add("qpuos", "abi_success_rate", success, "fraction", calls=abi["valid"])
    rec.add("qpuos", "errno_accuracy", accuracy, "fraction", calls=abi["failing"])
    t = Table(title=f"syscall cost, ns per call ({platform.machine()}, median of "
                    f"{args.repeat} runs)")
    for col in ("call", "median ns", "min ns"):
        t.add_column(col, justify="left" if col == "call" else "right")
    for name, (med, low) in {**py, **cc}.items():
        impl = name.split()[0]
        rec.add(impl, name, round(med, 1), "ns/call", min=round(low, 1))
        t.add_row(name, f"{med:.0f}", f"{low:.0f}")
    console.print(t)
    console.print(f"ABI stress ({args.threads} threads x {args.rounds} rounds): "
                  f"{abi['ok']}/{abi['valid']} valid calls correct, {abi['exact']}/"
                  f"{abi['failing']} failing calls with the exact errno"
                  + (f"; wrong: {abi['wrong']}" if abi["wrong"] else ""))
    console.print(f"C baseline: {c_note}")

    rec.target("gate ns per call: syscall(getpid)", py["qpuos syscall(getpid)"][0], 1000,
               "ns")
    rec.target("gate ns per call: syscall(read, fd, buf, 1)",
               py["qpuos syscall(read, 1 B)"][0], 1000, "ns")
    rec.target("ABI success rate", success, 1.0, "fraction", at_most=False)
    rec.target("errno accuracy on deliberately failing calls", accuracy, 1.0, "fraction",
               at_most=False)
    rec.print_targets(console)
    rec.write(args.json, extra={"abi": abi, "c_baseline": c_note,
                                "calls": args.calls, "repeat": args.repeat})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))

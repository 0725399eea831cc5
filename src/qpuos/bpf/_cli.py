"""``qpuos trace``: the eBPF layer's command group, for ``qpuos/cli.py`` to mount.

Thin, as the rest of the CLI: parse, call :func:`qpuos.bpf.trace.trace_syscalls`,
print ``NAME COUNT`` lines, most frequent first. Errors propagate to the CLI's one
handler (``ClassName: message``, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qpuos._argtypes import nonneg_float, positive_int

__all__ = ["add_trace_parser", "format_counts"]


def format_counts(rows: list[tuple[str, int]]) -> str:
    """``NAME COUNT`` lines, names padded to one column.

    >>> print(format_counts([("read", 12), ("epoll_pwait", 3)]))
    read        12
    epoll_pwait  3
    """
    if not rows:
        return ""
    wide = max(len(name) for name, _ in rows)
    digits = max(len(str(n)) for _, n in rows)
    return "\n".join(f"{name:<{wide}} {n:>{digits}}" for name, n in rows)


def _cmd_trace_syscalls(args: argparse.Namespace) -> int:
    from qpuos.bpf.trace import trace_syscalls

    rows = trace_syscalls(args.pid, args.duration)
    text = format_counts(rows)
    if text:
        print(text)
    else:
        print(f"no system calls from pid {args.pid} in {args.duration:g} s",
              file=sys.stderr)
    return 0


def add_trace_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``trace`` (with ``trace syscalls --pid P [--duration S]``) to ``subparsers``.

    Each leaf sets ``func`` to its handler, taking the parsed namespace and returning
    the exit code, as the other ``qpuos`` commands do.

    >>> p = argparse.ArgumentParser(prog="qpuos")
    >>> t = add_trace_parser(p.add_subparsers(dest="command"))
    >>> args = p.parse_args(["trace", "syscalls", "--pid", "1", "--duration", "0.5"])
    >>> args.pid, args.duration, args.func.__name__
    (1, 0.5, '_cmd_trace_syscalls')
    """
    t: argparse.ArgumentParser = subparsers.add_parser(
        "trace", help="count what a process costs in the kernel (eBPF, needs root)",
        description="Observe a process with eBPF programs built by qpuos itself (no "
                    "clang, no bcc). Needs CAP_BPF and CAP_PERFMON (root).")
    tsub = t.add_subparsers(dest="trace_command", metavar="WHAT", required=True)
    s = tsub.add_parser(
        "syscalls", help="count one process's system calls by name",
        description="Count the system calls of process P (all its threads) for S "
                    "seconds, in the kernel (a raw tracepoint on sys_enter filtered by "
                    "tgid), and print `NAME COUNT` lines, most frequent first. Stops "
                    "early if the process exits. Exit 2 on a bad pid or no privileges.")
    s.add_argument("--pid", "-p", type=positive_int, required=True, metavar="P",
                   help="process id to trace")
    s.add_argument("--duration", "-d", type=nonneg_float, default=1.0, metavar="S",
                   help="seconds to count (default 1)")
    s.set_defaults(func=_cmd_trace_syscalls)
    return t

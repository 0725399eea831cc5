"""Count one process's system calls by name, in the kernel, with an assembled program.

A ``RAW_TRACEPOINT`` program on ``sys_enter`` runs at every system call entry of every
task. It compares the current task's tgid with the traced process's (so all of its
threads count, and nothing else does) and adds one to that syscall number's slot of an
array map with an atomic add. Python reads the array once at the end. No clang, no
tracefs, no per-event copy to user space: the cost to the traced process is one short
program per system call.

Names come from qpuos's syscall table (:func:`qpuos.kernel.syscall.syscall_name`);
numbers it has no name for print as ``syscall N``.

>>> import os
>>> trace_syscalls(os.getpid(), 0.01)[0][1] >= 1                 # doctest: +SKIP
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qpuos.bpf.asm import (
    R0,
    R1,
    R2,
    R6,
    R10,
    Insn,
    Label,
    add,
    atomic_add,
    call,
    exit_,
    jeq,
    jne,
    ld_map_fd,
    load,
    mov,
    rsh,
    store,
)
from qpuos.bpf.attach import Link, attach_raw_tracepoint
from qpuos.bpf.loader import BpfProgram, ProgType, load_program
from qpuos.bpf.maps import ArrayMap
from qpuos.errors import ClosedResourceError, UsageError
from qpuos.kernel.proc import is_alive, start_time
from qpuos.kernel.syscall import syscall_name

__all__ = ["MAX_SYSCALL_NR", "SyscallCounter", "syscall_counter_program", "trace_syscalls"]

MAX_SYSCALL_NR = 1024
"""Syscall numbers counted: 0..MAX_SYSCALL_NR-1 (x86_64 and aarch64 use < 500;
x32 and invalid numbers fall outside and are not counted)."""


def syscall_counter_program(tgid: int, counts: ArrayMap | str = "counts") -> list[Insn | Label]:
    """The counting program: ``counts[args[1]] += 1`` when the current tgid is ``tgid``.

    Args:
        tgid: the process to count.
        counts: the array map (u64 values, MAX_SYSCALL_NR entries) or its name.

    >>> from qpuos.bpf.asm import assemble
    >>> len(assemble(syscall_counter_program(1), maps={"counts": 3})) // 8
    16
    """
    return [
        mov(R6, R1),                      # R6 = ctx: u64 args[] of sys_enter
        call("get_current_pid_tgid"),
        rsh(R0, 32),                      # tgid is the upper half
        jne(R0, tgid, "out"),
        load(R1, R6, 8),                  # args[1]: the syscall number
        store(R10, -4, R1, size=4),       # u32 key on the stack
        ld_map_fd(R1, counts),
        mov(R2, R10),
        add(R2, -4),
        call("map_lookup_elem"),          # NULL when the number is out of range
        jeq(R0, 0, "out"),
        mov(R1, 1),
        atomic_add(R0, 0, R1),
        Label("out"),
        mov(R0, 0),
        exit_(),
    ]


def _tgid_of(pid: int) -> int:
    if pid <= 0:
        raise UsageError(f"pid must be a positive process id, got {pid}")
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        raise UsageError(f"no process with pid {pid}; check it with `ps -p {pid}`") from None
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    return pid


class SyscallCounter:
    """Counts the system calls of process ``pid`` (all threads) from creation to close.

    Args:
        pid: a process id (a thread id counts its whole process).

    Raises:
        UsageError: no such process.
        PermissionError: no CAP_BPF and CAP_PERFMON.
    """

    def __init__(self, pid: int) -> None:
        self.tgid = _tgid_of(pid)
        self._counts = ArrayMap.create(value="Q", max_entries=MAX_SYSCALL_NR,
                                       name="qpuos_sysc")
        self._prog: BpfProgram | None = None
        self._link: Link | None = None
        self._closed = False
        try:
            self._prog = load_program(syscall_counter_program(self.tgid, self._counts),
                                      prog_type=ProgType.RAW_TRACEPOINT,
                                      name="qpuos_sysc")
            self._link = attach_raw_tracepoint(self._prog, "sys_enter")
        except BaseException:
            self.close()
            raise

    def counts(self) -> dict[int, int]:
        """Syscall number -> calls so far (numbers never called are left out).

        Raises:
            ClosedResourceError: after close().
        """
        if self._closed:
            raise ClosedResourceError("syscall counter is closed; start a new one")
        out = {}
        for nr in range(MAX_SYSCALL_NR):
            n = self._counts[nr]
            if n:
                out[nr] = n
        return out

    def close(self) -> None:
        """Detach and free the program and map (idempotent)."""
        self._closed = True
        if self._link is not None:
            self._link.close()
        if self._prog is not None:
            self._prog.close()
        self._counts.close()

    def __enter__(self) -> SyscallCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trace_syscalls(pid: int, duration_s: float, *,
                   sleep: Callable[[float], None] | None = None) -> list[tuple[str, int]]:
    """Count the system calls of process ``pid`` (all its threads) for ``duration_s``.

    Stops early when the process exits (or turns zombie). Counting happens in the kernel.

    Args:
        pid: the process to trace.
        duration_s: how long to count, in seconds.
        sleep: the wait between checks (default ``time.sleep``; callers that drive the
            traced process, such as tests, pass their own).

    Returns:
        ``(name, count)`` pairs, most frequent first (ties by name).

    Raises:
        UsageError: no such process, or a negative duration.
        PermissionError: no CAP_BPF and CAP_PERFMON (run as root).
    """
    if not duration_s >= 0:
        raise UsageError(f"duration must be >= 0 seconds, got {duration_s}")
    pause = time.sleep if sleep is None else sleep
    with SyscallCounter(pid) as counter:
        start = start_time(counter.tgid) or 0
        end = time.monotonic() + duration_s
        while True:
            left = end - time.monotonic()
            if left <= 0 or not is_alive(counter.tgid, start):
                break
            pause(min(left, 0.05))
        counts = counter.counts()
    return sorted(((syscall_name(nr), n) for nr, n in counts.items()),
                  key=lambda item: (-item[1], item[0]))

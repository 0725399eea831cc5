"""trace_syscalls: a child's exact system calls, by name, most frequent first."""

from __future__ import annotations

import os
import struct

import pytest

from qpuos.bpf.asm import assemble
from qpuos.bpf.trace import MAX_SYSCALL_NR, SyscallCounter, syscall_counter_program, trace_syscalls
from qpuos.errors import ClosedResourceError, UsageError
from qpuos.kernel.syscall import syscall_number


def test_the_program_is_short_and_refers_to_its_map() -> None:
    code = assemble(syscall_counter_program(1234), maps={"counts": 3})
    assert len(code) == 16 * 8
    # slot 3 compares the tgid (on a mismatch jumping 10 slots on, to "out");
    # slot 4 loads args[1], the syscall number, from the context
    assert struct.unpack_from("<BBhi", code, 3 * 8) == (0x55, 0x00, 10, 1234)
    assert struct.unpack_from("<BBhi", code, 4 * 8) == (0x79, 0x61, 8, 0)


@pytest.mark.needs_bpf
def test_a_childs_writes_and_exit_are_all_it_calls(writer) -> None:
    child = writer(11)
    woken: list[float] = []

    def drive(seconds: float) -> None:
        if not woken:
            child.go()           # the child runs, writes 11 times, exits and is reaped
        woken.append(seconds)

    rows = trace_syscalls(child.pid, 30.0, sleep=drive)
    assert len(woken) == 1       # stopped as soon as the child was gone
    assert rows[0] == ("write", 11)
    assert [n for _, n in rows[1:]] == [1]          # exit_group, and nothing else


@pytest.mark.needs_bpf
def test_the_counter_reads_numbers_and_closes(writer) -> None:
    child = writer(4)
    with SyscallCounter(child.pid) as counter:
        assert counter.tgid == child.pid
        child.go()
        counts = counter.counts()
    assert counts[syscall_number("write")] == 4
    assert all(0 <= nr < MAX_SYSCALL_NR for nr in counts)
    counter.close()
    with pytest.raises(ClosedResourceError, match=r"^syscall counter is closed"):
        counter.counts()


def test_bad_pids_and_durations_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"^pid must be a positive process id, got 0$"):
        trace_syscalls(0, 1.0)
    with pytest.raises(UsageError, match=r"^no process with pid 4194305; check it with "):
        trace_syscalls(4194305, 1.0)
    with pytest.raises(UsageError, match=r"^duration must be >= 0 seconds, got -1"):
        trace_syscalls(os.getpid(), -1)


_THREADED = """
import os, sys, threading
fd = os.open(os.devnull, os.O_WRONLY)
os.write(1, b"r")
os.read(0, 1)
def run():
    for _ in range(5):
        os.write(fd, b"x")
threads = [threading.Thread(target=run) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
os._exit(0)
"""


@pytest.mark.needs_bpf
def test_every_thread_of_the_process_counts() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-S", "-c", _THREADED],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.read(1) == b"r"
        with SyscallCounter(child.pid) as counter:
            child.stdin.write(b"g")
            child.stdin.close()
            assert child.wait(timeout=30) == 0
            counts = counter.counts()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert counts[syscall_number("write")] == 15

"""Shared fixtures of the eBPF tests: the privilege probe, vmlinux BTF, tracefs, and a
child process that makes an exact number of write(2) calls when told to."""

from __future__ import annotations

import errno
import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qpuos.bpf.btf import VMLINUX, Btf


@functools.cache
def bpf_refusal() -> str | None:
    """Why this process cannot load eBPF programs, or None if it can (probed once by
    loading a two-instruction socket filter)."""
    from qpuos.bpf.asm import R0, exit_, mov
    from qpuos.bpf.loader import ProgType, load_program

    try:
        load_program([mov(R0, 0), exit_()], prog_type=ProgType.SOCKET_FILTER).close()
    except OSError as exc:
        return f"the kernel refuses bpf(BPF_PROG_LOAD): {exc.strerror} (run as root)"
    return None


@pytest.fixture(autouse=True)
def _skip_without_bpf(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_bpf") is not None:
        reason = bpf_refusal()
        if reason is not None:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def vmlinux() -> Btf:
    """The running kernel's BTF."""
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} is absent: kernel built without CONFIG_DEBUG_INFO_BTF")
    return Btf.load_vmlinux()


@pytest.fixture(scope="session")
def tracefs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tracefs mount: the system's, or one made for the session (root)."""
    from qpuos.bpf.attach import find_tracefs
    from qpuos.errors import BpfError
    from qpuos.kernel.syscall import mount, umount2

    try:
        yield find_tracefs()
        return
    except BpfError:
        pass
    where = tmp_path_factory.mktemp("tracefs")
    try:
        mount("nodev", str(where), "tracefs")
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENODEV):
            pytest.skip(f"tracefs is not mounted and cannot be: {exc.strerror}")
        raise
    try:
        yield where
    finally:
        umount2(str(where))


_CHILD = """
import os, sys
n = int(sys.argv[1])
fd = os.open(os.devnull, os.O_WRONLY)
os.write(1, b"r")
os.read(0, 1)
for _ in range(n):
    os.write(fd, b"x")
os._exit(0)
"""


class Writer:
    """A child process that, once ``go()`` is called, makes exactly ``n`` write(2) calls
    to /dev/null and exits (``os._exit``: no flush, no other write).

    The constructor returns once the child sleeps in its read(2) of stdin, so a program
    attached after it sees no start-up call: only the writes and the exit_group.
    """

    def __init__(self, n: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _CHILD, str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        assert self.proc.stdout.read(1) == b"r"
        for _ in range(10_000):  # capped: ~10 s at most
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "S":
                return
            time.sleep(0.001)
        raise AssertionError(f"child {self.pid} never went to sleep in read(2)")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"g")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def writer() -> Iterator[type[Writer]]:
    """Make ``Writer(n)`` children; any left running are killed at the end."""
    made: list[Writer] = []

    class _Tracked(Writer):
        def __init__(self, n: int) -> None:
            super().__init__(n)
            made.append(self)

    yield _Tracked
    for w in made:
        w.kill()


def self_tid() -> int:
    """This thread's id (what bpf_get_current_pid_tgid's low half holds)."""
    return os.gettid() if hasattr(os, "gettid") else os.getpid()

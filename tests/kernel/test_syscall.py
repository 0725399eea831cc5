"""The raw syscall gate: tables, errno exactness, typed wrappers, kernel structs."""

from __future__ import annotations

import errno
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from qpuos._ffi import consts as c
from qpuos._ffi import structs
from qpuos._ffi.libc import CString, WritableBuffer, sizeof
from qpuos._ffi.sysnr import TABLES, numbers, supported_machines
from qpuos.errors import UnsupportedArchitecture, UsageError
from qpuos.kernel import syscall as sc


def _cap(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_IPC_LOCK, CAP_SYS_ADMIN, CAP_SYS_BOOT, CAP_SYS_NICE, CAP_BPF = 14, 21, 22, 23, 39

needs_rt = [pytest.mark.needs_rt,
            pytest.mark.skipif(not (_cap(CAP_SYS_NICE) and _cap(CAP_IPC_LOCK)),
                               reason="needs CAP_SYS_NICE and CAP_IPC_LOCK (run as root)")]
needs_admin = [pytest.mark.needs_rt,
               pytest.mark.skipif(not _cap(CAP_SYS_ADMIN),
                                  reason="needs CAP_SYS_ADMIN to mount (run as root)")]
needs_bpf = [pytest.mark.needs_bpf,
             pytest.mark.skipif(not (_cap(CAP_BPF) or _cap(CAP_SYS_ADMIN)),
                                reason="needs CAP_BPF or CAP_SYS_ADMIN to use bpf(2)")]


F = TypeVar("F", bound=Callable[..., object])


def _apply(marks: list[pytest.MarkDecorator]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for m in marks:
            fn = m(fn)
        return fn
    return deco


# ------------------------------------------------------------------------------ tables


def test_tables_know_both_architectures() -> None:
    assert set(supported_machines()) >= {"x86_64", "aarch64"}
    assert sc.syscall_number("eventfd2", machine="x86_64") == 290
    assert sc.syscall_number("eventfd2", machine="aarch64") == 19
    assert sc.syscall_number("epoll_pwait2", machine="aarch64") == 441
    assert set(TABLES["x86_64"]) ^ set(TABLES["aarch64"]) == set()


def test_unknown_architecture_is_named() -> None:
    with pytest.raises(UnsupportedArchitecture,
                       match=r"^no syscall table for architecture 'sparc64'; qpuos knows "
                             r"aarch64, x86_64 \(add one"):
        numbers("sparc64")
    with pytest.raises(UnsupportedArchitecture, match=r"^no syscall table for .*'riscv64'"):
        sc.syscall_number("getpid", machine="riscv64")
    with pytest.raises(UnsupportedArchitecture, match=r"^no struct epoll_event layout for "
                                                      r"architecture 'mips'"):
        structs.epoll_event_type("mips")


def test_unknown_syscall_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^no syscall named 'fork2' in qpuos's x86_64 "
                                         r"table; known: bpf, clock_gettime, close, "):
        sc.syscall_number("fork2", machine="x86_64")


def _header_numbers(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    text = path.read_text()
    for m in re.finditer(r"^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$", text, re.M):
        out.setdefault(m.group(1), int(m.group(2)))
    return out


@pytest.mark.parametrize(("machine", "header"), [
    ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    ("aarch64", "/usr/include/asm-generic/unistd.h"),
])
def test_tables_match_the_kernel_headers(machine: str, header: str) -> None:
    path = Path(header)
    if not path.is_file():
        pytest.skip(f"{header} is not installed (linux-libc-dev)")
    want = _header_numbers(path)
    ours = TABLES[machine]
    wrong = {name: (nr, want.get(name)) for name, nr in ours.items() if want.get(name) != nr}
    assert wrong == {}


def test_struct_layouts_match_the_headers() -> None:
    assert sizeof(structs.Timespec) == 16
    assert sizeof(structs.Itimerspec) == 32
    assert sizeof(structs.SignalfdSiginfo) == 128
    assert sizeof(structs.SchedAttr) == c.SCHED_ATTR_SIZE_VER1
    assert sizeof(structs.PerfEventAttr) == c.PERF_ATTR_SIZE_VER1
    packed, fmt86 = structs.epoll_event_type("x86_64")
    natural, fmt_arm = structs.epoll_event_type("aarch64")
    assert (sizeof(packed), sizeof(natural)) == (12, 16)
    assert fmt86 == "=IQ" and fmt_arm == "=I4xQ"


# --------------------------------------------------------------------------- the gate


def test_gate_returns_the_kernels_answer() -> None:
    assert sc.syscall(sc.syscall_number("getpid")) == os.getpid()
    assert sc.gettid() == threading.get_native_id()


def test_gate_refuses_more_than_six_arguments() -> None:
    with pytest.raises(UsageError, match=r"^syscall takes at most 6 arguments, got 7$"):
        sc.syscall(39, 0, 0, 0, 0, 0, 0, 0)


def test_errors_are_oserror_subclasses_with_the_call_named() -> None:
    with pytest.raises(OSError) as info:
        sc.syscall(sc.syscall_number("close"), -1)
    exc = info.value
    assert (type(exc), exc.errno, exc.strerror) == (OSError, errno.EBADF,
                                                    os.strerror(errno.EBADF))
    assert exc.__notes__ == [f"from syscall close ({platform.machine()})"]
    assert type(sc.os_error(errno.ENOENT, "x")) is FileNotFoundError
    assert type(sc.os_error(errno.EAGAIN, "x")) is BlockingIOError
    assert type(sc.os_error(errno.EPERM, "x")) is PermissionError
    assert type(sc.os_error(errno.ESRCH, "x")) is ProcessLookupError


def _efd() -> int:
    return sc.eventfd2(0, sc.EFD_CLOEXEC | sc.EFD_NONBLOCK)


def _errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as info:
        call()
    assert isinstance(info.value.errno, int)
    return info.value.errno


# Deliberately failing calls whose errno the man pages document and which do not depend
# on privileges (root and non-root get the same answer).
FAILING = {
    "close(-1)": (lambda: sc.close(-1), errno.EBADF),
    "read(-1)": (lambda: sc.syscall(sc.syscall_number("read"), -1, 0, 0), errno.EBADF),
    "eventfd2 bad flags": (lambda: sc.eventfd2(0, 0x2), errno.EINVAL),
    "eventfd2 read empty": (lambda: sc.eventfd_read(_efd()), errno.EAGAIN),
    "eventfd2 write 2**64-1": (lambda: sc.eventfd_write(_efd(), 2**64 - 1), errno.EINVAL),
    "timerfd_create bad clock": (lambda: sc.timerfd_create(12345, 0), errno.EINVAL),
    "timerfd_create bad flags": (lambda: sc.timerfd_create(c.CLOCK_MONOTONIC, 0x4),
                                 errno.EINVAL),
    "timerfd_settime on eventfd": (lambda: sc.timerfd_settime(_efd(), 10**6),
                                   errno.EINVAL),
    "timerfd_settime negative": (lambda: sc.timerfd_settime(
        sc.timerfd_create(), -1), errno.EINVAL),
    "timerfd_settime fd -1": (lambda: sc.timerfd_settime(-1, 10**6), errno.EBADF),
    "signalfd4 bad flags": (lambda: sc.signalfd4(-1, [signal.SIGUSR1], 0x1), errno.EINVAL),
    "signalfd4 on eventfd": (lambda: sc.signalfd4(_efd(), [signal.SIGUSR1]), errno.EINVAL),
    "epoll_create1 bad flags": (lambda: sc.epoll_create1(0x1), errno.EINVAL),
    "epoll_wait maxevents 0": (lambda: sc.epoll_wait(sc.epoll_create1(), 0, 0),
                               errno.EINVAL),
    "futex bad op": (lambda: sc.futex(0, 99, 0), errno.ENOSYS),
    "futex_wait NULL": (lambda: sc.futex(0, c.FUTEX_WAIT, 0), errno.EFAULT),
    "memfd_create bad flags": (lambda: sc.memfd_create("x", 0x100), errno.EINVAL),
    "memfd_create long name": (lambda: sc.memfd_create("x" * 250), errno.EINVAL),
    "mlockall(0)": (lambda: sc.mlockall(0), errno.EINVAL),
    "sched_setattr bad policy": (lambda: sc.sched_setattr(
        0, sc.SchedAttributes(policy=12345)), errno.EINVAL),
    "sched_setattr pid -1": (lambda: sc.sched_setattr(
        -1, sc.SchedAttributes(policy=c.SCHED_NORMAL)), errno.EINVAL),
    "sched_getattr no such pid": (lambda: sc.sched_getattr(2**30), errno.ESRCH),
    "perf_event_open size 1": (lambda: sc.perf_event_open(sc.PerfEventConfig(
        c.PERF_TYPE_SOFTWARE, c.PERF_COUNT_SW_TASK_CLOCK, size=1)), errno.E2BIG),
    "perf_event_open bad flags": (lambda: sc.perf_event_open(sc.PerfEventConfig(
        c.PERF_TYPE_SOFTWARE, c.PERF_COUNT_SW_TASK_CLOCK), flags=0xFFFF0), errno.EINVAL),
    "kill no such pid": (lambda: sc.syscall(sc.syscall_number("kill"), 2**30, 0),
                         errno.ESRCH),
    "mount missing target": (lambda: sc.mount("none", "/nonexistent/qpuos-x", "tmpfs"),
                             errno.ENOENT),
    "umount2 missing target": (lambda: sc.umount2("/nonexistent/qpuos-x"), errno.ENOENT),
}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_deliberate_failures_give_the_documented_errno(case: str) -> None:
    call, want = FAILING[case]
    got = _errno_of(call)
    assert (errno.errorcode.get(got), got) == (errno.errorcode[want], want)


def test_epoll_ctl_errnos() -> None:
    ep, fd = sc.epoll_create1(), _efd()
    try:
        sc.epoll_ctl(ep, sc.EPOLL_CTL_ADD, fd)
        with pytest.raises(FileExistsError):
            sc.epoll_ctl(ep, sc.EPOLL_CTL_ADD, fd)
        sc.epoll_ctl(ep, sc.EPOLL_CTL_DEL, fd)
        with pytest.raises(FileNotFoundError):
            sc.epoll_ctl(ep, sc.EPOLL_CTL_DEL, fd)
        assert _errno_of(lambda: sc.epoll_ctl(ep, sc.EPOLL_CTL_ADD, ep)) == errno.EINVAL
        with open(__file__, "rb") as regular, pytest.raises(PermissionError):
            sc.epoll_ctl(ep, sc.EPOLL_CTL_ADD, regular.fileno())
    finally:
        sc.close(ep)
        sc.close(fd)


def test_reboot_with_bad_magic_is_refused_and_never_reboots() -> None:
    nr = sc.syscall_number("reboot")
    want = errno.EINVAL if _cap(CAP_SYS_BOOT) else errno.EPERM  # capability checked first
    assert _errno_of(lambda: sc.syscall(nr, 0x1234, 0x5678, c.LINUX_REBOOT_CMD_RESTART,
                                        0)) == want
    with pytest.raises(UsageError, match=r"^reboot command 0xdead is not a "
                                         r"LINUX_REBOOT_CMD_\* value \(CAD_OFF, CAD_ON, "):
        sc.reboot(0xDEAD)


@_apply(needs_admin)
def test_mount_with_unknown_filesystem_type_is_enodev(tmp_path: Path) -> None:
    assert _errno_of(lambda: sc.mount("none", str(tmp_path), "qpuos-nofs")) == errno.ENODEV


@_apply(needs_bpf)
def test_bpf_unknown_command_is_einval_and_a_map_can_be_created() -> None:
    assert _errno_of(lambda: sc.bpf(0xFFFF, bytearray(64))) == errno.EINVAL
    attr = bytearray(64)  # union bpf_attr, BPF_MAP_CREATE: type, key, value, entries
    attr[0:16] = b"".join(v.to_bytes(4, sys.byteorder)
                          for v in (c.BPF_MAP_TYPE_ARRAY, 4, 8, 16))
    fd = sc.bpf(c.BPF_MAP_CREATE, attr)
    assert fd > 2
    sc.close(fd)


# -------------------------------------------------------------------------- wrappers


def test_eventfd_initial_value_must_fit_the_kernels_unsigned_int() -> None:
    with pytest.raises(UsageError, match=r"^eventfd initial value 4294967296 does not fit an "
                                         r"unsigned 32-bit int"):
        sc.eventfd2(2**32)


def test_eventfd_counts_and_semaphore_mode() -> None:
    fd = sc.eventfd2(5, sc.EFD_CLOEXEC | sc.EFD_NONBLOCK)
    sc.eventfd_write(fd, 2)
    assert sc.eventfd_read(fd) == 7
    sc.close(fd)
    fd = sc.eventfd2(2, sc.EFD_CLOEXEC | sc.EFD_NONBLOCK | sc.EFD_SEMAPHORE)
    assert [sc.eventfd_read(fd), sc.eventfd_read(fd)] == [1, 1]
    with pytest.raises(BlockingIOError):
        sc.eventfd_read(fd)
    sc.close(fd)


def test_timerfd_one_shot_fires_once_through_epoll() -> None:
    tfd = sc.timerfd_create(c.CLOCK_MONOTONIC, sc.TFD_CLOEXEC | sc.TFD_NONBLOCK)
    ep = sc.epoll_create1()
    try:
        old = sc.timerfd_settime(tfd, 2_000_000)
        assert old == (0, 0)
        remaining, interval = sc.timerfd_gettime(tfd)
        assert 0 < remaining <= 2_000_000 and interval == 0
        sc.epoll_ctl(ep, sc.EPOLL_CTL_ADD, tfd, sc.EPOLLIN, 42)
        assert sc.epoll_wait(ep, 4, 10 * 10**9) == [(42, c.EPOLLIN)]
        assert sc.timerfd_read(tfd) == 1
        assert sc.timerfd_gettime(tfd) == (0, 0)
    finally:
        sc.close(ep)
        sc.close(tfd)


def test_signalfd_reads_a_thread_directed_signal() -> None:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    fd = sc.signalfd4(-1, [signal.SIGUSR2], sc.SFD_CLOEXEC | sc.SFD_NONBLOCK)
    try:
        sc.tgkill(os.getpid(), sc.gettid(), signal.SIGUSR2)
        (info,) = sc.signalfd_read(fd)
        assert (info.signo, info.pid, info.uid) == (signal.SIGUSR2, os.getpid(), os.getuid())
        with pytest.raises(BlockingIOError):
            sc.signalfd_read(fd)
    finally:
        sc.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_futex_wait_times_out_and_wake_reaches_a_thread() -> None:
    word = bytearray(8)
    with pytest.raises(TimeoutError):
        sc.futex_wait(word, 0, 0, 1_000_000, private=True)
    assert sc.futex_wait(word, 0, 1, 1_000_000) is False  # value differs: EAGAIN
    woke: list[bool] = []

    def waiter() -> None:
        while not woke:  # retry spurious wake-ups; bounded by the join below
            if word[4] == 0:
                woke.append(sc.futex_wait(word, 4, 0, 5 * 10**9))
            else:
                woke.append(True)

    t = threading.Thread(target=waiter)
    t.start()
    word[4] = 1
    sc.futex_wake(word, 4, 1)
    t.join(timeout=10)
    assert not t.is_alive() and woke
    with pytest.raises(UsageError, match=r"^futex word offset 3 is not 4-byte aligned$"):
        sc.futex_wake(word, 3)


def test_memfd_create_gives_a_writable_file() -> None:
    fd = sc.memfd_create("qpuos-test")
    try:
        assert sc.write(fd, b"hello") == 5
        os.lseek(fd, 0, os.SEEK_SET)
        assert sc.read(fd, 16) == b"hello"
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:qpuos-test")
    finally:
        sc.close(fd)


def test_perf_event_open_counts_this_tasks_clock() -> None:
    cfg = sc.PerfEventConfig(c.PERF_TYPE_SOFTWARE, c.PERF_COUNT_SW_TASK_CLOCK,
                             flags=c.PERF_ATTR_FLAG_EXCLUDE_KERNEL | c.PERF_ATTR_FLAG_EXCLUDE_HV)
    try:
        fd = sc.perf_event_open(cfg, 0, -1)
    except (PermissionError, FileNotFoundError) as exc:
        pytest.skip(f"perf_event_open is not allowed here: {exc}")
    try:
        sum(range(10000))
        assert int.from_bytes(sc.read(fd, 8), sys.byteorder) > 0
    finally:
        sc.close(fd)


@_apply(needs_rt)
def test_mlockall_and_munlockall() -> None:
    sc.mlockall(c.MCL_CURRENT | c.MCL_ONFAULT)
    sc.munlockall()


@_apply(needs_rt)
def test_sched_setattr_makes_a_child_fifo() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        sc.sched_setattr(child.pid, sc.SchedAttributes(policy=c.SCHED_FIFO, priority=1))
        got = sc.sched_getattr(child.pid)
        assert (got.policy, got.priority) == (c.SCHED_FIFO, 1)
    finally:
        child.communicate(b"", timeout=30)


@_apply(needs_admin)
def test_mount_tmpfs_and_unmount(tmp_path: Path) -> None:
    sc.mount("qpuos-test", str(tmp_path), "tmpfs", c.MS_NOSUID | c.MS_NODEV, "size=1m")
    try:
        mounts = Path("/proc/self/mounts").read_text()
        assert f"qpuos-test {tmp_path} tmpfs" in mounts
    finally:
        sc.umount2(str(tmp_path), c.MNT_DETACH)
    assert f"qpuos-test {tmp_path} " not in Path("/proc/self/mounts").read_text()


def test_buffer_helpers_refuse_bad_input() -> None:
    with pytest.raises(TypeError, match=r"^buffer is read-only"):
        WritableBuffer(b"abc")
    with pytest.raises(ValueError, match=r"^range \[6, 10\) is outside the 8-byte buffer$"):
        WritableBuffer(bytearray(8), 6, 4)
    with pytest.raises(ValueError, match=r"contains a NUL byte$"):
        CString("a\0b")
    assert CString(None).address == 0
    with pytest.raises(UsageError, match=r"^signal number 65 is outside 1\.\.64$"):
        sc.signalfd4(-1, [65])


def test_generated_name_tables_agree_with_the_numbers_qpuos_calls() -> None:
    from qpuos._ffi.sysnames import NAMES
    from qpuos._ffi.sysnr import TABLES

    for arch, table in TABLES.items():
        wrong = {(name, nr, NAMES[arch].get(nr)) for name, nr in table.items()
                 if NAMES[arch].get(nr) != name}
        assert wrong == set(), arch


def test_calls_qpuos_never_makes_still_have_names() -> None:
    from qpuos.kernel.syscall import syscall_name, syscall_number

    if syscall_number("getpid") == 39:  # x86_64
        assert (syscall_name(230), syscall_name(0)) == ("clock_nanosleep", "read")
    else:
        assert (syscall_name(115), syscall_name(63)) == ("clock_nanosleep", "read")
    assert syscall_name(100_000) == "syscall 100000"

"""System-administration calls: mlockall, sched_setattr/getattr, bpf, perf_event_open,
reboot, mount/umount2, finit_module (most need a capability).

Typed wrappers over the gate (:mod:`qpuos.kernel._gate`); exported by
:mod:`qpuos.kernel.syscall`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qpuos._ffi import consts as _c
from qpuos._ffi.consts import MCL_CURRENT, MCL_FUTURE, PERF_FLAG_FD_CLOEXEC
from qpuos._ffi.libc import CString, WritableBuffer, address_of, sizeof
from qpuos._ffi.structs import PerfEventAttr, SchedAttr
from qpuos.errors import UsageError
from qpuos.kernel._gate import call

__all__ = ["PerfEventConfig", "SchedAttributes", "bpf", "finit_module", "mlockall", "mount",
           "munlockall",
           "perf_event_open", "reboot", "sched_getattr", "sched_setattr", "umount2"]

def mlockall(flags: int = MCL_CURRENT | MCL_FUTURE) -> None:
    """``mlockall(2)``: lock the process's pages in RAM (needs CAP_IPC_LOCK or rlimit)."""
    call("mlockall", flags)


def munlockall() -> None:
    """``munlockall(2)``."""
    call("munlockall")


@dataclass(frozen=True, slots=True)
class SchedAttributes:
    """``struct sched_attr`` as values (times in ns)."""

    policy: int
    flags: int = 0
    nice: int = 0
    priority: int = 0
    runtime_ns: int = 0
    deadline_ns: int = 0
    period_ns: int = 0
    util_min: int = 0
    util_max: int = 0


def sched_setattr(pid: int, attr: SchedAttributes, flags: int = 0) -> None:
    """``sched_setattr(2)`` for thread ``pid`` (0: the calling thread)."""
    a = SchedAttr()
    a.size = sizeof(SchedAttr)
    a.sched_policy = attr.policy
    a.sched_flags = attr.flags
    a.sched_nice = attr.nice
    a.sched_priority = attr.priority
    a.sched_runtime = attr.runtime_ns
    a.sched_deadline = attr.deadline_ns
    a.sched_period = attr.period_ns
    a.sched_util_min = attr.util_min
    a.sched_util_max = attr.util_max
    call("sched_setattr", pid, address_of(a), flags)


def sched_getattr(pid: int = 0) -> SchedAttributes:
    """``sched_getattr(2)`` for thread ``pid`` (0: the calling thread)."""
    a = SchedAttr()
    call("sched_getattr", pid, address_of(a), sizeof(SchedAttr), 0)
    return SchedAttributes(int(a.sched_policy), int(a.sched_flags), int(a.sched_nice),
                           int(a.sched_priority), int(a.sched_runtime),
                           int(a.sched_deadline), int(a.sched_period),
                           int(a.sched_util_min), int(a.sched_util_max))


# ------------------------------------------------------------------------- bpf, perf


def bpf(cmd: int, attr: bytearray | memoryview, size: int | None = None) -> int:
    """``bpf(2)`` with ``attr`` a writable buffer holding ``union bpf_attr``.

    The kernel may write results back into ``attr``. Returns the call's result
    (an fd for the *_CREATE / *_LOAD commands).
    """
    wb = WritableBuffer(attr)
    return call("bpf", cmd, wb.address, wb.size if size is None else size)


@dataclass(frozen=True, slots=True)
class PerfEventConfig:
    """The ``perf_event_attr`` fields qpuos sets (``flags``: PERF_ATTR_FLAG_* bits)."""

    type: int
    config: int
    sample_period: int = 0
    sample_type: int = 0
    read_format: int = 0
    flags: int = 0
    wakeup_events: int = 0
    bp_type: int = 0
    config1: int = 0
    config2: int = 0
    size: int = _c.PERF_ATTR_SIZE_VER1


def perf_event_open(attr: PerfEventConfig, pid: int = 0, cpu: int = -1,
                    group_fd: int = -1, flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """``perf_event_open(2)``; returns the event fd."""
    a = PerfEventAttr()
    a.type = attr.type
    a.size = attr.size
    a.config = attr.config
    a.sample_period = attr.sample_period
    a.sample_type = attr.sample_type
    a.read_format = attr.read_format
    a.flags = attr.flags
    a.wakeup_events = attr.wakeup_events
    a.bp_type = attr.bp_type
    a.config1 = attr.config1
    a.config2 = attr.config2
    return call("perf_event_open", address_of(a), pid, cpu, group_fd, flags)


# ------------------------------------------------------------------- reboot, mount

_REBOOT_CMDS = {
    _c.LINUX_REBOOT_CMD_RESTART: "RESTART", _c.LINUX_REBOOT_CMD_HALT: "HALT",
    _c.LINUX_REBOOT_CMD_CAD_ON: "CAD_ON", _c.LINUX_REBOOT_CMD_CAD_OFF: "CAD_OFF",
    _c.LINUX_REBOOT_CMD_POWER_OFF: "POWER_OFF", _c.LINUX_REBOOT_CMD_RESTART2: "RESTART2",
    _c.LINUX_REBOOT_CMD_SW_SUSPEND: "SW_SUSPEND", _c.LINUX_REBOOT_CMD_KEXEC: "KEXEC",
}


def reboot(cmd: int, arg: str | None = None) -> None:
    """``reboot(2)`` with the magic numbers filled in. Only the LINUX_REBOOT_CMD_* values
    are accepted; this really restarts or powers off the machine (PID 1 of a boot image).

    Raises:
        UsageError: ``cmd`` is not a LINUX_REBOOT_CMD_* value.
        PermissionError: no CAP_SYS_BOOT.
    """
    if cmd not in _REBOOT_CMDS:
        raise UsageError(f"reboot command {cmd:#x} is not a LINUX_REBOOT_CMD_* value "
                         f"({', '.join(sorted(_REBOOT_CMDS.values()))})")
    s = CString(arg)
    call("reboot", _c.LINUX_REBOOT_MAGIC1, _c.LINUX_REBOOT_MAGIC2, cmd, s.address)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """``mount(2)``. ``source``/``fstype``/``data`` may be None (NULL), e.g. for MS_REMOUNT."""
    src, tgt, fs, dat = CString(source), CString(target), CString(fstype), CString(data)
    call("mount", src.address, tgt.address, fs.address, flags, dat.address)


def umount2(target: str, flags: int = 0) -> None:
    """``umount2(2)``."""
    tgt = CString(target)
    call("umount2", tgt.address, flags)


# ----------------------------------------------------------------------------- modules

def finit_module(fd: int, params: str = "", flags: int = 0) -> None:
    """``finit_module(2)``: load the kernel module in open file ``fd`` (a ``.ko``).

    Needs CAP_SYS_MODULE and a kernel built with module support; used by a boot
    image's PID 1 to load drivers (uio, uio_pci_generic) from files it carries.

    Raises:
        UnsupportedArchitecture: no syscall number for this machine.
        FileExistsError: the module is already loaded (EEXIST).
        PermissionError: no CAP_SYS_MODULE.
        OSError: the kernel refused the module (ENOEXEC: wrong kernel version, ...).
    """
    p = CString(params)
    call("finit_module", fd, p.address, flags)

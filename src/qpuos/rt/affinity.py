"""CPU pinning, NUMA topology, real-time scheduling, locked memory, a CPU-latency hint.

Every setting here is a request the kernel may cut or refuse (cpusets, capabilities,
rlimits, missing devices). So each call reports what the kernel holds afterwards, read
back from the kernel, never what was asked: :func:`pin_to` returns the affinity mask
now in force, and :meth:`RealtimeProfile.apply` returns a :class:`RealtimeReport` in
which every refused or cut item carries its errno and the reason, with what to do.
Refusals are reported, not raised: a controller that cannot get SCHED_FIFO still runs,
and says so.

Scheduling policy and affinity are per thread on Linux: ``pid=0`` means the calling
thread; pass ``threading.get_native_id()`` of another thread to pin that one.
``mlockall`` and the latency request always apply to the whole calling process.
"""

from __future__ import annotations

import errno
import os
import resource
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from qpuos._ffi.consts import MCL_CURRENT, MCL_FUTURE
from qpuos.errors import ClosedResourceError, RealtimeError, UsageError
from qpuos.rt._rtreport import RealtimeItem, RealtimeReport

__all__ = ["RealtimeItem", "RealtimeProfile", "RealtimeReport", "cpu_nodes", "numa_topology",
           "pin_to"]

_SYSFS = "/sys/devices/system"
_DMA_DEVICE = "/dev/cpu_dma_latency"
_POLICY_NAMES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO",
                 os.SCHED_RR: "SCHED_RR", os.SCHED_BATCH: "SCHED_BATCH",
                 os.SCHED_IDLE: "SCHED_IDLE"}


def _cpus(cpus: Iterable[int]) -> frozenset[int]:
    wanted = frozenset(cpus)
    bad = sorted(repr(c) for c in wanted if isinstance(c, bool) or not isinstance(c, int)
                 or c < 0)
    if bad or not wanted:
        raise UsageError(f"CPUs must be a non-empty set of numbers >= 0, got "
                         f"{', '.join(bad) if bad else 'none'}; see `nproc` or "
                         f"os.sched_getaffinity(0)")
    return wanted


def _fmt(cpus: Iterable[int]) -> str:
    return "{" + ",".join(str(c) for c in sorted(cpus)) + "}"


def _parse_cpulist(text: str) -> frozenset[int]:
    """``"0-3,8,10-11"`` (the kernel's cpulist format) as a set."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def pin_to(cpus: Iterable[int], *, pid: int = 0) -> frozenset[int]:
    """Restrict a process or thread to ``cpus``; returns the mask the kernel granted.

    The kernel intersects the request with what the cpuset allows and ignores CPUs
    that do not exist, so the result may be a subset of ``cpus``.

    Args:
        cpus: CPU numbers.
        pid: a process or thread id (``threading.get_native_id()``); 0 = this thread.

    Returns:
        The affinity mask in force afterwards, read back from the kernel.

    Raises:
        UsageError: ``cpus`` is empty or holds something that is not a CPU number.
        RealtimeError: none of ``cpus`` may run it.
        PermissionError: ``pid`` belongs to another user and this process lacks
            CAP_SYS_NICE.
        ProcessLookupError: no such ``pid``.

    >>> here = os.sched_getaffinity(0)
    >>> pin_to(here) == frozenset(here)
    True
    """
    wanted = _cpus(cpus)
    try:
        os.sched_setaffinity(pid, wanted)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise RealtimeError(
            f"none of CPUs {_fmt(wanted)} may run pid {pid}: this process may use "
            f"{_fmt(os.sched_getaffinity(0))}; pick from those") from exc
    return frozenset(os.sched_getaffinity(pid))


def numa_topology(*, sysfs: str | os.PathLike[str] = _SYSFS) -> dict[int, frozenset[int]]:
    """NUMA node -> the CPUs whose local memory it is, from ``/sys/devices/system/node``.

    A node without CPUs (memory only) maps to an empty set. Without node information
    (no NUMA support in the kernel) the answer is one node 0 holding every online CPU.

    Args:
        sysfs: the ``/sys/devices/system`` folder (a fake tree in tests).

    Returns:
        Node number -> CPU numbers.

    >>> topo = numa_topology()
    >>> os.sched_getaffinity(0) <= set().union(*topo.values())
    True
    """
    root = Path(sysfs)
    nodes: dict[int, frozenset[int]] = {}
    if (root / "node").is_dir():
        for d in (root / "node").iterdir():
            if d.name.startswith("node") and d.name[4:].isdigit():
                nodes[int(d.name[4:])] = _parse_cpulist((d / "cpulist").read_text())
    if nodes:
        return dict(sorted(nodes.items()))
    try:
        online = _parse_cpulist((root / "cpu" / "online").read_text())
    except OSError:
        online = frozenset(range(os.cpu_count() or 1))
    return {0: online}


def cpu_nodes(*, sysfs: str | os.PathLike[str] = _SYSFS) -> dict[int, int]:
    """CPU -> its NUMA node (the memory node that is local to it).

    Args:
        sysfs: the ``/sys/devices/system`` folder (a fake tree in tests).

    Returns:
        CPU number -> node number.

    >>> os.sched_getaffinity(0) <= cpu_nodes().keys()
    True
    """
    return {cpu: node for node, cpus in numa_topology(sysfs=sysfs).items() for cpu in cpus}


# --------------------------------------------------------------------------- profile


def _locked_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1]) * 1024
    return 0


def _read_latency(device: str) -> int:
    # Opening the device adds a request at the default (no limit): harmless to read.
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(struct.unpack("=i", os.read(fd, 4))[0])
    finally:
        os.close(fd)


def _why(exc: OSError, hint: str) -> tuple[int | None, str]:
    return exc.errno, f"{exc.strerror or exc}; {hint}"


class RealtimeProfile:
    """The real-time settings of one loop, applied together and undone together.

    Args:
        cpus: pin the thread to these CPUs (None: leave the affinity).
        fifo_priority: run it under a real-time policy at this priority, 1-99
            (None: leave the policy).
        policy: ``"fifo"`` (SCHED_FIFO) or ``"rr"`` (SCHED_RR, for equal priorities
            that should share a CPU).
        mlock: lock the process's pages in RAM, now and future (``mlockall``).
        dma_latency_us: ask the kernel to keep CPU wake-up latency at or below this
            (``/dev/cpu_dma_latency``; held while the profile is applied).
        pid: the thread (or process) to pin and schedule; 0 = the calling thread.
        dma_device: the PM QoS device (a different path in tests).

    Raises:
        UsageError: a priority outside 1-99, a negative latency or bad CPUs.

    >>> with RealtimeProfile(cpus=os.sched_getaffinity(0)) as profile:
    ...     report = profile.apply()
    >>> report.cpus == frozenset(os.sched_getaffinity(0)), report.ok
    (True, True)
    """

    def __init__(self, *, cpus: Iterable[int] | None = None, fifo_priority: int | None = None,
                 mlock: bool = False, dma_latency_us: int | None = None,
                 policy: Literal["fifo", "rr"] = "fifo", pid: int = 0,
                 dma_device: str = _DMA_DEVICE) -> None:
        self.cpus = None if cpus is None else _cpus(cpus)
        if fifo_priority is not None and not 1 <= fifo_priority <= 99:
            raise UsageError(f"real-time priority must be 1-99, got {fifo_priority}")
        if policy not in ("fifo", "rr"):
            raise UsageError(f"real-time policy must be 'fifo' or 'rr', got {policy!r}")
        if dma_latency_us is not None and dma_latency_us < 0:
            raise UsageError(f"dma_latency_us must be >= 0, got {dma_latency_us}")
        self.fifo_priority = fifo_priority
        self.policy = os.SCHED_FIFO if policy == "fifo" else os.SCHED_RR
        self.mlock = mlock
        self.dma_latency_us = dma_latency_us
        self.pid = pid
        self._device = dma_device
        self._applied = self._closed = False
        self._old_cpus: set[int] | None = None
        self._old_sched: tuple[int, os.sched_param] | None = None
        self._locked = False
        self._dma_fd: int | None = None

    def __enter__(self) -> RealtimeProfile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self) -> RealtimeReport:
        """Request every setting; report what the kernel holds afterwards.

        Returns:
            The :class:`RealtimeReport`; refused settings are in ``report.refused``.

        Raises:
            RealtimeError: the profile was applied already.
            ClosedResourceError: the profile was closed.
        """
        if self._closed:
            raise ClosedResourceError("this RealtimeProfile was closed; make a new one")
        if self._applied:
            raise RealtimeError("this RealtimeProfile is applied already; close() it first")
        self._applied = True
        items: list[RealtimeItem] = []
        cpus: frozenset[int] | None = None
        policy: int | None = None
        priority: int | None = None
        locked: int | None = None
        held: int | None = None
        if self.cpus is not None:
            items.append(self._apply_cpus(self.cpus))
            cpus = frozenset(os.sched_getaffinity(self.pid))
        if self.fifo_priority is not None:
            items.append(self._apply_sched(self.fifo_priority))
            policy = os.sched_getscheduler(self.pid)
            priority = os.sched_getparam(self.pid).sched_priority
        if self.mlock:
            items.append(self._apply_mlock())
            locked = _locked_bytes()
        if self.dma_latency_us is not None:
            item, held = self._apply_dma(self.dma_latency_us)
            items.append(item)
        return RealtimeReport(tuple(items), cpus, policy, priority, locked, held)

    def _apply_cpus(self, cpus: frozenset[int]) -> RealtimeItem:
        self._old_cpus = os.sched_getaffinity(self.pid)
        asked = _fmt(cpus)
        try:
            got = pin_to(cpus, pid=self.pid)
        except (OSError, RealtimeError) as exc:
            now = _fmt(os.sched_getaffinity(self.pid))
            if isinstance(exc, OSError):
                code, why = _why(exc, "pinning another user's thread needs CAP_SYS_NICE")
                return RealtimeItem("cpus", asked, now, False, code, why)
            return RealtimeItem("cpus", asked, now, False, errno.EINVAL, str(exc))
        if got == cpus:
            return RealtimeItem("cpus", asked, _fmt(got), True)
        return RealtimeItem("cpus", asked, _fmt(got), False, None,
                            f"the kernel left out {_fmt(cpus - got)} (absent, offline or "
                            f"outside this cpuset)")

    def _apply_sched(self, priority: int) -> RealtimeItem:
        pid, policy = self.pid, self.policy
        self._old_sched = (os.sched_getscheduler(pid), os.sched_getparam(pid))
        asked = f"{_POLICY_NAMES[policy]} priority {priority}"
        code: int | None = None
        reason = ""
        try:
            os.sched_setscheduler(pid, policy, os.sched_param(priority))
        except OSError as exc:
            limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
            code, reason = _why(exc, f"needs CAP_SYS_NICE or RLIMIT_RTPRIO >= {priority} "
                                     f"(soft limit {limit}); kept the previous policy")
            if exc.errno == errno.EPERM and 0 < limit < priority:
                try:  # the graceful fallback: the highest priority the rlimit allows
                    os.sched_setscheduler(pid, policy, os.sched_param(limit))
                    reason = f"RLIMIT_RTPRIO is {limit}: ran at that priority instead"
                except OSError:
                    pass
        now_policy, now_prio = os.sched_getscheduler(pid), os.sched_getparam(pid).sched_priority
        granted = f"{_POLICY_NAMES.get(now_policy, str(now_policy))} priority {now_prio}"
        ok = (now_policy, now_prio) == (policy, priority)
        return RealtimeItem("scheduler", asked, granted, ok, None if ok else code, reason)

    def _apply_mlock(self) -> RealtimeItem:
        # Imported here: the kernel package loads numba (~2 s), and only mlock needs it.
        from qpuos.kernel.syscall import mlockall

        before = _locked_bytes()
        asked = "mlockall(MCL_CURRENT|MCL_FUTURE)"
        try:
            mlockall(MCL_CURRENT | MCL_FUTURE)
        except OSError as exc:
            limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
            code, why = _why(exc, f"needs CAP_IPC_LOCK or RLIMIT_MEMLOCK above the process "
                                  f"size (soft limit {limit} bytes)")
            return RealtimeItem("mlock", asked, f"{_locked_bytes() >> 10} KiB locked", False,
                                code, why)
        self._locked = before == 0
        return RealtimeItem("mlock", asked, f"{_locked_bytes() >> 10} KiB locked", True)

    def _apply_dma(self, us: int) -> tuple[RealtimeItem, int | None]:
        asked = f"CPU latency <= {us} µs"
        try:
            fd = os.open(self._device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            code, why = _why(exc, f"{self._device} needs root (CONFIG_PM_QOS)")
            return RealtimeItem("dma_latency", asked, "no request", False, code, why), None
        self._dma_fd = fd
        os.write(fd, struct.pack("=i", us))
        held = _read_latency(self._device)
        if held <= us:
            return RealtimeItem("dma_latency", asked, f"limit {held} µs", True), held
        return RealtimeItem("dma_latency", asked, f"limit {held} µs", False, None,
                            "the kernel kept a higher limit"), held

    def close(self) -> None:
        """Undo what :meth:`apply` changed (affinity, policy, lock, latency); idempotent.

        Raises:
            RealtimeError: a setting could not be restored (each is still tried).
        """
        if self._closed:
            return
        self._closed = True
        failed: list[str] = []
        first: OSError | None = None
        steps: list[tuple[str, Callable[[], None]]] = []
        fd = self._dma_fd
        if fd is not None:
            steps.append(("latency request", lambda: os.close(fd)))
        if self._locked:
            from qpuos.kernel.syscall import munlockall

            steps.append(("memory lock", munlockall))
        if self._old_sched is not None:
            pol, param = self._old_sched
            steps.append(("scheduling policy",
                          lambda: os.sched_setscheduler(self.pid, pol, param)))
        if self._old_cpus is not None:
            old = self._old_cpus
            steps.append(("affinity", lambda: os.sched_setaffinity(self.pid, old)))
        for what, undo in steps:
            try:
                undo()
            except OSError as exc:
                failed.append(f"{what} ({exc.strerror or exc})")
                first = first or exc
        self._dma_fd = None
        if failed:
            raise RealtimeError(f"could not restore {', '.join(failed)} for pid {self.pid}; "
                                f"the thread may have exited") from first

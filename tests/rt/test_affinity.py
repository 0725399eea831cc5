"""CPU pinning, NUMA topology and the real-time profile: every report against the kernel."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from qpuos.errors import ClosedResourceError, RealtimeError, UsageError
from qpuos.rt import RealtimeProfile, cpu_nodes, numa_topology, pin_to
from qpuos.rt.affinity import _parse_cpulist


def _cap(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_IPC_LOCK, CAP_SYS_NICE, CAP_SETUID = 14, 23, 7
DMA = "/dev/cpu_dma_latency"
needs_rt = [pytest.mark.needs_rt,
            pytest.mark.skipif(not (_cap(CAP_SYS_NICE) and _cap(CAP_IPC_LOCK)),
                               reason="needs CAP_SYS_NICE and CAP_IPC_LOCK (run as root)")]
needs_dma = [pytest.mark.needs_rt,
             pytest.mark.skipif(not os.access(DMA, os.R_OK | os.W_OK),
                                reason=f"needs write access to {DMA} (root, CONFIG_PM_QOS)")]
needs_setuid = [pytest.mark.needs_rt,
                pytest.mark.skipif(not _cap(CAP_SETUID) or os.geteuid() != 0,
                                   reason="needs root to run a child as an unprivileged user")]
F = TypeVar("F", bound=Callable[..., object])


def _apply(marks: list[pytest.MarkDecorator]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for m in marks:
            fn = m(fn)
        return fn
    return deco


@pytest.fixture
def affinity() -> Iterator[set[int]]:
    """This thread's CPUs; restored after the test whatever it did."""
    before = os.sched_getaffinity(0)
    try:
        yield before
    finally:
        os.sched_setaffinity(0, before)


def _locked_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck line in /proc/self/status")


def _latency_now() -> int:
    fd = os.open(DMA, os.O_RDONLY)
    try:
        return int(struct.unpack("=i", os.read(fd, 4))[0])
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ pin_to


def test_pin_to_returns_what_the_kernel_holds(affinity: set[int]) -> None:
    cpu = min(affinity)
    granted = pin_to([cpu])
    assert granted == frozenset(os.sched_getaffinity(0)) == {cpu}
    assert pin_to(affinity) == frozenset(os.sched_getaffinity(0)) == frozenset(affinity)


def test_pin_to_reports_a_cut_request(affinity: set[int]) -> None:
    cpu = min(affinity)
    missing = (os.cpu_count() or 1) + 64  # past every CPU this machine has
    granted = pin_to({cpu, missing})
    assert granted == frozenset(os.sched_getaffinity(0))
    assert granted - {cpu, missing} == set()
    assert missing not in granted


def test_pin_to_refuses_cpus_that_cannot_run_it(affinity: set[int]) -> None:
    missing = (os.cpu_count() or 1) + 64
    with pytest.raises(RealtimeError, match=rf"^none of CPUs \{{{missing}\}} may run pid 0: "
                                            rf"this process may use \{{[0-9,]+\}}; pick "
                                            rf"from those$"):
        pin_to([missing])
    assert os.sched_getaffinity(0) == affinity


@pytest.mark.parametrize("cpus", [[], [-1], [True], ["0"]])
def test_pin_to_rejects_what_is_not_a_cpu(cpus: list[object]) -> None:
    with pytest.raises(UsageError, match=r"^CPUs must be a non-empty set of numbers >= 0"):
        pin_to(cpus)  # type: ignore[arg-type]


def test_pin_to_pins_another_thread_only(affinity: set[int]) -> None:
    cpu = max(affinity)
    seen: dict[str, object] = {}
    ready, done = threading.Event(), threading.Event()

    def worker() -> None:
        seen["tid"] = threading.get_native_id()
        ready.set()
        done.wait(10)
        seen["inside"] = os.sched_getaffinity(0)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert ready.wait(10)
        granted = pin_to([cpu], pid=int(seen["tid"]))  # type: ignore[call-overload]
    finally:
        done.set()
        t.join(10)
    assert granted == {cpu}
    assert seen["inside"] == {cpu}
    assert os.sched_getaffinity(0) == affinity


# ---------------------------------------------------------------------------- NUMA


def test_parse_cpulist_reads_the_kernel_format() -> None:
    assert _parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert _parse_cpulist("\n") == frozenset()


def test_numa_topology_reads_nodes(tmp_path: Path) -> None:
    for node, cpus in (("node0", "0-3,8\n"), ("node1", "4-7\n"), ("node2", "\n")):
        (tmp_path / "node" / node).mkdir(parents=True)
        (tmp_path / "node" / node / "cpulist").write_text(cpus)
    (tmp_path / "node" / "possible").write_text("0-2\n")  # not a node folder
    assert numa_topology(sysfs=tmp_path) == {0: {0, 1, 2, 3, 8}, 1: {4, 5, 6, 7},
                                             2: frozenset()}
    assert cpu_nodes(sysfs=tmp_path) == {0: 0, 1: 0, 2: 0, 3: 0, 8: 0, 4: 1, 5: 1, 6: 1,
                                         7: 1}


def test_numa_topology_without_node_info_is_one_node(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "online").write_text("0-5\n")
    assert numa_topology(sysfs=tmp_path) == {0: frozenset(range(6))}
    assert numa_topology(sysfs=tmp_path / "absent") == {
        0: frozenset(range(os.cpu_count() or 1))}


def test_numa_topology_of_this_machine_covers_every_cpu_once() -> None:
    topo = numa_topology()
    cpus = [c for node in topo.values() for c in node]
    assert len(cpus) == len(set(cpus))
    assert set(os.sched_getaffinity(0)) - set(cpus) == set()


# -------------------------------------------------------------------------- profile


def test_profile_rejects_bad_settings() -> None:
    with pytest.raises(UsageError, match=r"^real-time priority must be 1-99, got 0$"):
        RealtimeProfile(fifo_priority=0)
    with pytest.raises(UsageError, match=r"^real-time policy must be 'fifo' or 'rr', got 'x'$"):
        RealtimeProfile(fifo_priority=1, policy="x")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^dma_latency_us must be >= 0, got -1$"):
        RealtimeProfile(dma_latency_us=-1)


def test_profile_is_a_resource(affinity: set[int]) -> None:
    profile = RealtimeProfile(cpus=affinity)
    with profile as p:
        assert p is profile
        report = p.apply()
        with pytest.raises(RealtimeError, match=r"^this RealtimeProfile is applied already"):
            p.apply()
    profile.close()
    with pytest.raises(ClosedResourceError, match=r"^this RealtimeProfile was closed"):
        profile.apply()
    assert report.ok and report.refused == ()
    assert report.summary() == f"cpus: {{{','.join(map(str, sorted(affinity)))}}} (asked " \
                               f"{{{','.join(map(str, sorted(affinity)))}}})"


def test_profile_pins_and_unpins(affinity: set[int]) -> None:
    cpu = min(affinity)
    with RealtimeProfile(cpus=[cpu]) as p:
        report = p.apply()
        assert report.cpus == frozenset(os.sched_getaffinity(0)) == {cpu}
    assert os.sched_getaffinity(0) == affinity


@_apply(needs_rt)
@pytest.mark.parametrize("policy", ["fifo", "rr"])
def test_profile_gets_a_realtime_policy_and_gives_it_back(policy: str) -> None:
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    want = os.SCHED_FIFO if policy == "fifo" else os.SCHED_RR
    with RealtimeProfile(fifo_priority=7, policy=policy) as p:  # type: ignore[arg-type]
        report = p.apply()
        now = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    after = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    assert (report.policy, report.priority) == now == (want, 7)
    assert report.ok, report.summary()
    assert after == before


@_apply(needs_rt)
def test_profile_locks_memory_and_unlocks_it() -> None:
    before = _locked_kib()
    with RealtimeProfile(mlock=True) as p:
        report = p.apply()
        held = _locked_kib()
    assert report.ok, report.summary()
    assert report.locked_bytes is not None
    assert report.locked_bytes // 1024 > 0
    assert held > 0
    assert _locked_kib() == before


@_apply(needs_dma)
def test_profile_holds_a_latency_request_while_applied() -> None:
    before = _latency_now()
    with RealtimeProfile(dma_latency_us=0) as p:
        report = p.apply()
        held = _latency_now()
    assert report.dma_latency_us == held == 0
    assert report.ok, report.summary()
    assert _latency_now() == before


def test_profile_reports_a_missing_latency_device(tmp_path: Path) -> None:
    with RealtimeProfile(dma_latency_us=10, dma_device=str(tmp_path / "absent")) as p:
        report = p.apply()
    (item,) = report.refused
    assert (item.name, item.errno, report.dma_latency_us) == ("dma_latency", errno.ENOENT,
                                                               None)
    assert report.summary().startswith("dma_latency: NOT GRANTED, asked CPU latency <= 10 "
                                       "µs, holds no request (ENOENT: ")


CHILD = r"""
import json, os, sys
import qpuos.kernel.syscall  # loaded while still root (it needs numba's cache)
from qpuos.rt import RealtimeProfile
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # drops every capability
with RealtimeProfile(cpus=os.sched_getaffinity(0), fifo_priority=10, mlock=True,
                     dma_latency_us=0) as p:
    r = p.apply()
    print(json.dumps({
        "items": [[i.name, i.ok, i.errno] for i in r.items], "summary": r.summary(),
        "report": [r.policy, r.priority, r.locked_bytes, r.dma_latency_us],
        "kernel": [os.sched_getscheduler(0), os.sched_getparam(0).sched_priority]}))
"""


@_apply(needs_setuid)
def test_profile_without_privileges_says_what_it_was_refused() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["items"] == [["cpus", True, None], ["scheduler", False, errno.EPERM],
                            ["mlock", False, got["items"][2][2]],
                            ["dma_latency", False, errno.EACCES]]
    assert got["items"][2][2] in (errno.ENOMEM, errno.EPERM)
    policy, priority, locked, latency = got["report"]
    assert [policy, priority] == got["kernel"] == [os.SCHED_OTHER, 0]
    assert (locked, latency) == (0, None)
    lines = got["summary"].splitlines()
    assert lines[1].startswith("scheduler: NOT GRANTED, asked SCHED_FIFO priority 10, holds "
                               "SCHED_OTHER priority 0 (EPERM: Operation not permitted; needs "
                               "CAP_SYS_NICE or RLIMIT_RTPRIO >= 10")
    assert lines[3].startswith("dma_latency: NOT GRANTED")

"""Attaching: a tracepoint and a raw tracepoint count exactly a child's N writes, and
closing the link detaches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
from qpuos.bpf.attach import (
    KPROBE_PMU,
    Link,
    attach_kprobe,
    attach_raw_tracepoint,
    attach_tracepoint,
    tracepoint_id,
)
from qpuos.bpf.guest_checks import getpid_symbol, thread_counter_program
from qpuos.bpf.loader import BpfProgram, ProgType, load_program
from qpuos.bpf.maps import ArrayMap
from qpuos.errors import BpfError, ClosedResourceError, UsageError
from qpuos.kernel.syscall import syscall_number

pytestmark = pytest.mark.needs_bpf


def _counter(tgid: int, counts: ArrayMap, *, syscall_nr: int | None) -> list[Insn | Label]:
    """counts[0] += 1 for each hit by process ``tgid`` (and, for sys_enter, syscall nr)."""
    prog: list[Insn | Label] = [mov(R6, R1), call("get_current_pid_tgid"), rsh(R0, 32),
                                jne(R0, tgid, "out")]
    if syscall_nr is not None:
        prog += [load(R1, R6, 8), jne(R1, syscall_nr, "out")]
    prog += [store(R10, -4, 0, size=4), ld_map_fd(R1, counts), mov(R2, R10), add(R2, -4),
             call("map_lookup_elem"), jeq(R0, 0, "out"), mov(R1, 1), atomic_add(R0, 0, R1),
             Label("out"), mov(R0, 0), exit_()]
    return prog


def _load(prog: list[Insn | Label], kind: ProgType) -> BpfProgram:
    return load_program(prog, prog_type=kind, name="count_writes")


def test_a_tracepoint_counts_exactly_the_childs_writes(writer, tracefs: Path) -> None:
    child = writer(37)
    with ArrayMap.create(value="Q", max_entries=1) as counts:
        with _load(_counter(child.pid, counts, syscall_nr=None), ProgType.TRACEPOINT) as p, \
                attach_tracepoint(p, "syscalls", "sys_enter_write", tracefs=tracefs) as link:
            assert link.kind == "tracepoint"
            assert link.target == "syscalls/sys_enter_write"
            child.go()
        assert counts[0] == 37


def test_a_raw_tracepoint_counts_exactly_the_childs_writes(writer) -> None:
    child = writer(23)
    with ArrayMap.create(value="Q", max_entries=1) as counts:
        prog = _counter(child.pid, counts, syscall_nr=syscall_number("write"))
        with _load(prog, ProgType.RAW_TRACEPOINT) as p, \
                attach_raw_tracepoint(p, "sys_enter") as link:
            assert repr(link).startswith("Link(raw_tracepoint 'sys_enter' <- "
                                         "'count_writes', fd=")
            child.go()
        assert counts[0] == 23


def test_closing_the_link_detaches(writer) -> None:
    child = writer(5)
    with ArrayMap.create(value="Q", max_entries=1) as counts:
        prog = _counter(child.pid, counts, syscall_nr=syscall_number("write"))
        with _load(prog, ProgType.RAW_TRACEPOINT) as p:
            link = attach_raw_tracepoint(p, "sys_enter")
            link.close()
            link.close()
            assert link.closed
            with pytest.raises(ClosedResourceError, match=r"^raw_tracepoint link to "
                                                          r"'sys_enter' is closed"):
                _ = link.fd
            child.go()
        assert counts[0] == 0


def test_a_link_outlives_the_programs_handle(writer) -> None:
    child = writer(3)
    with ArrayMap.create(value="Q", max_entries=1) as counts:
        prog = _counter(child.pid, counts, syscall_nr=syscall_number("write"))
        p = _load(prog, ProgType.RAW_TRACEPOINT)
        link: Link = attach_raw_tracepoint(p, "sys_enter")
        p.close()
        with link:
            child.go()
        assert counts[0] == 3


def test_wrong_targets_are_refused(tracefs: Path) -> None:
    with _load([mov(R0, 0), exit_()], ProgType.RAW_TRACEPOINT) as raw:
        with pytest.raises(UsageError, match=r"^program 'count_writes' is RAW_TRACEPOINT; "
                                             r"tracepoints take ProgType\.TRACEPOINT"):
            attach_tracepoint(raw, "syscalls", "sys_enter_write", tracefs=tracefs)
        with pytest.raises(FileNotFoundError) as info:
            attach_raw_tracepoint(raw, "no_such_tracepoint")
        assert "no raw tracepoint named 'no_such_tracepoint'" in info.value.__notes__[-1]
    with _load([mov(R0, 0), exit_()], ProgType.TRACEPOINT) as tp:
        with pytest.raises(UsageError, match=r"^program 'count_writes' is TRACEPOINT; raw "):
            attach_raw_tracepoint(tp, "sys_enter")
        with pytest.raises(UsageError, match=r"^no tracepoint syscalls/sys_enter_nothing "):
            attach_tracepoint(tp, "syscalls", "sys_enter_nothing", tracefs=tracefs)
    with pytest.raises(UsageError, match=r"^tracepoint category and name must be plain "):
        tracepoint_id("..", "x", tracefs=tracefs)
    assert tracepoint_id("syscalls", "sys_enter_write", tracefs=tracefs) > 0


def test_a_socket_filter_cuts_packets_until_detached() -> None:
    import socket

    from qpuos.bpf.attach import attach_socket_filter

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # a UDP socket's filter sees the packet from the 8-byte UDP header on: keep 8 + 4
    with rx, tx, load_program([mov(R0, 12), exit_()], prog_type=ProgType.SOCKET_FILTER,
                              name="keep12") as prog:
        rx.bind(("127.0.0.1", 0))
        with attach_socket_filter(prog, rx) as filt:
            tx.sendto(b"hello world", rx.getsockname())
            assert rx.recv(64) == b"hell"
        assert filt.closed
        tx.sendto(b"hello world", rx.getsockname())
        assert rx.recv(64) == b"hello world"
        with pytest.raises(UsageError, match=r"^program 'keep12' is SOCKET_FILTER; raw "):
            attach_raw_tracepoint(prog, "sys_enter")


# ------------------------------------------------------------------------- kprobes

def _getpid_symbol() -> str:
    try:
        return getpid_symbol()
    except BpfError as exc:
        pytest.skip(str(exc))


@pytest.mark.skipif(not KPROBE_PMU.is_dir(),
                    reason=f"{KPROBE_PMU} is absent: this kernel has no kprobe PMU "
                           "(CONFIG_KPROBE_EVENTS)")
@pytest.mark.parametrize("retprobe", [False, True])
def test_a_kprobe_counts_exactly_this_threads_getpid_calls(retprobe: bool) -> None:
    function = _getpid_symbol()
    with ArrayMap.create(value="Q", max_entries=1) as counts:
        with _load(thread_counter_program(counts, os.gettid()), ProgType.KPROBE) as p:
            with attach_kprobe(p, function, retprobe=retprobe) as link:
                assert link.kind == ("kretprobe" if retprobe else "kprobe")
                assert link.target == f"{function}+0"
                for _ in range(41):
                    os.getpid()
            os.getpid()  # detached: not counted
        assert counts[0] == 41


def test_kprobes_without_the_pmu_are_refused_by_name(tmp_path: Path) -> None:
    absent = tmp_path / "kprobe"
    with _load([mov(R0, 0), exit_()], ProgType.KPROBE) as p:
        with pytest.raises(BpfError, match=rf"^this kernel has no kprobe PMU "
                                           rf"\({absent / 'type'} is absent: built without "
                                           r"CONFIG_KPROBE_EVENTS"):
            attach_kprobe(p, "do_sys_openat2", pmu=absent)
        if not KPROBE_PMU.is_dir():  # this host's kernel: the default path refuses too
            with pytest.raises(BpfError, match=f"{KPROBE_PMU / 'type'} is absent"):
                attach_kprobe(p, "do_sys_openat2", retprobe=True)
        absent.mkdir()
        (absent / "type").write_text("6\n")
        with pytest.raises(BpfError, match=r"has no return probes \(.*retprobe is absent"):
            attach_kprobe(p, "do_sys_openat2", pmu=absent, retprobe=True)
        (absent / "format").mkdir()
        (absent / "format" / "retprobe").write_text("config1:5\n")
        with pytest.raises(BpfError, match=r"reads 'config1:5', expected 'config:BIT'"):
            attach_kprobe(p, "do_sys_openat2", pmu=absent, retprobe=True)
        with pytest.raises(UsageError, match=r"offset >= 0 only for entry probes"):
            attach_kprobe(p, "do_sys_openat2", retprobe=True, offset=4, pmu=absent)
    with _load([mov(R0, 0), exit_()], ProgType.TRACEPOINT) as tp, \
            pytest.raises(UsageError, match=r"is TRACEPOINT; kprobes take ProgType\.KPROBE"):
        attach_kprobe(tp, "do_sys_openat2")

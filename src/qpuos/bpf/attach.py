"""Attaching loaded programs: raw tracepoints, tracepoints, kprobes, socket filters;
each detaches on close.

- Raw tracepoint: ``BPF_RAW_TRACEPOINT_OPEN`` with the tracepoint's name
  ("sys_enter"); the program sees the tracepoint's raw arguments as ``u64 args[]``
  (for ``sys_enter``: ``struct pt_regs *``, then the syscall number). No tracefs needed.
- Tracepoint: the event's id from tracefs (``events/CATEGORY/NAME/id``), a
  ``perf_event_open(PERF_TYPE_TRACEPOINT)`` event on CPU 0 for every process (a BPF
  program on a tracepoint event runs wherever the tracepoint fires), then
  ``PERF_EVENT_IOC_SET_BPF`` and ``PERF_EVENT_IOC_ENABLE``. The program sees the
  event's record, laid out as tracefs's ``format`` file says.
- Kprobe / kretprobe: a ``perf_event_open`` event of the kprobe PMU (its type number
  from ``/sys/bus/event_source/devices/kprobe/type``; ``config1`` points at the
  function's name, ``config2`` is the offset into it, and the bit that
  ``.../kprobe/format/retprobe`` names in ``config`` asks for the return probe), then
  ``PERF_EVENT_IOC_SET_BPF`` as for tracepoints. A kernel built without
  CONFIG_KPROBE_EVENTS has no such PMU: :func:`attach_kprobe` then raises ``BpfError``.
- Socket filter: ``setsockopt(SO_ATTACH_BPF)`` on a socket; the program's return value
  is how many bytes of each packet to keep (0 drops it).

A (raw) tracepoint attachment is an fd: closing it detaches the program. A :class:`Link`
holds the program in the kernel even after the program's own handle is closed.

Needs CAP_BPF and CAP_PERFMON, so the example is not run as a doctest:

>>> from qpuos.bpf.asm import mov, exit_, R0
>>> from qpuos.bpf.loader import load_program, ProgType
>>> prog = load_program([mov(R0, 0), exit_()],
...                     prog_type=ProgType.RAW_TRACEPOINT)        # doctest: +SKIP
>>> with attach_raw_tracepoint(prog, "sys_enter") as link:       # doctest: +SKIP
...     link.kind
'raw_tracepoint'
"""

from __future__ import annotations

import socket
from pathlib import Path

from qpuos._ffi import bpf as _ffi
from qpuos._ffi import consts as _c
from qpuos._ffi.libc import CString
from qpuos.bpf.loader import BpfProgram, ProgType
from qpuos.errors import BpfError, ClosedResourceError, UsageError
from qpuos.kernel import syscall as _sc

__all__ = ["KPROBE_PMU", "TRACEFS_PLACES", "Link", "SocketFilter", "attach_kprobe",
           "attach_raw_tracepoint", "attach_socket_filter", "attach_tracepoint",
           "find_tracefs", "tracepoint_id"]

TRACEFS_PLACES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
"""Where tracefs is usually mounted (checked in order)."""

KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe")
"""Where sysfs describes the kprobe PMU (present when the kernel has kprobe events)."""

_IOCTL = _sc.syscall_number("ioctl")
_SO_ATTACH_BPF = 50   # <asm-generic/socket.h>
_SO_DETACH_BPF = 27   # SO_DETACH_FILTER


class Link:
    """An attached program; ``close()`` detaches it (idempotent).

    Attributes:
        kind: "raw_tracepoint", "tracepoint", "kprobe" or "kretprobe".
        target: what it is attached to ("sys_enter", "syscalls/sys_enter_write",
            "do_sys_openat2+0").
        program: the program's name.
    """

    def __init__(self, fd: int, *, kind: str, target: str, program: str) -> None:
        self._fd = fd
        self.kind = kind
        self.target = target
        self.program = program

    @property
    def fd(self) -> int:
        """The attachment's fd.

        Raises:
            ClosedResourceError: after close().
        """
        if self._fd < 0:
            raise ClosedResourceError(f"{self.kind} link to {self.target!r} is closed "
                                      "(detached)")
        return self._fd

    @property
    def closed(self) -> bool:
        """True once detached."""
        return self._fd < 0

    def close(self) -> None:
        """Detach (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _sc.close(fd)

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "detached" if self._fd < 0 else f"fd={self._fd}"
        return f"Link({self.kind} {self.target!r} <- {self.program!r}, {state})"


def attach_raw_tracepoint(program: BpfProgram, name: str) -> Link:
    """Attach a ``RAW_TRACEPOINT`` program to the raw tracepoint ``name``.

    Args:
        program: a loaded program of type ``ProgType.RAW_TRACEPOINT``.
        name: the tracepoint, e.g. "sys_enter", "sched_switch".

    Returns:
        The link; close it to detach.

    Raises:
        UsageError: the program has another type.
        FileNotFoundError: the kernel has no raw tracepoint of that name.
        PermissionError: no CAP_BPF/CAP_PERFMON.
    """
    if program.prog_type != ProgType.RAW_TRACEPOINT:
        raise UsageError(f"program {program.name!r} is {program.prog_type.name}; raw "
                         "tracepoints take ProgType.RAW_TRACEPOINT programs")
    cname = CString(name)
    attr = _ffi.RawTracepointAttr()
    attr.name = cname.address
    attr.prog_fd = program.fd
    try:
        fd = _sc.bpf(_c.BPF_RAW_TRACEPOINT_OPEN, _ffi.attr_bytes(attr))
    except FileNotFoundError as exc:
        exc.add_note(f"no raw tracepoint named {name!r} in this kernel (they are listed "
                     "as tracefs events, without the category)")
        raise
    return Link(fd, kind="raw_tracepoint", target=name, program=program.name)


def find_tracefs() -> Path:
    """Where tracefs is mounted.

    Raises:
        BpfError: it is not mounted (the message gives the mount command).
    """
    for place in TRACEFS_PLACES:
        if (place / "events").is_dir():
            return place
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "tracefs":
                return Path(fields[1])
    except OSError:
        pass
    raise BpfError("tracefs is not mounted, so tracepoint ids cannot be read; mount it "
                   "with `mount -t tracefs nodev /sys/kernel/tracing`, or use a raw "
                   "tracepoint (attach_raw_tracepoint)")


def tracepoint_id(category: str, name: str, *, tracefs: Path | None = None) -> int:
    """The perf event id of tracepoint ``category/name`` (from tracefs).

    Raises:
        BpfError: tracefs is not mounted.
        UsageError: no such tracepoint.
    """
    if "/" in category or "/" in name or category.startswith(".") or name.startswith("."):
        raise UsageError(f"tracepoint category and name must be plain names, got "
                         f"{category!r}/{name!r}")
    root = tracefs if tracefs is not None else find_tracefs()
    path = root / "events" / category / name / "id"
    try:
        return int(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no tracepoint {category}/{name} ({path} is absent); list them "
                         f"with `ls {root / 'events' / category}`") from None


def attach_tracepoint(program: BpfProgram, category: str, name: str, *,
                      tracefs: Path | None = None) -> Link:
    """Attach a ``TRACEPOINT`` program to tracepoint ``category/name``.

    Args:
        program: a loaded program of type ``ProgType.TRACEPOINT``.
        category: the event group, e.g. "syscalls", "sched".
        name: the event, e.g. "sys_enter_write".
        tracefs: where tracefs is mounted (default: found in /proc/self/mounts).

    Returns:
        The link; close it to detach.

    Raises:
        UsageError: the program has another type, or no such tracepoint.
        BpfError: tracefs is not mounted.
        PermissionError: no CAP_PERFMON/CAP_SYS_ADMIN.
    """
    if program.prog_type != ProgType.TRACEPOINT:
        raise UsageError(f"program {program.name!r} is {program.prog_type.name}; "
                         "tracepoints take ProgType.TRACEPOINT programs")
    tp = tracepoint_id(category, name, tracefs=tracefs)
    cfg = _sc.PerfEventConfig(type=_c.PERF_TYPE_TRACEPOINT, config=tp, sample_period=1,
                              wakeup_events=1)
    fd = _sc.perf_event_open(cfg, -1, 0)
    _set_bpf(fd, program)
    return Link(fd, kind="tracepoint", target=f"{category}/{name}", program=program.name)


def _set_bpf(fd: int, program: BpfProgram) -> None:
    """Give perf event ``fd`` the program and enable it; close ``fd`` on failure."""
    try:
        _sc.syscall(_IOCTL, fd, _c.PERF_EVENT_IOC_SET_BPF, program.fd)
        _sc.syscall(_IOCTL, fd, _c.PERF_EVENT_IOC_ENABLE, 0)
    except BaseException:
        _sc.close(fd)
        raise


def _kprobe_pmu(pmu: Path, *, retprobe: bool) -> tuple[int, int]:
    """The kprobe PMU's perf type and the ``config`` bits for a (return) probe."""
    try:
        pmu_type = int((pmu / "type").read_text())
    except FileNotFoundError:
        raise BpfError(f"this kernel has no kprobe PMU ({pmu / 'type'} is absent: built "
                       "without CONFIG_KPROBE_EVENTS, or sysfs is not mounted), so "
                       "kprobes cannot be attached; use a tracepoint or raw tracepoint "
                       "instead, or a kernel with kprobe events") from None
    if not retprobe:
        return pmu_type, 0
    fmt = pmu / "format" / "retprobe"
    try:
        spec = fmt.read_text().strip()
    except FileNotFoundError:
        raise BpfError(f"the kprobe PMU has no return probes ({fmt} is absent); attach "
                       "a kprobe instead") from None
    field, _, bit = spec.partition(":")
    if field != "config" or not bit.isdigit():
        raise BpfError(f"{fmt} reads {spec!r}, expected 'config:BIT'; this kernel's "
                       "kprobe PMU format is not one qpuos knows")
    return pmu_type, 1 << int(bit)


def attach_kprobe(program: BpfProgram, function: str, *, retprobe: bool = False,
                  offset: int = 0, pmu: Path = KPROBE_PMU) -> Link:
    """Attach a ``KPROBE`` program to kernel function ``function``: at its entry (plus
    ``offset``), or at its return when ``retprobe``.

    Args:
        program: a loaded program of type ``ProgType.KPROBE`` (it sees ``pt_regs``).
        function: a kernel symbol (as in /proc/kallsyms), e.g. "do_sys_openat2".
        retprobe: probe the function's return instead of its entry.
        offset: bytes into the function (entry probes only).
        pmu: where sysfs describes the kprobe PMU.

    Returns:
        The link (kind "kprobe" or "kretprobe"); close it to detach.

    Raises:
        UsageError: the program has another type, an empty name, or an offset with
            ``retprobe``.
        BpfError: the kernel has no kprobe PMU (CONFIG_KPROBE_EVENTS), or no return
            probes.
        FileNotFoundError: no such function (or it cannot be probed).
        PermissionError: no CAP_PERFMON/CAP_SYS_ADMIN.
    """
    if program.prog_type != ProgType.KPROBE:
        raise UsageError(f"program {program.name!r} is {program.prog_type.name}; kprobes "
                         "take ProgType.KPROBE programs")
    if not function or offset < 0 or (retprobe and offset):
        raise UsageError(f"kprobe target {function!r}+{offset} is not valid: give a "
                         "function name, and an offset >= 0 only for entry probes")
    pmu_type, config = _kprobe_pmu(pmu, retprobe=retprobe)
    cname = CString(function)
    cfg = _sc.PerfEventConfig(type=pmu_type, config=config, sample_period=1,
                              wakeup_events=1, config1=cname.address, config2=offset)
    try:
        fd = _sc.perf_event_open(cfg, -1, 0)
    except OSError as exc:
        exc.add_note(f"the kernel refused a kprobe on {function!r}+{offset}: check that "
                     "it is in /proc/kallsyms and not blacklisted "
                     "(/sys/kernel/debug/kprobes/blacklist)")
        raise
    _set_bpf(fd, program)
    kind = "kretprobe" if retprobe else "kprobe"
    return Link(fd, kind=kind, target=f"{function}+{offset}", program=program.name)


class SocketFilter:
    """A socket filter program attached to a socket; ``close()`` detaches it (the
    socket stays open)."""

    def __init__(self, sock: socket.socket, program: str) -> None:
        self._sock: socket.socket | None = sock
        self.program = program

    @property
    def closed(self) -> bool:
        """True once detached."""
        return self._sock is None

    def close(self) -> None:
        """Detach the filter (idempotent; nothing to do if the socket is closed)."""
        sock, self._sock = self._sock, None
        if sock is not None and sock.fileno() >= 0:
            sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_BPF, 0)

    def __enter__(self) -> SocketFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach_socket_filter(program: BpfProgram, sock: socket.socket) -> SocketFilter:
    """Attach a ``SOCKET_FILTER`` program to ``sock``: each packet is cut to the
    program's return value in bytes (0 drops it).

    Raises:
        UsageError: the program has another type.
        OSError: the kernel refused (a socket type that takes no filter).
    """
    if program.prog_type != ProgType.SOCKET_FILTER:
        raise UsageError(f"program {program.name!r} is {program.prog_type.name}; sockets "
                         "take ProgType.SOCKET_FILTER programs")
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_BPF, program.fd)
    return SocketFilter(sock, program.name)

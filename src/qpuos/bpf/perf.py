"""``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: records a program sends with
``bpf_perf_event_output``, read from one perf ring buffer per CPU.

The map holds, at index ``cpu``, the fd of a ``perf_event_open`` software event
``PERF_COUNT_SW_BPF_OUTPUT`` opened on that CPU; a program passes ``BPF_F_CURRENT_CPU``
as the index, so each record lands in the ring of the CPU the program ran on. Each event
fd is mmap'd: page 0 is ``struct perf_event_mmap_page`` (``data_head`` written by the
kernel, ``data_tail`` by this reader), then ``pages`` pages of data. Records start with
``struct perf_event_header`` (u32 type, u16 misc, u16 size); a ``PERF_RECORD_SAMPLE``
carries a u32 length and the raw bytes, a ``PERF_RECORD_LOST`` the number of records
the kernel dropped because the ring was full.

The kernel pads each raw sample so that its u32 length plus the bytes make a multiple
of 8: a payload of ``n`` bytes reads back as ``n`` bytes only when ``n % 8 == 4``,
otherwise followed by zero bytes up to that size (the program's record layout says
which bytes are its own).

Memory ordering: the kernel writes a record, then (after a write barrier) ``data_head``.
On x86-64 (TSO) loads are not reordered with loads, so reading ``data_head`` and then
the data sees whole records, and the one aligned 8-byte store of ``data_tail`` (through
``memoryview.cast("Q")``) is not reordered before those loads. Other architectures
would need acquire/release fences this module does not have: it refuses them.

>>> with PerfEventArray.create(pages=1) as events:               # doctest: +SKIP
...     events.drain()
[]
"""

from __future__ import annotations

import mmap
import platform
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from qpuos._ffi import bpf as _ffi
from qpuos._ffi import consts as _c
from qpuos.bpf.maps import BpfMap, possible_cpus
from qpuos.errors import ClosedResourceError, UnsupportedArchitecture, UsageError
from qpuos.kernel import syscall as _sc

__all__ = ["PerfEventArray", "PerfRecord", "online_cpus"]

_PAGE = mmap.PAGESIZE
_TSO = ("x86_64", "AMD64", "i686")
_IOCTL = _sc.syscall_number("ioctl")
_HEADER = struct.Struct("<IHH")
_LOST = struct.Struct("<QQ")
_HEAD = _ffi.PERF_MMAP_DATA_HEAD // 8
_TAIL = _ffi.PERF_MMAP_DATA_TAIL // 8


def online_cpus() -> list[int]:
    """The CPUs that are online now (``/sys/devices/system/cpu/online``).

    >>> 0 in online_cpus()
    True
    """
    cpus: list[int] = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


@dataclass(frozen=True, slots=True)
class PerfRecord:
    """One sample a program sent: the CPU whose ring held it and its raw bytes
    (padded by the kernel as the module docstring says)."""

    cpu: int
    data: bytes


class _EventArrayMap(BpfMap):
    """The map itself: u32 CPU index -> u32 perf event fd."""

    _map_type = _ffi.BPF_MAP_TYPE_PERF_EVENT_ARRAY


class _CpuRing:
    """One CPU's BPF output event and its mmap'd ring."""

    def __init__(self, cpu: int, pages: int) -> None:
        cfg = _sc.PerfEventConfig(type=_c.PERF_TYPE_SOFTWARE,
                                  config=_ffi.PERF_COUNT_SW_BPF_OUTPUT,
                                  sample_type=_ffi.PERF_SAMPLE_RAW, sample_period=1,
                                  wakeup_events=1)
        self.cpu = cpu
        self.fd = _sc.perf_event_open(cfg, -1, cpu)
        try:
            self._mm = mmap.mmap(self.fd, (1 + pages) * _PAGE, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            _sc.close(self.fd)
            raise
        self._pos = memoryview(self._mm).cast("Q")
        start = self._pos[_ffi.PERF_MMAP_DATA_OFFSET // 8] or _PAGE
        self.size = self._pos[_ffi.PERF_MMAP_DATA_SIZE // 8] or pages * _PAGE
        self._data = memoryview(self._mm)[start:start + self.size]

    def _bytes(self, at: int, n: int) -> bytes:
        """``n`` bytes from ring position ``at``, joined across the end of the ring."""
        at &= self.size - 1
        end = at + n
        if end <= self.size:
            return bytes(self._data[at:end])
        return bytes(self._data[at:]) + bytes(self._data[:end - self.size])

    def read(self, out: list[PerfRecord], limit: int | None) -> int:
        """Append this ring's complete samples to ``out``; return the lost count seen."""
        lost = 0
        tail = self._pos[_TAIL]
        head = self._pos[_HEAD]
        # HOT: one iteration per record
        while tail < head and (limit is None or len(out) < limit):
            kind, _misc, size = _HEADER.unpack(self._bytes(tail, _HEADER.size))
            if kind == _ffi.PERF_RECORD_SAMPLE:
                body = self._bytes(tail + _HEADER.size, size - _HEADER.size)
                n = int.from_bytes(body[:4], "little")
                out.append(PerfRecord(self.cpu, body[4:4 + n]))
            elif kind == _ffi.PERF_RECORD_LOST:
                lost += _LOST.unpack(self._bytes(tail + _HEADER.size, _LOST.size))[1]
            tail += size
            self._pos[_TAIL] = tail
        return lost

    def pending(self) -> int:
        return int(self._pos[_HEAD] - self._pos[_TAIL])

    def close(self) -> None:
        self._data.release()
        self._pos.release()
        self._mm.close()
        _sc.close(self.fd)


class PerfEventArray:
    """A perf event array map with one BPF output ring per online CPU, and this
    process's reader of them.

    Programs send records with ``perf_event_output(ctx, map, BPF_F_CURRENT_CPU, data,
    size)`` through ``ld_map_fd(R1, events)``; :meth:`drain` and :meth:`poll` return
    them as :class:`PerfRecord`. Ordering holds within one CPU's ring, not across CPUs.

    Attributes:
        pages: data pages per CPU ring.
        name: the map's name.
        lost: records the kernel dropped (full ring) that this reader has been told of
            so far; the kernel reports a loss in the ring once space frees up again.
    """

    def __init__(self, *, pages: int = 8, name: str = "") -> None:
        if platform.machine() not in _TSO:
            raise UnsupportedArchitecture(
                f"the perf ring reader relies on x86-64 load ordering; "
                f"{platform.machine()!r} needs acquire loads it does not have yet")
        if pages < 1 or pages & (pages - 1):
            raise UsageError(f"pages per CPU ring must be a power of two, got {pages}")
        self.pages = pages
        self.name = name
        self.lost = 0
        self._epfd = -1
        self._rings: list[_CpuRing] = []
        self._map: _EventArrayMap | None = _EventArrayMap._create(
            key="I", value="I", key_size=None, value_size=None,
            max_entries=possible_cpus(), name=name)
        try:
            for cpu in online_cpus():
                ring = _CpuRing(cpu, pages)
                self._rings.append(ring)
                self._map[cpu] = ring.fd
                _sc.syscall(_IOCTL, ring.fd, _c.PERF_EVENT_IOC_ENABLE, 0)
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, *, pages: int = 8, name: str = "") -> PerfEventArray:
        """A new perf event array with a ring of ``pages`` pages on every online CPU.

        Args:
            pages: data pages per CPU (a power of two).
            name: the map's name (at most 15 characters of [A-Za-z0-9_.]).

        Returns:
            The array, ready for programs to reference.

        Raises:
            UsageError: ``pages`` is not a power of two, or a bad name.
            UnsupportedArchitecture: not x86-64.
            PermissionError: no CAP_BPF/CAP_PERFMON.
        """
        return cls(pages=pages, name=name)

    @property
    def fd(self) -> int:
        """The map's file descriptor (for ``ld_map_fd``).

        Raises:
            ClosedResourceError: after close().
        """
        if self._map is None:
            raise ClosedResourceError(f"perf event array {self.name or '<unnamed>'!r} "
                                      "is closed")
        return self._map.fd

    @property
    def ring_size(self) -> int:
        """Data bytes in each CPU's ring (``pages`` pages; one byte always stays free)."""
        return self.pages * _PAGE

    @property
    def cpus(self) -> list[int]:
        """The CPUs that have a ring (those online at creation)."""
        return [ring.cpu for ring in self._rings]

    def pending(self) -> int:
        """Bytes written to the rings (records and headers) not read yet."""
        self.fd  # noqa: B018 - raises when closed
        return sum(ring.pending() for ring in self._rings)

    def drain(self, *, limit: int | None = None) -> list[PerfRecord]:
        """Read and release every record available now (up to ``limit``), CPU by CPU;
        loss reports add to :attr:`lost`.

        Raises:
            ClosedResourceError: after close().
        """
        self.fd  # noqa: B018 - raises when closed
        out: list[PerfRecord] = []
        for ring in self._rings:
            self.lost += ring.read(out, limit)
        return out

    def poll(self, timeout_s: float | None = None, *,
             limit: int | None = None) -> list[PerfRecord]:
        """Wait up to ``timeout_s`` (None: forever) for records, then drain them.

        Returns an empty list when the time runs out with nothing sent.
        """
        got = self.drain(limit=limit)
        if got:
            return got
        if self._epfd < 0:
            self._epfd = _sc.epoll_create1()
            for ring in self._rings:
                _sc.epoll_ctl(self._epfd, _sc.EPOLL_CTL_ADD, ring.fd, _sc.EPOLLIN)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _sc.epoll_wait(self._epfd, len(self._rings),
                           None if left is None else int(left * 1e9))
            got = self.drain(limit=limit)
            if got or (left is not None and left <= 0):
                return got

    def close(self) -> None:
        """Disable and unmap every ring and close the map (idempotent)."""
        if self._epfd >= 0:
            _sc.close(self._epfd)
            self._epfd = -1
        rings, self._rings = self._rings, []
        for ring in rings:
            ring.close()
        if self._map is not None:
            self._map.close()
            self._map = None

    def __enter__(self) -> PerfEventArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._map is None else f"fd={self._map.fd}"
        return (f"PerfEventArray({self.name!r}, {len(self._rings)} CPUs x "
                f"{self.pages} pages, {state})")

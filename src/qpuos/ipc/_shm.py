"""The shared objects behind a ring: the mapped file, its header layout, its doorbells.

Backings
--------
- **named** (default): a file ``/dev/shm/NAME`` made with ``os.open`` + ``ftruncate`` and
  mapped with ``mmap``. It is built under a temporary name and linked into place only
  once its header is complete, so an attacher never sees a half-written header, and
  ``os.link`` fails if the name is taken (no silent overwrite). Any process of the same
  user can attach by name while the file exists.
- **anonymous**: a ``memfd_create`` file. Its name is ``/proc/PID/fd/N`` of the
  creating process; a child (or any process of the same user) opens that path while the
  creator is alive. The kernel frees it when the last descriptor and mapping go: it
  cannot leak, whoever crashes.

``multiprocessing.shared_memory`` is not used: its resource tracker warns about (and
unlinks) segments it thinks leaked when a process that merely attached exits.

Unlink rules: the creator owns the name. ``close()`` on the creator unlinks the file and
its doorbells (``unlink_on_close=False`` keeps them); attachers never unlink. Mappings
that exist stay valid after the unlink, so peers finish their work; new attaches fail.
``unlink_ring(name)`` removes what a crashed creator left behind.

Doorbells (blocking rings only) are FIFOs: ``NAME.data`` (consumers sleep on it) and
``NAME.space`` (producers sleep on it), opened ``O_RDWR | O_NONBLOCK``. An anonymous ring
uses pipes reopened read-write through ``/proc``. eventfd was the first choice and was
rejected: an eventfd cannot be opened by name nor reopened through ``/proc`` (ENXIO), so
a process attaching by name could never get it. A futex on a header word would need a
raw ``syscall`` (ctypes, confined to ``qpuos/_ffi``); it is the upgrade path.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import re
import secrets
from dataclasses import dataclass

from qpuos.errors import RingCorrupted, RingError, UsageError

__all__ = [
    "HEADER_BYTES", "KIND_MPMC", "KIND_NAMES", "KIND_RECORDS", "KIND_SPSC", "MAGIC",
    "PEER_ENTRIES", "TSO", "VERSION", "W_BELL_FDS", "W_BELL_PID", "W_CAPACITY",
    "W_DATA_WAITERS", "W_FLAGS", "W_HEAD", "W_LAYOUT", "W_MAGIC", "W_OWNER_PID",
    "W_OWNER_START", "W_PEERS", "W_RECOVERED", "W_SLOT", "W_SPACE_WAITERS", "W_STRIDE",
    "W_TAIL", "Mapping", "attach_mapping", "create_mapping", "open_bells", "shm_path",
    "unlink_ring",
]

# x86-64 is TSO: stores are not reordered with older stores, loads not with older loads.
# An aligned 8-byte store through memoryview.cast("Q") is one `mov`, so a plain store of
# an index after the payload is a release store and a plain load an acquire load. Other
# machines get the numba acquire/release intrinsics instead (see ring.py).
TSO = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")

MAGIC = int.from_bytes(b"QPUOSRNG", "little")
VERSION = 1
KIND_SPSC, KIND_RECORDS, KIND_MPMC = 1, 2, 3
KIND_NAMES = {KIND_SPSC: "SpscRing", KIND_RECORDS: "RecordRing", KIND_MPMC: "MpmcRing"}
HEADER_BYTES = 4096

# Header words (8 bytes each). Line 0 is written once at creation. Each hot word has a
# 128-byte block of its own: x86 prefetches cache lines in adjacent pairs, so 64-byte
# separation still lets producer and consumer lines bounce together.
W_MAGIC, W_LAYOUT, W_SLOT, W_CAPACITY, W_STRIDE, W_FLAGS = 0, 1, 2, 3, 4, 5
W_OWNER_PID, W_OWNER_START = 6, 7
W_BELL_PID, W_BELL_FDS = 8, 9                 # anonymous rings: where the pipes live
W_TAIL = 16                                   # byte 128: written by producers
W_HEAD = 32                                   # byte 256: written by consumers
W_DATA_WAITERS = 48                           # byte 384: consumers asleep on .data
W_SPACE_WAITERS = 64                          # byte 512: producers asleep on .space
W_RECOVERED = 80                              # byte 640: holes left by dead peers, fixed
W_PEERS = 128                                 # bytes 1024..4095: (pid, start) entries
PEER_ENTRIES = (HEADER_BYTES // 8 - W_PEERS) // 2

FLAG_BLOCKING = 1

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_SHM_DIR = "/dev/shm"


def shm_path(name: str) -> str:
    """The file behind ring ``name``: a ``/proc/...`` or other absolute path is used as is.

    >>> shm_path("demo")
    '/dev/shm/demo'
    """
    if name.startswith("/"):
        return name
    if not _NAME_RE.match(name) or name.startswith("."):
        raise UsageError(f"ring name {name!r} is not valid; use 1-200 characters from "
                         "A-Z a-z 0-9 _ . - (not starting with '.')")
    return f"{_SHM_DIR}/{name}"


@dataclass
class Mapping:
    """An open ring file: its map, its name, whether this side owns (unlinks) it."""

    mm: mmap.mmap
    name: str
    path: str
    owner: bool
    bells: tuple[int, int] | None   # (data fd, space fd) when the ring is blocking
    _staging: str | None = None     # temporary path until publish()
    memfd: int | None = None        # anonymous rings: the descriptor others reopen
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino): which file, whatever its name

    def publish(self) -> None:
        """Make a freshly created named ring visible under its name (header complete)."""
        if self._staging is None:
            return
        try:
            os.link(self._staging, self.path)
        except FileExistsError:
            self.discard()
            raise UsageError(f"a ring named {self.name!r} already exists ({self.path}); "
                             "pick another name or remove it with unlink_ring()") from None
        finally:
            if self._staging is not None:
                os.unlink(self._staging)
                self._staging = None

    def discard(self) -> None:
        """Remove a half-created ring's files (creation failed)."""
        for p in (self._staging, *(_bell_paths(self.path) if self.bells else ())):
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
        self._staging = None

    def close_fds(self) -> None:
        """Close the doorbell and memfd descriptors (idempotent)."""
        fds = [*(self.bells or ()), *(() if self.memfd is None else (self.memfd,))]
        self.bells = self.memfd = None
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _bell_paths(path: str) -> tuple[str, str]:
    return (path + ".data", path + ".space")


def create_mapping(size: int, *, name: str | None, anonymous: bool, blocking: bool
                   ) -> Mapping:
    """Create and map a zeroed ring file of ``size`` bytes (header to be filled in)."""
    if anonymous:
        if name is not None:
            raise UsageError("an anonymous ring has no name; pass name=None or "
                             "anonymous=False")
        fd = os.memfd_create("qpuos-ring", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
            ident = _ident(fd)
        except BaseException:
            os.close(fd)
            raise
        # The memfd stays open: /proc/PID/fd/N is how others find it.
        path = f"/proc/{os.getpid()}/fd/{fd}"
        anon_bells = (_anon_bell(), _anon_bell()) if blocking else None
        return Mapping(mm, path, path, True, anon_bells, memfd=fd, ident=ident)
    if name is None:
        name = "qpuos-ring-" + secrets.token_hex(6)
    path = shm_path(name)
    if name.startswith("/"):
        raise UsageError(f"a named ring lives in {_SHM_DIR}; give a bare name, not {name!r}")
    if os.path.exists(path):
        raise UsageError(f"a ring named {name!r} already exists ({path}); pick another "
                         "name or remove it with unlink_ring()")
    staging = f"{_SHM_DIR}/.{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
        ident = _ident(fd)
    except BaseException:
        os.close(fd)
        os.unlink(staging)
        raise
    os.close(fd)
    bells: tuple[int, int] | None = None
    if blocking:
        made: list[str] = []
        try:
            for p in _bell_paths(path):
                os.mkfifo(p, 0o600)
                made.append(p)
            bells = _open_bells(path)
        except FileExistsError:
            for p in made:
                os.unlink(p)
            mm.close()
            os.unlink(staging)
            raise UsageError(f"doorbell files of ring {name!r} already exist; remove them "
                             "with unlink_ring()") from None
    return Mapping(mm, name, path, True, bells, staging, ident=ident)


def _anon_bell() -> int:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # One descriptor that both reads and writes, reopenable by others through /proc.
        return os.open(f"/proc/self/fd/{r}", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.close(w)


def _open_bells(path: str) -> tuple[int, int]:
    fds = []
    try:
        for p in _bell_paths(path):
            fds.append(os.open(p, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
    except FileNotFoundError:
        for fd in fds:
            os.close(fd)
        raise RingError(f"the doorbells of ring {path} are missing ({p}); the ring was "
                        "unlinked or damaged: create a new ring") from None
    return fds[0], fds[1]


def attach_mapping(name: str) -> Mapping:
    """Map an existing ring; the caller validates the header."""
    path = shm_path(name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RingError(f"no ring named {name!r} ({path} does not exist); was it closed "
                        "by its creator, or is the name wrong?") from None
    try:
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            raise RingCorrupted(f"{path} has {size} bytes, less than a ring header "
                                f"({HEADER_BYTES}); it is not a qpuos ring")
        mm = mmap.mmap(fd, size)
        ident = _ident(fd)
    finally:
        os.close(fd)
    return Mapping(mm, name, path, False, None, ident=ident)


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def open_bells(m: Mapping, bell_pid: int, bell_fds: int) -> None:
    """Open the doorbells of an attached blocking ring."""
    if m.path.startswith("/proc/"):
        fds = []
        for fd in (bell_fds & 0xFFFFFFFF, bell_fds >> 32):
            try:
                fds.append(os.open(f"/proc/{bell_pid}/fd/{fd}",
                                   os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
            except OSError as exc:
                for f in fds:
                    os.close(f)
                raise RingError(f"cannot open the doorbells of anonymous ring {m.name} "
                                f"in process {bell_pid}: {exc.strerror}; is its creator "
                                "still running?") from None
        m.bells = (fds[0], fds[1])
    else:
        m.bells = _open_bells(m.path)


def unlink_ring(name: str) -> bool:
    """Remove a named ring's files; True if the ring file existed.

    Mappings already open stay valid; only new attaches fail.

    >>> unlink_ring("qpuos-no-such-ring")
    False
    """
    path = shm_path(name)
    if path.startswith("/proc/"):
        raise UsageError("an anonymous ring has nothing to unlink; it goes away with its "
                         "last descriptor")
    found = False
    for p in (path, *_bell_paths(path)):
        try:
            os.unlink(p)
            found = found or p == path
        except FileNotFoundError:
            pass
    return found

"""The initramfs format: a newc ("070701") cpio archive, written and read in Python.

The kernel unpacks the initramfs into its root tmpfs before running ``/init``. The
archive is a sequence of entries, each a 110-byte ASCII header (magic and thirteen
8-digit hex fields), the NUL-terminated name padded to 4 bytes, then the data padded
to 4 bytes; ``TRAILER!!!`` ends it. Device nodes are header-only entries (``rdev``),
so no root and no ``mknod`` are needed to build an image.

Reproducible by construction: :func:`write_cpio` sorts the entries by name, numbers
inodes in that order and writes every entry with uid/gid 0 and one fixed mtime, so the
same inputs always give the same bytes.

>>> data = write_cpio([Entry.directory("dev"), Entry.device("dev/console", 5, 1),
...                    Entry.file("init", b"#!/bin/sh\\n", mode=0o755)])
>>> [(e.name, oct(e.mode), e.data) for e in read_cpio(data)]
[('dev', '0o40755', b''), ('dev/console', '0o20600', b''), ('init', '0o100755', b'#!/bin/sh\\n')]
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

from qpuos.errors import ImageError

__all__ = ["FIXED_MTIME", "Entry", "read_cpio", "write_cpio"]

FIXED_MTIME = 0
"""The mtime of every entry: a constant, so builds do not depend on file dates."""

_MAGIC = b"070701"
_HEADER = 110
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive member: a path (no leading ``/``), its full mode and contents.

    ``rdev`` is the (major, minor) of a character or block device, (0, 0) otherwise.
    A symlink's ``data`` is its target.
    """

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    @classmethod
    def file(cls, name: str, data: bytes, *, mode: int = 0o644) -> Entry:
        """A regular file with permission bits ``mode``."""
        return cls(name, stat.S_IFREG | mode, data)

    @classmethod
    def directory(cls, name: str, *, mode: int = 0o755) -> Entry:
        """A directory."""
        return cls(name, stat.S_IFDIR | mode)

    @classmethod
    def device(cls, name: str, major: int, minor: int, *, mode: int = 0o600) -> Entry:
        """A character device node, e.g. ``/dev/console`` is (5, 1)."""
        return cls(name, stat.S_IFCHR | mode, b"", (major, minor))

    @classmethod
    def symlink(cls, name: str, target: str) -> Entry:
        """A symbolic link to ``target``."""
        return cls(name, stat.S_IFLNK | 0o777, target.encode())


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, e: Entry, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(e.mode) else 1
    fields = (ino, e.mode, 0, 0, nlink, FIXED_MTIME, len(e.data), 0, 0, e.rdev[0],
              e.rdev[1], len(name) + 1, 0)
    return _MAGIC + b"".join(b"%08X" % f for f in fields)


def write_cpio(entries: Iterable[Entry]) -> bytes:
    """The newc archive of ``entries``, sorted by name (reproducible bytes).

    Raises:
        ImageError: two entries share a name, or a name is empty or absolute.
    """
    ordered = sorted(entries, key=lambda e: e.name)
    out = bytearray()
    seen: set[str] = set()
    for ino, e in enumerate(ordered, start=1):
        if not e.name or e.name.startswith("/") or e.name in seen:
            raise ImageError(f"initramfs entry name {e.name!r} is empty, absolute or "
                             "repeated; give each path once, relative to /")
        seen.add(e.name)
        name = e.name.encode()
        head = _header(ino, e, name) + name + b"\0"
        out += head + _pad(len(head)) + e.data + _pad(len(e.data))
    trailer = _header(0, Entry(_TRAILER, 0), _TRAILER.encode()) + _TRAILER.encode() + b"\0"
    out += trailer + _pad(len(trailer))
    return bytes(out)


def read_cpio(data: bytes) -> list[Entry]:
    """The entries of a newc archive, in archive order (the trailer not included).

    Raises:
        ImageError: bad magic, a truncated entry, or no trailer.
    """
    entries: list[Entry] = []
    pos = 0
    while True:
        head = data[pos:pos + _HEADER]
        if len(head) < _HEADER or head[:6] != _MAGIC:
            raise ImageError(f"no newc header at offset {pos} (found {head[:6]!r}); "
                             "the file is not an uncompressed newc cpio or is truncated")
        f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name_at = pos + _HEADER
        name = data[name_at:name_at + namesize - 1].decode()
        data_at = name_at + namesize
        data_at += -data_at % 4
        body = data[data_at:data_at + size]
        if len(body) < size:
            raise ImageError(f"entry {name!r} at offset {pos} wants {size} bytes, "
                             f"{len(body)} remain; the archive is truncated")
        if name == _TRAILER:
            return entries
        entries.append(Entry(name, mode, bytes(body), (rmaj, rmin)))
        pos = data_at + size
        pos += -pos % 4

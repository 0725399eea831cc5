"""Every write the device side makes, through one object, so a test can cut power there.

Each operation first calls ``hook(point)`` with the name of the write point it is
about to perform ("write", "fsync", "rename", "fsync-dir", "unlink", "truncate"). The
power-cut harness passes a hook that calls ``os._exit`` at the k-th point; the disk-full
test passes one that raises ``OSError(ENOSPC)``. Without a hook the calls cost nothing
more than the syscalls.

Atomic replacement is write a temporary file, fsync it, rename it over the target,
fsync the folder: after a crash at any point the target holds the old bytes or the new
ones, never a mix (POSIX rename is atomic; the folder fsync makes the rename durable).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["Disk", "WriteHook"]

WriteHook = Callable[[str], None]


class Disk:
    """Write operations with a hook before each one (see the module docstring)."""

    __slots__ = ("_hook",)

    def __init__(self, hook: WriteHook | None = None) -> None:
        self._hook = hook

    def point(self, name: str) -> None:
        """Announce the write point ``name`` to the hook."""
        if self._hook is not None:
            self._hook(name)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data)
        while view:
            self.point("write")
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    def truncate(self, fd: int, length: int) -> None:
        """Cut the file to ``length`` bytes."""
        self.point("truncate")
        os.ftruncate(fd, length)

    def fsync(self, fd: int) -> None:
        """Flush the file's data and metadata to the device."""
        self.point("fsync")
        os.fsync(fd)

    def fsync_dir(self, folder: Path) -> None:
        """Make renames and unlinks in ``folder`` durable."""
        self.point("fsync-dir")
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        """Atomically replace ``dst`` by ``src`` (not yet durable: see fsync_dir)."""
        self.point("rename")
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        """Remove ``path`` if it exists."""
        self.point("unlink")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def replace_file(self, path: Path, data: bytes) -> None:
        """Atomically and durably replace ``path`` with ``data``; on a failure before
        the rename the old file is untouched and the temporary file removed."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                self.pwrite(fd, data, 0)
                self.fsync(fd)
            finally:
                os.close(fd)
            self.rename(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.fsync_dir(path.parent)

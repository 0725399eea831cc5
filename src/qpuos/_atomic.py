"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

``write_files_atomically`` extends that to a group: every file is first written to a
temporary file beside its target and fsynced; only when all of them are staged are they
renamed into place. A failure while staging (missing folder, full disk, a target that is
a directory) leaves no target changed and no temporary file behind. Errors name the
user's path, never the temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_files_atomically"]


def _file_mode(target: Path) -> int:
    """The mode a plain ``open(target, "w")`` would give: the old file's, else umask's."""
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mask = os.umask(0o022)  # read the umask (there is no other way), then restore it
        os.umask(mask)
        return 0o666 & ~mask


def _stage(target: Path, data: bytes) -> str:
    """Write ``data`` to a fsynced temporary file beside ``target``; return its path."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    try:
        os.fchmod(fd, _file_mode(target))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    return tmp


def write_files_atomically(files: Mapping[str, bytes]) -> None:
    """Write several files so that either all of them change or none does.

    Raises:
        OSError: a file could not be staged; nothing was changed. The error's filename
            is the target path.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            target = Path(path)
            staged.append((_stage(target, data), target))
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_files_atomically({os.fspath(path): data})


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_files_atomically({os.fspath(path): text.encode("utf-8")})

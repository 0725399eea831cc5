"""The files behind register windows: emulated windows in /dev/shm, device nodes by path.

An emulated window is a file ``/dev/shm/NAME``: the register block (the register map's
``size``, rounded up to a page) followed by one trailer page that says what the file is,
so that attaching to the wrong file or with the wrong register map fails with a message
instead of reading garbage. Register offsets are those of the map: the trailer comes
after them, never before. Trailer words (little-endian ``uint64``)::

    0 magic "QPUOSMIO"   1 layout version   2 register block size   3 map fingerprint
    4 creator pid        5 map name length  bytes 64..127: the map name (UTF-8)

The file is built under a temporary name, its reset values and trailer written, and only
then linked into place (``os.link`` fails if the name is taken), so an attacher never
sees a half-initialized window. ``multiprocessing.shared_memory`` is not used: its
resource tracker unlinks segments that a merely attached process leaves open.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import stat
from collections.abc import Callable

from qpuos.errors import MmioError, UsageError

__all__ = ["TRAILER_BYTES", "attach_file", "create_file", "open_device", "remove_file",
           "window_path"]

TRAILER_BYTES = 4096
_MAGIC = int.from_bytes(b"QPUOSMIO", "little")
_LAYOUT = 1
_NAME_AT, _NAME_MAX = 64, 64
_SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def window_path(name: str) -> str:
    """The /dev/shm file of the emulated window ``name`` (a bare name, checked).

    >>> window_path("qpu0-regs")
    '/dev/shm/qpu0-regs'
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith("."):
        raise UsageError(f"register window name {name!r} is not valid; use 1-200 "
                         "characters from A-Z a-z 0-9 _ . - (not starting with '.')")
    return f"{_SHM_DIR}/{name}"


def _block(size: int) -> int:
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


def _write_trailer(mm: mmap.mmap, at: int, size: int, fingerprint: int, map_name: str
                   ) -> None:
    label = map_name.encode("utf-8")[:_NAME_MAX]
    words = (_MAGIC, _LAYOUT, size, fingerprint, os.getpid(), len(label))
    for i, word in enumerate(words):
        mm[at + 8 * i:at + 8 * i + 8] = word.to_bytes(8, "little")
    mm[at + _NAME_AT:at + _NAME_AT + len(label)] = label


def _trailer_word(mm: mmap.mmap, at: int, i: int) -> int:
    return int.from_bytes(mm[at + 8 * i:at + 8 * i + 8], "little")


def create_file(name: str | None, size: int, fingerprint: int, map_name: str,
                init: Callable[[mmap.mmap], None]) -> tuple[mmap.mmap, str]:
    """Create, initialize (``init`` writes the reset values) and publish a window file.

    Returns the mapping (register block first, trailer after it) and the window name.
    """
    if name is None:
        name = "qpuos-mmio-" + secrets.token_hex(6)
    path = window_path(name)
    if os.path.exists(path):
        raise UsageError(f"a register window named {name!r} already exists ({path}); "
                         "pick another name or remove it with unlink_window()")
    staging = f"{_SHM_DIR}/.{name}.{secrets.token_hex(4)}.tmp"
    block = _block(size)
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.ftruncate(fd, block + TRAILER_BYTES)
            mm = mmap.mmap(fd, block + TRAILER_BYTES)
        finally:
            os.close(fd)
        try:
            init(mm)
            _write_trailer(mm, block, size, fingerprint, map_name)
            os.link(staging, path)
        except FileExistsError:
            mm.close()
            raise UsageError(f"a register window named {name!r} was created meanwhile "
                             f"({path}); pick another name") from None
        except BaseException:
            mm.close()
            raise
    finally:
        os.unlink(staging)
    return mm, name


def attach_file(name: str, size: int, fingerprint: int, map_name: str) -> mmap.mmap:
    """Map the window file ``name`` after checking it holds register map ``map_name``."""
    path = window_path(name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MmioError(f"no register window named {name!r} ({path} does not exist); was "
                        "it unlinked by its creator, or is the name wrong?") from None
    block = _block(size)
    try:
        have = os.fstat(fd).st_size
        if have != block + TRAILER_BYTES:
            raise MmioError(f"{path} has {have} bytes, not the {block + TRAILER_BYTES} of "
                            f"a window of register map {map_name!r}; it is another map's "
                            "window or not a register window")
        mm = mmap.mmap(fd, have)
    finally:
        os.close(fd)
    if _trailer_word(mm, block, 0) != _MAGIC or _trailer_word(mm, block, 1) != _LAYOUT:
        mm.close()
        raise MmioError(f"{path} is not a qpuos register window (layout {_LAYOUT}); "
                        "check the name")
    theirs = _trailer_word(mm, block, 3)
    if theirs != fingerprint or _trailer_word(mm, block, 2) != size:
        length = min(_trailer_word(mm, block, 5), _NAME_MAX)
        label = mm[block + _NAME_AT:block + _NAME_AT + length].decode("utf-8", "replace")
        mm.close()
        raise MmioError(f"window {name!r} was created for register map {label!r} "
                        f"(fingerprint {theirs:#018x}), not for {map_name!r} (fingerprint "
                        f"{fingerprint:#018x}); attach with the map its creator used")
    return mm


def open_device(path: str, offset: int, size: int) -> tuple[mmap.mmap, int]:
    """Map ``size`` bytes at byte ``offset`` of a device node or resource file.

    Returns the mapping and where the window starts in it (mmap offsets must be
    page-aligned, so an unaligned ``offset`` maps from the page below it).
    """
    flags = os.O_RDWR | os.O_SYNC | os.O_CLOEXEC  # O_SYNC: /dev/mem maps uncached
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MmioError(f"cannot open register window {path}: {exc.strerror}; check the "
                        "path and that this process may write it (root for /dev/mem, "
                        "the uio/pci device's permissions otherwise)") from exc
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size < offset + size:
            # Mapping past the end of a file gives SIGBUS on the first access.
            raise MmioError(f"{path} has {st.st_size} bytes; a {size}-byte window at "
                            f"offset {offset:#x} needs {offset + size}; check the offset "
                            "and the register map's size")
        try:
            mm = mmap.mmap(fd, offset - start + size, offset=start)
        except OSError as exc:
            raise MmioError(f"cannot map {size} bytes at offset {offset:#x} of {path}: "
                            f"{exc.strerror}; check the offset and size against the "
                            "device's region") from exc
    finally:
        os.close(fd)
    return mm, offset - start


def remove_file(name: str) -> bool:
    """Remove the window file ``name``; True if it existed."""
    path = window_path(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        return True
    return False

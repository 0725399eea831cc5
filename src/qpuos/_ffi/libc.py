"""libc's ``syscall(2)`` bound once, errno captured, and the addresses calls need.

mirrors <unistd.h>: ``long syscall(long number, ...);``

Two ways in, both with ``use_errno=True`` (ctypes swaps errno in and out around the
call, so :func:`get_errno` after a ``-1`` return is the call's own errno, not one
left over by the interpreter):

- ``BY_ARITY[n]``: a prototype with ``n + 1`` pointer-sized parameters. Every argument
  travels as a full 64-bit register, as the C ABI passes a ``long``: no 32-bit ``int``
  default conversion, which would truncate pointers and sign-extend by accident. The
  parameters are declared ``c_void_p``, not ``c_long``: on LP64 (the only ABIs in
  ``sysnr.py``) both are 8 bytes in the same integer registers, and negative values
  keep their two's-complement bits; but ctypes turns an int into a ``c_void_p``
  argument as a bare tagged value, while a ``c_long`` parameter builds a ``c_long``
  object per argument. ``syscall(SYS_read, fd, buf, 1)``: ~0.5 µs instead of ~0.85 µs
  here. Out-of-range ints (beyond 64 bits) still raise ``ctypes.ArgumentError``.
- :class:`PreparedCall`: the arguments are ``c_long`` objects built once, for calls a
  hot loop repeats (epoll_pwait on the same fd and buffer, read of the same eventfd).
  ctypes passes ``c_long`` objects without converting them; ~0.45 µs per call.
  Rejected: holding the GIL across the call (``_FUNCFLAG_PYTHONAPI``) saves ~30 ns
  but is private API and would stall other threads during blocking calls.

Every call releases the GIL, so a call that blocks (epoll_pwait, futex) lets the
scheduler's watchdog thread run.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "BY_ARITY",
    "CString",
    "PreparedCall",
    "RawBuffer",
    "WritableBuffer",
    "address_of",
    "get_errno",
    "scratch8",
    "sizeof",
    "word64",
]

_libc = ctypes.CDLL(None, use_errno=True)  # the running program: libc's symbols


if ctypes.sizeof(ctypes.c_void_p) != ctypes.sizeof(ctypes.c_long):  # pragma: no cover
    raise ImportError("qpuos's syscall gate needs an LP64 ABI (pointer-sized long)")


def _bind(nargs: int) -> Callable[..., int]:
    proto = ctypes.CFUNCTYPE(ctypes.c_long, *([ctypes.c_void_p] * (nargs + 1)),
                             use_errno=True)
    fn: Callable[..., int] = proto(("syscall", _libc))
    return fn


BY_ARITY: tuple[Callable[..., int], ...] = tuple(_bind(n) for n in range(7))
"""``BY_ARITY[n](nr, a1, ..., an)``: syscall(2) with n arguments, each a 64-bit word."""

_RAW = _libc["syscall"]  # no argtypes: only ever called with c_long objects
_RAW.restype = ctypes.c_long

get_errno: Callable[[], int] = ctypes.get_errno
"""The errno of the last call made through this module on this thread."""


class PreparedCall:
    """A syscall whose arguments are pre-built ``c_long`` objects.

    ``call()`` issues it and returns the raw result (``-1`` means: read
    :func:`get_errno`). ``set(i, value)`` changes argument ``i`` (0-based, after the
    number) in place, for the one argument that varies (e.g. a timeout pointer).
    """

    __slots__ = ("args", "call")

    def __init__(self, nr: int, *args: int) -> None:
        self.args = tuple(ctypes.c_long(a) for a in (nr, *args))
        self.call: Callable[[], int] = functools.partial(_RAW, *self.args)

    def set(self, index: int, value: int) -> None:
        """Replace argument ``index`` (0 = first argument after the number)."""
        self.args[index + 1].value = value


def address_of(obj: Any) -> int:
    """The address of a ctypes object (structure, array)."""
    return ctypes.addressof(obj)


def sizeof(obj: Any) -> int:
    """The size in bytes of a ctypes object or type."""
    return ctypes.sizeof(obj)


class WritableBuffer:
    """A view of a writable Python buffer (bytearray, memoryview, mmap, numpy array).

    Holds a buffer export for as long as it lives, so the memory cannot be resized or
    freed under a call that writes it. ``address`` is the first byte at ``offset``.
    """

    __slots__ = ("_view", "address", "size")

    def __init__(self, obj: Any, offset: int = 0, size: int | None = None) -> None:
        mv = memoryview(obj).cast("B")
        if mv.readonly:
            raise TypeError("buffer is read-only; pass a bytearray, mmap or writable array")
        total = mv.nbytes
        n = total - offset if size is None else size
        if offset < 0 or n < 0 or offset + n > total:
            raise ValueError(f"range [{offset}, {offset + n}) is outside the {total}-byte "
                             "buffer")
        self._view = (ctypes.c_char * total).from_buffer(mv)
        self.address = ctypes.addressof(self._view) + offset
        self.size = n


class RawBuffer:
    """A fresh C buffer of ``size`` bytes (cheaper than viewing a bytearray)."""

    __slots__ = ("_buf", "address", "size")

    def __init__(self, size: int) -> None:
        self._buf = ctypes.create_string_buffer(max(size, 1))
        self.address = ctypes.addressof(self._buf)
        self.size = size

    def take(self, n: int) -> bytes:
        """The first ``n`` bytes."""
        return ctypes.string_at(self.address, n)


def word64() -> tuple[Any, int]:
    """A fresh ``c_uint64`` and its address: read it with ``.value`` after a syscall
    fills it (faster than unpacking bytes)."""
    word = ctypes.c_uint64()
    return word, ctypes.addressof(word)


_tls = threading.local()


def scratch8() -> tuple[Any, int]:
    """This thread's reusable 8-byte buffer and its address (for counter reads/writes).

    The buffer is a ctypes ``c_uint64``: read or set its ``.value``.
    """
    try:
        return _tls.scratch8  # type: ignore[no-any-return]
    except AttributeError:
        word = ctypes.c_uint64()
        _tls.scratch8 = (word, ctypes.addressof(word))
        return _tls.scratch8  # type: ignore[no-any-return]


class CString:
    """A NUL-terminated copy of ``text`` (``None`` gives the NULL pointer, address 0).

    ``nul_ok`` allows NUL bytes inside (for binary data handed to write(2)).
    """

    __slots__ = ("_buf", "address")

    def __init__(self, text: str | bytes | None, *, nul_ok: bool = False) -> None:
        if text is None:
            self._buf = None
            self.address = 0
            return
        raw = text.encode() if isinstance(text, str) else bytes(text)
        if not nul_ok and b"\0" in raw:
            raise ValueError(f"string {text!r} contains a NUL byte")
        self._buf = ctypes.create_string_buffer(raw)
        self.address = ctypes.addressof(self._buf)

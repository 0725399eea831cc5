"""The syscall gate's core: numbers, ``syscall()``, errno -> OSError, basic fd calls.

See :mod:`qpuos.kernel.syscall` (the public face) for the design.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any, NoReturn

from qpuos._ffi import sysnames
from qpuos._ffi.libc import BY_ARITY, CString, RawBuffer, get_errno
from qpuos._ffi.sysnr import numbers
from qpuos.errors import UnsupportedArchitecture, UsageError

__all__ = ["NR", "call", "call_eintr", "close", "gettid", "os_error", "read", "syscall",
           "syscall_name", "syscall_number", "tgkill", "write"]

_MAX_ARGS = 6


class _NoTable(Mapping[str, int]):
    """Stands in for the table on an unknown machine: any lookup raises, naming it."""

    def __init__(self, error: UnsupportedArchitecture) -> None:
        self._error = error

    def __getitem__(self, name: str) -> int:
        raise UnsupportedArchitecture(str(self._error))

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _load_table() -> Mapping[str, int]:
    try:
        return numbers()
    except UnsupportedArchitecture as exc:
        return _NoTable(exc)


NR: Mapping[str, int] = _load_table()
_NAMES: dict[int, str] = {**sysnames.NAMES.get(platform.machine(), {}),
                          **{nr: name for name, nr in NR.items()}}


def syscall_number(name: str, *, machine: str | None = None) -> int:
    """The number of syscall ``name`` on ``machine`` (default: this machine).

    >>> syscall_number("eventfd2", machine="x86_64"), syscall_number("eventfd2",
    ...                                                               machine="aarch64")
    (290, 19)

    Raises:
        UnsupportedArchitecture: no table for that machine.
        UsageError: the table has no such call.
    """
    table = NR if machine is None else numbers(machine)
    try:
        return table[name]
    except KeyError:
        arch = machine or platform.machine()
        raise UsageError(f"no syscall named {name!r} in qpuos's {arch} table; known: "
                         f"{', '.join(sorted(table))}") from None


def syscall_name(nr: int) -> str:
    """The name of syscall number ``nr`` on this machine, or ``"syscall <nr>"``."""
    return _NAMES.get(nr, f"syscall {nr}")


def os_error(err: int, call: str) -> OSError:
    """``OSError(err, strerror)`` (so the matching subclass) with a note naming ``call``.

    >>> e = os_error(2, "openat")
    >>> type(e).__name__, e.errno, str(e)
    ('FileNotFoundError', 2, '[Errno 2] No such file or directory')
    """
    exc = OSError(err, os.strerror(err))
    exc.add_note(f"from syscall {call} ({platform.machine()})")
    return exc


def _fail(call: str) -> NoReturn:
    raise os_error(get_errno(), call)


_S0, _S1, _S2, _S3, _S4, _S5, _S6 = BY_ARITY
_ABSENT: Any = object()  # an argument not given (None would be a valid NULL pointer)


def syscall(nr: int, a1: int = _ABSENT, a2: int = _ABSENT, a3: int = _ABSENT,
            a4: int = _ABSENT, a5: int = _ABSENT, a6: int = _ABSENT, /,
            *more: int) -> int:
    """Issue syscall number ``nr`` with up to six integer arguments; return its result.

    Arguments are passed as 64-bit words (pointers as addresses). A ``-1`` result
    raises the ``OSError`` subclass of the call's errno; EINTR is not retried.

    >>> import os
    >>> syscall(syscall_number("getpid")) == os.getpid()
    True
    >>> try:
    ...     syscall(syscall_number("close"), -1)
    ... except OSError as exc:
    ...     print(exc.errno, exc.strerror, exc.__notes__[0].split(" (")[0])
    9 Bad file descriptor from syscall close

    Raises:
        OSError: the kernel refused the call (subclass by errno).
        UsageError: more than six arguments.
    """
    # HOT: one positional parameter per argument instead of ``*args``: no tuple to
    # build, index and unpack per call (~0.1 µs of a ~0.6 µs call)
    if a3 is _ABSENT:
        if a1 is _ABSENT:
            r = _S0(nr)
        elif a2 is _ABSENT:
            r = _S1(nr, a1)
        else:
            r = _S2(nr, a1, a2)
    elif a5 is _ABSENT:
        r = _S3(nr, a1, a2, a3) if a4 is _ABSENT else _S4(nr, a1, a2, a3, a4)
    elif more:
        raise UsageError(f"syscall takes at most {_MAX_ARGS} arguments, got "
                         f"{_MAX_ARGS + len(more)}")
    else:
        r = _S5(nr, a1, a2, a3, a4, a5) if a6 is _ABSENT else \
            _S6(nr, a1, a2, a3, a4, a5, a6)
    if r == -1:
        raise os_error(get_errno(), syscall_name(nr))
    return r


def call(name: str, *args: int) -> int:
    """A named syscall; raises the errno's OSError naming it."""
    r = BY_ARITY[len(args)](NR[name], *args)
    if r == -1:
        _fail(name)
    return r


def call_eintr(name: str, *args: int) -> int:
    """A named syscall retried on EINTR (for calls whose arguments stay valid)."""
    fn = BY_ARITY[len(args)]
    nr = NR[name]
    while True:
        r = fn(nr, *args)
        if r != -1:
            return r
        err = get_errno()
        if err != 4:  # EINTR: a signal arrived; Python runs its handler, we retry
            raise os_error(err, name)


# ----------------------------------------------------------------------------- files


def read(fd: int, size: int) -> bytes:
    """``read(2)`` up to ``size`` bytes; retried on EINTR."""
    buf = RawBuffer(size)
    return buf.take(call_eintr("read", fd, buf.address, size))


def write(fd: int, data: bytes | bytearray | memoryview) -> int:
    """``write(2)``; returns the bytes written; retried on EINTR."""
    buf = CString(bytes(data), nul_ok=True)
    return call_eintr("write", fd, buf.address, len(data))


def close(fd: int) -> None:
    """``close(2)``. Not retried on EINTR (on Linux the fd is gone either way)."""
    call("close", fd)


def gettid() -> int:
    """``gettid(2)``: this thread's kernel id."""
    return call("gettid")


def tgkill(tgid: int, tid: int, sig: int) -> None:
    """``tgkill(2)``: send ``sig`` to one thread (``tid``) of process ``tgid``."""
    call("tgkill", tgid, tid, sig)

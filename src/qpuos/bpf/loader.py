"""``BPF_PROG_LOAD``: bytecode in, a program fd out, or the verifier's reasons.

The first load asks for no log (formatting it more than doubles a small program's
load time: 86 against 206 µs for 16 instructions in ``qpuos bench bpf``). If the
kernel refuses with EACCES or EINVAL the load is repeated with a log buffer, grown on
ENOSPC up to 16 MiB, and the refusal is raised as :class:`~qpuos.bpf.VerifierRejected`
carrying that log. Refusals that are not the verifier's (EPERM without CAP_BPF, ENOMEM,
E2BIG) stay the syscall gate's ``OSError``.

>>> from qpuos.bpf.asm import mov, exit_, R0
>>> with load_program([mov(R0, 0), exit_()], prog_type=ProgType.SOCKET_FILTER,
...                   name="ret0") as prog:                     # doctest: +SKIP
...     prog.name
'ret0'
"""

from __future__ import annotations

import errno as _errno
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from qpuos._ffi import bpf as _ffi
from qpuos._ffi.consts import BPF_PROG_LOAD, BPF_PROG_TEST_RUN
from qpuos._ffi.libc import CString, RawBuffer, WritableBuffer
from qpuos.bpf.asm import HasFd, Insn, Label, assemble
from qpuos.errors import ClosedResourceError, UsageError, VerifierRejected
from qpuos.kernel import syscall as _sc

__all__ = ["BpfProgram", "ProgType", "ProgramRun", "load_program"]

_INSN_SIZE = 8
_LOG_START = 1 << 16
_LOG_MAX = 1 << 24
_NAME_MAX = 15  # BPF_OBJ_NAME_LEN - 1


class ProgType(IntEnum):
    """``enum bpf_prog_type`` values qpuos loads."""

    SOCKET_FILTER = 1
    KPROBE = 2
    TRACEPOINT = 5
    PERF_EVENT = 7
    RAW_TRACEPOINT = 17
    TRACING = 26


@dataclass(frozen=True, slots=True)
class ProgramRun:
    """What ``BPF_PROG_TEST_RUN`` reported: the program's return value (of the last
    run) and the kernel's mean time per run in ns."""

    retval: int
    duration_ns: int


class BpfProgram:
    """A program the kernel has verified and loaded; ``close()`` drops this handle
    (the program lives on while an attachment or pin holds it).

    Attributes:
        name: the name given at load (at most 15 characters reach the kernel).
        prog_type: its program type.
        insn_count: its length in instruction slots.
        verifier_log: the verifier's log when the load asked for it, else "".
    """

    def __init__(self, fd: int, *, name: str, prog_type: ProgType, insn_count: int,
                 verifier_log: str = "") -> None:
        self._fd = fd
        self.name = name
        self.prog_type = prog_type
        self.insn_count = insn_count
        self.verifier_log = verifier_log

    @property
    def fd(self) -> int:
        """The program's file descriptor.

        Raises:
            ClosedResourceError: after close().
        """
        if self._fd < 0:
            raise ClosedResourceError(f"eBPF program {self.name!r} is closed; load it "
                                      "again")
        return self._fd

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._fd < 0

    def test_run(self, *, ctx: bytes = b"", data: bytes = b"",
                 repeat: int = 1) -> ProgramRun:
        """Run the program in the kernel on context ``ctx`` without attaching it
        (``BPF_PROG_TEST_RUN``), in the calling thread: helpers such as
        ``get_current_task`` see this thread.

        Args:
            ctx: the context bytes (for a raw tracepoint program: its u64 arguments).
            data: the packet, for socket filters and other networking types (at least
                an Ethernet header, 14 bytes).
            repeat: how many runs (the duration is their mean); raw tracepoint
                programs run exactly once and report no duration.

        Raises:
            UsageError: ``repeat`` below 1.
            OSError: the program type has no test run (ENOTSUPP, EINVAL).
        """
        if repeat < 1:
            raise UsageError(f"repeat must be at least 1, got {repeat}")
        attr = _ffi.ProgTestRunAttr()
        attr.prog_fd = self.fd
        attr.repeat = repeat if repeat > 1 else 0  # raw tracepoints refuse any repeat
        buf = WritableBuffer(bytearray(ctx or b"\0"))
        if ctx:
            attr.ctx_size_in = len(ctx)
            attr.ctx_in = buf.address
        pkt = WritableBuffer(bytearray(data or b"\0"))
        if data:
            attr.data_size_in = len(data)
            attr.data_in = pkt.address
        _sc.bpf(BPF_PROG_TEST_RUN, _ffi.attr_bytes(attr))
        return ProgramRun(int(attr.retval), int(attr.duration))

    def close(self) -> None:
        """Close the program fd (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _sc.close(fd)

    def __enter__(self) -> BpfProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return (f"BpfProgram({self.name!r}, {self.prog_type.name}, "
                f"{self.insn_count} insns, {state})")


def _attempt(code: WritableBuffer, n: int, license_: CString, prog_type: int,
             name: str, expected_attach_type: int, log: RawBuffer | None) -> int:
    attr = _ffi.ProgLoadAttr()
    attr.prog_type = prog_type
    attr.insn_cnt = n
    attr.insns = code.address
    attr.license = license_.address
    attr.prog_name = name.encode()[:_NAME_MAX]
    attr.expected_attach_type = expected_attach_type
    if log is not None:
        attr.log_level = 1
        attr.log_size = log.size
        attr.log_buf = log.address
    return _sc.bpf(BPF_PROG_LOAD, _ffi.attr_bytes(attr))


def _with_log(code: WritableBuffer, n: int, license_: CString, prog_type: int, name: str,
              expected_attach_type: int) -> tuple[int, str, OSError | None]:
    """Load with a verifier log; returns (fd or -1, log, the error if refused)."""
    size = _LOG_START
    while True:
        log = RawBuffer(size)
        try:
            fd = _attempt(code, n, license_, prog_type, name, expected_attach_type, log)
            return fd, _text(log), None
        except OSError as exc:
            if exc.errno == _errno.ENOSPC and size < _LOG_MAX:
                size *= 4
                continue
            return -1, _text(log), exc


def _text(log: RawBuffer) -> str:
    raw = log.take(log.size)
    return raw[:raw.find(b"\0")].decode("utf-8", "replace") if b"\0" in raw else \
        raw.decode("utf-8", "replace")


_NOT_REASON = re.compile(r"^(\d+: |processed |verification time|stack depth|cur state|"
                         r"old state|mark_precise|last_idx|parent |regs=|func#|from \d)")


def _reason(log: str) -> str:
    """The verifier's complaint: its last line that is not an instruction or state
    dump and not the closing statistics."""
    for ln in reversed(log.splitlines()):
        if ln.strip() and not _NOT_REASON.match(ln):
            return ln.strip()
    return "(no reason line in the verifier log)"


def load_program(program: bytes | Iterable[Insn | Label], *, prog_type: ProgType | int,
                 name: str = "", license: str = "GPL",
                 maps: Mapping[str, int | HasFd] | None = None,
                 expected_attach_type: int = 0, verifier_log: bool = False) -> BpfProgram:
    """Verify and load an eBPF program.

    Args:
        program: bytecode, or instructions and labels for :func:`~qpuos.bpf.asm.assemble`.
        prog_type: what the program attaches to (``ProgType.RAW_TRACEPOINT``, ...).
        name: a name shown by bpftool (truncated to 15 characters).
        license: the license string; GPL-only helpers need a GPL-compatible one.
        maps: map names the instructions refer to -> fd or map object.
        expected_attach_type: ``enum bpf_attach_type`` for types that need one.
        verifier_log: keep the verifier's log of a successful load on the program.

    Returns:
        The loaded program (a resource: close it, or use ``with``).

    Raises:
        VerifierRejected: the verifier refused it; ``.log`` holds the kernel's log.
        UsageError: empty or misaligned bytecode, or a bad instruction (see assemble).
        PermissionError: no CAP_BPF (or CAP_SYS_ADMIN) for this program type.
        OSError: another refusal of ``bpf(2)``.
    """
    code = program if isinstance(program, bytes | bytearray) else \
        assemble(program, maps=maps)
    if not code or len(code) % _INSN_SIZE:
        raise UsageError(f"eBPF bytecode must be a non-empty multiple of 8 bytes, got "
                         f"{len(code)}")
    kind = ProgType(prog_type)
    n = len(code) // _INSN_SIZE
    buf = WritableBuffer(bytearray(code))
    lic = CString(license)
    if verifier_log:
        fd, log, err = _with_log(buf, n, lic, kind, name, expected_attach_type)
    else:
        try:
            fd, log, err = _attempt(buf, n, lic, kind, name, expected_attach_type, None), \
                "", None
        except OSError as exc:
            if exc.errno not in (_errno.EACCES, _errno.EINVAL):
                raise
            fd, log, err = _with_log(buf, n, lic, kind, name, expected_attach_type)
    if err is not None:
        if err.errno in (_errno.EACCES, _errno.EINVAL) and log.strip():
            code_name = _errno.errorcode.get(err.errno or 0, str(err.errno))
            raise VerifierRejected(
                f"the verifier rejected eBPF program {name or '<unnamed>'!r} "
                f"({kind.name}, {n} insns, {code_name}): {_reason(log)}; the full log is "
                "in .log", program=name, errno=err.errno or 0, log=log) from err
        raise err
    return BpfProgram(fd, name=name, prog_type=kind, insn_count=n,
                      verifier_log=log if verifier_log else "")

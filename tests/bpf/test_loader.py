"""Loading programs: the verifier's refusal with its log, test runs, the resource rules."""

from __future__ import annotations

import errno

import pytest

from qpuos.bpf.asm import R0, R5, Label, assemble, exit_, jeq, mov
from qpuos.bpf.loader import BpfProgram, ProgType, load_program
from qpuos.errors import ClosedResourceError, QpuosError, UsageError, VerifierRejected

pytestmark = pytest.mark.needs_bpf


def test_a_valid_program_loads_runs_and_closes_once() -> None:
    prog = load_program([mov(R0, 7), exit_()], prog_type=ProgType.SOCKET_FILTER,
                        name="ret7_with_a_long_name")
    with prog:
        assert prog.fd >= 0
        assert prog.insn_count == 2
        assert prog.test_run(data=bytes(64), repeat=3).retval == 7
        assert "fd=" in repr(prog)
    assert prog.closed
    prog.close()  # idempotent
    with pytest.raises(ClosedResourceError, match=r"^eBPF program 'ret7_with_a_long_name' "
                                                  r"is closed; load it again$"):
        _ = prog.fd


def test_the_verifier_log_comes_back_on_request() -> None:
    with load_program(assemble([mov(R0, 0), exit_()]), prog_type=ProgType.SOCKET_FILTER,
                      verifier_log=True) as prog:
        assert prog.verifier_log.startswith("processed 2 insns")


def test_reading_an_uninitialized_register_is_rejected_with_the_log() -> None:
    with pytest.raises(VerifierRejected) as info:
        load_program([mov(R0, R5), exit_()], prog_type=ProgType.SOCKET_FILTER, name="bad")
    exc = info.value
    assert str(exc) == ("the verifier rejected eBPF program 'bad' (SOCKET_FILTER, 2 insns, "
                        "EACCES): R5 !read_ok; the full log is in .log")
    assert (exc.program, exc.errno) == ("bad", errno.EACCES)
    assert "0: (bf) r0 = r5" in exc.log
    assert isinstance(exc, QpuosError)
    assert not isinstance(exc, OSError)


def test_an_infinite_loop_is_rejected() -> None:
    with pytest.raises(VerifierRejected, match=r"^the verifier rejected eBPF program "
                                               r"'<unnamed>' \(RAW_TRACEPOINT, 3 insns, "
                                               r"(EINVAL|EACCES)\): infinite loop "
                                               r"detected at insn 1; the full log is in "
                                               r"\.log$") as info:
        load_program([Label("top"), mov(R0, 0), jeq(R0, 0, "top"), exit_()],
                     prog_type=ProgType.RAW_TRACEPOINT)
    assert "1: (15) if r0 == 0x0 goto pc-2" in info.value.log


def test_malformed_bytecode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^eBPF bytecode must be a non-empty multiple of 8 "
                                         r"bytes, got 12$"):
        load_program(bytes(12), prog_type=ProgType.SOCKET_FILTER)
    with pytest.raises(ValueError, match=r"99 is not a valid ProgType"):
        load_program(bytes(8), prog_type=99)


def test_adopting_an_fd_keeps_the_metadata() -> None:
    loaded = load_program([mov(R0, 0), exit_()], prog_type=ProgType.SOCKET_FILTER)
    other = BpfProgram(loaded.fd, name="adopted", prog_type=ProgType.SOCKET_FILTER,
                       insn_count=2)
    assert repr(other) == f"BpfProgram('adopted', SOCKET_FILTER, 2 insns, fd={loaded.fd})"
    other.close()
    assert repr(other).endswith("closed)")

"""``qpuos trace syscalls``: the parser the CLI mounts, its output and its errors."""

from __future__ import annotations

import argparse

import pytest

from qpuos.bpf import _cli
from qpuos.errors import UsageError


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="qpuos")
    _cli.add_trace_parser(p.add_subparsers(dest="command"))
    return p.parse_args(list(argv))


def test_options_parse_with_a_default_duration() -> None:
    args = _parse("trace", "syscalls", "--pid", "42")
    assert (args.command, args.trace_command, args.pid, args.duration) == \
        ("trace", "syscalls", 42, 1.0)


@pytest.mark.parametrize("argv", [["--pid", "0"], ["--pid", "x"], [],
                                  ["--pid", "1", "--duration", "-2"]])
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parse("trace", "syscalls", *argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_counts_print_as_aligned_name_count_lines() -> None:
    assert _cli.format_counts([("write", 1000), ("futex", 7), ("syscall 231", 1)]) == (
        "write       1000\nfutex          7\nsyscall 231    1")
    assert _cli.format_counts([]) == ""


@pytest.mark.needs_bpf
def test_the_command_prints_the_childs_calls(writer, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from qpuos.bpf import trace

    child = writer(3)
    started: list[bool] = []

    def sleep(seconds: float) -> None:  # the command's wait drives the child, once
        if not started:
            started.append(True)
            child.go()

    monkeypatch.setattr(trace.time, "sleep", sleep)
    args = _parse("trace", "syscalls", "--pid", str(child.pid), "--duration", "30")
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["write", "3"]
    assert len(lines) == 2


def test_a_missing_process_raises_for_the_cli_to_report() -> None:
    args = _parse("trace", "syscalls", "--pid", "4194305")
    with pytest.raises(UsageError, match=r"^no process with pid 4194305"):
        args.func(args)

"""The ``qpuos`` command, through ``qpuos.cli.main`` and once as a real process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import qpuos
from qpuos.bench import benchmarks_dir
from qpuos.cli import main
from qpuos.quantum.circuit import Register
from qpuos.quantum.device import builtin_device_names
from qpuos.quantum.qasm import load_qasm

DEMO = Path(qpuos.__file__).parent / "quantum" / "data" / "demo.qasm"
REPORT_KEYS = {"swaps", "depth", "two_qubit_depth", "makespan_ns", "initial_layout",
               "final_layout", "num_two_qubit_gates", "compile_seconds", "verified",
               "verify_seconds"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit code, stdout, stderr); argparse's exits become codes too."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, pattern: str) -> re.Match[str]:
    """``err`` is exactly one line, no traceback, matching the anchored ``pattern``."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    m = re.match(pattern, lines[0])
    assert m is not None, f"{lines[0]!r} does not match {pattern!r}"
    return m


def files_under(path: Path) -> set[str]:
    """Every file and folder below ``path`` (hidden temp files included), relative."""
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def check_compile_outputs(out_qasm: Path, report_json: Path) -> dict[str, Any]:
    routed = load_qasm(out_qasm)
    assert routed.num_qubits == 27
    assert routed.qregs == [Register("q", 27, 0)]
    report = json.loads(report_json.read_text(encoding="utf-8"))
    assert REPORT_KEYS - set(report) == set()
    assert report["verified"] is True
    assert report["verify_seconds"] >= 0
    assert report["swaps"] >= 0
    assert len(report["initial_layout"]) == len(report["final_layout"]) == 10
    assert set(report["initial_layout"]) - set(range(27)) == set()
    assert routed.num_two_qubit_gates == report["num_two_qubit_gates"]
    return dict(report)


# --- compile: success --------------------------------------------------------------------


def test_compile_demo_writes_circuit_report_and_plot(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_qasm, report, plot = tmp_path / "out.qasm", tmp_path / "r.json", tmp_path / "g.png"
    code, out, err = run(capsys, "compile", str(DEMO), "--device", "ibm_falcon_27",
                         "-o", str(out_qasm), "--report", str(report), "--plot", str(plot))
    assert (code, err) == (0, "")
    check_compile_outputs(out_qasm, report)
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    squeezed = "".join(out.split())  # rich wraps long lines to the console width
    for what, path in (("circuit", out_qasm), ("report", report), ("plot", plot)):
        assert f"wrote{what}:{path}" in squeezed
    assert files_under(tmp_path) == {"out.qasm", "r.json", "g.png"}


def test_compile_as_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qpuos.cli", "compile", str(DEMO), "-d", "ibm_falcon_27",
         "-o", "out.qasm", "--report", "r.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert (proc.returncode, proc.stderr) == (0, "")
    check_compile_outputs(tmp_path / "out.qasm", tmp_path / "r.json")


def test_a_real_process_fails_with_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qpuos.cli", "compile", str(DEMO), "-d", "nosuch_dev"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    one_line(proc.stderr, r"^DeviceNotFound: unknown device 'nosuch_dev'; built-in: ")


# --- compile: bad input, exit 2 ----------------------------------------------------------


def test_missing_input_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.qasm"
    code, _, err = run(capsys, "compile", str(missing), "-d", "ibm_falcon_27")
    assert code == 2
    one_line(err, rf"^FileNotFoundError: {re.escape(str(missing))}: No such file or directory$")


def test_syntax_error_names_file_line_and_column(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.qasm", HEADER + "qreg q[2];\nh q[0]\ncx q[0], q[1];\n")
    code, _, err = run(capsys, "compile", str(bad), "-d", "ibm_falcon_27")
    assert code == 2
    one_line(err, rf"^QasmSyntaxError: {re.escape(str(bad))}:5:1: expected ';' .+$")


def test_unknown_device_lists_the_built_ins(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compile", str(DEMO), "-d", "nosuch_dev")
    assert code == 2
    m = one_line(err, r"^DeviceNotFound: unknown device 'nosuch_dev'; built-in: ([^;]+);.*$")
    assert set(builtin_device_names()) - set(m.group(1).split(", ")) == set()


def test_circuit_wider_than_the_device(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    wide = write(tmp_path / "wide.qasm", HEADER + "qreg q[30];\ncx q[0], q[29];\n")
    code, _, err = run(capsys, "compile", str(wide), "-d", "ibm_falcon_27")
    assert code == 2
    one_line(err, r"^TopologyError: circuit uses 30 qubits but device 'ibm_falcon_27' has "
                  r"27; pick a larger device \(`qpuos devices`\)$")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--seed", "-1", "argument --seed: must be >= 0, got -1"),
    ("--seed", "x", "argument --seed: not an integer: 'x'"),
    ("--trials", "0", "argument --trials: must be >= 1, got 0"),
])
def test_bad_option_values_exit_2(capsys: pytest.CaptureFixture[str], option: str,
                                  value: str, message: str) -> None:
    code, _, err = run(capsys, "compile", str(DEMO), "-d", "ibm_falcon_27", option, value)
    assert code == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"qpuos compile: error: {message}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2
    assert "usage: qpuos" in out + err
    assert "exit codes:" in out + err


def test_unknown_benchmark_lists_the_available_ones(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    available = sorted(p.stem.removeprefix("bench_")
                       for p in benchmarks_dir().glob("bench_*.py"))
    assert "route" in available
    code, _, err = run(capsys, "bench", "nosuch")
    assert code == 2
    one_line(err, rf"^UsageError: unknown benchmark 'nosuch'; "
                  rf"available: {re.escape(', '.join(available))}$")


@pytest.mark.parametrize(("argv", "message"), [
    (["irq", "--dma-latency-us", "-1"], r"--dma-latency-us must be >= 0, got -1$"),
    (["irq", "--events", "0"], r"counts and intervals must be positive$"),
    (["gc", "--seconds", "0"], r"--seconds, --rate and --populations must be positive$"),
])
def test_bad_benchmark_arguments_exit_2_before_measuring(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str],
        message: str) -> None:
    out_json = tmp_path / "out.json"
    code, _, err = run(capsys, "bench", *argv, "--json", str(out_json))
    assert code == 2
    one_line(err, rf"^UsageError: {message}")
    assert not out_json.exists()


# --- nothing half-written ----------------------------------------------------------------


def test_failed_compile_writes_nothing(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    code, _, _ = run(capsys, "compile", str(DEMO), "-d", "nosuch_dev",
                     "-o", str(tmp_path / "out.qasm"), "--report", str(tmp_path / "r.json"),
                     "--plot", str(tmp_path / "g.png"))
    assert code == 2
    assert files_under(tmp_path) == set()


def test_output_into_a_missing_folder_exits_2_and_leaves_no_temp_files(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "compile", str(DEMO), "-d", "ibm_falcon_27",
                       "-o", str(tmp_path / "nodir" / "out.qasm"))
    assert code == 2
    one_line(err, r"^FileNotFoundError: .+: No such file or directory$")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("where", ["missing folder", "existing folder"])
def test_output_errors_name_the_path_given(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path, where: str) -> None:
    """The message names the user's -o path, not the temporary file beside it."""
    target = tmp_path / "nodir" / "out.qasm" if where == "missing folder" else tmp_path
    code, _, err = run(capsys, "compile", str(DEMO), "-d", "ibm_falcon_27",
                       "-o", str(target))
    assert code == 2
    line = one_line(err, r"^\w+Error: .+$").group(0)
    assert ".tmp" not in line
    assert str(target) in line


def test_a_failed_report_write_leaves_no_routed_circuit(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Exit 2 means no outputs: -o must not survive a --report that cannot be written."""
    code, _, err = run(capsys, "compile", str(DEMO), "-d", "ibm_falcon_27",
                       "-o", str(tmp_path / "out.qasm"),
                       "--report", str(tmp_path / "nodir" / "r.json"))
    assert code == 2
    one_line(err, r"^FileNotFoundError: .+$")
    assert files_under(tmp_path) == set()


def test_unsupported_plot_format_is_bad_input_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "compile", str(DEMO), "-d", "ibm_falcon_27",
                       "-o", str(tmp_path / "out.qasm"), "--report", str(tmp_path / "r.json"),
                       "--plot", str(tmp_path / "g.bmp"))
    assert code == 2
    one_line(err, r"^UsageError: .*'bmp'.*$")
    assert files_under(tmp_path) == set()


# --- devices, version --------------------------------------------------------------------


def test_devices_lists_every_built_in(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "devices")
    assert (code, err) == (0, "")
    assert {n for n in builtin_device_names() if n not in out} == set()


def test_devices_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "devices", "--json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    by_name = {row["name"]: row for row in rows}
    assert set(builtin_device_names()) ^ set(by_name) == set()
    assert {n for n, row in by_name.items()
            if not (isinstance(row["num_qubits"], int) and row["num_qubits"] > 0)} == set()
    assert by_name["ibm_falcon_27"]["num_qubits"] == 27


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"qpuos {qpuos.__version__}\n")


def test_version_as_a_real_process() -> None:
    proc = subprocess.run([sys.executable, "-m", "qpuos.cli", "--version"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert (proc.returncode, proc.stdout) == (0, f"qpuos {qpuos.__version__}\n")


def test_no_optimize_keeps_every_inserted_swap(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    out, rep = tmp_path / "out.qasm", tmp_path / "r.json"
    code, _, _ = run(capsys, "compile", str(DEMO), "--device", "ibm_falcon_27",
                     "--no-optimize", "-o", str(out), "--report", str(rep))
    assert code == 0
    report = json.loads(rep.read_text())
    written = load_qasm(out).count_ops().get("swap", 0)
    assert report["verified"] is True
    assert written == report["swaps"]


# --- qpuos run / qpuos demo ------------------------------------------------------------

BELL = HEADER + "qreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"


def test_run_prints_counts_and_writes_json(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    src = write(tmp_path / "bell.qasm", BELL)
    out = tmp_path / "r.json"
    code, stdout, err = run(capsys, "run", str(src), "--device", "ibm_falcon_27",
                            "--shots", "400", "--seed", "3", "--json", str(out))
    assert (code, err) == (0, "")
    assert re.search(r"^  (00|11)  \d+$", stdout, re.M)
    assert re.search(r"issue lateness p50 [\d.]+ us, p99 [\d.]+ us", stdout)
    report = json.loads(out.read_text())
    assert set(report["counts"]) <= {"00", "11"} and sum(report["counts"].values()) == 400
    assert {"p50", "p99", "max"} <= set(report["lateness_ns"])
    assert {"end_to_end_ns", "ring_latency_ns", "dilation", "gc", "realtime"} <= set(report)
    assert files_under(tmp_path) == {"bell.qasm", "r.json"}


@pytest.mark.parametrize(("argv", "pattern"), [
    (["--device", "nowhere_9"], r"^DeviceNotFound: "),
    (["--device", "line:2", "--shots", "0"], r"^usage: "),
])
def test_run_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, argv: list[str],
                                             pattern: str) -> None:
    src = write(tmp_path / "bell.qasm", BELL)
    code, _, err = run(capsys, "run", str(src), *argv)
    assert code == 2
    assert re.search(pattern, err, re.M), err
    assert "Traceback" not in err


def test_run_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "run", str(tmp_path / "none.qasm"), "--device", "line:2")
    assert code == 2
    one_line(err, r"^FileNotFoundError: .*none\.qasm: ")


def test_demo_checks_every_layer_and_saves_the_charts(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    code, out, err = run(capsys, "demo", "--out", str(tmp_path), "--shots", "500",
                         "--no-pin")
    assert code == 0, out + err
    for figure in ("qubits / SWAPs", "issue lateness p50 / p99", "first record",
                   "GC runs so far", "chi-square / bound"):
        assert figure in out
    assert out.count("pass") == 2
    for name in ("demo_ghz_gantt.png", "demo_qft_gantt.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_demo_into_a_file_exits_2_before_any_work(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "")
    code, out, err = run(capsys, "demo", "--out", str(blocker / "charts"))
    assert (code, out) == (2, "")
    one_line(err, r"^NotADirectoryError: .*file/charts: ")

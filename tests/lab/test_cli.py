"""``qpuos lab`` through its parser: bad names exit 2, a run writes both files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from qpuos.lab._cli import add_lab_parser, lab_main


def test_unknown_probe_exits_2_listing_valid_names(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["--only", "gpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("UsageError: unknown probe name(s): gpu; valid: concurrency, ")
    assert not (tmp_path / "o").exists(), "nothing written on bad input"


def test_parser_options() -> None:
    p = argparse.ArgumentParser(prog="qpuos")
    add_lab_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["lab", "--quick", "--only", "ffi", "--out", "d",
                         "--bench-dir", "b"])
    assert (args.quick, args.only, args.out, args.bench_dir) == (True, "ffi", "d", "b")
    with pytest.raises(SystemExit):
        p.parse_args(["lab"])                         # --out is required


def test_quick_run_of_one_probe_writes_the_report(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    out = tmp_path / "lab"
    assert lab_main(["--quick", "--only", "specialization", "--out", str(out),
                     "--bench-dir", str(tmp_path)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert [p["probe"] for p in doc["probes"]] == ["specialization"]
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out


def test_unwritable_out_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert lab_main(["--quick", "--only", "specialization", "--out",
                     str(blocker / "sub")]) == 2

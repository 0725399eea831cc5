"""``qpuos cluster run|status`` through the parser ``add_cluster_parser`` builds, with
the error handling of ``qpuos`` itself (``QpuosError`` -> ``ClassName: message``, 2)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from qpuos.cluster._cli import add_cluster_parser
from qpuos.errors import QpuosError

GHZ = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[6];
creg c[6];
h q[5];
cx q[5],q[4];
cx q[4],q[0];
cx q[0],q[1];
measure q -> c;
"""


def qpuos(argv: list[str]) -> int:
    """What ``qpuos.cli.main`` does with a command: parse, call, map errors to 2."""
    p = argparse.ArgumentParser(prog="qpuos")
    add_cluster_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except QpuosError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


@pytest.fixture
def ghz_file(tmp_path: Path) -> Path:
    path = tmp_path / "ghz.qasm"
    path.write_text(GHZ)
    return path


def test_run_prints_counts_and_sync_statistics(ghz_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = qpuos(["cluster", "run", str(ghz_file), "--shards", "4", "--shots", "400",
                  "--mode", "barrier", "--seed", "3", "--inline"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"{ghz_file}: 6 qubits over 4 shard(s), mode barrier, 400 shots\n")
    rows = dict(line.split()[:2] for line in out.splitlines()[1:3])
    assert set(rows) == {"000000", "110011"}
    assert sum(int(v.replace(",", "")) for v in rows.values()) == 400
    assert "sync statistics:" in out
    assert "  barrier waits    3\n" in out   # two swaps, then the final wait


def test_run_json_and_a_memory_limit_error(ghz_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert qpuos(["cluster", "run", str(ghz_file), "--shards", "2", "--shots", "50",
                  "--inline", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sum(doc["counts"].values()) == 50
    assert doc["sync"]["mode"] == "pairwise"
    assert doc["sync"]["bytes_exchanged"] == doc["sync"]["swaps"] * 8 * 2**6
    code = qpuos(["cluster", "run", str(ghz_file), "--shards", "1", "--memory-limit", "1K",
                  "--inline"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("ShardError: a register of 6 qubits over 1 shard(s) needs 2,048 bytes "
                   "per shard, over the limit of 1,024; use 2 shards (1,024 bytes each)\n")


def test_bad_sizes_and_files_are_refused(ghz_file: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        qpuos(["cluster", "run", str(ghz_file), "--memory-limit", "lots"])
    assert exc.value.code == 2
    assert "not a size: 'lots'" in capsys.readouterr().err
    assert qpuos(["cluster", "run", str(ghz_file), "--shards", "3", "--inline"]) == 2
    assert capsys.readouterr().err.startswith("UsageError: shards must be a power of two")


def test_status_lists_the_ray_nodes(ray_session: Any,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert qpuos(["cluster", "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ray"] == ray_session.__version__
    assert [n["alive"] for n in doc["nodes"]] == [True]
    assert doc["cpus"]["total"] == 2.0
    assert qpuos(["cluster", "status"]) == 0
    assert "1 of 1 node(s) alive, CPUs" in capsys.readouterr().out

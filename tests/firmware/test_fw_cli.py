"""``qpuos fw ...`` end to end on loopback: keygen, certs, sign, provision, serve, push,
update, status (named test_fw_cli: test_cli.py exists in other layers)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qpuos.errors import FirmwareTransportError, UsageError
from qpuos.firmware._cli import add_fw_parser
from tests.firmware._fw_world import image_bytes


def _fw(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="qpuos")
    add_fw_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fw", *argv])
    return int(args.func(args))


_SERVE = ("import sys; from qpuos.firmware._cli import add_fw_parser; import argparse; "
          "p = argparse.ArgumentParser(); add_fw_parser(p.add_subparsers()); "
          "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")


def _lines(proc: subprocess.Popen[str], n: int, *, timeout: float = 60.0) -> list[str]:
    """``n`` lines of ``proc``'s stdout, failing (not hanging) if they do not come."""
    import threading

    assert proc.stdout is not None
    out = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(out.readline() for _ in range(n)),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"got {lines} of {n} lines in {timeout} s"
    return lines


def test_the_whole_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("v1.bin").write_bytes(image_bytes(1))
    Path("v2.bin").write_bytes(image_bytes(2))
    assert _fw("keygen") == 0
    assert _fw("certs", "--device", "dev1") == 0
    assert _fw("sign", "v1.bin", "--version", "1.0.0", "--chunk-size", "4096") == 0
    assert _fw("provision", "dev1", "--root", "fw-repo/metadata/root.json",
               "--image", "v1.bin", "--version", "1.0.0") == 0
    out = capsys.readouterr().out
    assert "threshold 1 of 1" in out and "provisioned dev1: controller 1.0.0" in out
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", _SERVE, "fw", "serve", "--port",
                               str(port), "--mtls", "--workers", "2"],
                              stdout=subprocess.PIPE, text=True)
    try:
        lines = _lines(server, 2)
        url = f"qfw://127.0.0.1:{port}"
        assert {line.split()[3] for line in lines} == {url}, lines
        assert len({line.split()[5] for line in lines}) == 2  # two pids share the port
        assert _fw("push", "v2.bin", "--version", "1.1.0", "--chunk-size", "4096") == 0
        with pytest.raises(FirmwareTransportError):  # mutual TLS: no certificate, no talk
            _fw("update", "--server", url, "--device-id", "dev1")
        assert _fw("update", "--server", url, "--device-id", "dev1", "--cert",
                   "fw-certs/dev1.pem", "--key", "fw-certs/dev1.key") == 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    out = capsys.readouterr().out
    assert "dev1: updated, running 1.1.0 (was 1.0.0); chunks fetched 6, resumed 0" in out
    assert _fw("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rollout"] is None
    rows = status["devices"]
    assert [(r["device_id"], r["current"], r["last_result"]) for r in rows] == \
        [("dev1", "1.1.0", "updated")]
    assert _fw("status", "--device-dir", "dev1") == 0
    assert json.loads(capsys.readouterr().out)["confirmed"] == "b"
    with pytest.raises(UsageError, match=r"^controller version 1\.0\.0 is not above"):
        _fw("sign", "v1.bin", "--version", "1.0.0")
    assert os.path.exists("fw-repo/fleet.db")


def test_bad_arguments_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _fw("sign", "x.bin")
    assert info.value.code == 2
    assert "--version" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"--workers > 1 shares one port"):
        _fw("serve", "--workers", "2", "--port", "0", "--certs", "/nonexistent")


def test_a_staged_push_and_its_status(registry_where: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from qpuos.firmware.fleet import open_registry

    monkeypatch.chdir(tmp_path)
    Path("v1.bin").write_bytes(image_bytes(1))
    assert _fw("keygen") == 0
    with open_registry(registry_where) as reg:
        for i in range(10):
            reg.seen(f"dev{i}", version="0.9")
    with pytest.raises(UsageError, match=r"--max-failure-rate applies to a staged"):
        _fw("push", "v1.bin", "--version", "1.0.0", "--max-failure-rate", "0.1")
    with pytest.raises(UsageError, match=r"--max-failure-rate 1.5 is outside"):
        _fw("push", "v1.bin", "--version", "1.0.0", "--stages", "100",
            "--max-failure-rate", "1.5")
    capsys.readouterr()
    assert _fw("push", "v1.bin", "--version", "1.0.0", "--registry", registry_where,
               "--stages", "20,100", "--max-failure-rate", "0.4") == 0
    assert "over 10 device(s) in stages 20,100% (halts above 40% failures): running, " \
        "stage 1 of 2 (20%): 0 of 2 updated, 0 failed" in capsys.readouterr().out
    with open_registry(registry_where) as reg:
        reg.report("dev0", version="1.0.0", result="updated")
        reg.report("dev1", version="1.0.0", result="updated")  # stage 2 opens
        for dev in ("dev2", "dev3", "dev4", "dev5"):
            reg.report(dev, version="0.9", result="rolled-back")
    assert _fw("status", "--registry", registry_where) == 0
    out = capsys.readouterr().out
    assert out.startswith("rollout 1.0.0: halted, stage 2 of 2 (100%): 0 of 8 updated, "
                          "4 failed; stage 2 of 2 (100%): 4 of 8 devices failed"), out
    assert _fw("status", "--registry", registry_where, "--json") == 0
    state = json.loads(capsys.readouterr().out)["rollout"]
    assert (state["state"], state["stage"], state["failed"], state["members"]) == \
        ("halted", 1, 4, 10)

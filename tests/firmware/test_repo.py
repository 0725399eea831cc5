"""The offline tools: keygen, sign_image, rotate_keys, refresh_timestamp."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from qpuos.errors import UsageError
from qpuos.firmware import repo as fwrepo
from qpuos.firmware.image import Envelope, Root, Snapshot, Targets, Timestamp, verify_envelope


def _env(repo: Path, role: str) -> Envelope:
    return Envelope.parse((repo / "metadata" / f"{role}.json").read_bytes(), role)


def test_keygen_then_sign_publishes_a_consistent_signed_chain(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    root = fwrepo.keygen(repo, root_keys=3, root_threshold=2)
    assert root.roles["root"].threshold == 2 and len(root.roles["root"].keyids) == 3
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (repo / "keys").iterdir()}
    assert set(modes.values()) == {0o600}
    assert len(modes) == 6
    (tmp_path / "fw").write_bytes(b"z" * 10_000)
    entry = fwrepo.sign_image(repo, tmp_path / "fw", version="2.0", chunk_size=4096)
    assert (repo / "images" / entry.sha256).read_bytes() == b"z" * 10_000
    for role in ("root", "targets", "snapshot", "timestamp"):
        verify_envelope(_env(repo, role), root, role)
    ts = Timestamp.from_signed(_env(repo, "timestamp").signed)
    snap = Snapshot.from_signed(_env(repo, "snapshot").signed)
    assert ts.snapshot.version == snap.version
    assert Targets.from_signed(_env(repo, "targets").signed).targets["controller"] == entry


def test_sign_refuses_a_version_that_does_not_go_up(tmp_path: Path) -> None:
    fwrepo.keygen(tmp_path / "r")
    (tmp_path / "fw").write_bytes(b"a")
    fwrepo.sign_image(tmp_path / "r", tmp_path / "fw", version="1.2")
    with pytest.raises(UsageError, match=r"^controller version 1\.1 is not above the "
                       r"published 1\.2; devices would refuse it as a rollback$"):
        fwrepo.sign_image(tmp_path / "r", tmp_path / "fw", version="1.1")
    with pytest.raises(UsageError, match=r"already holds keys"):
        fwrepo.keygen(tmp_path / "r")


def test_rotation_publishes_root_two_signed_by_old_and_new_keys(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    first = fwrepo.keygen(repo)
    second = fwrepo.rotate_keys(repo, "root", count=2, threshold=2)
    env = Envelope.parse((repo / "metadata" / "2.root.json").read_bytes(), "root")
    verify_envelope(env, first, "root")
    verify_envelope(env, second, "root")
    assert Root.from_signed(env.signed).version == 2
    assert set(second.roles["root"].keyids).isdisjoint(first.roles["root"].keyids)


def test_refresh_timestamp_bumps_its_version(tmp_path: Path) -> None:
    fwrepo.keygen(tmp_path / "r")
    with pytest.raises(UsageError, match=r"has no published image"):
        fwrepo.refresh_timestamp(tmp_path / "r")
    (tmp_path / "fw").write_bytes(b"a")
    fwrepo.sign_image(tmp_path / "r", tmp_path / "fw", version="1")
    assert fwrepo.refresh_timestamp(tmp_path / "r") == 2

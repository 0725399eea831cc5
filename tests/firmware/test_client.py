"""The device agent against each TUF attack class that applies, and transfer faults."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qpuos.errors import (
    ChunkError,
    ExpiredMetadata,
    FirmwareTransportError,
    LengthExceeded,
    MetadataMismatch,
    RollbackAttack,
    SignatureError,
)
from qpuos.firmware import repo as fwrepo
from qpuos.firmware.client import DirectoryFetcher
from qpuos.firmware.image import (
    Envelope,
    MetaFile,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    sign_metadata,
)
from qpuos.firmware.slots import SlotStore
from tests.firmware._fw_world import CHUNK, World, image_bytes


def _running(world: World) -> tuple[str, bytes]:
    booted = SlotStore(world.device / "slots").boot()
    data = (world.device / "slots" / f"slot-{booted.slot}.img").read_bytes()
    return booted.record.version, data


def _publish_v3(world: World, tmp: Path) -> None:
    (tmp / "v3.bin").write_bytes(image_bytes(3))
    fwrepo.sign_image(world.repo, tmp / "v3.bin", version="1.2.0", chunk_size=CHUNK)


def _forge_targets(world: World, entry: TargetFile, *, length: int | None = None) -> None:
    """Publish targets listing ``entry`` with the repository's own online keys (the
    attacker holds them, or the release was a mistake)."""
    meta = world.repo / "metadata"
    old = [Envelope.parse((meta / f"{r}.json").read_bytes(), r)
           for r in ("targets", "snapshot", "timestamp")]
    now = int(time.time())
    t = Targets(old[0].version + 1, now + 3600, {"controller": entry})
    t_bytes = sign_metadata(t.to_signed(), fwrepo.load_keys(world.repo, "targets"))
    s = Snapshot(old[1].version + 1, now + 3600, MetaFile.of(t.version, t_bytes))
    s_bytes = sign_metadata(s.to_signed(), fwrepo.load_keys(world.repo, "snapshot"))
    ts = Timestamp(old[2].version + 1, now + 3600, MetaFile.of(s.version, s_bytes))
    for role, data in (("targets", t_bytes), ("snapshot", s_bytes),
                       ("timestamp", sign_metadata(ts.to_signed(),
                                                   fwrepo.load_keys(world.repo, "timestamp")))):
        (meta / f"{role}.json").write_bytes(data)


def test_update_installs_confirms_and_then_is_current(world: World) -> None:
    result = world.agent().update()
    assert (result.status, result.version, result.previous) == ("updated", "1.1.0", "1.0.0")
    assert (result.chunks_fetched, result.chunks_resumed, result.chunks_refetched) == (6, 0, 0)
    assert _running(world) == ("1.1.0", world.v2)
    assert SlotStore(world.device / "slots").state().confirmed == "b"
    assert world.agent().update().status == "current"


def test_arbitrary_image_is_refused_chunk_by_chunk(world: World) -> None:
    (world.repo / "images" / world.t2.sha256).write_bytes(image_bytes(9))
    with pytest.raises(ChunkError, match=r"^chunk 0 of controller 1\.1\.0 \(4096 bytes, "
                       r"sha256 [0-9a-f]{16}\.\.\.\) does not match its signed hash"):
        world.agent(max_chunk_retries=2).update()
    assert _running(world) == ("1.0.0", world.v1)


def test_metadata_rollback_is_refused(world: World, tmp_path: Path) -> None:
    world.agent().refresh()
    saved = tmp_path / "saved"
    shutil.copytree(world.repo / "metadata", saved)
    _publish_v3(world, tmp_path)
    world.agent().refresh()
    shutil.rmtree(world.repo / "metadata")
    shutil.copytree(saved, world.repo / "metadata")
    with pytest.raises(RollbackAttack, match=r"^timestamp v2 \(snapshot v2\) is older than "
                       r"the trusted v3 \(snapshot v3\); refused$"):
        world.agent().refresh()


def test_image_version_going_back_is_refused(world: World) -> None:
    world.agent().update()
    _forge_targets(world, world.t1)
    with pytest.raises(RollbackAttack, match=r"^controller 1\.0\.0 is older than the "
                       r"running 1\.1\.0; refused$"):
        world.agent().update()
    assert _running(world) == ("1.1.0", world.v2)


def test_freeze_attack_expired_timestamp_is_refused(world: World) -> None:
    later = time.time() + 2 * 86400
    with pytest.raises(ExpiredMetadata, match=r"^timestamp metadata v2 expired at "):
        world.agent(clock=lambda: later).update()
    assert _running(world) == ("1.0.0", world.v1)


class _Padding(DirectoryFetcher):
    """Sends endless data: every answer gets a megabyte more than asked."""

    def fetch_metadata(self, name: str, *, max_length: int) -> bytes | None:
        data = super().fetch_metadata(name, max_length=max_length)
        return None if data is None else data + b" " * (1 << 20)

    def fetch_chunk(self, sha256: str, *, offset: int, length: int) -> bytes:
        return super().fetch_chunk(sha256, offset=offset, length=length) + b"\0"


def test_endless_data_is_cut_off(world: World) -> None:
    with pytest.raises(LengthExceeded, match=r"^timestamp\.json is longer than its bound "
                       r"of 65536 bytes; refused \(endless data\)$"):
        world.agent(fetcher=_Padding(world.repo)).update()

    class ChunksOnly(_Padding):
        def fetch_metadata(self, name: str, *, max_length: int) -> bytes | None:
            return DirectoryFetcher.fetch_metadata(self, name, max_length=max_length)

    with pytest.raises(LengthExceeded, match=r"^chunk 0 came with 4097 bytes, 4096 were"):
        world.agent(fetcher=ChunksOnly(world.repo)).update()
    with pytest.raises(LengthExceeded, match=r"is 20603 bytes, over this device's 20000"):
        world.agent(max_image_bytes=20_000).update()
    assert _running(world) == ("1.0.0", world.v1)


def test_mix_and_match_snapshot_is_refused(world: World, tmp_path: Path) -> None:
    old_snapshot = (world.repo / "metadata" / "snapshot.json").read_bytes()
    _publish_v3(world, tmp_path)
    (world.repo / "metadata" / "snapshot.json").write_bytes(old_snapshot)
    with pytest.raises(MetadataMismatch, match=r"^snapshot\.json does not match the hash "
                       r"and length the role above signed; refused \(mix-and-match\)$"):
        world.agent().update()


def test_wrong_key_is_refused(world: World) -> None:
    path = world.repo / "metadata" / "timestamp.json"
    env = Envelope.parse(path.read_bytes(), "timestamp")
    path.write_bytes(sign_metadata(env.signed, [Ed25519PrivateKey.generate()]))
    with pytest.raises(SignatureError, match=r"^timestamp metadata v2 has 0 valid "):
        world.agent().update()


def test_root_rotation_is_followed_and_too_few_root_keys_refused(world: World) -> None:
    fwrepo.rotate_keys(world.repo, "timestamp")
    fwrepo.refresh_timestamp(world.repo)
    assert world.agent().update().status == "updated"
    trusted = Envelope.parse((world.device / "trust" / "root.json").read_bytes(), "root")
    assert trusted.version == 2
    fwrepo.rotate_keys(world.repo, "root", count=2, threshold=2)
    third = world.repo / "metadata" / "3.root.json"
    env = Envelope.parse(third.read_bytes(), "root")
    newest = fwrepo.load_keys(world.repo, "root")[0]  # one of the two new keys only
    old_root = fwrepo.load_keys(world.repo, "root")[2]
    third.write_bytes(sign_metadata(env.signed, [newest, old_root]))
    with pytest.raises(SignatureError, match=r"^root metadata v3 has 1 valid signature\(s\) "
                       r"from its 2 trusted key\(s\), needs 2; "):
        world.agent().refresh()


class _Dropping(DirectoryFetcher):
    """The connection drops after ``budget`` chunks."""

    def __init__(self, repo: Path, budget: int) -> None:
        super().__init__(repo)
        self.budget = budget

    def fetch_chunk(self, sha256: str, *, offset: int, length: int) -> bytes:
        if self.budget == 0:
            raise FirmwareTransportError("connection reset by peer")
        self.budget -= 1
        return super().fetch_chunk(sha256, offset=offset, length=length)


def test_interrupted_download_resumes_at_the_next_chunk(world: World) -> None:
    with pytest.raises(FirmwareTransportError):
        world.agent(fetcher=_Dropping(world.repo, 4)).update()
    assert _running(world) == ("1.0.0", world.v1)
    result = world.agent().update()
    assert (result.status, result.chunks_resumed, result.chunks_fetched) == ("updated", 4, 2)
    assert _running(world) == ("1.1.0", world.v2)


def test_a_partial_chunk_on_disk_is_cut_and_refetched(world: World) -> None:
    with pytest.raises(FirmwareTransportError):
        world.agent(fetcher=_Dropping(world.repo, 3)).update()
    part = next((world.device / "slots").glob("*.part"))
    with open(part, "ab") as fh:  # a torn write of half of chunk 3
        fh.write(world.v2[3 * CHUNK:3 * CHUNK + 100])
    result = world.agent().update()
    assert (result.chunks_resumed, result.chunks_fetched) == (3, 3)
    assert _running(world) == ("1.1.0", world.v2)


class _Corrupting(DirectoryFetcher):
    """Flips one byte of chunk 2 the first time it is sent."""

    sent = 0

    def fetch_chunk(self, sha256: str, *, offset: int, length: int) -> bytes:
        data = bytearray(super().fetch_chunk(sha256, offset=offset, length=length))
        if offset == 2 * CHUNK and not self.sent:
            self.sent = 1
            data[17] ^= 0x40
        return bytes(data)


def test_corrupt_byte_is_refused_and_refetched(world: World) -> None:
    result = world.agent(fetcher=_Corrupting(world.repo)).update()
    assert (result.status, result.chunks_refetched, result.chunks_fetched) == ("updated", 1, 7)
    assert hashlib.sha256(_running(world)[1]).hexdigest() == world.t2.sha256


def test_failed_health_check_rolls_back(world: World) -> None:
    seen: list[str] = []

    def unhealthy(booted: object) -> bool:
        seen.append(getattr(booted, "mode", ""))
        return False

    result = world.agent(health_check=unhealthy).update()
    assert (result.status, result.version, seen) == ("rolled-back", "1.0.0", ["trial"])
    assert _running(world) == ("1.0.0", world.v1)


def test_a_root_file_holding_an_older_version_is_refused(world: World) -> None:
    meta = world.repo / "metadata"
    shutil.copy(meta / "1.root.json", meta / "2.root.json")  # replayed under a new name
    with pytest.raises(RollbackAttack, match=r"^2\.root\.json holds root v1; refused$"):
        world.agent().refresh()


def test_an_image_newer_than_the_registry_allows_is_held(world: World) -> None:
    """A staged rollout that has not reached this device (or was halted) holds it."""
    result = world.agent().update(allowed="1.0.0")
    assert (result.status, result.version, result.previous) == ("held", "1.0.0", "1.0.0")
    assert _running(world) == ("1.0.0", world.v1)
    assert world.agent().update(allowed="1.1.0").status == "updated"

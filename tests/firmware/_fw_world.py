"""Shared helpers of the firmware tests: a signed repository with two images, and a
device provisioned with the first (imported by name: ``conftest`` is not unique)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qpuos.firmware import repo as fwrepo
from qpuos.firmware.client import DirectoryFetcher, UpdateAgent, provision_device
from qpuos.firmware.image import TargetFile

CHUNK = 4096


def image_bytes(tag: int, size: int = 5 * CHUNK + 123) -> bytes:
    """A deterministic image whose every chunk differs from the other versions'."""
    return bytes((i * 7 + tag * 13 + i // 251) % 256 for i in range(size))


@dataclass
class World:
    """A repository at v2 of the image, and a device running v1."""

    repo: Path
    device: Path
    v1: bytes
    v2: bytes
    t1: TargetFile
    t2: TargetFile

    def agent(self, **kw: object) -> UpdateAgent:
        fetcher = kw.pop("fetcher", None) or DirectoryFetcher(self.repo)
        return UpdateAgent(self.device, fetcher, **kw)  # type: ignore[arg-type]


def build_world(base: Path) -> World:
    repo = base / "repo"
    fwrepo.keygen(repo)
    v1, v2 = image_bytes(1), image_bytes(2)
    (base / "v1.bin").write_bytes(v1)
    (base / "v2.bin").write_bytes(v2)
    t1 = fwrepo.sign_image(repo, base / "v1.bin", version="1.0.0", chunk_size=CHUNK)
    device = base / "device"
    provision_device(device, (repo / "metadata" / "root.json").read_bytes(), v1, t1)
    t2 = fwrepo.sign_image(repo, base / "v2.bin", version="1.1.0", chunk_size=CHUNK)
    return World(repo, device, v1, v2, t1, t2)

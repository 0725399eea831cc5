"""The device agent: verify the metadata chain, download by verified chunks with resume,
install to the inactive slot, trial-boot, health-check, confirm or roll back.

The metadata walk follows TUF's client workflow (specification section 5), trimmed to
four roles:

1. root: fetch ``N+1.root.json`` while it exists; each must be signed by a threshold of
   the trusted root's keys and of its own, and carry exactly version N+1. The final root
   must not be expired.
2. timestamp: signed by the root's timestamp keys, version never lower than the trusted
   one (rollback), not expired (freeze).
3. snapshot: exactly the length, hash and version the timestamp names (mix-and-match),
   signed, never going back, not expired.
4. targets: likewise against the snapshot.
5. the image: its firmware version must not be lower than the running one (rollback);
   each chunk is fetched with its exact length (endless data) and checked against its
   signed hash before it is written; a bad chunk is dropped and fetched again.

Trusted metadata lives in ``DIR/trust/`` and is written through the same hooked
:class:`~qpuos.firmware._disk.Disk` as the slots, so the power-cut harness covers it.
Transport is a :class:`Fetcher`: :class:`DirectoryFetcher` reads a repository folder;
:mod:`qpuos.firmware.server` provides the TLS one.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qpuos.errors import (
    ChunkError,
    FirmwareError,
    LengthExceeded,
    MetadataMismatch,
    RollbackAttack,
    SlotError,
)
from qpuos.firmware._disk import Disk, WriteHook
from qpuos.firmware.image import (
    Envelope,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    check_fresh,
    parse_version,
    verify_envelope,
)
from qpuos.firmware.slots import BootedImage, SlotStore

__all__ = ["DirectoryFetcher", "Fetcher", "UpdateAgent", "UpdateResult", "provision_device"]

#: Bounds on metadata whose length nothing signed gives (TUF's "endless data" defence).
MAX_ROOT_BYTES = 512 * 1024
MAX_TIMESTAMP_BYTES = 64 * 1024
MAX_ROOT_ROTATIONS = 1024


class Fetcher(Protocol):
    """Where the agent gets metadata and image bytes from."""

    def fetch_metadata(self, name: str, *, max_length: int) -> bytes | None:
        """At most ``max_length + 1`` bytes of metadata file ``name``, None if absent."""
        ...

    def fetch_chunk(self, sha256: str, *, offset: int, length: int) -> bytes:
        """Bytes ``offset`` .. ``offset + length`` of the image with that hash."""
        ...


class DirectoryFetcher:
    """A :class:`Fetcher` over a repository folder (see :mod:`qpuos.firmware.repo`).

    >>> DirectoryFetcher("/nonexistent").fetch_metadata("timestamp.json", max_length=10)
    """

    def __init__(self, repo: str | os.PathLike[str]) -> None:
        self.repo = Path(repo)

    def fetch_metadata(self, name: str, *, max_length: int) -> bytes | None:
        """Read at most ``max_length + 1`` bytes of ``metadata/name``."""
        try:
            with open(self.repo / "metadata" / Path(name).name, "rb") as fh:
                return fh.read(max_length + 1)
        except FileNotFoundError:
            return None

    def fetch_chunk(self, sha256: str, *, offset: int, length: int) -> bytes:
        """Read a range of ``images/SHA256``.

        Raises:
            FirmwareError: the image is not in the repository.
        """
        try:
            with open(self.repo / "images" / Path(sha256).name, "rb") as fh:
                return os.pread(fh.fileno(), length, offset)
        except FileNotFoundError:
            raise FirmwareError(f"image {sha256[:16]}... is not in {self.repo}; "
                                "re-run `qpuos fw sign`") from None


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What one :meth:`UpdateAgent.update` did.

    ``status`` is "current" (nothing newer), "updated" (new image confirmed),
    "rolled-back" (the new image failed its health check; the old one runs) or "held"
    (a newer image is signed but the fleet registry has not assigned it to this device
    yet, e.g. a staged rollout that has not reached it or was halted).
    """

    status: str
    version: str
    previous: str
    chunks_fetched: int = 0
    chunks_resumed: int = 0
    chunks_refetched: int = 0


def provision_device(device_dir: str | os.PathLike[str], root_json: bytes, image: bytes,
                     target: TargetFile) -> None:
    """Set up a device folder: the trusted root and the factory image in slot a.

    Raises:
        MetadataError: ``root_json`` is not root metadata signed by its own keys.
        SlotError: the image does not match ``target``.
    """
    env = Envelope.parse(root_json, "root")
    verify_envelope(env, Root.from_signed(env.signed), "root")
    base = Path(device_dir)
    SlotStore.provision(base / "slots", image, target)
    (base / "trust").mkdir(exist_ok=True)
    Disk().replace_file(base / "trust" / "root.json", root_json)


class UpdateAgent:
    """The device side of an update (see the module docstring for the steps).

    Args:
        device_dir: the folder made by :func:`provision_device`.
        fetcher: the transport.
        name: the target name this device installs.
        health_check: run on the trial boot; False or an exception rolls back.
        write_hook: called before each write point (power-cut and disk-full tests).
        clock: epoch seconds, for expiry checks.
        max_chunk_retries: re-fetches of one bad chunk before giving up.
        max_image_bytes: largest image the device accepts, whatever targets says.

    >>> import tempfile
    >>> from qpuos.firmware import repo
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = repo.keygen(d + "/r")
    ...     _ = Path(d, "fw").write_bytes(b"v1")
    ...     t = repo.sign_image(d + "/r", Path(d, "fw"), version="1.0")
    ...     provision_device(d + "/dev", Path(d, "r/metadata/root.json").read_bytes(),
    ...                      b"v1", t)
    ...     UpdateAgent(d + "/dev", DirectoryFetcher(d + "/r")).update().status
    'current'
    """

    def __init__(self, device_dir: str | os.PathLike[str], fetcher: Fetcher, *,
                 name: str = "controller",
                 health_check: Callable[[BootedImage], bool] | None = None,
                 write_hook: WriteHook | None = None,
                 clock: Callable[[], float] = time.time, max_chunk_retries: int = 3,
                 max_image_bytes: int = 1 << 30) -> None:
        self.base = Path(device_dir)
        self.fetcher = fetcher
        self.name = name
        self.slots = SlotStore(self.base / "slots", write_hook=write_hook)
        self._disk = Disk(write_hook)
        self._health = health_check or (lambda booted: True)
        self._clock = clock
        self._retries = max_chunk_retries
        self._max_image = max_image_bytes

    def running_version(self) -> str:
        """The confirmed slot's firmware version (read-only: boots nothing)."""
        state = self.slots.state()
        rec = state.slots[state.confirmed]
        if rec is None:
            raise SlotError(f"{self.slots.root}: the confirmed slot has no image record")
        return rec.version

    # -- trusted metadata ------------------------------------------------------------
    def _trusted(self, role: str) -> Envelope | None:
        try:
            return Envelope.parse((self.base / "trust" / f"{role}.json").read_bytes(), role)
        except FileNotFoundError:
            return None

    def _trust(self, role: str, data: bytes) -> None:
        self._disk.replace_file(self.base / "trust" / f"{role}.json", data)

    def _bounded(self, name: str, bound: int) -> bytes:
        data = self.fetcher.fetch_metadata(name, max_length=bound)
        if data is None:
            raise FirmwareError(f"the server has no {name}; has anything been signed?")
        if len(data) > bound:
            raise LengthExceeded(f"{name} is longer than its bound of {bound} bytes; "
                                 "refused (endless data)")
        return data

    def _update_root(self, now: float) -> Root:
        """Step 1: walk the root rotation chain."""
        env = self._trusted("root")
        if env is None:
            raise FirmwareError(f"{self.base} has no trusted root; provision the device")
        root = Root.from_signed(env.signed)
        for _ in range(MAX_ROOT_ROTATIONS):
            data = self.fetcher.fetch_metadata(f"{root.version + 1}.root.json",
                                               max_length=MAX_ROOT_BYTES)
            if data is None:
                break
            if len(data) > MAX_ROOT_BYTES:
                raise LengthExceeded(f"root v{root.version + 1} exceeds {MAX_ROOT_BYTES} "
                                     "bytes; refused (endless data)")
            new_env = Envelope.parse(data, "root")
            new = Root.from_signed(new_env.signed)
            verify_envelope(new_env, root, "root")
            verify_envelope(new_env, new, "root")
            if new.version != root.version + 1:
                raise RollbackAttack(f"{root.version + 1}.root.json holds root "
                                     f"v{new.version}; refused")
            for role in ("timestamp", "snapshot"):
                if new.roles[role].keyids != root.roles[role].keyids:
                    self._disk.unlink(self.base / "trust" / f"{role}.json")
            self._trust("root", data)
            root = new
        check_fresh("root", root.version, root.expires, now)
        return root

    def _next_role(self, role: str, meta: MetaFile, root: Root) -> Envelope:
        """Steps 3 and 4: fetch ``role`` as ``meta`` describes it and verify it."""
        data = self._bounded(f"{role}.json", meta.length)
        if hashlib.sha256(data).hexdigest() != meta.sha256 or len(data) != meta.length:
            raise MetadataMismatch(f"{role}.json does not match the hash and length the "
                                   "role above signed; refused (mix-and-match)")
        env = Envelope.parse(data, role)
        verify_envelope(env, root, role)
        if env.version != meta.version:
            raise MetadataMismatch(f"{role}.json is v{env.version}, the role above names "
                                   f"v{meta.version}; refused (mix-and-match)")
        old = self._trusted(role)
        if old is not None and env.version < old.version:
            raise RollbackAttack(f"{role} v{env.version} is older than the trusted "
                                 f"v{old.version}; refused")
        return env

    def refresh(self) -> Targets:
        """Verify the whole metadata chain (steps 1-4) and trust it.

        Returns:
            The verified targets.

        Raises:
            SignatureError, ExpiredMetadata, RollbackAttack, MetadataMismatch,
            LengthExceeded: the chain was refused; nothing new is trusted.
        """
        now = self._clock()
        root = self._update_root(now)
        # 2. timestamp
        ts_bytes = self._bounded("timestamp.json", MAX_TIMESTAMP_BYTES)
        ts_env = Envelope.parse(ts_bytes, "timestamp")
        verify_envelope(ts_env, root, "timestamp")
        ts = Timestamp.from_signed(ts_env.signed)
        old_env = self._trusted("timestamp")
        if old_env is not None:
            old = Timestamp.from_signed(old_env.signed)
            if ts.version < old.version or ts.snapshot.version < old.snapshot.version:
                raise RollbackAttack(f"timestamp v{ts.version} (snapshot "
                                     f"v{ts.snapshot.version}) is older than the trusted "
                                     f"v{old.version} (snapshot v{old.snapshot.version}); "
                                     "refused")
        check_fresh("timestamp", ts.version, ts.expires, now)
        # 3. snapshot
        snap_env = self._next_role("snapshot", ts.snapshot, root)
        snap = Snapshot.from_signed(snap_env.signed)
        old_snap = self._trusted("snapshot")
        if old_snap is not None and \
                snap.targets.version < Snapshot.from_signed(old_snap.signed).targets.version:
            raise RollbackAttack(f"snapshot v{snap.version} names targets "
                                 f"v{snap.targets.version}, older than trusted; refused")
        check_fresh("snapshot", snap.version, snap.expires, now)
        # 4. targets
        t_env = self._next_role("targets", snap.targets, root)
        targets = Targets.from_signed(t_env.signed)
        check_fresh("targets", targets.version, targets.expires, now)
        for role, data in (("timestamp", ts_bytes), ("snapshot", snap_env.raw),
                           ("targets", t_env.raw)):
            self._trust(role, data)
        return targets

    # -- the image -------------------------------------------------------------------
    def _download(self, target: TargetFile) -> tuple[int, int, int]:
        """Step 5: fetch the missing chunks, each verified before it is written."""
        fetched = refetched = 0
        with self.slots.stage(target) as staging:
            resumed = staging.next_chunk
            failures = 0
            while not staging.complete:
                index = staging.next_chunk
                offset, length = target.chunk_range(index)
                data = self.fetcher.fetch_chunk(target.sha256, offset=offset, length=length)
                if len(data) > length:
                    raise LengthExceeded(f"chunk {index} came with {len(data)} bytes, "
                                         f"{length} were asked; refused (endless data)")
                fetched += 1
                try:
                    staging.write_chunk(index, data)
                except ChunkError:
                    failures += 1
                    if failures > self._retries:
                        raise
                    refetched += 1
                    continue
                failures = 0
            self.slots.install(staging)
        return fetched, resumed, refetched

    def update(self, *, allowed: str | None = None) -> UpdateResult:
        """Boot, verify the metadata, and install the newer image if there is one.

        Args:
            allowed: the newest version the fleet registry lets this device install now
                (its target, from a staged rollout or a push); a newer signed image is
                then left alone ("held"). None: no limit.

        Returns:
            What happened (see :class:`UpdateResult`).

        Raises:
            FirmwareError: a refused chain, image or transfer (its subclass says which).
        """
        running = self.slots.boot()
        if running.mode == "trial":  # a pending trial from an interrupted run
            self.slots.finish_trial(self._health, running)
            running = self.slots.boot()
        current = running.record
        targets = self.refresh()
        target = targets.targets.get(self.name)
        if target is None:
            raise FirmwareError(f"targets v{targets.version} lists no image named "
                                f"{self.name!r}; check the device's target name")
        order = parse_version(target.version), parse_version(current.version)
        if order[0] < order[1]:
            raise RollbackAttack(f"{self.name} {target.version} is older than the running "
                                 f"{current.version}; refused")
        if order[0] == order[1]:
            if target.sha256 != current.sha256:
                raise MetadataMismatch(f"{self.name} {target.version} is signed with a "
                                       "different hash than the running image; refused")
            return UpdateResult("current", current.version, current.version)
        if allowed is not None and order[0] > parse_version(allowed):
            return UpdateResult("held", current.version, current.version)
        if target.length > self._max_image:
            raise LengthExceeded(f"{self.name} {target.version} is {target.length} bytes, "
                                 f"over this device's {self._max_image}; refused")
        fetched, resumed, refetched = self._download(target)
        booted = self.slots.boot()
        ok, rec = self.slots.finish_trial(self._health, booted)
        return UpdateResult("updated" if ok else "rolled-back", rec.version,
                            current.version, fetched, resumed, refetched)

"""The device's A/B slots in a folder: install to the inactive slot, trial boot, confirm
or roll back, and survive a power cut at any write.

Layout::

    DIR/boot.json          the boot pointer: confirmed slot, trial slot, whether the trial
                           has started, and each slot's image record (name, version,
                           length, SHA-256)
    DIR/slot-a.img         the two images
    DIR/slot-b.img
    DIR/slot-X.img.part    the inactive slot's download in progress, and beside it
    DIR/slot-X.img.part.json  the target it belongs to (so a resume never mixes images)

The life of an update (MCUboot's "test" swap, with RAUC's A/B folders):

1. ``stage(target)`` opens the inactive slot's ``.part`` file; chunks already on disk are
   re-hashed against the signed chunk hashes, so a download resumes at the first chunk
   that is missing or bad, and a chunk is written only after its hash matched.
2. ``install(target)`` fsyncs the part, checks the whole image's SHA-256, renames it over
   the inactive slot, then flips the pointer atomically to "trial: that slot".
3. ``boot()`` is the bootloader: a trial not yet started is marked started (a write) and
   booted; a trial found already started was never confirmed (the new image hung or the
   power went), so it is dropped and the confirmed slot boots: automatic rollback.
   Every boot checks the image's SHA-256 against its record; a slot that fails falls
   back to the other slot if that one verifies.
4. ``confirm()`` after a passed health check makes the trial slot the confirmed one;
   ``rollback()`` drops the trial. The confirmed slot is never written while it is
   confirmed, so there is always one complete, verified image to boot.

Every write goes through :class:`qpuos.firmware._disk.Disk` and its hook, which is
how the power-cut harness stops the process at each write point in turn.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qpuos.errors import ChunkError, ClosedResourceError, QpuosInternalError, SlotError
from qpuos.firmware._disk import Disk, WriteHook
from qpuos.firmware.image import TargetFile

__all__ = ["BootState", "BootedImage", "ImageRecord", "SlotStore", "Staging"]

_SLOTS = ("a", "b")
_READ = 1 << 20


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What a slot holds: the image's name, version, length and SHA-256."""

    name: str
    version: str
    length: int
    sha256: str

    @classmethod
    def of(cls, target: TargetFile) -> ImageRecord:
        """The record of a signed target."""
        return cls(target.name, target.version, target.length, target.sha256)


@dataclass(frozen=True, slots=True)
class BootState:
    """The boot pointer (``boot.json``)."""

    confirmed: str
    trial: str | None
    trial_started: bool
    slots: Mapping[str, ImageRecord | None]

    def to_json(self) -> dict[str, Any]:
        """As stored."""
        return {"format": 1, "confirmed": self.confirmed, "trial": self.trial,
                "trial_started": self.trial_started,
                "slots": {s: (r and {"name": r.name, "version": r.version,
                                     "length": r.length, "sha256": r.sha256})
                          for s, r in self.slots.items()}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BootState:
        """Parse (raises SlotError on anything unexpected)."""
        try:
            slots = {s: (ImageRecord(**obj["slots"][s]) if obj["slots"][s] else None)
                     for s in _SLOTS}
            state = cls(obj["confirmed"], obj["trial"], bool(obj["trial_started"]), slots)
        except (KeyError, TypeError) as exc:
            raise SlotError(f"boot.json is not a boot pointer ({exc!r}); re-provision") \
                from None
        if state.confirmed not in _SLOTS or state.trial not in (None, *_SLOTS):
            raise SlotError(f"boot.json names slots {state.confirmed!r}/{state.trial!r}")
        return state


@dataclass(frozen=True, slots=True)
class BootedImage:
    """The result of a boot: which slot runs, its record, and how it was chosen
    ("confirmed", "trial", or "fallback" when the confirmed slot failed its check)."""

    slot: str
    record: ImageRecord
    mode: str


def _other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def _hash_file(path: Path, length: int) -> str | None:
    """SHA-256 of the file, or None if it is missing or not ``length`` bytes long."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != length:
                return None
            while block := fh.read(_READ):
                h.update(block)
    except FileNotFoundError:
        return None
    return h.hexdigest()


class Staging:
    """The inactive slot's download in progress; chunks are verified before written."""

    def __init__(self, disk: Disk, path: Path, target: TargetFile, fd: int) -> None:
        self._disk, self.path, self.target, self._fd = disk, path, target, fd
        self.next_chunk = self._resume()

    def _resume(self) -> int:
        """Count the leading chunks on disk that match their hashes; cut the rest."""
        t, good = self.target, 0
        for index, want in enumerate(t.chunks):
            offset, length = t.chunk_range(index)
            data = os.pread(self._fd, length, offset)
            if len(data) != length or hashlib.sha256(data).hexdigest() != want:
                break
            good += 1
        end = t.chunk_range(good)[0] if good < len(t.chunks) else t.length
        if os.fstat(self._fd).st_size != end:
            self._disk.truncate(self._fd, end)
        return good

    @property
    def complete(self) -> bool:
        """Whether every chunk is on disk and verified."""
        return self.next_chunk == len(self.target.chunks)

    def write_chunk(self, index: int, data: bytes) -> None:
        """Verify chunk ``index`` against its signed hash, then write it.

        Raises:
            ChunkError: the hash does not match (nothing written), or out of order.
            ClosedResourceError: after close().
        """
        if self._fd < 0:
            raise ClosedResourceError("the staging file is closed; call stage() again")
        if index != self.next_chunk:
            raise ChunkError(f"chunk {index} arrived but {self.next_chunk} is next; "
                             "chunks are written in order", index=index)
        offset, length = self.target.chunk_range(index)
        got = hashlib.sha256(data).hexdigest()
        if len(data) != length or got != self.target.chunks[index]:
            raise ChunkError(f"chunk {index} of {self.target.name} {self.target.version} "
                             f"({len(data)} bytes, sha256 {got[:16]}...) does not match its "
                             f"signed hash {self.target.chunks[index][:16]}...; re-fetch it",
                             index=index)
        self._disk.pwrite(self._fd, data, offset)
        self.next_chunk += 1

    def close(self) -> None:
        """Close the file (idempotent); what was written stays for a resume."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SlotStore:
    """A/B slots in a folder (see the module docstring for the protocol).

    Args:
        root: the folder; :meth:`provision` creates it with a factory image.
        write_hook: called before every write point (tests cut power or fill the disk).

    >>> import tempfile
    >>> from qpuos.firmware.image import describe_image
    >>> with tempfile.TemporaryDirectory() as d:
    ...     t = describe_image(b"factory", name="ctl", version="1.0")
    ...     store = SlotStore.provision(d, b"factory", t)
    ...     store.boot().record.version
    '1.0'
    """

    def __init__(self, root: str | os.PathLike[str], *,
                 write_hook: WriteHook | None = None) -> None:
        self.root = Path(root)
        self._disk = Disk(write_hook)

    @classmethod
    def provision(cls, root: str | os.PathLike[str], image: bytes, target: TargetFile, *,
                  write_hook: WriteHook | None = None) -> SlotStore:
        """Create the folder with ``image`` in slot a, confirmed (the factory state).

        Raises:
            SlotError: the image does not match ``target`` or the folder is provisioned.
        """
        store = cls(root, write_hook=write_hook)
        store.root.mkdir(parents=True, exist_ok=True)
        if (store.root / "boot.json").exists():
            raise SlotError(f"{store.root} is already provisioned")
        if hashlib.sha256(image).hexdigest() != target.sha256:
            raise SlotError("the factory image does not match its target record")
        store._disk.replace_file(store._slot("a"), image)
        store._write_state(BootState("a", None, False, {"a": ImageRecord.of(target),
                                                        "b": None}))
        return store

    def _slot(self, slot: str) -> Path:
        return self.root / f"slot-{slot}.img"

    def state(self) -> BootState:
        """The boot pointer as on disk.

        Raises:
            SlotError: the folder is not provisioned or the pointer is unreadable.
        """
        try:
            return BootState.from_json(json.loads((self.root / "boot.json").read_bytes()))
        except FileNotFoundError:
            raise SlotError(f"{self.root} has no boot.json; provision it first") from None
        except ValueError as exc:
            raise SlotError(f"{self.root / 'boot.json'} is not JSON ({exc})") from None

    def _write_state(self, state: BootState) -> None:
        data = json.dumps(state.to_json(), sort_keys=True).encode()
        self._disk.replace_file(self.root / "boot.json", data)

    def _verified(self, state: BootState, slot: str) -> ImageRecord | None:
        rec = state.slots[slot]
        if rec is None or _hash_file(self._slot(slot), rec.length) != rec.sha256:
            return None
        return rec

    def boot(self) -> BootedImage:
        """Choose and verify the image to run, as a bootloader would (step 3).

        Raises:
            SlotError: neither slot holds a verified image (the device is bricked).
        """
        state = self.state()
        if state.trial is not None:
            rec = self._verified(state, state.trial)
            if not state.trial_started and rec is not None:
                self._write_state(replace(state, trial_started=True))
                return BootedImage(state.trial, rec, "trial")
            state = replace(state, trial=None, trial_started=False)
            self._write_state(state)  # the trial hung, lost power or is bad: roll back
        rec = self._verified(state, state.confirmed)
        if rec is not None:
            return BootedImage(state.confirmed, rec, "confirmed")
        other = _other(state.confirmed)
        rec = self._verified(state, other)
        if rec is None:
            raise SlotError(f"neither slot in {self.root} holds a verified image; "
                            "re-provision the device")
        self._write_state(replace(state, confirmed=other))
        return BootedImage(other, rec, "fallback")

    def stage(self, target: TargetFile) -> Staging:
        """Open the inactive slot's download for ``target``, resuming if it is the same
        target (step 1).

        Raises:
            SlotError: a trial is pending; boot and confirm or roll back first.
        """
        state = self.state()
        if state.trial is not None:
            raise SlotError(f"slot {state.trial} is on trial; boot() and confirm() or "
                            "rollback() before staging another image")
        part = self._slot(_other(state.confirmed)).with_suffix(".img.part")
        label = part.with_name(part.name + ".json")
        want = json.dumps({"sha256": target.sha256, "chunk_size": target.chunk_size}).encode()
        try:
            same = label.read_bytes() == want
        except FileNotFoundError:
            same = False
        if not same:
            self._disk.unlink(part)
            self._disk.replace_file(label, want)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            return Staging(self._disk, part, target, fd)
        except BaseException:
            os.close(fd)
            raise

    def install(self, staging: Staging) -> str:
        """Move a complete download into the inactive slot and flip to trial (step 2).

        Returns:
            The slot now on trial.

        Raises:
            SlotError: the download is incomplete or its whole-image hash is wrong.
        """
        target = staging.target
        if not staging.complete:
            raise SlotError(f"{target.name} {target.version}: {staging.next_chunk} of "
                            f"{len(target.chunks)} chunks staged; finish the download")
        state = self.state()
        slot = _other(state.confirmed)
        fd = os.open(staging.path, os.O_RDONLY)
        try:
            self._disk.fsync(fd)
        finally:
            os.close(fd)
        staging.close()
        if _hash_file(staging.path, target.length) != target.sha256:
            self._disk.unlink(staging.path)
            raise SlotError(f"{target.name} {target.version}: the assembled image does not "
                            "match its signed SHA-256; it was discarded, download again")
        self._disk.rename(staging.path, self._slot(slot))
        self._disk.fsync_dir(self.root)
        slots = dict(state.slots)
        slots[slot] = ImageRecord.of(target)
        self._write_state(BootState(state.confirmed, slot, False, slots))
        self._disk.unlink(staging.path.with_name(staging.path.name + ".json"))
        return slot

    def confirm(self) -> ImageRecord:
        """Make the running trial slot the confirmed one (step 4).

        Raises:
            SlotError: no trial has been booted.
        """
        state = self.state()
        if state.trial is None or not state.trial_started:
            raise SlotError("no trial image is running; nothing to confirm")
        rec = state.slots[state.trial]
        if rec is None:
            raise QpuosInternalError(f"trial slot {state.trial} has no image record; "
                                     "this is a bug, please report it")
        self._write_state(BootState(state.trial, None, False, state.slots))
        return rec

    def rollback(self) -> ImageRecord:
        """Drop the trial and return the confirmed slot's record (step 4)."""
        state = self.state()
        if state.trial is not None:
            self._write_state(replace(state, trial=None, trial_started=False))
        rec = state.slots[state.confirmed]
        if rec is None:
            raise SlotError("the confirmed slot has no image record; re-provision")
        return rec

    def finish_trial(self, health_check: Callable[[BootedImage], bool],
                     booted: BootedImage) -> tuple[bool, ImageRecord]:
        """Run ``health_check`` on a trial boot, then confirm or roll back.

        Returns:
            (passed, the record now confirmed).
        """
        try:
            ok = bool(health_check(booted))
        except Exception:
            ok = False
        return (True, self.confirm()) if ok else (False, self.rollback())

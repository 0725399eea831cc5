"""The roles below root: targets (the images), snapshot and timestamp.

See :mod:`qpuos.firmware.image` for the envelope, the keys and the root role.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qpuos.errors import MetadataError
from qpuos.firmware._fields import field, format_time, header, nonneg, parse_version

__all__ = ["MetaFile", "Snapshot", "TargetFile", "Targets", "Timestamp", "describe_image"]


@dataclass(frozen=True, slots=True)
class TargetFile:
    """One image as the targets role describes it."""

    name: str
    version: str
    length: int
    sha256: str
    chunk_size: int
    chunks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The entry under ``targets`` (the name is the key)."""
        return {"version": self.version, "length": self.length, "sha256": self.sha256,
                "chunk_size": self.chunk_size, "chunks": list(self.chunks)}

    @classmethod
    def from_json(cls, name: str, obj: Mapping[str, Any]) -> TargetFile:
        """Parse one entry, checking that the chunk list covers the length exactly.

        Raises:
            MetadataError: a field is missing or the chunks do not add up.
        """
        where = f"targets.{name}"
        version = field(obj, "version", str, where)
        parse_version(version)
        length, size = nonneg(obj, "length", where), nonneg(obj, "chunk_size", where)
        chunks = tuple(field(obj, "chunks", list, where))
        if size < 1 or len(chunks) != -(-length // size):
            raise MetadataError(f"{where}: {len(chunks)} chunks of {size} bytes do not "
                                f"cover {length} bytes")
        return cls(name, version, length, field(obj, "sha256", str, where), size, chunks)

    def chunk_range(self, index: int) -> tuple[int, int]:
        """Offset and length of chunk ``index``."""
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.length - offset)


def describe_image(data: bytes, *, name: str, version: str,
                   chunk_size: int = 1 << 20) -> TargetFile:
    """Hash an image whole and chunk by chunk for the targets role.

    Raises:
        MetadataError: a bad version or chunk size.

    >>> t = describe_image(b"x" * 10, name="ctl", version="1.0", chunk_size=4)
    >>> t.length, len(t.chunks)
    (10, 3)
    """
    parse_version(version)
    if chunk_size < 1:
        raise MetadataError(f"chunk size {chunk_size} must be >= 1")
    view = memoryview(data)
    chunks = tuple(hashlib.sha256(view[i:i + chunk_size]).hexdigest()
                   for i in range(0, len(data), chunk_size))
    return TargetFile(name, version, len(data), hashlib.sha256(data).hexdigest(),
                      chunk_size, chunks)


@dataclass(frozen=True, slots=True)
class Targets:
    """The targets role: the images the device may install."""

    version: int
    expires: int
    targets: Mapping[str, TargetFile]

    def to_signed(self) -> dict[str, Any]:
        """The object the targets keys sign."""
        return {"_type": "targets", "version": self.version,
                "expires": format_time(self.expires),
                "targets": {n: t.to_json() for n, t in sorted(self.targets.items())}}

    @classmethod
    def from_signed(cls, signed: Mapping[str, Any]) -> Targets:
        """Parse targets' signed object (raises MetadataError)."""
        version, expires = header(signed, "targets")
        table = field(signed, "targets", dict, "targets")
        return cls(version, expires, {n: TargetFile.from_json(n, o) for n, o in table.items()})


@dataclass(frozen=True, slots=True)
class MetaFile:
    """What a role records about the metadata below it: version, length, SHA-256."""

    version: int
    length: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """As stored under ``meta``."""
        return {"version": self.version, "length": self.length, "sha256": self.sha256}

    @classmethod
    def of(cls, version: int, data: bytes) -> MetaFile:
        """Describe the envelope bytes ``data`` of metadata version ``version``."""
        return cls(version, len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def from_json(cls, obj: Any, where: str) -> MetaFile:
        """Parse (raises MetadataError)."""
        return cls(nonneg(obj, "version", where), nonneg(obj, "length", where),
                   field(obj, "sha256", str, where))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The snapshot role: which targets metadata belongs to this moment."""

    version: int
    expires: int
    targets: MetaFile

    def to_signed(self) -> dict[str, Any]:
        """The object the snapshot key signs."""
        return {"_type": "snapshot", "version": self.version,
                "expires": format_time(self.expires),
                "meta": {"targets.json": self.targets.to_json()}}

    @classmethod
    def from_signed(cls, signed: Mapping[str, Any]) -> Snapshot:
        """Parse (raises MetadataError)."""
        version, expires = header(signed, "snapshot")
        meta = field(signed, "meta", dict, "snapshot")
        return cls(version, expires,
                   MetaFile.from_json(meta.get("targets.json"), "snapshot.meta.targets.json"))


@dataclass(frozen=True, slots=True)
class Timestamp:
    """The timestamp role: which snapshot is current, with a short expiry."""

    version: int
    expires: int
    snapshot: MetaFile

    def to_signed(self) -> dict[str, Any]:
        """The object the timestamp key signs."""
        return {"_type": "timestamp", "version": self.version,
                "expires": format_time(self.expires),
                "meta": {"snapshot.json": self.snapshot.to_json()}}

    @classmethod
    def from_signed(cls, signed: Mapping[str, Any]) -> Timestamp:
        """Parse (raises MetadataError)."""
        version, expires = header(signed, "timestamp")
        meta = field(signed, "meta", dict, "timestamp")
        return cls(version, expires, MetaFile.from_json(meta.get("snapshot.json"),
                                                        "timestamp.meta.snapshot.json"))

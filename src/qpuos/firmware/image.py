"""Signed update metadata, TUF-inspired: root, targets, snapshot and timestamp roles.

Each role's metadata is an envelope ``{"signed": {...}, "signatures": [{"keyid", "sig"}]}``
whose signatures are Ed25519 over the canonical JSON of ``signed``
(:mod:`qpuos.firmware._canonical`). The roles, as in TUF (Samuel et al., "Survivable Key
Compromise in Software Update Systems", CCS 2010):

1. root: the trusted keys and, per role, which key ids count and how many must sign
   (the threshold). A new root N+1 must be signed by a threshold of root N's root keys
   and of its own, so keys rotate without trusting the network.
2. targets: per image, its firmware version, length, SHA-256 and the SHA-256 of every
   chunk (so a download is checked chunk by chunk as it arrives, and resumes by chunk).
3. snapshot: the version, length and hash of the targets metadata (no mix-and-match).
4. timestamp: the version, length and hash of the snapshot, with a short expiry, so a
   frozen server is noticed (freeze attack).

Every role carries a metadata ``version`` (an integer that never goes back) and an
``expires`` time (ISO 8601, UTC, whole seconds). Firmware versions are dotted integers
("1.4.2") compared as tuples. This module is pure: no files, no clocks (``now`` is passed
in), so every check is testable. The roles below root live in
:mod:`qpuos.firmware.roles` (re-exported here); :mod:`qpuos.firmware.repo` holds the offline
tools.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qpuos.errors import ExpiredMetadata, MetadataError, SignatureError
from qpuos.firmware._canonical import canonical_bytes
from qpuos.firmware._fields import (
    field,
    format_time,
    header,
    nonneg,
    parse_time,
    parse_version,
)
from qpuos.firmware.roles import (
    MetaFile,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    describe_image,
)

__all__ = [
    "ROLES",
    "Envelope",
    "MetaFile",
    "RoleKeys",
    "Root",
    "Snapshot",
    "TargetFile",
    "Targets",
    "Timestamp",
    "check_fresh",
    "describe_image",
    "format_time",
    "key_id",
    "parse_time",
    "parse_version",
    "sign_metadata",
    "verify_envelope",
]

ROLES = ("root", "targets", "snapshot", "timestamp")


def key_id(public: Ed25519PublicKey) -> str:
    """The key id of an Ed25519 public key: SHA-256 of its canonical key object.

    >>> len(key_id(Ed25519PrivateKey.generate().public_key()))
    64
    """
    return hashlib.sha256(canonical_bytes(_key_object(public))).hexdigest()


def _key_object(public: Ed25519PublicKey) -> dict[str, str]:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"keytype": "ed25519", "public": raw.hex()}


@dataclass(frozen=True, slots=True)
class Envelope:
    """Parsed metadata of one role: the signed object, its signatures, the raw bytes."""

    role: str
    signed: Mapping[str, Any]
    signatures: tuple[tuple[str, bytes], ...]
    raw: bytes

    @classmethod
    def parse(cls, data: bytes, role: str) -> Envelope:
        """Parse an envelope's bytes; structure only, no signature check.

        Raises:
            MetadataError: not JSON, or not an envelope of ``role``.
        """
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MetadataError(f"{role} metadata is not UTF-8 JSON ({exc}); "
                                "fetch it again") from None
        signed = field(obj, "signed", dict, role)
        header(signed, role)
        sigs: list[tuple[str, bytes]] = []
        for i, entry in enumerate(field(obj, "signatures", list, role)):
            where = f"{role}.signatures[{i}]"
            try:
                sig = bytes.fromhex(field(entry, "sig", str, where))
            except ValueError:
                raise MetadataError(f"{where}.sig is not hex") from None
            sigs.append((field(entry, "keyid", str, where), sig))
        return cls(role, signed, tuple(sigs), data)

    @property
    def version(self) -> int:
        """The metadata version (an integer that never goes back)."""
        return int(self.signed["version"])


def sign_metadata(signed: Mapping[str, Any], keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """Sign ``signed`` with each key and return the envelope's canonical bytes.

    Args:
        signed: the role's object (with ``_type``, ``version``, ``expires``).
        keys: the private keys that sign.

    Returns:
        Canonical JSON of ``{"signed": ..., "signatures": [...]}``.

    >>> k = Ed25519PrivateKey.generate()
    >>> env = Envelope.parse(sign_metadata(Timestamp(1, 0, MetaFile(1, 2, "00")).to_signed(),
    ...                                    [k]), "timestamp")
    >>> env.version, len(env.signatures)
    (1, 1)
    """
    body = canonical_bytes(dict(signed))
    sigs = [{"keyid": key_id(k.public_key()), "sig": k.sign(body).hex()} for k in keys]
    return canonical_bytes({"signed": dict(signed), "signatures": sigs})


@dataclass(frozen=True, slots=True)
class RoleKeys:
    """Which keys may sign a role and how many of them must."""

    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True, slots=True)
class Root:
    """The root role: trusted public keys and each role's key ids and threshold."""

    version: int
    expires: int
    keys: Mapping[str, Ed25519PublicKey]
    roles: Mapping[str, RoleKeys]

    @classmethod
    def build(cls, *, version: int, expires: int,
              roles: Mapping[str, tuple[Sequence[Ed25519PublicKey], int]]) -> Root:
        """A root from public keys per role and thresholds (``{role: (keys, k)}``).

        Raises:
            MetadataError: a role is missing or a threshold is not in 1..len(keys).
        """
        keys: dict[str, Ed25519PublicKey] = {}
        table: dict[str, RoleKeys] = {}
        for role in ROLES:
            if role not in roles:
                raise MetadataError(f"root needs keys for the {role} role")
            pubs, threshold = roles[role]
            ids = tuple(key_id(p) for p in pubs)
            keys.update(zip(ids, pubs, strict=True))
            if not 1 <= threshold <= len(set(ids)):
                raise MetadataError(f"{role} threshold {threshold} needs 1..{len(set(ids))}")
            table[role] = RoleKeys(ids, threshold)
        return cls(version, expires, keys, table)

    def to_signed(self) -> dict[str, Any]:
        """The object the root keys sign."""
        return {"_type": "root", "version": self.version, "expires": format_time(self.expires),
                "keys": {kid: _key_object(p) for kid, p in sorted(self.keys.items())},
                "roles": {r: {"keyids": list(rk.keyids), "threshold": rk.threshold}
                          for r, rk in self.roles.items()}}

    @classmethod
    def from_signed(cls, signed: Mapping[str, Any]) -> Root:
        """Parse root's signed object.

        Raises:
            MetadataError: a field is missing, mistyped or inconsistent.
        """
        version, expires = header(signed, "root")
        keys: dict[str, Ed25519PublicKey] = {}
        for kid, obj in field(signed, "keys", dict, "root").items():
            if field(obj, "keytype", str, f"root.keys.{kid}") != "ed25519":
                raise MetadataError(f"root key {kid} is {obj['keytype']!r}; only ed25519")
            try:
                pub = Ed25519PublicKey.from_public_bytes(
                    bytes.fromhex(field(obj, "public", str, f"root.keys.{kid}")))
            except ValueError:
                raise MetadataError(f"root key {kid} is not a 32-byte hex key") from None
            if key_id(pub) != kid:
                raise MetadataError(f"root key id {kid} does not match its key")
            keys[kid] = pub
        roles: dict[str, RoleKeys] = {}
        table = field(signed, "roles", dict, "root")
        for role in ROLES:
            where = f"root.roles.{role}"
            obj = field(table, role, dict, "root.roles")
            ids = tuple(field(obj, "keyids", list, where))
            unknown = set(ids) - set(keys)
            if unknown or not all(isinstance(i, str) for i in ids):
                raise MetadataError(f"{where} names keys root does not list: {sorted(unknown)}")
            threshold = nonneg(obj, "threshold", where)
            if not 1 <= threshold <= len(set(ids)):
                raise MetadataError(f"{where}.threshold is {threshold}; it needs "
                                    f"1..{len(set(ids))} (the number of its keys)")
            roles[role] = RoleKeys(ids, threshold)
        return cls(version, expires, keys, roles)


def verify_envelope(env: Envelope, root: Root, role: str) -> None:
    """Check that a threshold of ``role``'s keys in ``root`` signed ``env``.

    Each key counts once; signatures by keys outside the role are ignored.

    Raises:
        SignatureError: fewer valid signatures than the threshold.
    """
    rk = root.roles[role]
    body = canonical_bytes(dict(env.signed))
    good: set[str] = set()
    for kid, sig in env.signatures:
        if kid not in rk.keyids or kid in good:
            continue
        try:
            root.keys[kid].verify(sig, body)
        except InvalidSignature:
            continue
        good.add(kid)
    if len(good) < rk.threshold:
        raise SignatureError(
            f"{role} metadata v{env.version} has {len(good)} valid signature(s) from its "
            f"{len(rk.keyids)} trusted key(s), needs {rk.threshold}; refuse it and check "
            "the signing keys")


def check_fresh(role: str, version: int, expires: int, now: float) -> None:
    """Refuse metadata whose expiry has passed (a frozen or replaying server).

    Raises:
        ExpiredMetadata: ``now`` is at or past ``expires``.
    """
    if now >= expires:
        raise ExpiredMetadata(f"{role} metadata v{version} expired at {format_time(expires)}"
                              f" (now {format_time(int(now))}); the server must re-sign it")

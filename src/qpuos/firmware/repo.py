"""Offline tools of an update repository: key generation, image signing, key rotation.

A repository is a folder::

    REPO/keys/ROLE-N.pem        Ed25519 private keys (PKCS#8 PEM, mode 0600); keep the
                                root keys offline, the others where their role runs
    REPO/metadata/N.root.json   every root version, so devices can walk the rotation chain
    REPO/metadata/root.json     the newest root (the one devices are provisioned with)
    REPO/metadata/targets.json  snapshot.json  timestamp.json
    REPO/images/SHA256          image bytes, named by their hash (old ones stay servable)

Every file is written to a temporary file, fsynced and renamed, and the metadata in the
order targets, snapshot, timestamp, so a reader never sees a timestamp naming a snapshot
that is not there yet.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from qpuos._atomic import atomic_write_bytes
from qpuos.errors import MetadataError, UsageError
from qpuos.firmware.image import (
    ROLES,
    Envelope,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    describe_image,
    parse_version,
    sign_metadata,
)

__all__ = ["EXPIRY_S", "keygen", "load_keys", "load_root", "refresh_timestamp",
           "rotate_keys", "sign_image"]

DAY = 86400
#: Default lifetime of each role's metadata, in seconds (timestamp short: freshness).
EXPIRY_S = {"root": 365 * DAY, "targets": 90 * DAY, "snapshot": 7 * DAY, "timestamp": DAY}


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def _write_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def load_keys(repo: str | os.PathLike[str], role: str) -> list[Ed25519PrivateKey]:
    """The private keys of ``role`` in the repository, newest generation first.

    Raises:
        UsageError: the repository has no keys for the role.
    """
    folder = Path(repo) / "keys"
    paths = sorted(folder.glob(f"{role}-*.pem"),
                   key=lambda p: int(p.stem.rsplit("-", 1)[1]), reverse=True)
    if not paths:
        raise UsageError(f"no {role} keys in {folder}; run `qpuos fw keygen {repo}` first")
    keys = []
    for p in paths:
        key = load_pem_private_key(p.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError(f"{p} is not an Ed25519 private key")
        keys.append(key)
    return keys


def load_root(repo: str | os.PathLike[str]) -> Root:
    """The newest root of the repository (unverified: the repository is our own).

    Raises:
        UsageError: the repository has no root metadata.
    """
    path = Path(repo) / "metadata" / "root.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; run `qpuos fw keygen {repo}` first") \
            from None
    return Root.from_signed(Envelope.parse(data, "root").signed)


def _role_keys(repo: Path, root: Root, role: str) -> list[Ed25519PrivateKey]:
    """The repository's private keys that ``root`` lists for ``role``."""
    from qpuos.firmware.image import key_id

    listed = set(root.roles[role].keyids)
    return [k for k in load_keys(repo, role) if key_id(k.public_key()) in listed]


def keygen(repo: str | os.PathLike[str], *, root_keys: int = 1, root_threshold: int = 1,
           now: float | None = None) -> Root:
    """Create a repository: one key per role (``root_keys`` for root) and root v1.

    Args:
        repo: the folder (created; it must not already hold keys).
        root_keys: how many root keys to generate.
        root_threshold: how many of them must sign a new root.
        now: the time the expiries count from (default: the clock).

    Returns:
        The new root.

    Raises:
        UsageError: the folder already holds keys, or a bad count or threshold.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     keygen(d).version
    1
    """
    base = Path(repo)
    if list((base / "keys").glob("*.pem")):
        raise UsageError(f"{base / 'keys'} already holds keys; use a new folder or "
                         "`rotate_keys` to replace them")
    if not 1 <= root_threshold <= root_keys:
        raise UsageError(f"root threshold {root_threshold} needs 1..{root_keys}")
    for sub in ("keys", "metadata", "images"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(base / "keys", 0o700)
    private: dict[str, list[Ed25519PrivateKey]] = {}
    for role in ROLES:
        count = root_keys if role == "root" else 1
        private[role] = [Ed25519PrivateKey.generate() for _ in range(count)]
        for i, key in enumerate(private[role]):
            _write_key(base / "keys" / f"{role}-{i + 1}.pem", key)
    roles = {r: ([k.public_key() for k in ks], root_threshold if r == "root" else 1)
             for r, ks in private.items()}
    root = Root.build(version=1, expires=_now(now) + EXPIRY_S["root"], roles=roles)
    data = sign_metadata(root.to_signed(), private["root"])
    atomic_write_bytes(base / "metadata" / "1.root.json", data)
    atomic_write_bytes(base / "metadata" / "root.json", data)
    return root


def rotate_keys(repo: str | os.PathLike[str], role: str, *, count: int = 1,
                threshold: int = 1, now: float | None = None) -> Root:
    """Replace ``role``'s keys with ``count`` new ones and publish root N+1.

    Root N+1 is signed by the old root keys and, when root itself rotates, the new
    ones too, as devices require. Old key files stay (they sign nothing new).

    Raises:
        UsageError: unknown role or a bad threshold.
    """
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; pick one of {', '.join(ROLES)}")
    base = Path(repo)
    old = load_root(base)
    signers = _role_keys(base, old, "root")
    start = 1 + max(int(p.stem.rsplit("-", 1)[1]) for p in (base / "keys").glob(f"{role}-*.pem"))
    new = [Ed25519PrivateKey.generate() for _ in range(count)]
    for i, key in enumerate(new):
        _write_key(base / "keys" / f"{role}-{start + i}.pem", key)
    roles = {r: ([old.keys[k] for k in old.roles[r].keyids], old.roles[r].threshold)
             for r in ROLES}
    roles[role] = ([k.public_key() for k in new], threshold)
    try:
        root = Root.build(version=old.version + 1, expires=_now(now) + EXPIRY_S["root"],
                          roles=roles)
    except MetadataError as exc:
        raise UsageError(str(exc)) from None
    if role == "root":
        signers = signers + new
    data = sign_metadata(root.to_signed(), signers)
    atomic_write_bytes(base / "metadata" / f"{root.version}.root.json", data)
    atomic_write_bytes(base / "metadata" / "root.json", data)
    return root


def _read_role(base: Path, role: str) -> Envelope | None:
    try:
        return Envelope.parse((base / "metadata" / f"{role}.json").read_bytes(), role)
    except FileNotFoundError:
        return None


def _publish(base: Path, root: Root, targets: Targets, now: int) -> None:
    """Sign and write targets, snapshot and timestamp, in that order."""
    t_bytes = sign_metadata(targets.to_signed(), _role_keys(base, root, "targets"))
    old_snap = _read_role(base, "snapshot")
    snap = Snapshot((old_snap.version if old_snap else 0) + 1,
                    now + EXPIRY_S["snapshot"], MetaFile.of(targets.version, t_bytes))
    s_bytes = sign_metadata(snap.to_signed(), _role_keys(base, root, "snapshot"))
    old_ts = _read_role(base, "timestamp")
    ts = Timestamp((old_ts.version if old_ts else 0) + 1, now + EXPIRY_S["timestamp"],
                   MetaFile.of(snap.version, s_bytes))
    ts_bytes = sign_metadata(ts.to_signed(), _role_keys(base, root, "timestamp"))
    for role, data in (("targets", t_bytes), ("snapshot", s_bytes), ("timestamp", ts_bytes)):
        atomic_write_bytes(base / "metadata" / f"{role}.json", data)


def sign_image(repo: str | os.PathLike[str], image: str | os.PathLike[str], *,
               version: str, name: str = "controller", chunk_size: int = 1 << 20,
               now: float | None = None) -> TargetFile:
    """Add an image to the repository and publish new targets, snapshot and timestamp.

    Args:
        repo: the repository folder (from :func:`keygen`).
        image: the image file.
        version: its firmware version, dotted integers, above the published one.
        name: the image's target name (one per kind of controller).
        chunk_size: bytes per verified chunk.
        now: the time the expiries count from (default: the clock).

    Returns:
        The image's entry in the new targets metadata.

    Raises:
        UsageError: the version is not above the published one for ``name``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = keygen(d)
    ...     _ = Path(d, "fw.bin").write_bytes(b"firmware")
    ...     sign_image(d, Path(d, "fw.bin"), version="1.0.0").length
    8
    """
    base = Path(repo)
    root = load_root(base)
    data = Path(image).read_bytes()
    entry = describe_image(data, name=name, version=version, chunk_size=chunk_size)
    old = _read_role(base, "targets")
    table = dict(Targets.from_signed(old.signed).targets) if old else {}
    if name in table and parse_version(version) <= parse_version(table[name].version):
        raise UsageError(f"{name} version {version} is not above the published "
                         f"{table[name].version}; devices would refuse it as a rollback")
    table[name] = entry
    atomic_write_bytes(base / "images" / entry.sha256, data)
    clock = _now(now)
    targets = Targets((old.version if old else 0) + 1, clock + EXPIRY_S["targets"], table)
    _publish(base, root, targets, clock)
    return entry


def refresh_timestamp(repo: str | os.PathLike[str], *, now: float | None = None) -> int:
    """Re-sign the timestamp (same snapshot, new version and expiry); returns its version.

    Run it more often than the timestamp's lifetime, or devices refuse the repository as
    frozen.

    Raises:
        UsageError: nothing has been published yet.
    """
    base = Path(repo)
    root = load_root(base)
    old = _read_role(base, "timestamp")
    snap = (base / "metadata" / "snapshot.json")
    if old is None or not snap.exists():
        raise UsageError(f"{base} has no published image; run `qpuos fw sign` first")
    s_bytes = snap.read_bytes()
    s_version = Envelope.parse(s_bytes, "snapshot").version
    ts = Timestamp(old.version + 1, _now(now) + EXPIRY_S["timestamp"],
                   MetaFile(s_version, len(s_bytes), hashlib.sha256(s_bytes).hexdigest()))
    atomic_write_bytes(base / "metadata" / "timestamp.json",
                       sign_metadata(ts.to_signed(), _role_keys(base, root, "timestamp")))
    return ts.version

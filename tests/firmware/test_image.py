"""Metadata roles, canonical JSON and signature thresholds."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qpuos.errors import ExpiredMetadata, MetadataError, QpuosError, SignatureError
from qpuos.firmware._canonical import canonical_bytes
from qpuos.firmware.image import (
    Envelope,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    Timestamp,
    check_fresh,
    describe_image,
    key_id,
    parse_time,
    parse_version,
    sign_metadata,
    verify_envelope,
)


def _root(ts_keys: list[Ed25519PrivateKey], threshold: int) -> tuple[Root, Ed25519PrivateKey]:
    rk = Ed25519PrivateKey.generate()
    roles = {"root": ([rk.public_key()], 1), "targets": ([rk.public_key()], 1),
             "snapshot": ([rk.public_key()], 1),
             "timestamp": ([k.public_key() for k in ts_keys], threshold)}
    return Root.build(version=1, expires=10**10, roles=roles), rk


def _timestamp(keys: list[Ed25519PrivateKey]) -> Envelope:
    ts = Timestamp(3, 10**10, MetaFile(2, 100, "ab" * 32))
    return Envelope.parse(sign_metadata(ts.to_signed(), keys), "timestamp")


def test_canonical_json_is_independent_of_key_order_and_refuses_floats() -> None:
    assert canonical_bytes({"b": 1, "a": [2, None]}) == canonical_bytes({"a": [2, None], "b": 1})
    with pytest.raises(MetadataError, match=r"^\$\.x\[0\] is the float 1\.5; "):
        canonical_bytes({"x": [1.5]})
    with pytest.raises(MetadataError, match=r"non-string key 3"):
        canonical_bytes({3: 1})


def test_threshold_of_two_counts_distinct_trusted_keys_only() -> None:
    k1, k2, k3 = (Ed25519PrivateKey.generate() for _ in range(3))
    root, _ = _root([k1, k2, k3], 2)
    verify_envelope(_timestamp([k1, k3]), root, "timestamp")
    with pytest.raises(SignatureError, match=r"^timestamp metadata v3 has 1 valid "
                       r"signature\(s\) from its 3 trusted key\(s\), needs 2; "):
        verify_envelope(_timestamp([k1]), root, "timestamp")
    twice = _timestamp([k1, k1])  # the same key signing twice still counts once
    with pytest.raises(SignatureError, match=r"has 1 valid"):
        verify_envelope(twice, root, "timestamp")
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match=r"has 1 valid"):
        verify_envelope(_timestamp([k2, stranger]), root, "timestamp")


def test_a_changed_byte_of_the_signed_body_breaks_the_signature() -> None:
    k = Ed25519PrivateKey.generate()
    root, _ = _root([k], 1)
    obj = json.loads(sign_metadata(Timestamp(3, 10**10, MetaFile(2, 100, "00")).to_signed(),
                                   [k]))
    obj["signed"]["meta"]["snapshot.json"]["version"] = 99
    env = Envelope.parse(json.dumps(obj).encode(), "timestamp")
    with pytest.raises(SignatureError, match=r"has 0 valid"):
        verify_envelope(env, root, "timestamp")


def test_root_round_trips_and_refuses_bad_thresholds() -> None:
    k = Ed25519PrivateKey.generate()
    root, rk = _root([k], 1)
    env = Envelope.parse(sign_metadata(root.to_signed(), [rk]), "root")
    again = Root.from_signed(env.signed)
    assert again.roles == root.roles
    assert set(again.keys) == {key_id(k.public_key()), key_id(rk.public_key())}
    bad = root.to_signed()
    bad["roles"]["timestamp"]["threshold"] = 2
    with pytest.raises(MetadataError, match=r"^root\.roles\.timestamp\.threshold is 2; "
                       r"it needs 1\.\.1"):
        Root.from_signed(bad)
    bad["roles"]["timestamp"] = {"keyids": ["00" * 32], "threshold": 1}
    with pytest.raises(MetadataError, match=r"names keys root does not list"):
        Root.from_signed(bad)


def test_roles_cannot_be_swapped_and_fields_are_typed() -> None:
    k = Ed25519PrivateKey.generate()
    data = sign_metadata(Timestamp(1, 10**10, MetaFile(1, 1, "00")).to_signed(), [k])
    with pytest.raises(MetadataError, match=r"^expected snapshot metadata, got 'timestamp'"):
        Envelope.parse(data, "snapshot")
    with pytest.raises(MetadataError, match=r"not UTF-8 JSON"):
        Envelope.parse(b"\xff", "timestamp")
    signed = Snapshot(1, 10**10, MetaFile(1, 1, "00")).to_signed()
    signed["version"] = True
    with pytest.raises(MetadataError, match=r"^snapshot\.version is True"):
        Snapshot.from_signed(signed)


def test_targets_chunk_list_must_cover_the_length() -> None:
    t = describe_image(b"abcdefghij", name="ctl", version="2.0.1", chunk_size=4)
    assert t.chunk_range(2) == (8, 2)
    targets = Targets(1, 10**10, {"ctl": t})
    assert Targets.from_signed(targets.to_signed()) == targets
    signed = targets.to_signed()
    signed["targets"]["ctl"]["chunks"].pop()
    with pytest.raises(MetadataError, match=r"^targets\.ctl: 2 chunks of 4 bytes do not "
                       r"cover 10 bytes$"):
        Targets.from_signed(signed)


def test_versions_and_times() -> None:
    assert parse_version("1.10") > parse_version("1.9.9")
    for bad in ("", "1..2", "v1", "1.-2", "١.٢"):
        with pytest.raises(MetadataError, match=r"is not dotted integers"):
            parse_version(bad)
    assert parse_time("2027-01-31T12:00:00Z") == 1801396800
    with pytest.raises(MetadataError, match=r"is not of the form"):
        parse_time("2027-01-31")
    check_fresh("timestamp", 1, 100, 99.9)
    with pytest.raises(ExpiredMetadata, match=r"^timestamp metadata v1 expired at "
                       r"1970-01-01T00:01:40Z \(now 1970-01-01T00:01:40Z\); "):
        check_fresh("timestamp", 1, 100, 100)
    assert issubclass(ExpiredMetadata, QpuosError)

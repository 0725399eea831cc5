"""Local certificates for the update server and devices (test fleets, labs, CI).

``make_certs(DIR, devices=["dev-1"])`` (or ``qpuos fw certs DIR --device dev-1``) writes::

    DIR/ca.pem  DIR/ca.key            a private certificate authority (ECDSA P-256)
    DIR/server.pem  DIR/server.key    the server's certificate for localhost / 127.0.0.1
    DIR/DEVICE.pem  DIR/DEVICE.key    one client certificate per device (CN = device id),
                                      for mutual TLS

P-256 rather than Ed25519 keys: every TLS 1.3 stack, ``openssl s_time`` included, accepts
them, and the handshake cost is comparable. For production, issue the certificates from
your own PKI; these are for loopback and test fleets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qpuos._atomic import atomic_write_bytes
from qpuos.errors import UsageError

__all__ = ["CertPaths", "make_certs"]


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where :func:`make_certs` wrote each file."""

    ca: Path
    server_cert: Path
    server_key: Path
    devices: dict[str, tuple[Path, Path]]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    atomic_write_bytes(path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool,
          usage: Sequence[x509.ObjectIdentifier] = (),
          sans: Sequence[x509.GeneralName] = (), days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_certs(folder: str | os.PathLike[str], *,
               hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
               devices: Sequence[str] = (), days: int = 365) -> CertPaths:
    """Create a CA, a server certificate for ``hosts`` and a client certificate per device.

    Args:
        folder: where to write (created).
        hosts: names and addresses the server certificate covers.
        devices: device ids that get a client certificate (CN = the id).
        days: validity.

    Returns:
        The paths written.

    Raises:
        UsageError: no host, or a device id that cannot be a file name.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     paths = make_certs(d, devices=["dev-1"])
    ...     sorted(p.name for p in Path(d).iterdir())
    ['ca.key', 'ca.pem', 'dev-1.key', 'dev-1.pem', 'server.key', 'server.pem']
    """
    if not hosts:
        raise UsageError("the server certificate needs at least one host name or address")
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qpuos firmware local CA")])
    ca_cert = _cert("qpuos firmware local CA", ca_key, ca_name, ca_key, ca=True,
                    days=days)
    pem = serialization.Encoding.PEM
    _write_key(base / "ca.key", ca_key)
    atomic_write_bytes(base / "ca.pem", ca_cert.public_bytes(pem))
    srv_key = _key()
    srv = _cert(hosts[0], srv_key, ca_name, ca_key, ca=False,
                usage=[ExtendedKeyUsageOID.SERVER_AUTH], sans=[_san(h) for h in hosts],
                days=days)
    _write_key(base / "server.key", srv_key)
    atomic_write_bytes(base / "server.pem", srv.public_bytes(pem))
    out: dict[str, tuple[Path, Path]] = {}
    for dev in devices:
        if not dev or "/" in dev or dev.startswith(".") or dev in ("ca", "server"):
            raise UsageError(f"device id {dev!r} cannot name a certificate file")
        key = _key()
        cert = _cert(dev, key, ca_name, ca_key, ca=False,
                     usage=[ExtendedKeyUsageOID.CLIENT_AUTH], days=days)
        _write_key(base / f"{dev}.key", key)
        atomic_write_bytes(base / f"{dev}.pem", cert.public_bytes(pem))
        out[dev] = (base / f"{dev}.pem", base / f"{dev}.key")
    return CertPaths(base / "ca.pem", base / "server.pem", base / "server.key", out)

"""The update protocol's framing and TLS settings, shared by server and client.

Both ends: TLS 1.3 only (minimum and maximum), ALPN ``quantum-firmware/1.0``. The
server prefers X25519 for key exchange. See :mod:`qpuos.firmware.server` for the frames.
"""

from __future__ import annotations

import json
import ssl
import struct
from typing import Any

from qpuos.errors import FirmwareTransportError
from qpuos.firmware._canonical import canonical_bytes

ALPN = "quantum-firmware/1.0"
HEADER = struct.Struct(">I")
MAX_REQUEST = 64 * 1024
MAX_RESPONSE_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


def encode(obj: dict[str, Any]) -> bytes:
    """A frame: 4-byte big-endian length, then canonical JSON."""
    body = canonical_bytes(obj)
    return HEADER.pack(len(body)) + body


def decode(data: bytes, what: str) -> dict[str, Any]:
    """Parse a frame's JSON object (raises FirmwareTransportError)."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise FirmwareTransportError(f"the {what} is not JSON; the peer does not speak "
                                     f"{ALPN}") from None
    if not isinstance(obj, dict):
        raise FirmwareTransportError(f"the {what} is not a JSON object")
    return obj


def tls13(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Pin ``ctx`` to TLS 1.3 and the update protocol's ALPN."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    return ctx

"""Secure firmware updates for QPU controllers: signed metadata, TLS 1.3 transfer,
A/B slots with rollback, and a fleet registry.

The pieces, bottom up:

- :mod:`~qpuos.firmware.image`: TUF-style roles (root, targets, snapshot, timestamp),
  canonical JSON, Ed25519 signatures with thresholds.
- :mod:`~qpuos.firmware.repo`: offline tools (keygen, sign an image, rotate keys).
- :mod:`~qpuos.firmware.slots`: the device's A/B slots, trial boot, confirm, rollback.
- :mod:`~qpuos.firmware.client`: the agent verifying the chain and downloading by
  verified, resumable chunks.
- :mod:`~qpuos.firmware.server` and :mod:`~qpuos.firmware.transport`: the asyncio
  TLS 1.3 server (ALPN ``quantum-firmware/1.0``) and the device's client.
- :mod:`~qpuos.firmware.fleet`: the fleet registry (SQLite, or PostgreSQL for several
  servers: :class:`PostgresRegistry`, imported on first use so psycopg stays optional),
  and :mod:`~qpuos.firmware.rollout`: staged rollouts halting on an error threshold.
- :mod:`~qpuos.firmware.certs`: local certificates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qpuos.errors import (
    ChunkError,
    ExpiredMetadata,
    FirmwareError,
    FirmwareTimeout,
    FirmwareTransportError,
    LengthExceeded,
    MetadataError,
    MetadataMismatch,
    RegistryError,
    RollbackAttack,
    SignatureError,
    SlotError,
)
from qpuos.firmware.certs import CertPaths, make_certs
from qpuos.firmware.client import (
    DirectoryFetcher,
    Fetcher,
    UpdateAgent,
    UpdateResult,
    provision_device,
)
from qpuos.firmware.fleet import DeviceRecord, Registry, SqliteRegistry, open_registry
from qpuos.firmware.image import (
    Envelope,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    describe_image,
    sign_metadata,
    verify_envelope,
)
from qpuos.firmware.repo import keygen, refresh_timestamp, rotate_keys, sign_image
from qpuos.firmware.rollout import RolloutState, parse_stages
from qpuos.firmware.server import FirmwareServer, ServerStats, serve_in_thread, server_context
from qpuos.firmware.slots import BootedImage, BootState, ImageRecord, SlotStore
from qpuos.firmware.transport import TlsFetcher, client_context, update_device

__all__ = [
    "BootState",
    "BootedImage",
    "CertPaths",
    "ChunkError",
    "DeviceRecord",
    "DirectoryFetcher",
    "Envelope",
    "ExpiredMetadata",
    "Fetcher",
    "FirmwareError",
    "FirmwareServer",
    "FirmwareTimeout",
    "FirmwareTransportError",
    "ImageRecord",
    "LengthExceeded",
    "MetaFile",
    "MetadataError",
    "MetadataMismatch",
    "PostgresRegistry",
    "Registry",
    "RegistryError",
    "RollbackAttack",
    "RolloutState",
    "Root",
    "ServerStats",
    "SignatureError",
    "SlotError",
    "SlotStore",
    "Snapshot",
    "SqliteRegistry",
    "TargetFile",
    "Targets",
    "Timestamp",
    "TlsFetcher",
    "UpdateAgent",
    "UpdateResult",
    "client_context",
    "describe_image",
    "keygen",
    "make_certs",
    "open_registry",
    "parse_stages",
    "provision_device",
    "refresh_timestamp",
    "rotate_keys",
    "serve_in_thread",
    "server_context",
    "sign_image",
    "sign_metadata",
    "update_device",
    "verify_envelope",
]


if TYPE_CHECKING:
    from qpuos.firmware._pg import PostgresRegistry


def __getattr__(name: str) -> Any:
    """``PostgresRegistry`` on first use: importing it needs psycopg."""
    if name == "PostgresRegistry":
        from qpuos.firmware._pg import PostgresRegistry

        return PostgresRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

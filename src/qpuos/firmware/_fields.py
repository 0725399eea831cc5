"""Field parsing shared by the metadata roles: typed fields, versions, times."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from qpuos.errors import MetadataError

__all__ = ["field", "format_time", "header", "nonneg", "parse_time", "parse_version"]


def parse_version(text: str) -> tuple[int, ...]:
    """A firmware version ("1.4.2") as a tuple of integers, for ordering.

    Raises:
        MetadataError: not dot-separated non-negative integers.

    >>> parse_version("1.10.0") > parse_version("1.9.7")
    True
    """
    parts = text.split(".")
    if not text or not all(p.isdigit() and p.isascii() for p in parts):
        raise MetadataError(f"firmware version {text!r} is not dotted integers; "
                            "write it like 1.4.2")
    return tuple(int(p) for p in parts)


def format_time(epoch: int) -> str:
    """Epoch seconds as the metadata's ISO 8601 UTC form.

    >>> format_time(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """The metadata's ISO 8601 UTC time as epoch seconds.

    Raises:
        MetadataError: not of the form 2027-01-31T12:00:00Z.

    >>> parse_time("1970-01-01T00:01:00Z")
    60
    """
    try:
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise MetadataError(f"expiry {text!r} is not of the form 2027-01-31T12:00:00Z")\
            from None
    return int(when.timestamp())


def field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...],
           where: str) -> Any:
    if not isinstance(obj, Mapping) or name not in obj:
        raise MetadataError(f"{where} lacks the field {name!r}; re-sign the metadata")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MetadataError(f"{where}.{name} is {value!r}, not of the expected type")
    return value


def nonneg(obj: Mapping[str, Any], name: str, where: str) -> int:
    value: int = field(obj, name, int, where)
    if value < 0:
        raise MetadataError(f"{where}.{name} is {value}; it must be >= 0")
    return value


def header(signed: Mapping[str, Any], role: str) -> tuple[int, int]:
    kind = field(signed, "_type", str, role)
    if kind != role:
        raise MetadataError(f"expected {role} metadata, got {kind!r}: roles were swapped")
    version = nonneg(signed, "version", role)
    if version < 1:
        raise MetadataError(f"{role}.version is {version}; versions start at 1")
    return version, parse_time(field(signed, "expires", str, role))



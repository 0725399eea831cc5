"""Canonical JSON: one byte string per value, so a signature covers meaning, not layout.

Keys sorted, no whitespace, UTF-8, integers only (floats have more than one spelling and
are refused), strings, booleans, null, lists and objects with string keys. The same
value always encodes to the same bytes, which is what signing and hashing need.
"""

from __future__ import annotations

import json
from typing import Any

from qpuos.errors import MetadataError

__all__ = ["canonical_bytes"]


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise MetadataError(f"{path} is the float {value!r}; canonical JSON takes integers "
                            "only (store a count of the smallest unit instead)")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MetadataError(f"{path} has the non-string key {key!r}; use strings")
            _check(item, f"{path}.{key}")
        return
    raise MetadataError(f"{path} is a {type(value).__name__}, which JSON cannot hold")


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes.

    Args:
        value: nested dicts, lists, strings, integers, booleans and None.

    Returns:
        The UTF-8 bytes, keys sorted, no whitespace.

    Raises:
        MetadataError: the value holds a float, a non-string key or a foreign type.

    >>> canonical_bytes({"b": [1, True], "a": "é"})
    b'{"a":"\\xc3\\xa9","b":[1,true]}'
    """
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")

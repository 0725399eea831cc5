"""Decoding one BTF type record into a :class:`~qpuos.bpf.BtfType` (used lazily by
:class:`qpuos.bpf.btf.Btf`, one record at a time).

mirrors <linux/btf.h>: a 12-byte ``struct btf_type`` (name offset, info word with kind,
vlen and kind_flag, then size or type), followed by the kind's own records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from qpuos.bpf._btf_types import (
    BtfKind,
    BtfMember,
    BtfParam,
    BtfType,
    BtfVarSecinfo,
    EnumValue,
)

__all__ = ["SIZED", "decode_record"]

SIZED = frozenset({BtfKind.INT, BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM,
                   BtfKind.ENUM64, BtfKind.FLOAT, BtfKind.DATASEC})
"""Kinds whose record holds a size (the others hold a type id)."""


def decode_record(d: bytes, e: str, at: int, tid: int,
                  name_at: Callable[[int], str]) -> BtfType:
    """The type record at byte ``at`` of ``d`` (byte order ``e``: "<" or ">") as
    type ``tid``; ``name_at`` reads the string section."""
    name_off, info, size_or_type = struct.unpack_from(e + "III", d, at)
    kind = BtfKind((info >> 24) & 0x1F)
    vlen, kflag = info & 0xFFFF, bool(info >> 31)
    name = name_at(name_off)
    at += 12
    common = {"id": tid, "kind": kind, "name": name, "kind_flag": kflag, "vlen": vlen}
    if kind in SIZED:
        common["size"] = size_or_type
    elif kind not in (BtfKind.ARRAY, BtfKind.FWD):
        common["type_id"] = size_or_type
    if kind == BtfKind.INT:
        (word,) = struct.unpack_from(e + "I", d, at)
        return BtfType(**common, int_encoding=(word >> 24) & 0xF,
                       int_bit_offset=(word >> 16) & 0xFF, int_bits=word & 0xFF)
    if kind == BtfKind.ARRAY:
        elem, index, nelems = struct.unpack_from(e + "III", d, at)
        return BtfType(**common | {"type_id": elem}, index_type_id=index,
                       nelems=nelems)
    if kind in (BtfKind.STRUCT, BtfKind.UNION):
        raw = struct.unpack_from(e + "I" * (3 * vlen), d, at)
        return BtfType(**common, members=tuple(
            BtfMember(name_at(raw[i]), raw[i + 1],
                      raw[i + 2] & 0xFFFFFF if kflag else raw[i + 2],
                      raw[i + 2] >> 24 if kflag else 0)
            for i in range(0, 3 * vlen, 3)))
    if kind == BtfKind.ENUM:
        # kind_flag marks a signed enum
        raw2 = struct.unpack_from(e + ("Ii" if kflag else "II") * vlen, d, at)
        return BtfType(**common, enum_values=tuple(
            EnumValue(name_at(raw2[i]), raw2[i + 1]) for i in range(0, 2 * vlen, 2)))
    if kind == BtfKind.ENUM64:
        raw = struct.unpack_from(e + "III" * vlen, d, at)
        vals = []
        for i in range(0, 3 * vlen, 3):
            v = raw[i + 2] << 32 | raw[i + 1]
            if kflag and v >= 1 << 63:
                v -= 1 << 64
            vals.append(EnumValue(name_at(raw[i]), v))
        return BtfType(**common, enum_values=tuple(vals))
    if kind == BtfKind.FUNC_PROTO:
        raw = struct.unpack_from(e + "II" * vlen, d, at)
        return BtfType(**common, params=tuple(
            BtfParam(name_at(raw[i]), raw[i + 1]) for i in range(0, 2 * vlen, 2)))
    if kind == BtfKind.VAR:
        (linkage,) = struct.unpack_from(e + "I", d, at)
        return BtfType(**common, linkage=linkage)
    if kind == BtfKind.DATASEC:
        raw = struct.unpack_from(e + "III" * vlen, d, at)
        return BtfType(**common, secinfo=tuple(
            BtfVarSecinfo(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, 3 * vlen, 3)))
    if kind == BtfKind.DECL_TAG:
        (idx,) = struct.unpack_from(e + "i", d, at)
        return BtfType(**common, component_idx=idx)
    if kind == BtfKind.FUNC:
        return BtfType(**common, linkage=vlen)
    return BtfType(**common)

"""BTF's type records as values: the kinds, members, enumerators and parameters.

mirrors <linux/btf.h> (struct btf_type and the records that follow it). One flat
:class:`BtfType` carries every kind; the fields a kind does not use stay at their
defaults, which keeps lookups in :mod:`qpuos.bpf.btf` free of per-kind classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["BtfKind", "BtfMember", "BtfParam", "BtfType", "BtfVarSecinfo", "EnumValue"]


class BtfKind(IntEnum):
    """``BTF_KIND_*``: what a type record describes (0 is ``void``)."""

    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


MODIFIERS = frozenset({BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT,
                       BtfKind.TYPE_TAG})
"""Kinds that only qualify or rename the type they point at."""

# BTF_INT_ENCODING bits
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4


@dataclass(frozen=True, slots=True)
class BtfMember:
    """A struct or union member: its name ("" when anonymous), type and bit position."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0

    @property
    def byte_offset(self) -> int:
        """The offset in bytes (the bit offset rounded down for a bitfield)."""
        return self.bit_offset // 8


@dataclass(frozen=True, slots=True)
class EnumValue:
    """One enumerator."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class BtfParam:
    """One parameter of a function prototype (type 0 and no name: ``...``)."""

    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class BtfVarSecinfo:
    """One variable of a data section: its VAR type, offset and size in the section."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class BtfType:
    """One BTF type record.

    ``size`` is set for INT, STRUCT, UNION, ENUM, ENUM64, FLOAT and DATASEC; ``type_id``
    is the type referred to by PTR, TYPEDEF, the qualifiers, FUNC, VAR, DECL_TAG,
    TYPE_TAG, the return type of FUNC_PROTO and the element type of ARRAY. ``vlen`` is
    the member count (or FUNC's linkage); ``linkage`` is FUNC's or VAR's.
    """

    id: int
    kind: BtfKind
    name: str
    size: int = 0
    type_id: int = 0
    kind_flag: bool = False
    vlen: int = 0
    members: tuple[BtfMember, ...] = ()
    enum_values: tuple[EnumValue, ...] = ()
    params: tuple[BtfParam, ...] = ()
    secinfo: tuple[BtfVarSecinfo, ...] = ()
    index_type_id: int = 0
    nelems: int = 0
    int_encoding: int = 0
    int_bit_offset: int = 0
    int_bits: int = 0
    linkage: int = 0
    component_idx: int = -1

    @property
    def is_composite(self) -> bool:
        """True for a struct or a union."""
        return self.kind in (BtfKind.STRUCT, BtfKind.UNION)

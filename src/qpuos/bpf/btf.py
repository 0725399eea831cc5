"""BTF, the kernel's type information: parse it, look types up, print them as C.

Design: the parse is lazy. Opening ``/sys/kernel/btf/vmlinux`` (~5 MB, ~150k types)
does one pass over the type section that records where each type starts, then numpy
reads every record's kind and name offset in one gather. Nothing is decoded until asked:

- a type by id is unpacked on first use and cached;
- a type by name searches the string section for ``\\0name\\0`` (strings are
  deduplicated, so usually one hit) and compares that offset with every record's name
  offset at once in numpy; no name dictionary of 150k entries is ever built.

The pass itself cannot be vectorized (a record's length depends on the one before), so
it is a plain loop over a list of 32-bit words that only reads the info word (~40 ms for
vmlinux). Rejected: a numba kernel for it, as importing numba alone costs more than the
whole parse. Split BTF (a module's, on top of vmlinux) is supported: ids and string
offsets continue from the base.

>>> btf = Btf.load_vmlinux()                                      # doctest: +SKIP
>>> btf.member_offset("task_struct", "pid") > 0                   # doctest: +SKIP
True
>>> tiny = Btf.build_int_struct("pair", [("lo", 4), ("hi", 4)])
>>> tiny.member_offset("pair", "hi"), tiny.sizeof("pair")
(4, 8)
"""

from __future__ import annotations

import difflib
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from qpuos.bpf._btf_decode import SIZED, decode_record
from qpuos.bpf._btf_types import MODIFIERS, BtfKind, BtfMember, BtfType
from qpuos.errors import BtfError, UsageError

__all__ = ["VMLINUX", "Btf"]

VMLINUX = Path("/sys/kernel/btf/vmlinux")
"""Where a kernel built with CONFIG_DEBUG_INFO_BTF publishes its own BTF."""

_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type/str off+len
# words that follow the 3-word btf_type header: fixed part and per-vlen part, by kind
_FIXED = (0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3)
_MAX_KIND = len(_FIXED) - 1


class Btf:
    """A parsed BTF blob (vmlinux, a module's split BTF, or an object's ``.BTF``).

    Args:
        data: the raw BTF bytes, header first.
        base: the BTF this one extends (split BTF: ids and strings continue from it).
        origin: where the bytes came from, for messages.

    Raises:
        BtfError: the bytes are not BTF (bad magic, truncated, unknown kind).
    """

    _str_total: int

    def __init__(self, data: bytes, *, base: Btf | None = None,
                 origin: str = "<bytes>") -> None:
        self.origin = origin
        self.base = base
        self._data = data
        if len(data) < _HEADER.size:
            raise BtfError(f"{origin}: {len(data)} bytes is too short for a BTF header")
        magic = struct.unpack_from("<H", data)[0]
        if magic == _MAGIC:
            self._end = "<"
        elif magic == 0x9FEB:
            self._end = ">"
        else:
            raise BtfError(f"{origin}: magic {magic:#06x} is not BTF's 0xeb9f; is this a "
                           ".BTF section or /sys/kernel/btf file?")
        (_, self.version, self.flags, hdr_len, type_off, type_len, str_off,
         str_len) = struct.unpack_from(self._end + "HBBIIIII", data)
        start = hdr_len + type_off
        if hdr_len + max(type_off + type_len, str_off + str_len) > len(data) \
                or type_len % 4:
            raise BtfError(f"{origin}: header says types [{type_off}, +{type_len}) and "
                           f"strings [{str_off}, +{str_len}) but the blob has "
                           f"{len(data) - hdr_len} bytes after the header")
        self._types_at = start
        self._strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self._first_id = 1 if base is None else len(base) + 1
        self._str_base = 0 if base is None else base._str_total
        self._str_total = self._str_base + len(self._strings)
        words = np.frombuffer(data, dtype=self._end + "u4", count=type_len // 4,
                              offset=start)
        self._starts = self._scan(words.tolist(), origin)
        self._kinds = (words[self._starts + 1] >> 24) & 0x1F
        self._name_offs = words[self._starts]
        self._cache: dict[int, BtfType] = {}

    @staticmethod
    def _scan(words: list[int], origin: str) -> np.ndarray:
        # HOT: one iteration per type record (~150k for vmlinux); only the info word
        # (kind, vlen) is read, and the lengths come from two small tuples
        fixed, per, n = _FIXED, _PER_VLEN, len(words)
        starts: list[int] = []
        append = starts.append
        p = 0
        try:
            while p < n:
                append(p)
                info = words[p + 1]
                k = (info >> 24) & 0x1F
                p += 3 + fixed[k] + per[k] * (info & 0xFFFF)
        except IndexError:
            k = (words[starts[-1] + 1] >> 24) & 0x1F if starts[-1] + 1 < n else -1
            if k > _MAX_KIND:
                raise BtfError(f"{origin}: type {len(starts)} has kind {k}, which this "
                               f"parser does not know (highest known: {_MAX_KIND}, "
                               "ENUM64)") from None
            raise BtfError(f"{origin}: type {len(starts)} at byte {starts[-1] * 4} of the "
                           "type section is cut short") from None
        if p != n:
            raise BtfError(f"{origin}: the last type record runs {4 * (p - n)} bytes past "
                           "the type section")
        return np.asarray(starts, dtype=np.int64)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def load(cls, path: str | Path, *, base: Btf | None = None) -> Btf:
        """Parse a raw BTF file (``/sys/kernel/btf/*`` or a ``.BTF`` section dump).

        Raises:
            BtfError: the file is not BTF.
            FileNotFoundError: no such file.
        """
        p = Path(path)
        return cls(p.read_bytes(), base=base, origin=str(p))

    @classmethod
    def load_vmlinux(cls, path: str | Path = VMLINUX) -> Btf:
        """The running kernel's BTF.

        Raises:
            BtfError: the file is not BTF.
            FileNotFoundError: the kernel was built without CONFIG_DEBUG_INFO_BTF.
        """
        try:
            return cls.load(path)
        except FileNotFoundError as exc:
            exc.add_note(f"{path} is absent: the kernel was built without "
                         "CONFIG_DEBUG_INFO_BTF, so qpuos has no kernel types")
            raise

    @classmethod
    def build_int_struct(cls, name: str, fields: Sequence[tuple[str, int]]) -> Btf:
        """A tiny BTF with one struct of unsigned integer fields (tests, examples).

        Args:
            name: the struct's name.
            fields: (member name, size in bytes: 1, 2, 4 or 8), laid out in order with
                natural alignment.
        """
        strings = bytearray(b"\0")

        def s(text: str) -> int:
            off = len(strings)
            strings.extend(text.encode() + b"\0")
            return off

        types = bytearray()
        sizes = sorted({size for _, size in fields})
        int_id = {size: i + 1 for i, size in enumerate(sizes)}
        for size in sizes:
            types += struct.pack("<III", s(f"u{size * 8}"), BtfKind.INT << 24, size)
            types += struct.pack("<I", size * 8)
        off = 0
        members = bytearray()
        for fname, size in fields:
            off = -(-off // size) * size
            members += struct.pack("<III", s(fname), int_id[size], off * 8)
            off += size
        total = -(-off // max(sizes, default=1)) * max(sizes, default=1)
        types += struct.pack("<III", s(name), BtfKind.STRUCT << 24 | len(fields), total)
        types += members
        header = _HEADER.pack(_MAGIC, 1, 0, _HEADER.size, 0, len(types), len(types),
                              len(strings))
        return cls(header + bytes(types) + bytes(strings), origin=f"<struct {name}>")

    # ---------------------------------------------------------------------- lookups

    @property
    def data(self) -> bytes:
        """The raw BTF bytes this was parsed from (to write to a file, or load)."""
        return self._data

    def __len__(self) -> int:
        """The number of types, ``void`` excluded, base types included."""
        return self._first_id - 1 + len(self._starts)

    def __iter__(self) -> Iterator[BtfType]:
        """This blob's own types, in id order."""
        for tid in range(self._first_id, len(self) + 1):
            yield self.type(tid)

    def name_at(self, offset: int) -> str:
        """The string at ``offset`` of the string section ("" for offset 0)."""
        if offset < self._str_base and self.base is not None:
            return self.base.name_at(offset)
        local = offset - self._str_base
        end = self._strings.find(b"\0", local)
        if local < 0 or end < 0:
            raise BtfError(f"{self.origin}: string offset {offset} is outside the "
                           f"{len(self._strings)}-byte string section")
        return self._strings[local:end].decode("utf-8", "replace")

    def type(self, type_id: int) -> BtfType:
        """The type with id ``type_id`` (0 is ``void``).

        Raises:
            UsageError: no such id.
        """
        t = self._cache.get(type_id)
        if t is not None:
            return t
        if type_id < self._first_id:
            if type_id == 0:
                return BtfType(0, BtfKind.VOID, "void")
            if self.base is not None and type_id > 0:
                return self.base.type(type_id)
        if not 0 < type_id <= len(self):
            raise UsageError(f"type id {type_id} is outside 1..{len(self)} of "
                             f"{self.origin}")
        t = self._decode(type_id)
        self._cache[type_id] = t
        return t

    def _decode(self, tid: int) -> BtfType:
        at = self._types_at + 4 * int(self._starts[tid - self._first_id])
        return decode_record(self._data, self._end, at, tid, self.name_at)

    def find_all(self, name: str, kind: BtfKind | None = None) -> list[BtfType]:
        """Every type named ``name`` (optionally of one kind), in id order, base first."""
        found = [] if self.base is None else self.base.find_all(name, kind)
        if not name:
            return found
        needle = b"\0" + name.encode() + b"\0"
        offsets = []
        at = self._strings.find(needle)
        while at >= 0:
            offsets.append(self._str_base + at + 1)
            at = self._strings.find(needle, at + 1)
        if self.base is not None:  # split BTF may name things with the base's strings
            offsets.extend(self.base._string_offsets(needle))
        if not offsets:
            return found
        hits = np.nonzero(np.isin(self._name_offs, offsets))[0]
        if kind is not None:
            hits = hits[self._kinds[hits] == int(kind)]
        return found + [self.type(int(i) + self._first_id) for i in hits]

    def _string_offsets(self, needle: bytes) -> list[int]:
        out, at = [], self._strings.find(needle)
        while at >= 0:
            out.append(self._str_base + at + 1)
            at = self._strings.find(needle, at + 1)
        return out

    def find(self, name: str, kind: BtfKind | None = None) -> BtfType:
        """The type named ``name``: the first definition, preferring a full one to a
        forward declaration (``kind`` picks among a struct and a typedef of one name).

        Raises:
            UsageError: no such type (with close names), or several kinds share the name
                and ``kind`` was not given.
        """
        found = [t for t in self.find_all(name, kind) if t.kind != BtfKind.FWD] or \
            self.find_all(name, kind)
        if not found:
            what = f"{kind.name.lower()} " if kind is not None else ""
            raise UsageError(f"no {what}type named {name!r} in {self.origin}; check the "
                             "spelling (struct names come without 'struct ')")
        kinds = {t.kind for t in found}
        if len(kinds) > 1:
            names = ", ".join(sorted(k.name for k in kinds))
            raise UsageError(f"{name!r} names several kinds in {self.origin} ({names}); "
                             "pass kind=BtfKind.<one of them>")
        return found[0]

    def _as_type(self, ref: str | int | BtfType) -> BtfType:
        if isinstance(ref, BtfType):
            return ref
        if isinstance(ref, int):
            return self.type(ref)
        return self.find(ref)

    def resolve(self, ref: str | int | BtfType) -> BtfType:
        """The type behind typedefs, qualifiers and type tags."""
        t = self._as_type(ref)
        for _ in range(64):
            if t.kind not in MODIFIERS:
                return t
            t = self.type(t.type_id)
        raise BtfError(f"{self.origin}: a typedef/qualifier chain from {ref!r} is longer "
                       "than 64 links (a cycle?)")

    def sizeof(self, ref: str | int | BtfType) -> int:
        """The size in bytes of a type (pointers are 8 bytes; ``void`` and functions 0).

        Raises:
            UsageError: the type has no size (a forward declaration).
        """
        t = self.resolve(ref)
        if t.kind in SIZED:
            return t.size
        if t.kind == BtfKind.PTR:
            return 8
        if t.kind == BtfKind.ARRAY:
            return t.nelems * self.sizeof(t.type_id)
        if t.kind in (BtfKind.VOID, BtfKind.FUNC, BtfKind.FUNC_PROTO):
            return 0
        raise UsageError(f"{t.kind.name.lower()} {t.name!r} (id {t.id}) has no size; it "
                         "is only declared here")

    def member(self, struct_ref: str | int | BtfType, path: str) -> tuple[BtfMember, int]:
        """The member at ``path`` ("a.b.c") and its bit offset from the struct's start.

        Anonymous struct and union members are searched through, as C does.

        Raises:
            UsageError: no such member (the message lists close names).
        """
        t = self.resolve(struct_ref)
        total = 0
        m: BtfMember | None = None
        for part in path.split("."):
            if not t.is_composite:
                raise UsageError(f"cannot take member {part!r} of {self._describe(t)}: it "
                                 "is not a struct or union")
            hit = self.find_member(t, part)
            if hit is None:
                names = sorted(self._member_names(t))
                close = difflib.get_close_matches(part, names, n=3)
                hint = f"close: {', '.join(close)}" if close else \
                    f"{len(names)} members (print it with Btf.format_c)"
                raise UsageError(f"{t.kind.name.lower()} {t.name or '<anonymous>'} has no "
                                 f"member {part!r}; {hint}")
            m, bits = hit
            total += bits
            t = self.resolve(m.type_id)
        assert m is not None  # path.split always yields one part
        return m, total

    def _describe(self, t: BtfType) -> str:
        from qpuos.bpf._btf_c import declaration

        return f"{t.kind.name.lower()} {declaration(self, t.id)!r}"

    def find_member(self, t: BtfType, name: str) -> tuple[BtfMember, int] | None:
        """Member ``name`` of struct/union ``t`` (searching anonymous members, as C
        does) and its bit offset from ``t``'s start, or None."""
        for m in t.members:
            if m.name == name:
                return m, m.bit_offset
            if not m.name:
                inner = self.resolve(m.type_id)
                if inner.is_composite:
                    hit = self.find_member(inner, name)
                    if hit is not None:
                        return hit[0], m.bit_offset + hit[1]
        return None

    def _member_names(self, t: BtfType) -> Iterator[str]:
        for m in t.members:
            if m.name:
                yield m.name
            else:
                inner = self.resolve(m.type_id)
                if inner.is_composite:
                    yield from self._member_names(inner)

    def member_offset(self, struct_ref: str | int | BtfType, path: str) -> int:
        """The byte offset of member ``path`` ("a.b") in a struct or union.

        >>> Btf.build_int_struct("s", [("a", 1), ("b", 8)]).member_offset("s", "b")
        8

        Raises:
            UsageError: no such member, or it is a bitfield not starting on a byte.
        """
        _, bits = self.member(struct_ref, path)
        if bits % 8:
            raise UsageError(f"member {path!r} is a bitfield at bit {bits}; use "
                             "Btf.member() for its bit offset and width")
        return bits // 8

    def format_c(self, ref: str | int | BtfType) -> str:
        """The type as a C declaration (structs, unions, enums with their bodies).

        >>> print(Btf.build_int_struct("pair", [("lo", 4), ("hi", 4)]).format_c("pair"))
        struct pair {
            u32 lo;
            u32 hi;
        };
        """
        from qpuos.bpf._btf_c import format_type

        return format_type(self, self._as_type(ref))

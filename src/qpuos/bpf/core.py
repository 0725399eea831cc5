"""CO-RE: move an object's field offsets, existence checks and enum values to the
target kernel's BTF, or say exactly what is missing.

clang (``-g``, ``preserve_access_index``) records in ``.BTF.ext`` one relocation per
instruction that encodes a layout fact of the *compiling* machine: the instruction's
offset, the local type, an access string ("0:1" = first element, member 1) and a
kind. Resolving one means walking the local type by those indices to member *names*,
finding the type of the same name (``___flavor`` suffixes dropped) in the target BTF,
walking it by the names, and writing the target's value into the instruction.

A relocation that cannot be satisfied raises :class:`~qpuos.bpf.CoreRelocationError`
naming the struct, the field and the object, never a silent skip; the ``*_EXISTS``
kinds are the exception by definition (they resolve to 0). ``dry_run`` checks an object
against any BTF file with no privileges.

Supported kinds: field byte offset, byte size, exists, signed; type id (local and
target), type exists, type size; enum value exists and value. Bitfield shifts and
type-match relocations raise, naming the kind.

>>> dry_run("count_writes.bpf.o", "/sys/kernel/btf/vmlinux")     # doctest: +SKIP
[]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from qpuos.bpf._btf_types import BtfKind, BtfType
from qpuos.bpf.btf import Btf
from qpuos.errors import BtfError, CoreRelocationError, UsageError

__all__ = ["CoreKind", "CoreRelocation", "CoreResolution", "apply_value", "dry_run",
           "parse_core_relocations", "resolve"]

_EXT_HEADER = struct.Struct("<HBBIIIII")
_CORE_RELO = struct.Struct("<IIII")


class CoreKind(IntEnum):
    """``enum bpf_core_relo_kind`` of <linux/bpf.h>."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


@dataclass(frozen=True, slots=True)
class CoreRelocation:
    """One CO-RE record: the instruction (byte offset in its section), the local type,
    the access string and the kind."""

    section: str
    insn_off: int
    type_id: int
    access: str
    kind: CoreKind


@dataclass(frozen=True, slots=True)
class CoreResolution:
    """A resolved relocation: what it refers to ("task_struct.pid") and the value the
    instruction gets."""

    relocation: CoreRelocation
    target: str
    value: int


def parse_core_relocations(ext: bytes, btf: Btf) -> list[CoreRelocation]:
    """The CO-RE records of a ``.BTF.ext`` section (strings come from ``btf``).

    Raises:
        BtfError: the section is malformed.
    """
    if len(ext) < 8:
        raise BtfError(f".BTF.ext of {len(ext)} bytes is too short for its header")
    magic, _, _, hdr_len = struct.unpack_from("<HBBI", ext)
    if magic != 0xEB9F:
        raise BtfError(f".BTF.ext magic {magic:#06x} is not 0xeb9f")
    if hdr_len < 32:
        return []  # written before CO-RE existed: no relocations
    core_off, core_len = struct.unpack_from("<II", ext, 24)
    at, end = hdr_len + core_off, hdr_len + core_off + core_len
    if core_len == 0:
        return []
    if end > len(ext):
        raise BtfError(f".BTF.ext says CO-RE records end at byte {end} of {len(ext)}")
    (rec_size,) = struct.unpack_from("<I", ext, at)
    if rec_size < _CORE_RELO.size:
        raise BtfError(f".BTF.ext CO-RE record size {rec_size} is below 16")
    at += 4
    out = []
    while at < end:
        name_off, count = struct.unpack_from("<II", ext, at)
        at += 8
        section = btf.name_at(name_off)
        for _ in range(count):
            insn_off, type_id, access_off, kind = _CORE_RELO.unpack_from(ext, at)
            out.append(CoreRelocation(section, insn_off, type_id, btf.name_at(access_off),
                                      CoreKind(kind)))
            at += rec_size
    return out


def _essential(name: str) -> str:
    """``task_struct___old`` -> ``task_struct`` (libbpf's flavor convention)."""
    head, sep, _ = name.rpartition("___")
    return head if sep else name


def _fail(msg: str, obj: str, relo: CoreRelocation, type_name: str,
          field: str) -> CoreRelocationError:
    return CoreRelocationError(
        f"{obj}: program section {relo.section!r}, instruction {relo.insn_off // 8}: "
        f"{msg}; the object was built for a kernel with it: rebuild it against this "
        "kernel's vmlinux.h or guard the access with bpf_core_field_exists()",
        obj=obj, program=relo.section, type_name=type_name, field=field)


def _local_path(local: Btf, relo: CoreRelocation) -> tuple[BtfType, list[str | int]]:
    """The root type and the access path: member names, or ints for array indexes."""
    root = local.resolve(relo.type_id)
    idx = [int(x) for x in relo.access.split(":") if x != ""]
    path: list[str | int] = []
    t = root
    for i in idx[1:]:
        if t.is_composite:
            m = t.members[i]
            path.append(m.name)  # "" for an anonymous member: skipped in the target
            t = local.resolve(m.type_id)
        elif t.kind == BtfKind.ARRAY:
            path.append(i)
            t = local.resolve(t.type_id)
        else:
            raise BtfError(f"CO-RE access string {relo.access!r} walks into "
                           f"{t.kind.name.lower()} {t.name!r}")
    return root, path


def _walk(target: Btf, root: BtfType, path: list[str | int]) -> tuple[int, BtfType, str]:
    """(bit offset, final member's type, the first missing name or "")."""
    t, bits = root, 0
    for step in path:
        if isinstance(step, int):
            if t.kind != BtfKind.ARRAY:
                return bits, t, f"[{step}]"
            bits += step * target.sizeof(t.type_id) * 8
            t = target.resolve(t.type_id)
        elif step:
            if not t.is_composite:
                return bits, t, step
            hit = target.find_member(t, step)
            if hit is None:
                return bits, t, step
            bits += hit[1]
            t = target.resolve(hit[0].type_id)
    return bits, t, ""


def _dotted(root: BtfType, path: list[str | int]) -> str:
    out = root.name
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if step else "")
    return out


def resolve(relo: CoreRelocation, local: Btf, target: Btf, *,
            obj: str = "<object>") -> CoreResolution:
    """The value relocation ``relo`` of an object with BTF ``local`` takes on ``target``.

    Raises:
        CoreRelocationError: the type, field or enumerator is missing in ``target``
            (not for the *_EXISTS kinds, which give 0).
        UsageError: a kind this loader does not handle (bitfield shifts, type match).
    """
    kind = relo.kind
    if kind in (CoreKind.FIELD_LSHIFT_U64, CoreKind.FIELD_RSHIFT_U64, CoreKind.TYPE_MATCHES):
        raise UsageError(f"{obj}: CO-RE relocation kind {kind.name} (section "
                         f"{relo.section!r}) is not supported by qpuos's loader yet")
    root, path = _local_path(local, relo)
    want = _essential(root.name)
    if kind == CoreKind.TYPE_ID_LOCAL:
        return CoreResolution(relo, root.name, relo.type_id)
    kinds = {BtfKind.STRUCT, BtfKind.UNION} if root.is_composite else {root.kind}
    if root.kind in (BtfKind.ENUM, BtfKind.ENUM64):
        kinds = {BtfKind.ENUM, BtfKind.ENUM64}
    cands = [t for t in target.find_all(want) if t.kind in kinds]
    where = f"{root.kind.name.lower()} {want}"
    if kind in (CoreKind.TYPE_EXISTS, CoreKind.TYPE_SIZE, CoreKind.TYPE_ID_TARGET):
        if not cands:
            if kind == CoreKind.TYPE_EXISTS:
                return CoreResolution(relo, where, 0)
            raise _fail(f"{where} does not exist in the target BTF", obj, relo, want, "")
        t = cands[0]
        value = {CoreKind.TYPE_EXISTS: 1, CoreKind.TYPE_SIZE: target.sizeof(t),
                 CoreKind.TYPE_ID_TARGET: t.id}[kind]
        return CoreResolution(relo, where, value)
    if kind in (CoreKind.ENUMVAL_EXISTS, CoreKind.ENUMVAL_VALUE):
        idx = int(relo.access.split(":")[0])
        name = root.enum_values[idx].name
        for t in cands:
            for v in t.enum_values:
                if v.name == name:
                    return CoreResolution(relo, f"{where}::{name}",
                                          1 if kind == CoreKind.ENUMVAL_EXISTS else v.value)
        if kind == CoreKind.ENUMVAL_EXISTS:
            return CoreResolution(relo, f"{where}::{name}", 0)
        raise _fail(f"{where} has no enumerator {name}" if cands else
                    f"{where} does not exist in the target BTF", obj, relo, want, name)
    # field kinds
    dotted = _dotted(root, path)
    missing = ""
    results = []
    for t in cands:
        bits, ftype, missing = _walk(target, t, path)
        if not missing:
            results.append((bits, ftype))
    if not results:
        if kind == CoreKind.FIELD_EXISTS:
            return CoreResolution(relo, dotted, 0)
        if not cands:
            raise _fail(f"{where} does not exist in the target BTF (needed for {dotted})",
                        obj, relo, want, "")
        raise _fail(f"{where} has no member {missing!r} (needed for {dotted})", obj, relo,
                    want, missing)
    if len({r[0] for r in results}) > 1:
        raise _fail(f"{len(results)} definitions of {where} in the target BTF put {dotted} "
                    "at different offsets", obj, relo, want, str(path[-1]))
    bits, ftype = results[0]
    if kind == CoreKind.FIELD_EXISTS:
        return CoreResolution(relo, dotted, 1)
    if kind == CoreKind.FIELD_BYTE_OFFSET:
        if bits % 8:
            raise UsageError(f"{obj}: {dotted} is a bitfield; its byte offset needs the "
                             "bitfield shift relocations, not supported yet")
        return CoreResolution(relo, dotted, bits // 8)
    if kind == CoreKind.FIELD_BYTE_SIZE:
        return CoreResolution(relo, dotted, target.sizeof(ftype))
    signed = (ftype.kind == BtfKind.INT and bool(ftype.int_encoding & 1)) or \
        (ftype.kind in (BtfKind.ENUM, BtfKind.ENUM64) and ftype.kind_flag)
    return CoreResolution(relo, dotted, int(signed))


def apply_value(code: bytearray, insn_off: int, value: int) -> None:
    """Write ``value`` into the instruction at byte ``insn_off`` of ``code``: the
    immediate of an ALU instruction or an ``ld_imm64``, the offset of a load or store.

    Raises:
        UsageError: the instruction cannot carry a relocated value, or it does not fit.
    """
    op = code[insn_off]
    cls = op & 0x07
    if cls in (0x04, 0x07):             # ALU, ALU64 with an immediate
        if not -(1 << 31) <= value < 1 << 32:
            raise UsageError(f"relocated value {value} does not fit a 32-bit immediate")
        struct.pack_into("<I", code, insn_off + 4, value & 0xFFFFFFFF)
    elif op == 0x18:                    # ld_imm64: low and high halves
        struct.pack_into("<I", code, insn_off + 4, value & 0xFFFFFFFF)
        struct.pack_into("<I", code, insn_off + 12, value >> 32 & 0xFFFFFFFF)
    elif cls in (0x01, 0x02, 0x03):     # LDX, ST, STX: the 16-bit offset
        if not -(1 << 15) <= value < 1 << 15:
            raise UsageError(f"relocated offset {value} does not fit 16 bits")
        struct.pack_into("<h", code, insn_off + 2, value)
    else:
        raise UsageError(f"instruction {insn_off // 8} (opcode {op:#04x}) cannot take a "
                         "CO-RE relocation")


def dry_run(obj_path: str | Path, btf_path: str | Path) -> list[CoreResolution]:
    """Resolve every CO-RE relocation of object ``obj_path`` against the BTF at
    ``btf_path`` (no privileges needed); returns what each would become.

    Raises:
        CoreRelocationError: the first relocation the BTF cannot satisfy.
        BtfError: the object's or the file's BTF is malformed.
    """
    from qpuos.bpf.elf import BpfObject

    obj = BpfObject.open(obj_path)
    return obj.resolve_core(Btf.load(btf_path))

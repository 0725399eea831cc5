"""Register maps: ``Access``, ``Field``, ``Register`` and the validated ``RegisterMap``.

Public through ``qpuos.kernel.mmio`` (this module keeps ``mmio.py`` to the window and
its access paths). Validation happens once, when a map is built; every message names the
map, the register and the observed value, and says what to change.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from qpuos.errors import MmioError

__all__ = ["Access", "Field", "FieldSpec", "Register", "RegisterMap", "unknown"]

WIDTHS = (8, 16, 32, 64)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# (lsb, unshifted mask, enum type or None): a field as the window's access paths use it.
FieldSpec = tuple[int, int, "type[enum.IntEnum] | None"]


class Access(enum.Enum):
    """Who may do what to a register, seen from the host (the driver)."""

    RO = "ro"     #: read-only: the device sets it, host writes are refused
    RW = "rw"     #: read-write
    WO = "wo"     #: write-only (a doorbell): host reads are refused
    W1C = "w1c"   #: write-1-to-clear: the device sets bits, the host acknowledges them


@dataclass(frozen=True, slots=True)
class Field:
    """A bit field of a register: ``width`` bits from bit ``lsb``, optionally an enum."""

    name: str
    lsb: int
    width: int = 1
    values: type[enum.IntEnum] | None = None
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Register:
    """One register: ``width`` bits (8, 16, 32 or 64) at a naturally aligned ``offset``."""

    name: str
    offset: int
    width: int = 32
    access: Access = Access.RW
    fields: tuple[Field, ...] = ()
    reset: int = 0
    doc: str = ""


class RegisterMap:
    """A validated, immutable set of registers: the layout both sides of a window share.

    >>> class Mode(enum.IntEnum):
    ...     IDLE = 0
    ...     RUN = 1
    >>> regs = RegisterMap("demo", [
    ...     Register("ID", 0x0, access=Access.RO, reset=0x51505501),
    ...     Register("CTRL", 0x4, fields=(Field("ENABLE", 0), Field("MODE", 1, 2, Mode))),
    ...     Register("IRQ_STATUS", 0x8, access=Access.W1C, fields=(Field("DONE", 0),)),
    ...     Register("CYCLES", 0x10, width=64, access=Access.RO),
    ... ])
    >>> regs.size, regs["CTRL"].offset
    (4096, 4)
    >>> print(regs.describe())
    register map 'demo': 4 registers, 4096 bytes
    offset  name        bits  access  reset               fields
    0x0000  ID            32  ro      0x51505501
    0x0004  CTRL          32  rw      0x00000000          ENABLE[0], MODE[2:1] (Mode)
    0x0008  IRQ_STATUS    32  w1c     0x00000000          DONE[0]
    0x0010  CYCLES        64  ro      0x0000000000000000

    Args:
        name: the map's name, used in every error message.
        registers: the registers, in any order.
        size: the window's size in bytes; defaults to the end of the last register
            rounded up to 4096.

    Raises:
        MmioError: duplicate names, a misaligned or overlapping register, a field outside
            its register or overlapping another, an enum or reset value that does not fit.
    """

    __slots__ = ("_by_name", "_fields", "fingerprint", "name", "registers", "size")

    def __init__(self, name: str, registers: Sequence[Register], *,
                 size: int | None = None) -> None:
        for reg in registers:
            if not isinstance(reg, Register):
                raise MmioError(f"register map {name!r} got {reg!r}; give Register objects")
            if not isinstance(reg.access, Access):
                raise MmioError(f"register {reg.name!r} in map {name!r} has access "
                                f"{reg.access!r}; use an Access member")
            strays = [f for f in reg.fields if not isinstance(f, Field)]
            if not isinstance(reg.fields, tuple) or strays:
                raise MmioError(f"register {reg.name!r} in map {name!r} has fields "
                                f"{reg.fields!r}; give a tuple of Field objects")
        ordered, size, fields = _check_registers(name, registers, size)
        self.name = name
        self.registers = ordered
        self.size = size
        self._by_name = {r.name: r for r in ordered}
        self._fields = fields
        self.fingerprint = _fingerprint(name, ordered, size)

    def __getitem__(self, name: str) -> Register:
        """The register called ``name``; MmioError (with suggestions) if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise unknown("register", name, f"register map {self.name!r}",
                          self._by_name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Register]:
        return iter(self.registers)

    def __len__(self) -> int:
        return len(self.registers)

    def __repr__(self) -> str:
        return f"RegisterMap({self.name!r}, {len(self.registers)} registers, {self.size} bytes)"

    def field_spec(self, reg: str, field: str) -> FieldSpec:
        """``(lsb, mask, enum)`` of field ``field`` of register ``reg`` (mask unshifted)."""
        specs = self._fields.get(reg)
        if specs is None:
            raise unknown("register", reg, f"register map {self.name!r}", self._by_name)
        try:
            return specs[field]
        except KeyError:
            raise unknown("field", field, f"register {reg!r} of map {self.name!r}",
                          specs) from None

    def describe(self) -> str:
        """A table of the registers: offset, name, width, access, reset value, fields."""
        wide = max(len(r.name) for r in self.registers)
        resets = {r.name: f"{r.reset:#0{r.width // 4 + 2}x}" for r in self.registers}
        rw = max(len(v) for v in resets.values())
        lines = [f"register map {self.name!r}: {len(self.registers)} registers, "
                 f"{self.size} bytes",
                 f"offset  {'name':<{wide}}  bits  access  {'reset':<{rw}}  fields"]
        for r in self.registers:
            fields = ", ".join(
                (f"{f.name}[{f.lsb}]" if f.width == 1 else
                 f"{f.name}[{f.lsb + f.width - 1}:{f.lsb}]")
                + ("" if f.values is None else f" ({f.values.__name__})")
                for f in r.fields)
            lines.append(f"{r.offset:#06x}  {r.name:<{wide}}  {r.width:>4}  "
                         f"{r.access.value:<6}  {resets[r.name]:<{rw}}  {fields}".rstrip())
        return "\n".join(lines)


def unknown(kind: str, name: object, where: str, names: Iterable[str]) -> MmioError:
    """An error for an unknown register or field, listing the closest known names."""
    known = list(names)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif not known:
        hint = f"it has no {kind}s"
    else:
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        hint = f"known {kind}s: {shown}"
    return MmioError(f"no {kind} {name!r} in {where}; {hint}")


def _check_field(map_name: str, reg: Register, f: Field, taken: int) -> int:
    """Check one field of ``reg``; returns its mask in the register (shifted)."""
    where = f"field {f.name!r} of register {reg.name!r} in map {map_name!r}"
    if not isinstance(f.name, str) or not _IDENT.match(f.name):
        raise MmioError(f"field name {f.name!r} of register {reg.name!r} in map "
                        f"{map_name!r} is not an identifier; use letters, digits and _")
    if not (isinstance(f.lsb, int) and isinstance(f.width, int)) or f.lsb < 0 \
            or f.width < 1:
        raise MmioError(f"{where} has lsb {f.lsb!r} and width {f.width!r}; lsb must be "
                        ">= 0 and width >= 1")
    if f.lsb + f.width > reg.width:
        raise MmioError(f"{where} spans bits {f.lsb}..{f.lsb + f.width - 1}, outside the "
                        f"{reg.width}-bit register; shrink the field or widen the register")
    mask = ((1 << f.width) - 1) << f.lsb
    if mask & taken:
        raise MmioError(f"{where} (bits {f.lsb}..{f.lsb + f.width - 1}) overlaps another "
                        "field of the register; fields must not share bits")
    if f.values is not None:
        if not (isinstance(f.values, type) and issubclass(f.values, enum.IntEnum)):
            raise MmioError(f"{where} has values={f.values!r}; give an IntEnum subclass")
        wide = [m.name for m in f.values if not 0 <= m.value < 1 << f.width]
        if wide:
            raise MmioError(f"{where} is {f.width} bits wide but {f.values.__name__} "
                            f"members {', '.join(wide)} do not fit in it")
    return mask


def _check_register(map_name: str, reg: Register) -> dict[str, FieldSpec]:
    where = f"register {reg.name!r} in map {map_name!r}"
    if not isinstance(reg.name, str) or not _IDENT.match(reg.name):
        raise MmioError(f"register name {reg.name!r} in map {map_name!r} is not an "
                        "identifier; use letters, digits and _")
    if reg.width not in WIDTHS:
        raise MmioError(f"{where} is {reg.width!r} bits wide; use 8, 16, 32 or 64")
    if not isinstance(reg.offset, int) or reg.offset < 0 or reg.offset % (reg.width // 8):
        raise MmioError(f"{where} at offset {reg.offset!r} is misaligned: a {reg.width}-bit "
                        f"register needs an offset that is a multiple of {reg.width // 8}")
    if not isinstance(reg.reset, int) or not 0 <= reg.reset < 1 << reg.width:
        raise MmioError(f"{where} has reset value {reg.reset!r}, which does not fit "
                        f"{reg.width} bits")
    specs: dict[str, FieldSpec] = {}
    taken = 0
    for f in reg.fields:
        if f.name in specs:
            raise MmioError(f"{where} has two fields named {f.name!r}; rename one")
        taken |= _check_field(map_name, reg, f, taken)
        specs[f.name] = (f.lsb, (1 << f.width) - 1, f.values)
    return specs


def _check_registers(map_name: str, registers: Sequence[Register], size: int | None
                    ) -> tuple[tuple[Register, ...], int, dict[str, dict[str, FieldSpec]]]:
    """Validate a register map's layout (the caller has checked the types of its items).

    Returns the registers sorted by offset, the window size and the field specs.
    """
    if not isinstance(map_name, str) or not map_name:
        raise MmioError(f"register map name {map_name!r} is not valid; give a non-empty "
                        "string")
    if not registers:
        raise MmioError(f"register map {map_name!r} has no registers; give at least one")
    fields: dict[str, dict[str, FieldSpec]] = {}
    for reg in registers:
        specs = _check_register(map_name, reg)
        if reg.name in fields:
            raise MmioError(f"register map {map_name!r} has two registers named "
                            f"{reg.name!r}; rename one")
        fields[reg.name] = specs
    ordered = tuple(sorted(registers, key=lambda r: r.offset))
    for before, after in itertools.pairwise(ordered):
        last = before.offset + before.width // 8 - 1
        if last >= after.offset:
            raise MmioError(f"registers {before.name!r} ({before.offset:#x}..{last:#x}) and "
                            f"{after.name!r} (at {after.offset:#x}) overlap in map "
                            f"{map_name!r}; move one of them")
    end = ordered[-1].offset + ordered[-1].width // 8
    if size is None:
        size = -(-end // 4096) * 4096
    elif not isinstance(size, int) or size < end:
        raise MmioError(f"register map {map_name!r} has size {size!r} but its registers "
                        f"end at byte {end}; give size >= {end} or leave it out")
    return ordered, size, fields


def _fingerprint(map_name: str, registers: Sequence[Register], size: int) -> int:
    """A 64-bit hash of everything both sides of a window must agree on (docs excluded)."""
    parts = [map_name, str(size)]
    for r in registers:
        parts.append(f"{r.name}@{r.offset}:{r.width}:{r.access.value}:{r.reset}")
        for f in r.fields:
            values = "" if f.values is None else ",".join(
                f"{m.name}={m.value}" for m in f.values)
            parts.append(f"{f.name}[{f.lsb}+{f.width}]{values}")
    digest = hashlib.blake2b("\n".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")

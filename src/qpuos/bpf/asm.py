"""An eBPF assembler: instructions as Python objects, labels, helpers by name, map fds.

Tools ship bytecode built here, so nothing needs clang at run time. A program is a list
of :class:`Insn` and :class:`Label` items; :func:`assemble` resolves labels to jump
offsets and map names to fds and encodes the 8-byte instructions of <linux/bpf.h>
(``struct bpf_insn``: opcode, dst/src nibbles, 16-bit offset, 32-bit immediate;
``ld_imm64`` takes two slots).

The second operand of an ALU or jump instruction is a register (``Reg``) or an integer
immediate; the constructor picks ``BPF_X`` or ``BPF_K`` from its type.

>>> prog = [mov(R0, 0), jeq(R1, 0, "out"), mov(R0, 1), Label("out"), exit_()]
>>> assemble(prog).hex(" ", 8)
'b700000000000000 1501010000000000 b700000001000000 9500000000000000'
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from qpuos.bpf._helpers import helper_id
from qpuos.errors import UsageError

__all__ = [
    "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10",
    "HasFd", "Insn", "Label", "Reg", "add", "and_", "arsh", "assemble", "atomic_add",
    "call", "div", "endian", "exit_", "ja", "jeq", "jge", "jgt", "jle", "jlt", "jne",
    "jset", "jsge", "jsgt", "jsle", "jslt", "ld_imm64", "ld_map_fd", "ld_map_value",
    "load", "lsh", "mod", "mov", "mul", "neg", "or_", "rsh", "store", "sub", "xor",
]

# mirrors <linux/bpf_common.h> and <linux/bpf.h>: instruction classes, sizes, modes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
_SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
_MEM, _IMM, _ATOMIC = 0x60, 0x00, 0xC0
_K, _X = 0x00, 0x08
_ALU_OPS = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50,
            "lsh": 0x60, "rsh": 0x70, "neg": 0x80, "mod": 0x90, "xor": 0xA0, "mov": 0xB0,
            "arsh": 0xC0, "end": 0xD0}
_JMP_OPS = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50,
            "jsgt": 0x60, "jsge": 0x70, "call": 0x80, "exit": 0x90, "jlt": 0xA0,
            "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0}
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
_ENCODE = struct.Struct("<BBhi")
_S16 = range(-(1 << 15), 1 << 15)
_S32 = range(-(1 << 31), 1 << 31)


class Reg(IntEnum):
    """The eleven eBPF registers: R0 result, R1-R5 arguments, R6-R9 callee-saved, R10
    the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg


class HasFd(Protocol):
    """Anything with an ``fd`` (a map object)."""

    @property
    def fd(self) -> int:
        """The file descriptor."""
        ...


MapRef = int | str | HasFd
"""A map in an instruction: its fd, an object with ``.fd``, or a name for assemble()."""


@dataclass(frozen=True, slots=True)
class Label:
    """A jump target: the next instruction's position, by name."""

    name: str


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction. ``target`` is a label a jump resolves at assembly; ``map_ref``
    a map whose fd fills ``imm`` of an ``ld_imm64``; ``wide`` marks the 16-byte
    ``ld_imm64`` (``imm`` then holds all 64 bits, ``imm_hi`` overrides the upper half)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None
    map_ref: MapRef | None = None
    wide: bool = False

    @property
    def slots(self) -> int:
        """Instruction slots taken: 2 for ld_imm64, else 1."""
        return 2 if self.wide else 1


def _reg(value: object, what: str) -> int:
    if isinstance(value, Reg):
        return int(value)
    raise UsageError(f"{what} must be a register R0..R10, got {value!r}")


def _alu(op: str, dst: Reg, src: Reg | int, width: int) -> Insn:
    cls = ALU64 if width == 64 else ALU
    d = _reg(dst, f"{op}'s destination")
    if isinstance(src, Reg):
        return Insn(cls | _ALU_OPS[op] | _X, d, int(src))
    if src not in _S32 and not (width == 32 and 0 <= src < 1 << 32):
        raise UsageError(f"{op} immediate {src} does not fit 32 bits; load it with "
                         "ld_imm64 into a register first")
    return Insn(cls | _ALU_OPS[op] | _K, d, 0, 0, src - (1 << 32) if src >= 1 << 31 else src)


def mov(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst = src`` (a register or a 32-bit immediate, sign-extended for 64-bit)."""
    return _alu("mov", dst, src, width)


def add(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst += src``."""
    return _alu("add", dst, src, width)


def sub(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst -= src``."""
    return _alu("sub", dst, src, width)


def mul(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst *= src``."""
    return _alu("mul", dst, src, width)


def div(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst /= src`` (unsigned; division by zero gives 0)."""
    return _alu("div", dst, src, width)


def mod(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst %= src`` (unsigned)."""
    return _alu("mod", dst, src, width)


def or_(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst |= src``."""
    return _alu("or", dst, src, width)


def and_(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst &= src``."""
    return _alu("and", dst, src, width)


def xor(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst ^= src``."""
    return _alu("xor", dst, src, width)


def lsh(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst <<= src``."""
    return _alu("lsh", dst, src, width)


def rsh(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst >>= src`` (logical)."""
    return _alu("rsh", dst, src, width)


def arsh(dst: Reg, src: Reg | int, *, width: int = 64) -> Insn:
    """``dst >>= src`` (arithmetic, sign-filling)."""
    return _alu("arsh", dst, src, width)


def neg(dst: Reg, *, width: int = 64) -> Insn:
    """``dst = -dst``."""
    return _alu("neg", dst, 0, width)


def endian(dst: Reg, bits: int, *, big: bool = True) -> Insn:
    """Convert the low ``bits`` (16, 32, 64) of ``dst`` to big (or little) endian."""
    if bits not in (16, 32, 64):
        raise UsageError(f"endian conversion takes 16, 32 or 64 bits, got {bits}")
    return Insn(ALU | _ALU_OPS["end"] | (_X if big else _K), _reg(dst, "endian's register"),
                0, 0, bits)


def _jump(op: str, dst: Reg, src: Reg | int, target: str | int, width: int) -> Insn:
    cls = JMP if width == 64 else JMP32
    d = _reg(dst, f"{op}'s first operand")
    label, off = (target, 0) if isinstance(target, str) else (None, target)
    if isinstance(src, Reg):
        return Insn(cls | _JMP_OPS[op] | _X, d, int(src), off, 0, label)
    if src not in _S32:
        raise UsageError(f"{op} immediate {src} does not fit a signed 32-bit field; "
                         "compare against a register loaded with ld_imm64")
    return Insn(cls | _JMP_OPS[op] | _K, d, 0, off, src, label)


def jeq(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump to ``target`` (a label, or a slot offset) if ``dst == src``."""
    return _jump("jeq", dst, src, target, width)


def jne(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst != src``."""
    return _jump("jne", dst, src, target, width)


def jgt(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst > src`` (unsigned)."""
    return _jump("jgt", dst, src, target, width)


def jge(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst >= src`` (unsigned)."""
    return _jump("jge", dst, src, target, width)


def jlt(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst < src`` (unsigned)."""
    return _jump("jlt", dst, src, target, width)


def jle(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst <= src`` (unsigned)."""
    return _jump("jle", dst, src, target, width)


def jsgt(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst > src`` (signed)."""
    return _jump("jsgt", dst, src, target, width)


def jsge(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst >= src`` (signed)."""
    return _jump("jsge", dst, src, target, width)


def jslt(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst < src`` (signed)."""
    return _jump("jslt", dst, src, target, width)


def jsle(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst <= src`` (signed)."""
    return _jump("jsle", dst, src, target, width)


def jset(dst: Reg, src: Reg | int, target: str | int, *, width: int = 64) -> Insn:
    """Jump if ``dst & src`` is not zero."""
    return _jump("jset", dst, src, target, width)


def ja(target: str | int) -> Insn:
    """Jump always."""
    label, off = (target, 0) if isinstance(target, str) else (None, target)
    return Insn(JMP | _JMP_OPS["ja"], 0, 0, off, 0, label)


def call(helper: str | int) -> Insn:
    """Call a helper by name ("map_lookup_elem", "bpf_ktime_get_ns") or id; the result
    is in R0, R1-R5 are clobbered."""
    return Insn(JMP | _JMP_OPS["call"], 0, 0, 0,
                helper if isinstance(helper, int) else helper_id(helper))


def exit_() -> Insn:
    """Return R0 to the kernel."""
    return Insn(JMP | _JMP_OPS["exit"])


def _size(size: int) -> int:
    try:
        return _SIZES[size]
    except KeyError:
        raise UsageError(f"memory access size must be 1, 2, 4 or 8 bytes, got {size}") \
            from None


def load(dst: Reg, src: Reg, off: int = 0, *, size: int = 8) -> Insn:
    """``dst = *(uN *)(src + off)``."""
    return Insn(LDX | _MEM | _size(size), _reg(dst, "load's destination"),
                _reg(src, "load's base"), _off(off))


def store(dst: Reg, off: int, src: Reg | int, *, size: int = 8) -> Insn:
    """``*(uN *)(dst + off) = src`` (a register or a 32-bit immediate)."""
    base = _reg(dst, "store's base")
    if isinstance(src, Reg):
        return Insn(STX | _MEM | _size(size), base, int(src), _off(off))
    if src not in _S32:
        raise UsageError(f"store immediate {src} does not fit 32 bits")
    return Insn(ST | _MEM | _size(size), base, 0, _off(off), src)


def atomic_add(dst: Reg, off: int, src: Reg, *, size: int = 8) -> Insn:
    """``*(uN *)(dst + off) += src`` atomically (size 4 or 8)."""
    if size not in (4, 8):
        raise UsageError(f"atomic add works on 4 or 8 bytes, got {size}")
    return Insn(STX | _ATOMIC | _size(size), _reg(dst, "atomic_add's base"),
                _reg(src, "atomic_add's source"), _off(off), 0)


def _off(off: int) -> int:
    if off not in _S16:
        raise UsageError(f"offset {off} does not fit the signed 16-bit field")
    return off


def ld_imm64(dst: Reg, value: int) -> Insn:
    """``dst = value`` for any 64-bit value (two instruction slots)."""
    if not -(1 << 63) <= value < 1 << 64:
        raise UsageError(f"ld_imm64 value {value} does not fit 64 bits")
    return Insn(LD | _IMM | 0x18, _reg(dst, "ld_imm64's destination"), 0, 0,
                value & ((1 << 64) - 1), wide=True)


def ld_map_fd(dst: Reg, map_ref: MapRef) -> Insn:
    """``dst = &map`` for helpers such as map_lookup_elem (fd, map object or name)."""
    return Insn(LD | _IMM | 0x18, _reg(dst, "ld_map_fd's destination"), PSEUDO_MAP_FD,
                0, 0, map_ref=map_ref, wide=True)


def ld_map_value(dst: Reg, map_ref: MapRef, offset: int = 0) -> Insn:
    """``dst = &map's value + offset`` (direct access to an array map's first value)."""
    return Insn(LD | _IMM | 0x18, _reg(dst, "ld_map_value's destination"),
                PSEUDO_MAP_VALUE, 0, (offset & 0xFFFFFFFF) << 32, map_ref=map_ref,
                wide=True)


def _map_fd(ref: MapRef, maps: Mapping[str, int | HasFd]) -> int:
    if isinstance(ref, str):
        try:
            found = maps[ref]
        except KeyError:
            raise UsageError(f"instruction refers to map {ref!r} but assemble() got "
                             f"maps {sorted(maps)}; pass maps={{{ref!r}: <map>}}") from None
        ref = found
    return ref if isinstance(ref, int) else ref.fd


def assemble(program: Iterable[Insn | Label], *,
             maps: Mapping[str, int | HasFd] | None = None) -> bytes:
    """Encode ``program`` to eBPF bytecode.

    Args:
        program: instructions and labels in order.
        maps: map names used by ``ld_map_fd``/``ld_map_value`` -> fd or map object.

    Returns:
        The bytecode, 8 bytes per slot, for ``BPF_PROG_LOAD``.

    Raises:
        UsageError: a label is undefined or defined twice, a jump does not fit 16 bits,
            or a map name is unknown.
    """
    items = list(program)
    where: dict[str, int] = {}
    slot = 0
    for item in items:  # 1. labels to slot positions
        if isinstance(item, Label):
            if item.name in where:
                raise UsageError(f"label {item.name!r} is defined twice")
            where[item.name] = slot
        else:
            slot += item.slots
    out = bytearray()
    slot = 0
    for item in items:  # 2. encode, resolving jumps and maps
        if isinstance(item, Label):
            continue
        off, imm = item.off, item.imm
        if item.target is not None:
            if item.target not in where:
                raise UsageError(f"jump to undefined label {item.target!r}; defined: "
                                 f"{', '.join(sorted(where)) or 'none'}")
            off = where[item.target] - slot - 1
            if off not in _S16:
                raise UsageError(f"jump to {item.target!r} spans {off} slots, more than "
                                 "a 16-bit offset holds")
        if item.map_ref is not None:
            imm = (imm & ~0xFFFFFFFF) | (_map_fd(item.map_ref, maps or {}) & 0xFFFFFFFF)
        regs = (item.src & 0xF) << 4 | (item.dst & 0xF)
        if item.wide:
            lo, hi = imm & 0xFFFFFFFF, imm >> 32 & 0xFFFFFFFF
            out += _ENCODE.pack(item.code, regs, off, lo - (1 << 32) if lo >> 31 else lo)
            out += _ENCODE.pack(0, 0, 0, hi - (1 << 32) if hi >> 31 else hi)
        else:
            out += _ENCODE.pack(item.code, regs, off, imm)
        slot += item.slots
    return bytes(out)

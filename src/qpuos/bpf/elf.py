"""Objects clang compiled (``clang -O2 -g -target bpf -c x.bpf.c``), loaded without
libbpf: programs by section, maps, relocations, global data, CO-RE.

Reading ELF needs pyelftools (a dependency of qpuos; imported on first use, so the rest
of :mod:`qpuos.bpf` works without it).

What is read from the ELF file (pyelftools):

- programs: each function symbol in an executable section; the section name gives the
  type (``raw_tracepoint/NAME``, ``raw_tp/NAME``, ``tracepoint/CAT/NAME``, ``tp/...``,
  ``kprobe/...``, ``socket``...); ``license`` gives the license string;
- maps: BTF-defined ones in ``.maps`` (each member of the map's struct is a pointer to
  an array whose length is the value: ``__uint(max_entries, 64)``, or a pointer to the
  key or value type: ``__type(key, u32)``) and legacy ``struct bpf_map_def`` ones in
  ``maps``;
- global data: ``.rodata``, ``.data`` and ``.bss`` become one-element array maps
  holding the section (``.rodata`` can be changed with :meth:`BpfObject.set_global`
  before load, as libbpf's skeletons do for ``const volatile`` settings);
- relocations of the program sections: an ``ld_imm64`` referring to a map gets its fd
  (``BPF_PSEUDO_MAP_FD``), one referring to global data the data map's fd and the
  offset (``BPF_PSEUDO_MAP_VALUE``); calls to other functions (``.text``) are refused;
- ``.BTF.ext`` CO-RE relocations, resolved by :mod:`qpuos.bpf.core` against the running
  kernel's BTF (or one given).

>>> obj = BpfObject.open("tests/bpf/data/count_writes.bpf.o")     # doctest: +SKIP
>>> sorted(obj.maps), [p.name for p in obj.programs.values()]   # doctest: +SKIP
(['.bss', '.data', '.rodata', 'by_nr', 'counts', 'events'], ['count_writes'])
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qpuos._ffi import bpf as _ffi
from qpuos.bpf._btf_types import BtfKind
from qpuos.bpf.btf import Btf
from qpuos.bpf.core import CoreResolution, apply_value, parse_core_relocations, resolve
from qpuos.bpf.loader import BpfProgram, ProgType, load_program
from qpuos.bpf.maps import ArrayMap, BpfMap, HashMap, PerCpuArrayMap, PerCpuHashMap
from qpuos.bpf.ringbuf import RingBuffer
from qpuos.errors import ClosedResourceError, UsageError

__all__ = ["BpfObject", "MapSpec", "ObjectProgram"]

_EM_BPF = 247
_DATA_SECTIONS = (".rodata", ".data", ".bss")
_PREFIXES = (("raw_tracepoint/", ProgType.RAW_TRACEPOINT), ("raw_tp/", ProgType.RAW_TRACEPOINT),
             ("tracepoint/", ProgType.TRACEPOINT), ("tp/", ProgType.TRACEPOINT),
             ("kprobe/", ProgType.KPROBE), ("kretprobe/", ProgType.KPROBE),
             ("perf_event", ProgType.PERF_EVENT), ("socket", ProgType.SOCKET_FILTER))


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A map the object declares: type, sizes, capacity, flags, and for global data the
    section's initial bytes."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    initial: bytes | None = None


@dataclass(slots=True)
class ObjectProgram:
    """A program of the object: its name (the function), section, type, bytecode and
    the map relocations (instruction byte offset -> (map name, offset in the map's
    value, or -1 for the map itself))."""

    name: str
    section: str
    prog_type: ProgType
    code: bytearray
    section_offset: int
    relocations: dict[int, tuple[str, int]] = field(default_factory=dict)


def _prog_type(section: str, path: str) -> ProgType:
    for prefix, kind in _PREFIXES:
        if section.startswith(prefix):
            return kind
    raise UsageError(f"{path}: program section {section!r} has no known prefix "
                     f"({', '.join(p for p, _ in _PREFIXES)})")


class BpfObject:
    """A parsed eBPF object file; :meth:`load` creates its maps and loads its programs.

    ``maps`` and ``programs`` describe the object; after ``load()``, ``loaded_maps`` and
    ``loaded_programs`` hold the kernel objects, all closed by :meth:`close`.
    """

    def __init__(self, data: bytes, *, path: str = "<object>") -> None:
        self.path = path
        from elftools.elf.elffile import ELFFile  # pyelftools: imported only when needed

        try:
            elf = ELFFile(io.BytesIO(data))
        except Exception as exc:  # pyelftools raises its own ELFError and struct errors
            raise UsageError(f"{path} is not an ELF file: {exc}") from exc
        if elf["e_machine"] not in ("EM_BPF", _EM_BPF) or not elf.little_endian:
            raise UsageError(f"{path} is an ELF file for {elf['e_machine']}, not a "
                             "little-endian eBPF object (clang -target bpf)")
        self._elf = elf
        self.btf = self._section_btf()
        self.license = self._license()
        self.maps: dict[str, MapSpec] = {}
        self._symbols = self._symbol_table()
        self._read_maps()
        self.programs: dict[str, ObjectProgram] = {}
        self._read_programs()
        ext = elf.get_section_by_name(".BTF.ext")
        self.core = [] if ext is None or self.btf is None else \
            parse_core_relocations(ext.data(), self.btf)
        self.loaded_maps: dict[str, BpfMap | RingBuffer] = {}
        self.loaded_programs: dict[str, BpfProgram] = {}
        self._closed = False

    @classmethod
    def open(cls, path: str | Path) -> BpfObject:
        """Parse the object at ``path`` (no privileges needed).

        Raises:
            UsageError: not an eBPF ELF object, or a section this loader cannot handle.
            FileNotFoundError: no such file.
        """
        p = Path(path)
        return cls(p.read_bytes(), path=str(p))

    # ------------------------------------------------------------------ reading

    def _section_btf(self) -> Btf | None:
        sec = self._elf.get_section_by_name(".BTF")
        return None if sec is None else Btf(sec.data(), origin=f"{self.path}:.BTF")

    def _license(self) -> str:
        sec = self._elf.get_section_by_name("license")
        return "" if sec is None else sec.data().split(b"\0")[0].decode()

    def _symbol_table(self) -> list[Any]:
        from elftools.elf.sections import SymbolTableSection

        symtab = self._elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise UsageError(f"{self.path} has no symbol table; build it with clang -c, "
                             "not stripped")
        return list(symtab.iter_symbols())

    def _section_name(self, index: Any) -> str:
        return str(self._elf.get_section(index).name) if isinstance(index, int) else ""

    def _read_maps(self) -> None:
        for name in _DATA_SECTIONS:
            sec = self._elf.get_section_by_name(name)
            if sec is not None and sec["sh_size"]:
                init = bytes(sec["sh_size"]) if sec["sh_type"] == "SHT_NOBITS" else sec.data()
                self.maps[name] = MapSpec(name, _ffi.BPF_MAP_TYPE_ARRAY, 4, len(init), 1,
                                          initial=bytes(init))
        legacy = self._elf.get_section_by_name("maps")
        if legacy is not None:
            raw = legacy.data()
            for sym in self._symbols:
                if self._section_name(sym["st_shndx"]) == "maps" and sym.name:
                    v = struct.unpack_from("<5I", raw, sym["st_value"])
                    self.maps[sym.name] = MapSpec(sym.name, v[0], v[1], v[2], v[3], v[4])
        if self._elf.get_section_by_name(".maps") is not None:
            self._read_btf_maps()

    def _read_btf_maps(self) -> None:
        if self.btf is None:
            raise UsageError(f"{self.path} has a .maps section but no .BTF; build it with "
                             "clang -g")
        secs = self.btf.find_all(".maps", BtfKind.DATASEC)
        if not secs:
            raise UsageError(f"{self.path}: .BTF has no DATASEC .maps describing its maps")
        for vinfo in secs[0].secinfo:
            var = self.btf.type(vinfo.type_id)
            spec = self.btf.resolve(var.type_id)
            vals: dict[str, int] = {}
            for m in spec.members:
                ptr = self.btf.resolve(m.type_id)
                if ptr.kind != BtfKind.PTR:
                    raise UsageError(f"{self.path}: map {var.name!r} member {m.name!r} is "
                                     "not a pointer (use __uint/__type)")
                pointee = self.btf.resolve(ptr.type_id)
                if m.name in ("key", "value"):
                    vals[f"{m.name}_size"] = self.btf.sizeof(pointee)
                elif pointee.kind == BtfKind.ARRAY:
                    vals[m.name] = pointee.nelems
                else:
                    raise UsageError(f"{self.path}: map {var.name!r} member {m.name!r} "
                                     "is not __uint(...) or __type(...)")
            self.maps[var.name] = MapSpec(var.name, vals.get("type", 0),
                                          vals.get("key_size", 0), vals.get("value_size", 0),
                                          vals.get("max_entries", 0), vals.get("map_flags", 0))

    def _read_programs(self) -> None:
        for index, sec in enumerate(self._elf.iter_sections()):
            if not sec["sh_flags"] & 0x4 or not sec["sh_size"]:  # SHF_EXECINSTR
                continue
            if sec.name == ".text":
                raise UsageError(f"{self.path}: .text holds functions (bpf-to-bpf calls), "
                                 "which this loader does not link yet; mark them "
                                 "static __always_inline")
            data = sec.data()
            kind = _prog_type(sec.name, self.path)
            funcs = sorted((s for s in self._symbols if s["st_shndx"] == index
                            and s["st_info"]["type"] == "STT_FUNC"),
                           key=lambda s: s["st_value"])
            for sym in funcs:
                start, size = sym["st_value"], sym["st_size"] or len(data) - sym["st_value"]
                self.programs[sym.name] = ObjectProgram(
                    sym.name, sec.name, kind, bytearray(data[start:start + size]), start)
        for sec in self._elf.iter_sections():
            if sec["sh_type"] == "SHT_REL":
                target = self._elf.get_section(sec["sh_info"])
                if target["sh_flags"] & 0x4 and target["sh_size"]:
                    self._read_relocations(sec, target.name)

    def _read_relocations(self, rel: Any, section: str) -> None:
        progs = [p for p in self.programs.values() if p.section == section]
        for r in rel.iter_relocations():
            sym = self._symbols[r["r_info_sym"]]
            where = self._section_name(sym["st_shndx"])
            off = r["r_offset"]
            prog = next((p for p in progs
                         if p.section_offset <= off < p.section_offset + len(p.code)), None)
            if prog is None:
                raise UsageError(f"{self.path}: relocation at byte {off} of {section!r} is "
                                 "outside every program")
            local = off - prog.section_offset
            if prog.code[local] != 0x18:
                raise UsageError(f"{self.path}: {prog.name} instruction {local // 8} refers "
                                 f"to {sym.name or where!r} but is not ld_imm64 (calls to "
                                 "other functions are not linked yet)")
            if where in (".maps", "maps"):
                prog.relocations[local] = (sym.name, -1)
            elif where in _DATA_SECTIONS:
                (imm,) = struct.unpack_from("<i", prog.code, local + 4)
                prog.relocations[local] = (where, sym["st_value"] + imm)
            else:
                raise UsageError(f"{self.path}: {prog.name} refers to {sym.name!r} in "
                                 f"section {where!r}, which is not a map or global data")

    # ---------------------------------------------------------------- globals, CO-RE

    def set_global(self, name: str, value: bytes) -> None:
        """Set the initial bytes of global variable ``name`` (``.rodata``, ``.data``)
        before :meth:`load`.

        Raises:
            UsageError: no such variable, or ``value`` has the wrong size.
        """
        for sym in self._symbols:
            if sym.name == name and self._section_name(sym["st_shndx"]) in _DATA_SECTIONS:
                sec = self._section_name(sym["st_shndx"])
                spec = self.maps[sec]
                if len(value) != sym["st_size"]:
                    raise UsageError(f"global {name!r} is {sym['st_size']} bytes, got "
                                     f"{len(value)}")
                init = bytearray(spec.initial or b"")
                init[sym["st_value"]:sym["st_value"] + len(value)] = value
                self.maps[sec] = MapSpec(sec, spec.map_type, spec.key_size,
                                         spec.value_size, 1, initial=bytes(init))
                return
        raise UsageError(f"{self.path} has no global variable {name!r}")

    def resolve_core(self, target: Btf) -> list[CoreResolution]:
        """Resolve every CO-RE relocation against ``target`` (nothing is patched).

        Raises:
            CoreRelocationError: the first one ``target`` cannot satisfy.
        """
        if not self.core:
            return []
        assert self.btf is not None  # CO-RE records exist only with .BTF
        return [resolve(r, self.btf, target, obj=self.path) for r in self.core]

    # -------------------------------------------------------------------- loading

    def load(self, *, kernel_btf: Btf | None = None) -> BpfObject:
        """Create the maps, apply CO-RE and map relocations, load every program.

        Args:
            kernel_btf: the BTF CO-RE resolves against (default: the running kernel's,
                read only if the object has CO-RE relocations).

        Returns:
            self, with ``loaded_maps`` and ``loaded_programs`` filled in.

        Raises:
            CoreRelocationError: a CO-RE relocation the kernel cannot satisfy.
            VerifierRejected: a program the verifier refuses.
            UsageError: a map type this loader does not create.
            PermissionError: no CAP_BPF.
        """
        if self._closed:
            raise ClosedResourceError(f"{self.path} was closed; open it again")
        if self.loaded_programs:
            raise UsageError(f"{self.path} is already loaded")
        resolved = self.resolve_core(kernel_btf or Btf.load_vmlinux()) if self.core else []
        try:
            for spec in self.maps.values():
                self.loaded_maps[spec.name] = self._create_map(spec)
            for prog in self.programs.values():
                code = bytearray(prog.code)
                for res in resolved:
                    rel = res.relocation
                    local = rel.insn_off - prog.section_offset
                    if rel.section == prog.section and 0 <= local < len(code):
                        apply_value(code, local, res.value)
                self._link_maps(prog, code)
                self.loaded_programs[prog.name] = load_program(
                    bytes(code), prog_type=prog.prog_type, name=prog.name,
                    license=self.license or "GPL")
        except BaseException:
            self.close()
            raise
        return self

    def _create_map(self, spec: MapSpec) -> BpfMap | RingBuffer:
        name = spec.name[:15]
        if spec.map_type == _ffi.BPF_MAP_TYPE_RINGBUF:
            return RingBuffer.create(spec.max_entries, name=name.lstrip("."))
        t = spec.map_type
        m: BpfMap
        if t in (_ffi.BPF_MAP_TYPE_ARRAY, _ffi.BPF_MAP_TYPE_PERCPU_ARRAY):
            array = ArrayMap if t == _ffi.BPF_MAP_TYPE_ARRAY else PerCpuArrayMap
            m = array.create(value_size=spec.value_size, max_entries=spec.max_entries,
                             name=name)
        elif t in (_ffi.BPF_MAP_TYPE_HASH, _ffi.BPF_MAP_TYPE_PERCPU_HASH):
            hashed = HashMap if t == _ffi.BPF_MAP_TYPE_HASH else PerCpuHashMap
            m = hashed.create(key_size=spec.key_size, value_size=spec.value_size,
                              max_entries=spec.max_entries, name=name)
        else:
            raise UsageError(f"{self.path}: map {spec.name!r} has type {t}, which qpuos "
                             "cannot create yet (hash, array, their per-CPU forms, ringbuf)")
        if spec.initial is not None:
            m.update_raw(0, spec.initial)
        return m

    def _link_maps(self, prog: ObjectProgram, code: bytearray) -> None:
        for off, (name, value_off) in prog.relocations.items():
            fd = self.loaded_maps[name].fd
            if value_off < 0:
                code[off + 1] = (code[off + 1] & 0x0F) | 1 << 4     # BPF_PSEUDO_MAP_FD
                struct.pack_into("<i", code, off + 4, fd)
            else:
                code[off + 1] = (code[off + 1] & 0x0F) | 2 << 4     # BPF_PSEUDO_MAP_VALUE
                struct.pack_into("<i", code, off + 4, fd)
                struct.pack_into("<i", code, off + 12, value_off)

    def global_bytes(self, section: str = ".bss") -> bytes:
        """The current bytes of a loaded global data section (read from its map).

        Raises:
            UsageError: not loaded, or no such section.
        """
        m = self.loaded_maps.get(section)
        if not isinstance(m, BpfMap):
            raise UsageError(f"{self.path} has no loaded data section {section!r} "
                             f"(loaded: {', '.join(sorted(self.loaded_maps)) or 'none'})")
        raw = m.lookup_raw(0)
        assert raw is not None  # an array map has every index
        return raw

    def close(self) -> None:
        """Close every program and map this object loaded (idempotent)."""
        self._closed = True
        for p in self.loaded_programs.values():
            p.close()
        for m in self.loaded_maps.values():
            m.close()

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

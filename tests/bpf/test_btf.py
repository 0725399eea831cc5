"""BTF: every kind from a hand-built blob, the running kernel's vmlinux, C printing,
malformed input, split BTF, and task_struct.pid's offset as a BPF program sees it."""

from __future__ import annotations

import ctypes
import struct
import threading

import pytest

from qpuos._ffi import bpf as ffi
from qpuos.bpf import _helpers
from qpuos.bpf._btf_types import BtfKind
from qpuos.bpf.btf import Btf
from qpuos.errors import BtfError, UsageError


class _Blob:
    """Writes BTF by hand: one method per record, ids from 1."""

    def __init__(self, *, first_id: int = 1, str_base: int = 0) -> None:
        self.types = bytearray()
        self.strings = bytearray(b"\0" if str_base == 0 else b"")
        self.str_base = str_base
        self.next_id = first_id

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = self.str_base + len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def rec(self, name: str, kind: int, vlen: int, size_or_type: int, *extra: int,
            kflag: bool = False, fmt: str = "") -> int:
        info = kind << 24 | vlen | (1 << 31 if kflag else 0)
        self.types += struct.pack("<III", self.s(name), info, size_or_type)
        if extra:
            self.types += struct.pack("<" + (fmt or "I" * len(extra)), *extra)
        tid = self.next_id
        self.next_id += 1
        return tid

    def bytes(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def _every_kind() -> tuple[Btf, dict[str, int]]:
    b = _Blob()
    ids: dict[str, int] = {}
    ids["int"] = b.rec("int", 1, 0, 4, 1 << 24 | 32)              # signed, 32 bits
    ids["char"] = b.rec("char", 1, 0, 1, 2 << 24 | 8)
    ids["cchar"] = b.rec("", 10, 0, ids["char"])                  # const char
    ids["pcchar"] = b.rec("", 2, 0, ids["cchar"])                 # const char *
    ids["cpcchar"] = b.rec("", 10, 0, ids["pcchar"])              # const char *const
    ids["arr"] = b.rec("", 3, 0, 0, ids["int"], ids["int"], 4)    # int [4]
    ids["u16"] = b.rec("u16", 1, 0, 2, 16)
    ids["flags"] = b.rec("flags", 4, 3, 4,
                         b.s("lo"), ids["u16"], 3 << 24 | 0,
                         b.s("hi"), ids["u16"], 5 << 24 | 3,
                         b.s("rest"), ids["u16"], 8 << 24 | 16, kflag=True)
    ids["proto"] = b.rec("", 13, 2, ids["int"], b.s("a"), ids["int"], 0, 0)
    ids["fptr"] = b.rec("", 2, 0, ids["proto"])
    ids["parr"] = b.rec("", 2, 0, ids["arr"])
    ids["inner"] = b.rec("", 5, 2, 4, b.s("x"), ids["int"], 0, b.s("y"), ids["u16"], 0)
    ids["thing"] = b.rec("thing", 4, 6, 48,
                         b.s("name"), ids["cpcchar"], 0,
                         b.s("vals"), ids["arr"], 64,
                         0, ids["inner"], 192,
                         b.s("cb"), ids["fptr"], 256,
                         b.s("f"), ids["flags"], 320,
                         b.s("pa"), ids["parr"], 320 + 64)
    ids["color"] = b.rec("color", 6, 2, 4, b.s("RED"), 0, b.s("DARK"), 2**32 - 1)
    ids["delta"] = b.rec("delta", 6, 1, 4, b.s("MINUS"), 2**32 - 5, kflag=True)
    ids["fwd"] = b.rec("later", 7, 0, 0, kflag=True)               # union later;
    ids["td"] = b.rec("thing_t", 8, 0, ids["thing"])
    ids["vol"] = b.rec("", 9, 0, ids["int"])
    ids["rst"] = b.rec("", 11, 0, ids["pcchar"])
    ids["func"] = b.rec("handler", 12, 1, ids["proto"])            # global linkage
    ids["var"] = b.rec("counter", 14, 0, ids["int"], 1)
    ids["sec"] = b.rec(".data", 15, 1, 4, ids["var"], 0, 4)
    ids["dbl"] = b.rec("double", 16, 0, 8)
    ids["tag"] = b.rec("user", 17, 0, ids["thing"], 1, fmt="i")
    ids["ttag"] = b.rec("percpu", 18, 0, ids["int"])
    ids["big"] = b.rec("big", 19, 2, 8, b.s("HUGE"), 0, 1, b.s("NEG"), 0xFFFFFFFF,
                       0xFFFFFFFF, kflag=True)
    return Btf(b.bytes(), origin="<test>"), ids


def test_every_kind_parses_with_its_fields() -> None:
    btf, ids = _every_kind()
    assert len(btf) == len(ids)
    seen = {t.kind for t in btf}
    assert set(BtfKind) - {BtfKind.VOID} - seen == set()
    i = btf.type(ids["int"])
    assert (i.name, i.size, i.int_encoding, i.int_bits) == ("int", 4, 1, 32)
    arr = btf.type(ids["arr"])
    assert (arr.type_id, arr.index_type_id, arr.nelems) == (ids["int"], ids["int"], 4)
    flags = btf.find("flags")
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in flags.members] == \
        [("lo", 0, 3), ("hi", 3, 5), ("rest", 16, 8)]
    assert [(v.name, v.value) for v in btf.find("color").enum_values] == \
        [("RED", 0), ("DARK", 2**32 - 1)]
    assert btf.find("delta").enum_values[0].value == -5
    assert [(v.name, v.value) for v in btf.find("big").enum_values] == \
        [("HUGE", 1 << 32), ("NEG", -1)]
    assert btf.type(ids["fwd"]).kind_flag
    assert btf.type(ids["func"]).linkage == 1
    assert btf.type(ids["var"]).linkage == 1
    assert btf.type(ids["sec"]).secinfo[0].offset == 0
    assert btf.type(ids["sec"]).secinfo[0].size == 4
    assert btf.type(ids["tag"]).component_idx == 1
    assert [p.name for p in btf.type(ids["proto"]).params] == ["a", ""]
    assert btf.type(0).kind == BtfKind.VOID


def test_members_offsets_sizes_and_chains() -> None:
    btf, ids = _every_kind()
    assert btf.member_offset("thing", "vals") == 8
    assert btf.member_offset("thing", "y") == 24            # through the anonymous union
    assert btf.member_offset("thing_t", "f") == 40          # through the typedef
    member, bits = btf.member("thing", "f.hi")
    assert (member.bitfield_size, bits) == (5, 320 + 3)
    assert btf.resolve("thing_t").name == "thing"
    assert btf.resolve(ids["cpcchar"]).kind == BtfKind.PTR
    assert btf.sizeof("thing_t") == 48
    assert btf.sizeof(ids["arr"]) == 16
    assert btf.sizeof(ids["fptr"]) == 8


def test_format_c_writes_declarators_inside_out() -> None:
    btf, ids = _every_kind()
    assert btf.format_c("thing") == (
        "struct thing {\n"
        "    const char *const name;\n"
        "    int vals[4];\n"
        "    union {\n"
        "        int x;\n"
        "        u16 y;\n"
        "    };\n"
        "    int (*cb)(int a, ...);\n"
        "    struct flags f;\n"
        "    int (*pa)[4];\n"
        "};")
    assert btf.format_c("thing_t") == "typedef struct thing thing_t;"
    assert btf.format_c("color") == "enum color {\n    RED = 0,\n    DARK = 4294967295,\n};"
    assert btf.format_c("handler") == "int handler(int a, ...);"
    assert btf.format_c(ids["rst"]) == "const char *restrict;"
    assert btf.format_c(ids["fwd"]) == "union later;"
    assert btf.format_c("flags").splitlines()[1] == "    u16 lo : 3;"


def test_missing_names_raise_with_hints() -> None:
    btf, _ = _every_kind()
    with pytest.raises(UsageError, match=r"^no type named 'thingy' in <test>; check "):
        btf.find("thingy")
    with pytest.raises(UsageError, match=r"^struct thing has no member 'valz'; close: "
                                         r"vals$"):
        btf.member_offset("thing", "valz")
    with pytest.raises(UsageError, match=r"^member 'f\.hi' is a bitfield at bit 323; "):
        btf.member_offset("thing", "f.hi")
    with pytest.raises(UsageError,
                       match=r"^cannot take member 'q' of array 'int \[4\]': it is not a "):
        btf.member("thing", "vals.q")
    with pytest.raises(UsageError, match=r"^type id 999 is outside 1\.\.26 of <test>$"):
        btf.type(999)


def test_malformed_blobs_raise_btf_error() -> None:
    good, _ = _every_kind()
    raw = _Blob()
    raw.rec("int", 1, 0, 4, 32)
    data = raw.bytes()
    with pytest.raises(BtfError, match=r"^<bytes>: magic 0x1234 is not BTF's 0xeb9f"):
        Btf(b"\x34\x12" + data[2:])
    with pytest.raises(BtfError, match=r"^<bytes>: 10 bytes is too short"):
        Btf(data[:10])
    with pytest.raises(BtfError, match=r"^<bytes>: header says types"):
        Btf(data[:-3])
    bad = _Blob()
    bad.rec("x", 25, 0, 0)
    with pytest.raises(BtfError, match=r"^<bytes>: type 1 has kind 25, which this parser"):
        Btf(bad.bytes())
    short = _Blob()
    short.rec("int", 1, 0, 4, 32)
    short.types += b"\0\0\0\0"                         # a record of one word
    with pytest.raises(BtfError, match=r"^<bytes>: type 2 at byte 16 of the type section "
                                       r"is cut short$"):
        Btf(short.bytes())
    cut = _Blob()
    cut.rec("s", 4, 2, 8, 0, 0, 0)                      # says 2 members, holds 1
    with pytest.raises(BtfError, match=r"runs 12 bytes past the type section$"):
        Btf(cut.bytes())
    assert len(good) == 26


def test_split_btf_continues_ids_and_strings_from_its_base() -> None:
    base = Btf.build_int_struct("pair", [("lo", 4), ("hi", 4)])
    ext = _Blob(first_id=len(base) + 1, str_base=len(base._strings))
    ptr = ext.rec("", 2, 0, base.find("pair").id)
    ext.rec("holder", 4, 1, 8, ext.s("p"), ptr, 0)
    split = Btf(ext.bytes(), base=base, origin="<split>")
    assert len(split) == len(base) + 2
    assert split.format_c("holder") == "struct holder {\n    struct pair *p;\n};"
    assert split.member_offset("pair", "hi") == 4       # base types are found too
    assert [t.name for t in split] == ["", "holder"]     # iteration: own types only


def test_vmlinux_parses_and_knows_the_scheduler(vmlinux: Btf) -> None:
    assert len(vmlinux) > 10_000
    task = vmlinux.find("task_struct")
    assert task.kind == BtfKind.STRUCT
    pid_off = vmlinux.member_offset("task_struct", "pid")
    assert vmlinux.member_offset("task_struct", "tgid") > pid_off - 1
    assert vmlinux.sizeof("pid_t") == 4
    assert vmlinux.resolve("pid_t").name == "int"
    assert "    pid_t pid;" in vmlinux.format_c("task_struct").splitlines()
    assert vmlinux.format_c("list_head") == (
        "struct list_head {\n    struct list_head *next;\n    struct list_head *prev;\n};")
    sample = range(1, len(vmlinux) + 1, 97)
    kinds = {vmlinux.type(i).kind for i in sample}
    assert {BtfKind.STRUCT, BtfKind.FUNC, BtfKind.FUNC_PROTO, BtfKind.PTR} - kinds == set()


def _union_part(btf: Btf, member_name: str) -> int:
    """The type id of the part of ``union bpf_attr`` named, or holding, member_name."""
    attr = btf.find("bpf_attr", BtfKind.UNION)
    for m in attr.members:
        if m.name == member_name:
            return m.type_id
        inner = btf.resolve(m.type_id)
        if not m.name and inner.is_composite and inner.members and \
                inner.members[0].name == member_name:
            return inner.id
    raise AssertionError(f"no part of union bpf_attr starts with {member_name!r}")


@pytest.mark.parametrize(("struct_type", "part"), [
    (ffi.MapCreateAttr, "map_type"), (ffi.MapElemAttr, "map_fd"),
    (ffi.ProgLoadAttr, "prog_type"), (ffi.ObjAttr, "pathname"),
    (ffi.RawTracepointAttr, "raw_tracepoint"), (ffi.ProgTestRunAttr, "test"),
])
def test_ffi_attr_structs_match_the_kernels_union(vmlinux: Btf,
                                                 struct_type: type[ctypes.Structure],
                                                 part: str) -> None:
    tid = _union_part(vmlinux, part)
    ours = {name: getattr(struct_type, name).offset for name, *_ in struct_type._fields_}
    theirs = {name: vmlinux.member_offset(tid, name) for name in ours}
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}


def test_constant_tables_match_the_kernels_enums(vmlinux: Btf) -> None:
    funcs = {v.name.removeprefix("BPF_FUNC_"): v.value
             for v in vmlinux.find("bpf_func_id").enum_values}
    assert {k: v for k, v in _helpers.HELPERS.items() if funcs.get(k) != v} == {}
    maps = {v.name: v.value for v in vmlinux.find("bpf_map_type").enum_values}
    progs = {v.name: v.value for v in vmlinux.find("bpf_prog_type").enum_values}
    attach = {v.name: v.value for v in vmlinux.find("bpf_attach_type").enum_values}
    ours = {n: getattr(ffi, n) for n in ffi.__all__ if n.startswith("BPF_")}
    checked = {n: v for n, v in ours.items() if n in maps | progs | attach}
    assert len(checked) >= 9
    assert {n: v for n, v in checked.items() if (maps | progs | attach)[n] != v} == {}
    from qpuos.bpf.loader import ProgType

    assert {p.name: p.value for p in ProgType if progs[f"BPF_PROG_TYPE_{p.name}"] != p} == {}


@pytest.mark.needs_bpf
def test_task_pid_offset_is_what_a_program_reads(vmlinux: Btf) -> None:
    from qpuos.bpf.asm import (
        R0,
        R1,
        R2,
        R3,
        R6,
        R7,
        R8,
        R10,
        Insn,
        Label,
        Reg,
        add,
        and_,
        call,
        exit_,
        jeq,
        ld_map_fd,
        load,
        mov,
        store,
    )
    from qpuos.bpf.loader import ProgType, load_program
    from qpuos.bpf.maps import ArrayMap

    off = vmlinux.member_offset("task_struct", "pid")

    def put(slot: int, reg: Reg) -> list[Insn | Label]:
        return [store(R10, -12, slot, size=4), ld_map_fd(R1, seen), mov(R2, R10),
                add(R2, -12), call("map_lookup_elem"), jeq(R0, 0, "out"),
                store(R0, 0, reg)]

    with ArrayMap.create(value="Q", max_entries=2) as seen:
        prog = [
            call("get_current_task"), mov(R6, R0),
            store(R10, -8, 0), mov(R1, R10), add(R1, -8), mov(R2, 4),
            mov(R3, R6), add(R3, off), call("probe_read_kernel"),
            load(R7, R10, -8, size=4),                      # task->pid, through BTF
            call("get_current_pid_tgid"), mov(R8, R0), and_(R8, 0x7FFFFFFF),
            *put(0, R7), *put(1, R8),
            Label("out"), mov(R0, 0), exit_(),
        ]
        with load_program(prog, prog_type=ProgType.RAW_TRACEPOINT,
                          name="pid_offset") as p:
            p.test_run(ctx=bytes(16))
        tid = threading.get_native_id()
        assert (seen[0], seen[1]) == (tid, tid)

"""CO-RE: relocations read from .BTF.ext, resolved against vmlinux and against a BTF
that lacks things (without privileges), patched into instructions, and a loaded object
reading task_struct.pid at the kernel's offset."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

from qpuos.bpf.btf import Btf
from qpuos.bpf.core import CoreKind, apply_value, dry_run, resolve
from qpuos.bpf.elf import BpfObject
from qpuos.errors import CoreRelocationError, UsageError

DATA = Path(__file__).parent / "data"
PID = DATA / "core_pid.bpf.o"
MISSING = DATA / "core_missing.bpf.o"


def test_relocations_are_read_from_btf_ext() -> None:
    obj = BpfObject.open(PID)
    assert [(r.insn_off // 8, r.access, r.kind) for r in obj.core] == [
        (1, "0:1", CoreKind.FIELD_BYTE_OFFSET), (17, "0:0", CoreKind.FIELD_EXISTS),
        (19, "1", CoreKind.ENUMVAL_VALUE)]


def test_dry_run_against_vmlinux_gives_the_kernels_layout(vmlinux: Btf,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "vmlinux.btf"
    path.write_bytes(vmlinux.data)
    got = {r.target: r.value for r in dry_run(PID, path)}
    tgid = {v.name: v.value for v in vmlinux.find("pid_type").enum_values}["PIDTYPE_TGID"]
    assert got == {"task_struct.pid": vmlinux.member_offset("task_struct", "pid"),
                   "task_struct.tgid": 1, "enum pid_type::PIDTYPE_TGID": tgid}


def test_a_missing_field_is_named_with_its_struct_and_object(vmlinux: Btf,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "vmlinux.btf"
    path.write_bytes(vmlinux.data)
    with pytest.raises(CoreRelocationError) as info:
        dry_run(MISSING, path)
    exc = info.value
    assert str(exc) == (
        f"{MISSING}: program section 'raw_tracepoint/sys_enter', instruction 1: struct "
        "task_struct has no member 'pid_of_the_future' (needed for "
        "task_struct.pid_of_the_future); the object was built for a kernel with it: "
        "rebuild it against this kernel's vmlinux.h or guard the access with "
        "bpf_core_field_exists()")
    assert (exc.obj, exc.type_name, exc.field) == \
        (str(MISSING), "task_struct", "pid_of_the_future")


def test_another_kernels_btf_moves_fields_and_misses_types() -> None:
    other = Btf.build_int_struct("task_struct", [("state", 8), ("pid", 4), ("flags", 4)])
    obj = BpfObject.open(PID)
    assert obj.btf is not None
    offset, exists, _ = obj.core
    assert resolve(offset, obj.btf, other).value == 8          # moved from 4 to 8
    assert resolve(exists, obj.btf, other).value == 0          # no tgid: exists is 0
    with pytest.raises(CoreRelocationError, match=r"instruction 19: enum pid_type does not "
                                                  r"exist in the target BTF; ") as enum:
        obj.resolve_core(other)
    assert (enum.value.type_name, enum.value.field) == ("pid_type", "PIDTYPE_TGID")


def test_values_are_patched_into_the_right_field() -> None:
    code = bytearray(bytes.fromhex("b701000004000000" "6111040000000000"
                                   "1801000001000000" "0000000000000000"
                                   "8500000001000000"))
    apply_value(code, 0, 1264)
    apply_value(code, 8, -8)
    apply_value(code, 16, 1 << 33 | 5)
    assert struct.unpack_from("<i", code, 4)[0] == 1264
    assert struct.unpack_from("<h", code, 10)[0] == -8
    assert struct.unpack_from("<II", code[20:24] + code[28:32]) == (5, 2)
    with pytest.raises(UsageError, match=r"^instruction 4 \(opcode 0x85\) cannot take a "
                                         r"CO-RE relocation$"):
        apply_value(code, 32, 1)
    with pytest.raises(UsageError, match=r"^relocated offset 40000 does not fit 16 bits$"):
        apply_value(code, 8, 40000)


def test_loading_an_unsatisfiable_object_fails_before_touching_the_kernel() -> None:
    obj = BpfObject.open(MISSING)
    with pytest.raises(CoreRelocationError, match=r"no member 'pid_of_the_future'"):
        obj.load()
    assert obj.loaded_maps == {}


@pytest.mark.needs_bpf
def test_a_loaded_core_object_reads_pid_at_the_kernels_offset(vmlinux: Btf) -> None:
    with BpfObject.open(PID).load(kernel_btf=vmlinux) as obj:
        obj.loaded_programs["read_pid"].test_run(ctx=bytes(16))
        pid, tid, exists, tgid_enum = struct.unpack("<4Q", obj.global_bytes(".bss"))
    me = threading.get_native_id()
    assert (pid, tid, exists, tgid_enum) == (me, me, 1, 1)

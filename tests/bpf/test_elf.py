"""clang-built objects: maps from .maps, legacy maps and global data, relocations, and a
loaded object counting a child's writes. The objects are built from the sources beside
them in data/ (the command is at the top of each source)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from qpuos._ffi import bpf as ffi
from qpuos.bpf.attach import attach_raw_tracepoint
from qpuos.bpf.elf import BpfObject, MapSpec
from qpuos.bpf.loader import ProgType
from qpuos.bpf.maps import BpfMap
from qpuos.bpf.ringbuf import RingBuffer
from qpuos.errors import ClosedResourceError, UsageError

DATA = Path(__file__).parent / "data"
COUNT = DATA / "count_writes.bpf.o"


def test_maps_programs_relocations_and_license_are_read() -> None:
    obj = BpfObject.open(COUNT)
    assert obj.maps == {
        ".rodata": MapSpec(".rodata", ffi.BPF_MAP_TYPE_ARRAY, 4, 4, 1, initial=bytes(4)),
        ".data": MapSpec(".data", ffi.BPF_MAP_TYPE_ARRAY, 4, 8, 1,
                         initial=struct.pack("<Q", 1)),
        ".bss": MapSpec(".bss", ffi.BPF_MAP_TYPE_ARRAY, 4, 8, 1, initial=bytes(8)),
        "by_nr": MapSpec("by_nr", ffi.BPF_MAP_TYPE_HASH, 4, 8, 64),
        "counts": MapSpec("counts", ffi.BPF_MAP_TYPE_ARRAY, 4, 8, 1),
        "events": MapSpec("events", ffi.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096),
    }
    prog = obj.programs["count_writes"]
    assert (prog.section, prog.prog_type, len(prog.code) % 8) == \
        ("raw_tracepoint/sys_enter", ProgType.RAW_TRACEPOINT, 0)
    assert sorted(prog.relocations.values()) == [
        (".bss", 0), (".data", 0), (".rodata", 0), ("by_nr", -1), ("counts", -1),
        ("events", -1)]
    assert all(prog.code[off] == 0x18 for off in prog.relocations)
    assert obj.license == "GPL"
    assert obj.core == []


def test_globals_are_set_by_name_before_load() -> None:
    obj = BpfObject.open(COUNT)
    obj.set_global("target_tgid", struct.pack("<I", 77))
    assert obj.maps[".rodata"].initial == struct.pack("<I", 77)
    with pytest.raises(UsageError, match=r"^global 'target_tgid' is 4 bytes, got 8$"):
        obj.set_global("target_tgid", bytes(8))
    with pytest.raises(UsageError, match=r"count_writes\.bpf\.o has no global variable "
                                         r"'nothing'$"):
        obj.set_global("nothing", b"")


def test_files_that_are_not_bpf_objects_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf file at all")
    with pytest.raises(UsageError, match=r"junk\.o is not an ELF file: "):
        BpfObject.open(junk)
    with pytest.raises(UsageError, match=r"is an ELF file for EM_X86_64, not a little-"
                                         r"endian eBPF object|is an ELF file for EM_AARCH64"):
        BpfObject.open(Path(sys.executable).resolve())


@pytest.mark.needs_bpf
def test_a_loaded_object_counts_a_childs_writes_everywhere(writer) -> None:
    child = writer(9)
    obj = BpfObject.open(COUNT)
    obj.set_global("target_tgid", struct.pack("<I", child.pid))
    with obj.load():
        by_nr = obj.loaded_maps["by_nr"]
        assert isinstance(by_nr, BpfMap)
        by_nr.update_raw(struct.pack("<I", 1), bytes(8))     # count write(2) here too
        with attach_raw_tracepoint(obj.loaded_programs["count_writes"], "sys_enter"):
            child.go()
        counts, events = obj.loaded_maps["counts"], obj.loaded_maps["events"]
        assert isinstance(counts, BpfMap)
        assert isinstance(events, RingBuffer)
        assert counts[0] == struct.pack("<Q", 9)             # step (.data) is 1
        assert struct.unpack("<Q", obj.global_bytes(".bss")) == (9,)
        assert by_nr.lookup_raw(struct.pack("<I", 1)) == struct.pack("<Q", 9)
        assert events.drain() == [struct.pack("<I", 1)] * 9
        with pytest.raises(UsageError, match=r"count_writes\.bpf\.o is already loaded$"):
            obj.load()
    with pytest.raises(ClosedResourceError, match=r"count_writes\.bpf\.o was closed; "):
        obj.load()

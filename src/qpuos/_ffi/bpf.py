"""``union bpf_attr`` pieces and eBPF constants, for the loader in :mod:`qpuos.bpf`.

mirrors <linux/bpf.h>. Each command reads its own struct at the start of the union;
the kernel requires every byte past the part it knows to be zero, so each struct here
is a fresh zero-filled object and :func:`attr_bytes` hands its bytes to ``bpf(2)``
(through :func:`qpuos.kernel.syscall.bpf`) without a copy. A test checks every field
offset against the running kernel's own ``union bpf_attr`` from its BTF.
"""

from __future__ import annotations

import ctypes

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_CURRENT_CPU",
    "BPF_F_NO_PREALLOC",
    "BPF_MAP_TYPE_ARRAY",
    "BPF_MAP_TYPE_HASH",
    "BPF_MAP_TYPE_PERCPU_ARRAY",
    "BPF_MAP_TYPE_PERCPU_HASH",
    "BPF_MAP_TYPE_PERF_EVENT_ARRAY",
    "BPF_MAP_TYPE_RINGBUF",
    "BPF_NOEXIST",
    "BPF_PROG_TYPE_RAW_TRACEPOINT",
    "BPF_PROG_TYPE_SOCKET_FILTER",
    "BPF_PROG_TYPE_TRACEPOINT",
    "BPF_RINGBUF_BUSY_BIT",
    "BPF_RINGBUF_DISCARD_BIT",
    "BPF_RINGBUF_HDR_SZ",
    "BPF_TRACE_RAW_TP",
    "PERF_COUNT_SW_BPF_OUTPUT",
    "PERF_MMAP_DATA_HEAD",
    "PERF_MMAP_DATA_OFFSET",
    "PERF_MMAP_DATA_SIZE",
    "PERF_MMAP_DATA_TAIL",
    "PERF_RECORD_LOST",
    "PERF_RECORD_SAMPLE",
    "PERF_SAMPLE_RAW",
    "MapCreateAttr",
    "MapElemAttr",
    "ObjAttr",
    "ProgLoadAttr",
    "ProgTestRunAttr",
    "RawTracepointAttr",
    "attr_bytes",
]

# enum bpf_map_type (the kinds qpuos.bpf.maps wraps)
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_RINGBUF = 27
# enum bpf_prog_type
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
# enum bpf_attach_type
BPF_TRACE_RAW_TP = 23
# map update flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
# map_flags
BPF_F_NO_PREALLOC = 1
# ring buffer record header: u32 length with two flag bits, u32 page offset
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
# perf_event_output's flags: index the perf event array by the current CPU
BPF_F_CURRENT_CPU = 0xFFFFFFFF
# <linux/perf_event.h>: the software event bpf_perf_event_output writes to, the sample
# field it fills, and the two record types a reader of its ring sees
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
# struct perf_event_mmap_page: byte offsets of the u64 ring positions (after the
# 1 KiB of fields the reader of a BPF output event does not need)
PERF_MMAP_DATA_HEAD = 1024
PERF_MMAP_DATA_TAIL = 1032
PERF_MMAP_DATA_OFFSET = 1040
PERF_MMAP_DATA_SIZE = 1048

_u32, _u64, _s32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32


class MapCreateAttr(ctypes.Structure):
    """``BPF_MAP_CREATE``: the anonymous struct that opens ``union bpf_attr``."""

    _fields_ = (
        ("map_type", _u32), ("key_size", _u32), ("value_size", _u32),
        ("max_entries", _u32), ("map_flags", _u32), ("inner_map_fd", _u32),
        ("numa_node", _u32), ("map_name", ctypes.c_char * 16), ("map_ifindex", _u32),
        ("btf_fd", _u32), ("btf_key_type_id", _u32), ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32), ("map_extra", _u64),
    )


class MapElemAttr(ctypes.Structure):
    """``BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM`` and ``BPF_MAP_GET_NEXT_KEY``
    (``value`` doubles as ``next_key``)."""

    _fields_ = (("map_fd", _u32), ("key", _u64), ("value", _u64), ("flags", _u64))


class ProgLoadAttr(ctypes.Structure):
    """``BPF_PROG_LOAD``, through ``log_true_size`` (Linux 6.4; older kernels accept
    the larger struct as long as the fields they do not know are zero)."""

    _fields_ = (
        ("prog_type", _u32), ("insn_cnt", _u32), ("insns", _u64), ("license", _u64),
        ("log_level", _u32), ("log_size", _u32), ("log_buf", _u64),
        ("kern_version", _u32), ("prog_flags", _u32), ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", _u32), ("expected_attach_type", _u32), ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32), ("func_info", _u64), ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32), ("line_info", _u64), ("line_info_cnt", _u32),
        ("attach_btf_id", _u32), ("attach_prog_fd", _u32), ("core_relo_cnt", _u32),
        ("fd_array", _u64), ("core_relos", _u64), ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),
    )


class ObjAttr(ctypes.Structure):
    """``BPF_OBJ_PIN`` / ``BPF_OBJ_GET``: a bpffs path and an fd."""

    _fields_ = (("pathname", _u64), ("bpf_fd", _u32), ("file_flags", _u32),
                ("path_fd", _s32))


class RawTracepointAttr(ctypes.Structure):
    """``BPF_RAW_TRACEPOINT_OPEN``: the tracepoint's name and the program."""

    _fields_ = (("name", _u64), ("prog_fd", _u32), ("cookie", _u64))


def attr_bytes(attr: ctypes.Structure) -> memoryview:
    """A writable byte view of ``attr`` for ``bpf(2)`` (results are written back
    into the struct itself)."""
    return memoryview(attr).cast("B")


class ProgTestRunAttr(ctypes.Structure):
    """``BPF_PROG_TEST_RUN``: run a loaded program once (or ``repeat`` times) in the
    kernel on a given context, without attaching it."""

    _fields_ = (
        ("prog_fd", _u32), ("retval", _u32), ("data_size_in", _u32),
        ("data_size_out", _u32), ("data_in", _u64), ("data_out", _u64), ("repeat", _u32),
        ("duration", _u32), ("ctx_size_in", _u32), ("ctx_size_out", _u32),
        ("ctx_in", _u64), ("ctx_out", _u64), ("flags", _u32), ("cpu", _u32),
        ("batch_size", _u32),
    )

"""The eBPF layer: a loader in pure Python, no clang and no bcc at run time.

- BTF: :class:`Btf` parses the kernel's type information (``Btf.load_vmlinux()``):
  every kind, members with bit offsets, ``member_offset("task_struct", "pid")``, types
  printed as C.
- Programs: :mod:`qpuos.bpf.asm` assembles instructions written as Python objects
  (labels, helpers by name, map references); :func:`load_program` runs the verifier and
  raises :class:`VerifierRejected` with its log.
- Maps: :class:`ArrayMap`, :class:`HashMap`, :class:`PerCpuArrayMap`,
  :class:`PerCpuHashMap` (dict-like), :class:`RingBuffer` (read through mmap),
  :class:`PerfEventArray` (per-CPU perf rings of :class:`PerfRecord`, read through mmap).
- Objects: :class:`BpfObject` loads what clang compiled (``.maps``, legacy maps,
  global data, relocations) and applies CO-RE relocations against the kernel's BTF,
  raising :class:`CoreRelocationError` naming any struct and field it lacks
  (:func:`qpuos.bpf.core.dry_run` checks an object against a BTF file without root).
- Attach: :func:`attach_raw_tracepoint`, :func:`attach_tracepoint`,
  :func:`attach_kprobe` (kprobe or kretprobe, where the kernel has the kprobe PMU) return a
  :class:`Link`, :func:`attach_socket_filter` a :class:`SocketFilter`; closing either
  detaches. :func:`pin` and :func:`get_pinned` keep objects on bpffs.
- Tools: :func:`trace_syscalls` counts a process's system calls by name
  (``qpuos trace syscalls --pid P``).

Everything that talks to the kernel needs CAP_BPF (and CAP_PERFMON to attach); BTF
parsing and assembly need no privileges.
"""

from __future__ import annotations

from qpuos.bpf._btf_types import BtfKind, BtfMember, BtfType
from qpuos.bpf.attach import (
    Link,
    SocketFilter,
    attach_kprobe,
    attach_raw_tracepoint,
    attach_socket_filter,
    attach_tracepoint,
)
from qpuos.bpf.btf import Btf
from qpuos.bpf.elf import BpfObject
from qpuos.bpf.loader import BpfProgram, ProgramRun, ProgType, load_program
from qpuos.bpf.maps import ArrayMap, BpfMap, HashMap, PerCpuArrayMap, PerCpuHashMap
from qpuos.bpf.perf import PerfEventArray, PerfRecord
from qpuos.bpf.pin import get_pinned, pin
from qpuos.bpf.ringbuf import RingBuffer
from qpuos.bpf.trace import SyscallCounter, trace_syscalls
from qpuos.errors import BpfError, BtfError, CoreRelocationError, VerifierRejected

__all__ = [
    "ArrayMap",
    "BpfError",
    "BpfMap",
    "BpfObject",
    "BpfProgram",
    "Btf",
    "BtfError",
    "BtfKind",
    "BtfMember",
    "BtfType",
    "CoreRelocationError",
    "HashMap",
    "Link",
    "PerCpuArrayMap",
    "PerCpuHashMap",
    "PerfEventArray",
    "PerfRecord",
    "ProgType",
    "ProgramRun",
    "RingBuffer",
    "SocketFilter",
    "SyscallCounter",
    "VerifierRejected",
    "attach_kprobe",
    "attach_raw_tracepoint",
    "attach_socket_filter",
    "attach_tracepoint",
    "get_pinned",
    "load_program",
    "pin",
    "trace_syscalls",
]

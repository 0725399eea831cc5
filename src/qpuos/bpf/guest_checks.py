"""The eBPF checks that need kprobes, run inside the controller's boot image.

The host this project is built on has no kprobe PMU (``tests/bpf/test_attach.py`` skips
its kprobe tests there); the image's Debian kernel has one. So the image's ``kprobe``
self-test does what those tests do, as PID 1 (root, in the guest):

- a tiny program, assembled and loaded with this package, counts the hits of this very
  thread in an array map (so the probe's other callers do not count);
- it is attached with :func:`~qpuos.bpf.attach.attach_kprobe` to the kernel's getpid
  entry point (``__x64_sys_getpid`` on x86-64, found in ``/proc/kallsyms``), once at
  the function's entry and once at its return (a kretprobe);
- ``os.getpid()`` is called ``calls`` times (glibc does not cache the pid: each call is
  a syscall), once more after detaching; each count must be exactly ``calls``.

Only sysfs (the kprobe PMU's description) and procfs (kallsyms) are needed, both
mounted by PID 1; neither bpffs nor tracefs is. Nothing here needs numpy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from qpuos.bpf.asm import (
    R0,
    R1,
    R2,
    R10,
    Insn,
    Label,
    add,
    atomic_add,
    call,
    exit_,
    jeq,
    jne,
    ld_map_fd,
    mov,
    store,
)
from qpuos.bpf.attach import KPROBE_PMU, attach_kprobe
from qpuos.bpf.loader import ProgType, load_program
from qpuos.bpf.maps import ArrayMap
from qpuos.errors import BpfError

if TYPE_CHECKING:
    from qpuos.kernel.boot.init import Step

__all__ = ["boot_step", "getpid_symbol", "kprobe_check", "thread_counter_program"]

_GETPID = ("__x64_sys_getpid", "__arm64_sys_getpid", "__se_sys_getpid", "sys_getpid")


def getpid_symbol(kallsyms: str | os.PathLike[str] = "/proc/kallsyms") -> str:
    """The kernel's getpid entry point under this architecture's syscall prefix.

    Args:
        kallsyms: the symbol table to search.

    Returns:
        The first of ``__x64_sys_getpid``, ``__arm64_sys_getpid``, ``__se_sys_getpid``
        and ``sys_getpid`` that the kernel has.

    Raises:
        BpfError: none of them is listed.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".syms") as f:
    ...     _ = f.write("0000 T __ia32_sys_getpid\\n0000 T __x64_sys_getpid\\n")
    ...     f.flush()
    ...     getpid_symbol(f.name)
    '__x64_sys_getpid'
    """
    names = {parts[2] for line in Path(kallsyms).read_text().splitlines()
             if len(parts := line.split()) >= 3 and parts[2].endswith("sys_getpid")}
    for name in _GETPID:
        if name in names:
            return name
    raise BpfError(f"no getpid entry point in {os.fspath(kallsyms)} (found "
                   f"{sorted(names) or 'none'}); kprobes need one of {', '.join(_GETPID)}")


def thread_counter_program(counts: ArrayMap | str, tid: int) -> list[Insn | Label]:
    """A probe program that adds 1 to ``counts[0]`` on each hit by thread ``tid`` only.

    Args:
        counts: a one-entry array map of u64, or its name.
        tid: the thread whose hits count (``threading.get_native_id()``).

    >>> from qpuos.bpf.asm import assemble
    >>> len(assemble(thread_counter_program("counts", 1), maps={"counts": 3})) // 8
    14
    """
    return [call("get_current_pid_tgid"), mov(R1, R0, width=32), jne(R1, tid, "out"),
            store(R10, -4, 0, size=4), ld_map_fd(R1, counts), mov(R2, R10), add(R2, -4),
            call("map_lookup_elem"), jeq(R0, 0, "out"), mov(R1, 1), atomic_add(R0, 0, R1),
            Label("out"), mov(R0, 0), exit_()]


def _count(symbol: str, *, retprobe: bool, calls: int) -> int:
    with ArrayMap.create(value="Q", max_entries=1) as counts:
        prog = thread_counter_program(counts, threading.get_native_id())
        with load_program(prog, prog_type=ProgType.KPROBE, name="guest_getpid") as p:
            with attach_kprobe(p, symbol, retprobe=retprobe):
                for _ in range(calls):
                    os.getpid()
            os.getpid()  # detached: must not count
        return int(counts[0])


def kprobe_check(*, calls: int = 50, pmu: Path = KPROBE_PMU) -> str:
    """The image's ``kprobe`` stage: a kprobe and a kretprobe count ``calls`` getpids.

    Args:
        calls: how many times to call ``os.getpid()`` under each probe.
        pmu: where sysfs describes the kprobe PMU.

    Returns:
        The stage's one-line detail.

    Raises:
        BpfError: the kernel has no kprobe PMU or no getpid symbol, or a count is not
            exactly ``calls``.
        VerifierRejected: the kernel's verifier refused the counter program.
    """
    if not pmu.is_dir():
        raise BpfError(f"{pmu} is absent: kernel {os.uname().release} has no kprobe PMU "
                       "(CONFIG_KPROBE_EVENTS), so no kprobe can be attached here")
    symbol = getpid_symbol()
    counted = {kind: _count(symbol, retprobe=kind == "kretprobe", calls=calls)
               for kind in ("kprobe", "kretprobe")}
    wrong = {k: v for k, v in counted.items() if v != calls}
    if wrong:
        raise BpfError(f"made {calls} getpid calls under each probe on {symbol}, but the "
                       f"program counted {wrong}; the probe missed or double-counted hits")
    return (f"kprobe and kretprobe on {symbol} each counted exactly {calls} getpid calls "
            f"of this thread (kernel {os.uname().release})")


def boot_step(*, data_dir: str, calls: int = 50) -> tuple[Step, dict[str, bytes]]:
    """The ``kprobe`` self-test for ``qpuos boot build`` (no data files).

    Args:
        data_dir: where the image puts data files (unused: the step needs none).
        calls: getpid calls under each probe.

    Returns:
        The :class:`~qpuos.kernel.boot.init.Step` and an empty file mapping.
    """
    from qpuos.kernel.boot.init import Step

    del data_dir
    return Step("kprobe", f"{__name__}:kprobe_check", {"calls": calls}), {}

"""Starting a controller: its command line, its first (empty) job, record streaming."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qpuos.device._layout import result_bytes
from qpuos.device._shared import SharedResources
from qpuos.device.registers import QpuState
from qpuos.errors import DeviceFault, DeviceTimeout, RingFull, WouldBlock
from qpuos.ipc.ring import SpscRing
from qpuos.quantum.device import Device
from qpuos.quantum.isa import RECORD, encode_empty

__all__ = ["controller_command", "push_records", "warm_job"]


def controller_command(device: Device, shared: SharedResources, *, cpus: set[int] | None,
                       fifo_priority: int | None, gc_policy: str, max_qubits: int
                       ) -> list[str]:
    """``python -m qpuos.device.controller ...`` for this device and shared memory."""
    cmd = [sys.executable, "-m", "qpuos.device.controller",
           "--window", shared.window.name, "--ring", shared.ring.name,
           "--arena", shared.arena_path, "--irq-fd", str(shared.irq.fileno()),
           "--edges", json.dumps([list(e) for e in device.edges]),
           "--num-qubits", str(device.num_qubits), "--max-qubits", str(max_qubits),
           "--host-pid", str(os.getpid()), "--gc", gc_policy]
    for c in sorted(cpus or ()):
        cmd += ["--cpu", str(c)]
    if fifo_priority is not None:
        cmd += ["--fifo", str(fifo_priority)]
    return cmd


def push_records(ring: SpscRing, recs: np.ndarray[Any, Any], pushed: int) -> int:
    """Copy as many of ``recs[pushed:]`` into the ring as fit now; the new ``pushed``."""
    while pushed < len(recs):
        try:
            view = ring.claim_array(len(recs) - pushed, RECORD, timeout=0)
        except (RingFull, WouldBlock):
            break
        n = len(view)
        view[:] = recs[pushed:pushed + n]
        del view
        ring.publish(n)
        pushed += n
    return pushed


def warm_job(sh: SharedResources, job: int, pid: int, deadline: float,
             alive: Callable[[str], None]) -> None:
    """Run an empty program as job ``job`` by polling (no scheduler yet), so that the
    first real job does not pay either side's first-call costs (measured: ~10 ms).

    Raises:
        DeviceLost: (from ``alive``) the controller died.
        DeviceTimeout: it did not finish by ``deadline`` (``time.monotonic()``).
        DeviceFault: it faulted on the empty program (a bug).
    """
    r = sh.window
    block = sh.arena.alloc(result_bytes(1, 1))
    try:
        for reg, value in (("JOB_SHOTS", 1), ("JOB_LENGTH", 1), ("JOB_QUBITS", 1),
                           ("JOB_DILATION", 0), ("JOB_SEED", 0), ("JOB_RESULT", block),
                           ("CTRL", 0b001), ("DOORBELL", job)):
            r.write(reg, value)
        push_records(sh.ring, encode_empty(), 0)
        while r.read_field("STATUS", "STATE") not in (QpuState.DONE, QpuState.FAULT):
            alive("while starting")
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"controller pid {pid} did not run its first (empty) "
                                    "job in time; retry with a longer start_timeout_s")
            time.sleep(0.001)
        code = r.read_field("STATUS", "FAULT_CODE")
        if r.read_field("STATUS", "STATE") == QpuState.FAULT:
            raise DeviceFault(f"controller pid {pid} faulted on an empty program (code "
                              f"{code}); this is a bug in qpuos, please report it",
                              code=code)
        r.write("IRQ_STATUS", 0b11)
    finally:
        sh.arena.free(block)

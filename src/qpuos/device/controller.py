"""The emulated QPU controller: the "firmware" process the driver talks to.

It runs as ``python -m qpuos.device.controller ...`` (the driver starts it; see
``driver.Qpu.open``) and shares three things with the host, all created and unlinked by
the host: the register window (``registers.QPU_REGISTERS``, device role here), the
instruction ring (an ``SpscRing`` of ``isa.RECORD``; this side consumes) and the DMA
arena (an ``Arena`` over a /dev/shm file; this side only writes into the result block
the host allocated). The completion interrupt is an eventfd inherited from the host.

One job (registers.py has the register protocol):

1. Idle: block on the ring (a publication wakes it) in slices, between which it checks
   ``CTRL.SHUTDOWN``, that the host still lives, updates ``HEARTBEAT`` and gives the GC
   guard its idle budget. Records that arrive with no new ``DOORBELL`` value are a
   ``BAD_JOB`` fault.
2. Job: read the ``JOB_*`` registers, allocate the state vector on the job's qubits
   only (``JOB_QUBITS``: a 27-qubit device running a 5-qubit circuit simulates 5),
   fix schedule time 0 at ``now + LEAD_NS`` (``JOB_T0``) and issue each record at
   ``JOB_T0 + start_ns * dilation`` through ``_kernels.run_batch`` (numba; no Python per
   instruction). Between batches it sleeps through gaps longer than ``HORIZON_NS``.
3. End: sample the shots (deferred terminal measurements from the final state, or a
   replay per shot when the program measured mid-circuit or reset), write outcomes,
   per-instruction lateness and an info record (real-time grant, GC stats) into the
   result block, set ``STATE = DONE`` and ``IRQ_STATUS.DONE``, ring the eventfd.
4. Fault: stop at the record, set ``STATE = FAULT``, ``FAULT_CODE``, ``FAULT_SEQ``,
   ``IRQ_STATUS.FAULT``, ring the eventfd, then discard records until the host writes
   ``CTRL.RESET``; back to idle.

The whole process runs under the real-time profile it was given (CPU pinning,
SCHED_FIFO where permitted; what was granted is reported to the host) and a GC guard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import mmap
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from qpuos.device import _kernels as k
from qpuos.device._layout import (
    H_END_NS,
    H_EXECUTED,
    H_INFO_LEN,
    H_JOB,
    H_SEEN_NS,
    H_TRAJECTORY,
    INFO_BYTES,
    result_views,
)
from qpuos.device.registers import QPU_REGISTERS, REGS_VERSION, FaultCode, IrqBit, QpuState
from qpuos.errors import PeerDied, RingTimeout
from qpuos.ipc.ring import SpscRing
from qpuos.kernel.irq import doorbell
from qpuos.kernel.mheap import Arena
from qpuos.kernel.mmio import MmioWindow
from qpuos.kernel.proc import is_alive
from qpuos.quantum.isa import RECORD, VERSION
from qpuos.rt import GCGuard, RealtimeProfile

__all__ = ["FIFO_HORIZON_NS", "HORIZON_NS", "LEAD_NS", "main"]

#: Schedule time 0 lies this far after the controller saw the job's first records.
LEAD_NS = 200_000
#: A batch returns to Python (which sleeps) when the next record is due further ahead
#: than this. Under SCHED_OTHER a sleep overshoots by up to a scheduler tick, so the
#: loop spins through gaps up to 2 ms and wakes 1 ms early; under SCHED_FIFO wake-ups
#: are prompt and spinning is what hurts (RT throttling stops a FIFO task that runs
#: 95% of a second for the rest of it), so it sleeps through anything over 100 µs.
HORIZON_NS = 2_000_000
FIFO_HORIZON_NS = 100_000
_BATCH = 512
_IDLE_SLICE_S = 0.02
_NO_RT = "no real-time settings requested: unpinned, SCHED_OTHER"


class _Stop(Exception):
    """The host asked for shutdown (or is gone) while a job ran."""


class _Controller:
    def __init__(self, regs: MmioWindow, ring: SpscRing, arena: Arena, irq_fd: int,
                 adj: np.ndarray[Any, Any], max_qubits: int, guard: GCGuard,
                 realtime: str, host_pid: int) -> None:
        self.regs, self.ring, self.arena, self.irq_fd = regs, ring, arena, irq_fd
        self.adj, self.max_qubits, self.guard = adj, max_qubits, guard
        self.realtime, self.host_pid = realtime, host_pid
        fifo = os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)
        self.horizon = FIFO_HORIZON_NS if fifo else HORIZON_NS
        self.last_job = 0
        self.m1 = np.zeros((2, 2), dtype=np.complex128)
        self.m2 = np.zeros((4, 4), dtype=np.complex128)

    # -- 1. idle -----------------------------------------------------------------------

    def serve(self) -> int:
        r = self.regs
        r.write("STATUS", QpuState.IDLE)
        while True:
            if r.read("CTRL") & 0b1000:  # SHUTDOWN
                r.write("STATUS", QpuState.HALTED)
                return 0
            if not is_alive(self.host_pid):
                return 0
            r.write("HEARTBEAT", time.monotonic_ns())
            try:
                self.ring.peek(1, timeout=_IDLE_SLICE_S)
            except RingTimeout:
                self.guard.idle(int(_IDLE_SLICE_S * 1e9))
                continue
            except PeerDied:
                return 0
            self.ring.release(0)
            job = r.read("DOORBELL")
            if job == self.last_job or not r.read("CTRL") & 1:
                self._fault(FaultCode.BAD_JOB, -1, None)
            else:
                self.last_job = job
                try:
                    self._job(job)
                except _Stop:
                    r.write("STATUS", QpuState.HALTED)
                    return 0

    # -- 2. job ------------------------------------------------------------------------

    def _job(self, job: int) -> None:
        r = self.regs
        seen = time.monotonic_ns()
        # STATE first: the host takes "JOB_ID is mine and STATE is DONE or FAULT" as the
        # end of its job, so JOB_ID must never name this job beside the last one's DONE.
        r.write("STATUS", QpuState.RUNNING)
        r.write("JOB_ID", job)
        mask = r.read("JOB_QUBITS")
        shots, length = r.read("JOB_SHOTS"), r.read("JOB_LENGTH")
        factor = r.read("JOB_DILATION") / 65536.0
        qubits = [q for q in range(64) if mask >> q & 1]
        ndev = self.adj.shape[0]
        try:
            header, late, outcomes, info = result_views(self.arena,
                                                         r.read("JOB_RESULT"), length, shots)
        except Exception:
            self._fault(FaultCode.BAD_JOB, -1, None)
            return
        if not 0 < len(qubits) <= self.max_qubits or qubits[-1] >= ndev or length < 1:
            self._fault(FaultCode.BAD_JOB, -1, header)
            return
        nq = len(qubits)
        local_of = np.full(ndev, -1, dtype=np.int64)
        local_of[qubits] = np.arange(nq)
        psi = np.zeros(1 << nq, dtype=np.complex128)
        psi[0] = 1
        meas = np.zeros((length + 1, 2), dtype=np.int64)
        status = np.zeros(k.STATUS_WORDS, dtype=np.int64)
        prog = np.zeros(length, dtype=RECORD)
        k.seed(r.read("JOB_SEED") & 0x7FFF_FFFF_FFFF_FFFF)
        t0 = time.monotonic_ns() + LEAD_NS
        r.write("JOB_T0", t0)
        header[H_JOB] = job
        header[H_SEEN_NS] = seen
        done = 0
        # Issue loop: one numba call per batch of ready records.
        while not status[k.S_ENDED] and not status[k.S_FAULT]:
            try:
                recs = self.ring.peek_array(_BATCH, RECORD, timeout=_IDLE_SLICE_S)
            except RingTimeout:
                self._check_stop()
                continue
            except PeerDied:
                raise _Stop from None
            n = k.run_batch(recs, psi, nq, local_of, self.adj, t0, factor, self.horizon,
                            done, late, meas, status, self.m1, self.m2)
            prog[done:done + n] = recs[:n]
            nxt = float(recs["start_ns"][n]) if n < len(recs) else -1.0
            self.ring.release(n)
            done += n
            if nxt >= 0 and not status[k.S_FAULT]:
                self._sleep_until(t0 + int(nxt * factor) - self.horizon // 2)
        header[H_END_NS] = time.monotonic_ns()
        header[H_EXECUTED] = status[k.S_EXECUTED]
        r.write("INSTR_COUNT", r.read("INSTR_COUNT") + int(status[k.S_EXECUTED]))
        if status[k.S_FAULT]:
            self._fault(FaultCode(int(status[k.S_FAULT])), int(status[k.S_FAULT_INDEX]),
                        header)
            return
        # 3. shots
        header[H_TRAJECTORY] = status[k.S_TRAJECTORY]
        if status[k.S_TRAJECTORY]:
            outcomes[0] = self._sample_one(psi, nq, meas, status)
            for s in range(1, shots):
                outcomes[s] = k.replay_shot(prog, psi, nq, local_of, self.adj, meas,
                                            status, self.m1, self.m2)
        else:
            k.sample(psi, nq, meas, shots, 0, outcomes, 0)
        self._write_info(header, info)
        r.write("SHOTS_DONE", r.read("SHOTS_DONE") + shots)
        r.write("JOBS_DONE", r.read("JOBS_DONE") + 1)
        self._complete(QpuState.DONE, IrqBit.DONE)

    @staticmethod
    def _sample_one(psi: Any, nq: int, meas: Any, status: Any) -> int:
        out = np.zeros(1, dtype=np.int64)
        k.sample(psi, nq, meas, 1, int(status[k.S_BITS]), out, 0)
        return int(out[0])

    def _sleep_until(self, when_ns: int) -> None:
        gap = when_ns - time.monotonic_ns()
        if gap > 0:
            self.guard.idle(gap)
        while (gap := when_ns - time.monotonic_ns()) > 0:
            time.sleep(min(gap / 1e9, _IDLE_SLICE_S))
            if gap > _IDLE_SLICE_S * 1e9:
                self._check_stop()

    def _check_stop(self) -> None:
        if self.regs.read("CTRL") & 0b1000 or not is_alive(self.host_pid):
            raise _Stop

    def _write_info(self, header: Any, info: memoryview) -> None:
        stats = self.guard.stats()
        data = json.dumps({"realtime": self.realtime, "pid": os.getpid(),
                           "gc": _as_dict(stats)}, default=str).encode()
        data = data[:INFO_BYTES]
        info[:len(data)] = data
        header[H_INFO_LEN] = len(data)

    # -- 4. fault ----------------------------------------------------------------------

    def _fault(self, code: FaultCode, seq: int, header: Any) -> None:
        r = self.regs
        if header is not None:
            self._write_info(header, result_views(self.arena, r.read("JOB_RESULT"),
                                                  r.read("JOB_LENGTH"),
                                                  r.read("JOB_SHOTS"))[3])
        r.write("FAULT_SEQ", seq & 0xFFFF_FFFF)
        r.write("FAULT_COUNT", r.read("FAULT_COUNT") + 1)
        self._complete(QpuState.FAULT | int(code) << 8, IrqBit.FAULT)
        while not r.read("CTRL") & 0b1010:  # RESET or SHUTDOWN
            if not is_alive(self.host_pid):
                return
            self._discard()
            time.sleep(0.001)
        self._discard()
        r.clear_bits("CTRL", 0b0010)
        r.write("STATUS", QpuState.IDLE)

    def _discard(self) -> None:
        while True:
            try:
                self.ring.peek(_BATCH, timeout=0)
            except (RingTimeout, PeerDied, Exception):
                return
            self.ring.release()

    def _complete(self, status: int, bit: IrqBit) -> None:
        # CTRL is read before STATUS changes: once the host sees the new STATUS it may
        # start the next job (and set IRQ_ENABLE for it), which must not make this
        # job's completion ring.
        ring = self.regs.read("CTRL") & 0b100
        self.regs.set_bits("IRQ_STATUS", int(bit))
        self.regs.write("STATUS", status)
        if ring:
            doorbell(self.irq_fd)


def _as_dict(stats: Any) -> Any:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return stats


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m qpuos.device.controller",
                                description="The emulated QPU controller (started by "
                                            "the driver, not by hand).")
    p.add_argument("--window", required=True)
    p.add_argument("--ring", required=True)
    p.add_argument("--arena", required=True)
    p.add_argument("--irq-fd", type=int, required=True)
    p.add_argument("--edges", required=True, help="JSON [[a, b], ...]")
    p.add_argument("--num-qubits", type=int, required=True)
    p.add_argument("--max-qubits", type=int, default=20)
    p.add_argument("--host-pid", type=int, required=True)
    p.add_argument("--cpu", type=int, action="append", default=None)
    p.add_argument("--fifo", type=int, default=None)
    p.add_argument("--gc", default="scheduled", choices=("scheduled", "frozen", "default"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the controller until the host asks it to stop or goes away.

    Args:
        argv: the command line (see ``--help``); the driver builds it.

    Returns:
        The exit status: 0 on shutdown.
    """
    args = _parse(argv)
    report = RealtimeProfile(cpus=args.cpu, fifo_priority=args.fifo).apply()
    adj = np.zeros((args.num_qubits, args.num_qubits), dtype=np.uint8)
    for a, b in json.loads(args.edges):
        adj[a, b] = adj[b, a] = 1
    regs = MmioWindow.attach(QPU_REGISTERS, args.window, role="device")
    regs.write("ID", QPU_REGISTERS["ID"].reset)
    regs.write("VERSION", VERSION << 16 | REGS_VERSION)
    ring = SpscRing.attach(args.ring, wait="block", spin_s=100e-6)
    fd = os.open(args.arena, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    arena = Arena.attach(mm)
    _warm_up(adj)
    guard = GCGuard(policy=args.gc)
    try:
        with guard:
            ctl = _Controller(regs, ring, arena, args.irq_fd, adj, args.max_qubits, guard,
                              report.summary() or _NO_RT, args.host_pid)
            return ctl.serve()
    finally:
        arena.close()
        ring.close()
        regs.close()
        mm.close()


def _warm_up(adj: np.ndarray[Any, Any]) -> None:
    """Load (or compile, the first time) every kernel before reporting ready, with the
    argument types of a real job (a read-only batch from the ring, a writable copy)."""
    recs = np.zeros(2, dtype=RECORD)
    recs["opcode"] = 0x01
    recs["version"] = VERSION
    psi = np.ones(2, dtype=np.complex128)
    status = np.zeros(k.STATUS_WORDS, dtype=np.int64)
    meas = np.zeros((2, 2), dtype=np.int64)
    m1, m2 = np.zeros((2, 2), np.complex128), np.zeros((4, 4), np.complex128)
    local = np.zeros(adj.shape[0], dtype=np.int64)
    late = np.zeros(1, dtype=np.int64)
    ro = recs.copy()
    ro.flags.writeable = False
    k.run_batch(ro, psi, 1, local, adj, 0, 1.0, HORIZON_NS, 0, late, meas, status, m1, m2)
    k.replay_shot(recs, psi, 1, local, adj, meas, status, m1, m2)
    k.sample(psi, 1, meas, 1, 0, late, 0)
    k.seed(0)


if __name__ == "__main__":
    sys.exit(main())

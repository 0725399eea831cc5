"""The host-side QPU driver: start the controller, stream a program, await completion.

``Qpu.open(device)`` creates the shared memory (register window, instruction ring, DMA
arena: this side owns and unlinks all three), an eventfd for the completion interrupt,
and starts the controller process (``controller.py``) with the eventfd inherited.
``await qpu.run(schedule, shots=...)`` runs inside the qpuos kernel
:class:`~qpuos.kernel.scheduler.Scheduler` (not asyncio):

1. encode the schedule (``isa.encode``), pick the dilation factor
   (:func:`pick_dilation`), allocate the result block in the arena;
2. register two vectors in the scheduler's table: the completion eventfd, and a pidfd
   of the controller (readable when it dies: death is an interrupt too);
3. write the ``JOB_*`` registers, ``CTRL.RUN | IRQ_ENABLE``, then ``DOORBELL``;
4. stream the records into the ring, refilling while the controller consumes (the task
   sleeps between refills; a full ring is the controller's backpressure);
5. await the first of: completion interrupt, death interrupt, the timeout;
6. read ``STATUS`` and the result block: counts, lateness, the controller's report.

Faults: death -> :class:`DeviceLost` naming the pid and its exit status or signal, after
every shared-memory file is unlinked; ``STATUS.FAULT`` -> :class:`DeviceFault` with the
code and the record's sequence number (the controller is reset and stays usable); no
answer in time -> :class:`DeviceTimeout` (the controller is stopped: its state is
unknown).

``run_on_device`` is the synchronous entry point: it runs one job in a fresh scheduler.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from types import TracebackType
from typing import Any

import numpy as np

from qpuos.device._dilation import pick_dilation
from qpuos.device._launch import controller_command, push_records, warm_job
from qpuos.device._layout import (
    H_END_NS,
    H_INFO_LEN,
    H_SEEN_NS,
    H_TRAJECTORY,
    result_bytes,
    result_views,
)
from qpuos.device._results import RunResult, format_counts, lateness_stats
from qpuos.device._shared import SharedResources
from qpuos.device.registers import FaultCode, QpuState
from qpuos.errors import (
    ClosedResourceError,
    DeviceFault,
    DeviceLost,
    DeviceTimeout,
    UsageError,
)
from qpuos.kernel.irq import FdSource
from qpuos.kernel.scheduler import Queue, Scheduler, current_scheduler, irq, sleep, spawn
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.compile import CompileResult
from qpuos.quantum.device import Device, load_device
from qpuos.quantum.isa import RECORD, Opcode, encode
from qpuos.quantum.timing import Schedule

__all__ = ["Qpu", "run_on_device"]

_REFILL_NS = 1_000_000


class Qpu:
    """A handle on one emulated QPU controller process and its shared memory.

    Use ``async with Qpu.open(device) as qpu`` inside a qpuos scheduler, or ``with``
    from synchronous code (``run_on_device`` does both). One controller serves any
    number of runs, one at a time.

    >>> from qpuos.quantum import compile_circuit, line_device, parse_qasm
    >>> prog = compile_circuit(parse_qasm('OPENQASM 2.0; include "qelib1.inc"; '
    ...     'qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'), line_device(2))
    >>> async def main():
    ...     async with Qpu.open(prog.device) as qpu:
    ...         result = await qpu.run(prog, shots=100, seed=1)
    ...     return sorted(result.counts)
    >>> with Scheduler() as sched:
    ...     sched.run(main())
    ['00', '11']
    """

    def __init__(self, device: Device, shared: SharedResources, proc: subprocess.Popen[bytes],
                 pidfd: int) -> None:
        self.device = device
        self._shared = shared
        self._proc = proc
        self._pidfd = pidfd
        self._job = 0
        self._closed = False

    @property
    def pid(self) -> int:
        """The controller's process id."""
        return self._proc.pid

    @property
    def name(self) -> str:
        """The prefix of every /dev/shm file of this device (``qpuos-qpu-`` + 8 hex)."""
        return self._shared.name

    @classmethod
    def open(cls, device: Device | str, *, cpus: set[int] | None = None,
             fifo_priority: int | None = None, gc_policy: str = "scheduled",
             max_qubits: int = 20, ring_capacity: int = 16384,
             start_timeout_s: float = 120.0) -> Qpu:
        """Create the shared memory and start the controller; wait until it is ready.

        Args:
            device: a ``Device`` or a name/path for ``load_device``.
            cpus: pin the controller to these CPUs (None: no pinning).
            fifo_priority: SCHED_FIFO priority for the controller where permitted.
            gc_policy: the controller's GC guard policy.
            max_qubits: most qubits a job may use (the state vector is 2**n x 16 bytes).
            ring_capacity: instruction ring slots (a power of two).
            start_timeout_s: how long to wait for the controller (numba loads its cache).

        Raises:
            DeviceLost: the controller exited while starting.
            DeviceTimeout: it did not become ready in time.
        """
        dev = load_device(device) if isinstance(device, str) else device
        shared = SharedResources.create(ring_capacity=ring_capacity)
        try:
            cmd = controller_command(dev, shared, cpus=cpus, fifo_priority=fifo_priority,
                                     gc_policy=gc_policy, max_qubits=max_qubits)
            proc = subprocess.Popen(cmd, pass_fds=[shared.irq.fileno()],
                                    stdin=subprocess.DEVNULL)
        except BaseException:
            shared.close()
            raise
        qpu = cls(dev, shared, proc, os.pidfd_open(proc.pid))
        try:
            qpu._wait_ready(start_timeout_s)
        except BaseException:
            qpu.close()
            raise
        return qpu

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        regs = self._shared.window
        while regs.read_field("STATUS", "STATE") == QpuState.BOOT:
            if self._proc.poll() is not None:
                raise self._lost("while starting")
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"controller pid {self.pid} did not become ready in "
                                    f"{timeout_s:g} s; a first run compiles numba kernels "
                                    "(seconds): retry with a longer start_timeout_s")
            time.sleep(0.005)
        self._job += 1
        warm_job(self._shared, self._job, self.pid, deadline, self._alive)

    def _alive(self, when: str) -> None:
        if self._proc.poll() is not None:
            raise self._lost(when)

    # -- running ---------------------------------------------------------------------

    async def run(self, program: CompileResult | Schedule, *, shots: int = 1000,
                  seed: int | None = None, dilation: float | None = None,
                  timeout_s: float | None = None) -> RunResult:
        """Run a compiled program for ``shots`` shots; await its results.

        Args:
            program: a ``CompileResult`` (or its ``Schedule``) for this device.
            shots: how many measurement samples to take.
            seed: the measurement draws' seed (None: from the OS).
            dilation: wall ns per schedule ns (None: :func:`pick_dilation`;
                0: issue as fast as possible, every record already due).
            timeout_s: give up after this long (None: 10 s plus the dilated makespan).

        Returns:
            The counts and the timing record of the run.

        Raises:
            DeviceLost, DeviceFault, DeviceTimeout: see the module docstring.
            UsageError: bad arguments, or a program for another device.
            IsaError: the schedule cannot be encoded.
        """
        sched = program.schedule if isinstance(program, CompileResult) else program
        if sched.circuit.num_qubits > self.device.num_qubits:
            raise UsageError(f"the program has {sched.circuit.num_qubits} qubits, device "
                             f"{self.device.name!r} {self.device.num_qubits}; compile it "
                             "for this device")
        self._check()
        return await self.run_records(encode(sched, num_qubits=self.device.num_qubits),
                                      circuit=sched.circuit, shots=shots, seed=seed,
                                      dilation=dilation, timeout_s=timeout_s)

    async def run_records(self, records: np.ndarray[Any, Any], *,
                          circuit: Circuit | None = None, shots: int = 1000,
                          seed: int | None = None, dilation: float | None = None,
                          timeout_s: float | None = None) -> RunResult:
        """Run a raw instruction stream (``isa.encode``'s output, END last) as is.

        The controller checks every record itself; this is how tools (and the tests)
        send streams the encoder would not produce. ``circuit`` supplies the classical
        registers for the counts (default: one register ``c`` wide enough for every
        measured bit); the other arguments are those of :meth:`run`.

        Raises:
            DeviceLost, DeviceFault, DeviceTimeout: see the module docstring.
            UsageError: bad arguments.
        """
        self._check()
        recs = np.ascontiguousarray(records)
        if recs.dtype != RECORD or recs.ndim != 1 or len(recs) < 1:
            raise UsageError(f"records must be a non-empty 1-d array of isa.RECORD, got "
                             f"{recs.dtype} of shape {recs.shape}")
        if circuit is None:
            measured = recs["clbit"][recs["opcode"] == Opcode.MEASURE]
            width = int(measured.max()) + 1 if len(measured) else 0
            circuit = Circuit.with_registers([("q", 1)], [("c", width)] if width else [])
        if shots < 1 or circuit.num_clbits > 64:
            raise UsageError(f"shots={shots} must be >= 1 and the circuit's "
                             f"{circuit.num_clbits} classical bits at most 64")
        t_start = time.monotonic_ns()
        used = {int(q) for q in recs["q0"]} | {int(q) for q in recs["q1"]}
        used = {q for q in used if q < self.device.num_qubits} or {0}
        makespan = float(recs["start_ns"][-1])
        factor = pick_dilation(recs["start_ns"], len(used)) if dilation is None \
            else float(dilation)
        if not factor >= 0:
            raise UsageError(f"dilation={dilation} must be >= 0")
        budget = timeout_s if timeout_s is not None else 10.0 + makespan * factor / 1e9
        sh = self._shared
        block = sh.arena.alloc(result_bytes(len(recs), shots))
        try:
            outcome, t_pub = await self._execute(recs, used, shots, seed, factor, block,
                                                 budget)
            return self._collect(outcome, recs, shots, factor, block, circuit, t_start,
                                 t_pub)
        finally:
            if not sh.closed:
                sh.arena.free(block)

    async def _execute(self, recs: np.ndarray[Any, Any], used: set[int], shots: int,
                       seed: int | None, factor: float, block: int, budget_s: float
                       ) -> tuple[str, int]:
        sched = current_scheduler()
        table = sched.table
        v_done = table.free_vector(64)
        v_dead = None if v_done is None else table.free_vector(v_done + 1)
        if v_done is None or v_dead is None:
            raise UsageError("the scheduler's vector table has no two free vectors >= 64")
        table.register(v_done, self._shared.irq, name="qpu-done")
        table.register(v_dead, FdSource(self._pidfd, read_size=None), name="qpu-death")
        q: Queue[str] = Queue()
        tasks = [spawn(_forward(v_done, "done", q), name="qpu-irq"),
                 spawn(_forward(v_dead, "dead", q), name="qpu-death"),
                 spawn(_timer(int(budget_s * 1e9), q), name="qpu-timeout")]
        try:
            r = self._shared.window
            r.write("IRQ_STATUS", 0b11)
            self._job += 1
            r.write("JOB_SHOTS", shots)
            r.write("JOB_LENGTH", len(recs))
            r.write("JOB_QUBITS", sum(1 << u for u in used))
            r.write("JOB_DILATION", round(factor * 65536))
            r.write("JOB_SEED", int.from_bytes(os.urandom(8), "little") >> 1
                    if seed is None else seed)
            r.write("JOB_RESULT", block)
            r.write("CTRL", 0b101)  # RUN | IRQ_ENABLE
            r.write("DOORBELL", self._job)
            r.barrier()
            t_pub = time.monotonic_ns()
            pushed = push_records(self._shared.ring, recs, 0)
            while pushed < len(recs) and q.empty():
                await sleep(_REFILL_NS)
                pushed = push_records(self._shared.ring, recs, pushed)
            outcome = await q.get()
            while outcome == "done" and not self._finished():
                # A stale or spurious interrupt (an eventfd is a counter, not a
                # message): the registers say whether this job is over.
                tasks.append(spawn(_forward(v_done, "done", q), name="qpu-irq"))
                outcome = await q.get()
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            table.unregister(v_dead)
            table.unregister(v_done)
        return outcome, t_pub

    def _finished(self) -> bool:
        r = self._shared.window
        return r.read("JOB_ID") == self._job and \
            r.read_field("STATUS", "STATE") in (QpuState.DONE, QpuState.FAULT)

    def _collect(self, outcome: str, recs: np.ndarray[Any, Any], shots: int,
                 factor: float, block: int, circuit: Circuit, t_start: int, t_pub: int
                 ) -> RunResult:
        r = self._shared.window
        if outcome == "dead" or self._proc.poll() is not None:
            raise self._lost("during a run")
        if outcome == "timeout":
            self.close()
            raise DeviceTimeout(f"controller pid {self.pid} did not complete job "
                                f"{self._job} ({len(recs)} records) in time; it was "
                                "stopped: open the device again")
        r.write("IRQ_STATUS", 0b11)
        state = r.read_field("STATUS", "STATE")
        if state == QpuState.FAULT:
            code = FaultCode(r.read_field("STATUS", "FAULT_CODE"))
            seq = r.read("FAULT_SEQ")
            seq = -1 if seq == 0xFFFF_FFFF else seq
            self._reset()
            where = f"record {seq}" if seq >= 0 else "the job registers"
            raise DeviceFault(f"controller reported fault {code.name} (code {int(code)}) at "
                              f"{where} of job {self._job}; check the program against "
                              f"device {self.device.name!r} (qpuos compile)",
                              code=int(code), seq=seq)
        t_done = time.monotonic_ns()
        header, late, outcomes, info = result_views(self._shared.arena, block, len(recs),
                                                    shots)
        report = json.loads(bytes(info[:int(header[H_INFO_LEN])]) or b"{}")
        result = RunResult(
            counts=format_counts(outcomes, circuit), shots=shots, dilation=factor,
            num_instructions=len(recs), lateness=lateness_stats(late),
            lateness_ns=late.copy(), end_to_end_ns=t_done - t_start,
            ring_latency_ns=int(header[H_SEEN_NS]) - t_pub,
            execute_ns=int(header[H_END_NS]) - int(r.read("JOB_T0")),
            trajectory=bool(header[H_TRAJECTORY]), controller_pid=self.pid,
            realtime=str(report.get("realtime", "")), gc=report.get("gc", {}))
        del header, late, outcomes, info
        return result

    def _reset(self) -> None:
        r = self._shared.window
        r.write("CTRL", 0b0111)  # RUN | RESET | IRQ_ENABLE
        deadline = time.monotonic() + 5.0
        while r.read_field("STATUS", "STATE") != QpuState.IDLE:
            if self._proc.poll() is not None:
                raise self._lost("while resetting")
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"controller pid {self.pid} did not reset in 5 s")
            time.sleep(0.0005)

    def _lost(self, when: str) -> DeviceLost:
        try:
            rc = self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            rc = None
        self.close()
        if rc is None:
            how = "stopped answering"
        elif rc < 0:
            import signal

            how = f"was killed by {signal.Signals(-rc).name}"
        else:
            how = f"exited with status {rc}"
        return DeviceLost(f"QPU controller pid {self._proc.pid} {how} {when}; its shared "
                          "memory was released: open the device again")

    # -- lifetime --------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ClosedResourceError("this Qpu was closed; open the device again")

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran."""
        return self._closed

    def close(self) -> None:
        """Stop the controller and unlink every shared-memory file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc.poll() is None:
                try:
                    self._shared.window.write("CTRL", 0b1000)  # SHUTDOWN
                    self._proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            os.close(self._pidfd)
            self._shared.close()

    def __enter__(self) -> Qpu:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Qpu:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


async def _forward(vector: int, tag: str, q: Queue[str]) -> None:
    await irq(vector)
    q.put_nowait(tag)


async def _timer(ns: int, q: Queue[str]) -> None:
    await sleep(ns)
    q.put_nowait("timeout")


def run_on_device(program: CompileResult, *, shots: int = 1000, seed: int | None = None,
                  dilation: float | None = None, timeout_s: float | None = None,
                  **open_options: Any) -> RunResult:
    """Run one compiled program on a fresh controller for ``program.device``, blocking.

    Starts a qpuos ``Scheduler``, opens the device (``open_options`` go to
    :meth:`Qpu.open`), awaits :meth:`Qpu.run` and closes everything.

    >>> from qpuos.quantum import compile_circuit, line_device, parse_qasm
    >>> src = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; ' \\
    ...       'x q[0]; measure q -> c;'
    >>> r = run_on_device(compile_circuit(parse_qasm(src), line_device(2)), shots=10)
    >>> r.counts
    {'01': 10}
    """
    async def main() -> RunResult:
        async with Qpu.open(program.device, **open_options) as qpu:
            return await qpu.run(program, shots=shots, seed=seed, dilation=dilation,
                                 timeout_s=timeout_s)

    with Scheduler() as sched:
        result: RunResult = sched.run(main())
    return result

"""The driver against a real controller process: known circuits, faults, death, timeout.

One controller serves the module (``qpu``); the tests that end a controller (timeout,
kill) start their own. Statistical checks use fixed seeds and a chi-square bound at
alpha = 0.001 against the state-vector simulator's exact distribution.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from qpuos.device import FaultCode, Qpu, QpuState, RunResult, run_on_device
from qpuos.device._checks import chi_square, exact_distribution
from qpuos.errors import ClosedResourceError, DeviceFault, DeviceLost, DeviceTimeout
from qpuos.kernel.scheduler import Scheduler, sleep, spawn
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.compile import CompileResult, compile_circuit
from qpuos.quantum.device import load_device, ring_device
from qpuos.quantum.isa import Opcode, encode
from qpuos.quantum.qasm import parse_qasm
from qpuos.quantum.timing import DurationModel, schedule

FALCON = load_device("ibm_falcon_27")
SHM = Path("/dev/shm")


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    with Scheduler() as sched:
        return sched.run(coro, timeout_ns=60 * 10**9)


def files_of(qpu: Qpu) -> set[str]:
    """The /dev/shm files of one device (other tests may run beside this one)."""
    return {p.name.removeprefix(qpu.name + "-") for p in SHM.glob(qpu.name + "-*")}


@pytest.fixture(scope="module")
def qpu() -> Iterator[Qpu]:
    with Qpu.open(FALCON) as q:
        yield q


def compiled(src: str) -> CompileResult:
    head = 'OPENQASM 2.0; include "qelib1.inc"; '
    return compile_circuit(parse_qasm(head + src), FALCON)


def run(qpu: Qpu, prog: Any, **kw: Any) -> RunResult:
    async def main() -> RunResult:
        return await qpu.run(prog, **kw)
    result: RunResult = drive(main())
    return result


def ghz(n: int) -> str:
    body = "".join(f"cx q[{i}],q[{i + 1}]; " for i in range(n - 1))
    return f"qreg q[{n}]; creg c[{n}]; h q[0]; {body}measure q -> c;"


def qft(n: int, prep: str) -> str:
    body = []
    for j in reversed(range(n)):
        body.append(f"h q[{j}];")
        body += [f"cp({math.pi / 2 ** (j - k)}) q[{k}],q[{j}];" for k in reversed(range(j))]
    return f"qreg q[{n}]; creg c[{n}]; {prep} {' '.join(body)} measure q -> c;"


@pytest.mark.parametrize("src", [
    "qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;",
    ghz(5),
    qft(4, "x q[0]; x q[2];"),
    qft(3, "h q[1]; h q[2];"),   # a periodic input: QFT leaves two peaks (phases matter)
    "qreg q[3]; creg a[2]; creg b[1]; x q[0]; h q[2]; measure q[0] -> b[0]; "
    "measure q[1] -> a[1]; measure q[2] -> a[0];",
])
def test_counts_match_the_exact_distribution(qpu: Qpu, src: str) -> None:
    prog = compiled(src)
    r = run(qpu, prog, shots=2000, seed=11)
    want = exact_distribution(prog.logical)
    check = chi_square(r.counts, want)
    assert check.impossible == ()
    assert check.ok, (r.counts, want, check)
    assert sum(r.counts.values()) == 2000
    assert r.num_instructions == len(prog.schedule.ops) + 1
    assert r.lateness.count == r.num_instructions and r.dilation >= 1.0


def test_registers_print_in_qiskit_order(qpu: Qpu) -> None:
    r = run(qpu, compiled("qreg q[3]; creg a[2]; creg b[1]; x q[0]; x q[2]; "
                          "measure q[0] -> a[0]; measure q[1] -> a[1]; "
                          "measure q[2] -> b[0];"), shots=50, seed=1)
    assert r.counts == {"1 01": 50}


def test_mid_circuit_measurement_and_reset_replay_each_shot(qpu: Qpu) -> None:
    prog = compiled("qreg q[2]; creg c[3]; h q[0]; measure q[0] -> c[0]; reset q[0]; "
                    "x q[0]; cx q[0],q[1]; measure q[0] -> c[1]; measure q[1] -> c[2];")
    r = run(qpu, prog, shots=1000, seed=5)
    assert r.trajectory
    assert set(r.counts) == {"110", "111"}
    assert chi_square(r.counts, {"110": 0.5, "111": 0.5}).ok


def test_same_seed_same_counts(qpu: Qpu) -> None:
    prog = compiled(ghz(3))
    assert run(qpu, prog, shots=300, seed=9).counts == run(qpu, prog, shots=300,
                                                           seed=9).counts


def _non_edge_schedule() -> Any:
    c = Circuit.with_registers([("q", FALCON.num_qubits)], [("c", 1)])
    c.append("h", [0])
    c.append("x", [5])
    c.append("cx", [0, 2])  # 0-2 is not an edge of ibm_falcon_27
    c.append("measure", [0], clbits=[0])
    assert frozenset((0, 2)) not in {frozenset(e) for e in FALCON.edges}
    return schedule(c, DurationModel())


def test_adjacency_violation_is_a_fault_naming_the_record(qpu: Qpu) -> None:
    sched = _non_edge_schedule()
    seq = int(encode(sched)["seq"][encode(sched)["opcode"] == Opcode.CX][0])
    pattern = rf"fault NOT_COUPLED \(code 4\) at record {seq} "
    with pytest.raises(DeviceFault, match=pattern) as info:
        run(qpu, sched, shots=10)
    assert (info.value.code, info.value.seq) == (FaultCode.NOT_COUPLED, seq)
    # the controller was reset and runs the next job
    assert run(qpu, compiled(ghz(2)), shots=20, seed=2).shots == 20


def test_malformed_record_is_a_fault_with_its_seq(qpu: Qpu) -> None:
    recs = encode(compiled(ghz(2)).schedule)
    recs["opcode"][1] = 0x3E

    async def main() -> None:
        await qpu.run_records(recs, shots=5)

    with pytest.raises(DeviceFault, match=r"fault BAD_OPCODE \(code 2\) at record 1 ") as info:
        drive(main())
    assert info.value.seq == 1


def test_run_on_device_and_closed_handle() -> None:
    prog = compile_circuit(parse_qasm(
        'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; x q[1]; measure q -> c;'),
        ring_device(3))
    assert run_on_device(prog, shots=7).counts == {"10": 7}
    q = Qpu.open(ring_device(3))
    assert files_of(q) == {"regs", "ring", "ring.data", "ring.space", "dma"}
    q.close()
    q.close()
    assert files_of(q) == set()
    with pytest.raises(ClosedResourceError):
        run(q, prog, shots=1)


def test_killed_controller_is_device_lost_and_leaves_no_shared_memory() -> None:
    prog = compiled(ghz(3))
    qpu = Qpu.open(FALCON)
    assert files_of(qpu) == {"regs", "ring", "ring.data", "ring.space", "dma"}

    async def main() -> None:
        async def killer() -> None:
            await sleep(300_000_000)
            os.kill(qpu.pid, signal.SIGKILL)

        spawn(killer())
        await qpu.run(prog, shots=10, dilation=1e6)   # ~10 s of wall time

    with pytest.raises(DeviceLost, match=rf"^QPU controller pid {qpu.pid} was killed by "
                                         r"SIGKILL during a run; its shared memory"):
        drive(main())
    assert qpu.closed
    assert files_of(qpu) == set()


def test_no_answer_in_time_is_device_timeout() -> None:
    with Qpu.open(FALCON) as qpu:
        with pytest.raises(DeviceTimeout, match=r"did not complete job \d+ \(\d+ records\)"):
            run(qpu, compiled(ghz(3)), shots=10, dilation=1e6, timeout_s=0.2)
        assert qpu.closed
        assert files_of(qpu) == set()


def test_lateness_sample_is_per_record(qpu: Qpu) -> None:
    r = run(qpu, compiled(ghz(4)), shots=10, seed=3)
    assert r.lateness_ns.shape == (r.num_instructions,)
    assert r.lateness.max_ns == float(np.max(r.lateness_ns))
    assert r.to_json()["counts"] == dict(sorted(r.counts.items()))


def test_a_spurious_interrupt_does_not_end_a_job(qpu: Qpu) -> None:
    qpu._shared.irq.fire()   # a stale count on the completion eventfd
    prog = compiled("qreg q[2]; creg c[2]; x q[0]; measure q -> c;")
    assert run(qpu, prog, shots=30, seed=1, dilation=200.0).counts == {"01": 30}


class JobProtocol(RuleBasedStateMachine):
    """Random sequences of good jobs, faulting jobs and stray interrupts against one
    controller; the model is what its counters and state must be after each."""

    def __init__(self, qpu: Qpu) -> None:
        super().__init__()
        self.qpu = qpu
        regs = qpu._shared.window
        self.regs = regs
        self.done = regs.read("JOBS_DONE")
        self.faults = regs.read("FAULT_COUNT")
        self.shots = regs.read("SHOTS_DONE")

    @rule(n=st.integers(2, 4), shots=st.integers(1, 50), seed=st.integers(0, 9))
    def good_job(self, n: int, shots: int, seed: int) -> None:
        r = run(self.qpu, ghz_program(n), shots=shots, seed=seed)
        assert set(r.counts) <= {"0" * n, "1" * n} and sum(r.counts.values()) == shots
        self.done += 1
        self.shots += shots

    @rule()
    def non_edge_job(self) -> None:
        with pytest.raises(DeviceFault, match=r"fault NOT_COUPLED"):
            run(self.qpu, _non_edge_schedule(), shots=3)
        self.faults += 1

    @rule(seq=st.integers(0, 3))
    def malformed_job(self, seq: int) -> None:
        recs = encode(ghz_program(2).schedule)
        recs["version"][seq] = 0

        async def main() -> None:
            await self.qpu.run_records(recs, shots=2)

        with pytest.raises(DeviceFault, match=rf"fault BAD_VERSION \(code 1\) at record {seq} "):
            drive(main())
        self.faults += 1

    @rule()
    def stray_interrupt(self) -> None:
        self.qpu._shared.irq.fire()

    @invariant()
    def counters_match_the_model(self) -> None:
        assert (self.regs.read("JOBS_DONE"), self.regs.read("FAULT_COUNT"),
                self.regs.read("SHOTS_DONE")) == (self.done, self.faults, self.shots)
        assert self.regs.read_field("STATUS", "STATE") in (QpuState.DONE, QpuState.IDLE)


@functools.cache
def ghz_program(n: int) -> CompileResult:
    return compiled(ghz(n))


def test_job_protocol_state_machine(qpu: Qpu) -> None:
    run_state_machine_as_test(
        lambda: JobProtocol(qpu),
        settings=settings(max_examples=8, stateful_step_count=6, deadline=None))


def test_a_handle_never_closed_leaves_nothing_at_exit() -> None:
    code = ("from qpuos.device import Qpu; from qpuos.quantum import line_device; "
            "print(Qpu.open(line_device(2)).name)")
    name = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=120).stdout.strip()
    assert name.startswith("qpuos-qpu-")
    assert sorted(p.name for p in SHM.glob(name + "-*")) == []

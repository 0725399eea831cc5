"""The controller's numba engine, in process: matrices, execution, faults, sampling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qpuos.device import _kernels as k
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.gates import GATES, gate_matrix
from qpuos.quantum.isa import OPCODE_OF, Opcode, encode, num_params
from qpuos.quantum.statevector import fidelity, simulate
from qpuos.quantum.timing import DurationModel, schedule

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("name", sorted(n for n in OPCODE_OF if n in GATES))
def test_engine_matrix_equals_the_gate_table(name: str) -> None:
    op = int(OPCODE_OF[name])
    p = np.zeros(4)
    p[:num_params(name)] = RNG.uniform(-3, 3, num_params(name))
    m1 = np.zeros((2, 2), dtype=np.complex128)
    m2 = np.zeros((4, 4), dtype=np.complex128)
    ok = k.matrix_1q(op, p, m1) if op < 0x40 else k.matrix_2q(op, p, m2, m1)
    got = m1 if op < 0x40 else m2
    assert ok
    np.testing.assert_allclose(got, gate_matrix(name, p[:num_params(name)]), atol=1e-12)


class Engine:
    """One job's worth of engine state over ``ndev`` physical qubits."""

    def __init__(self, ndev: int, qubits: list[int], edges: list[tuple[int, int]],
                 length: int) -> None:
        self.nq = len(qubits)
        self.local = np.full(ndev, -1, dtype=np.int64)
        self.local[qubits] = np.arange(self.nq)
        self.adj = np.zeros((ndev, ndev), dtype=np.uint8)
        for a, b in edges:
            self.adj[a, b] = self.adj[b, a] = 1
        self.psi = np.zeros(1 << self.nq, dtype=np.complex128)
        self.psi[0] = 1
        self.late = np.zeros(length, dtype=np.int64)
        self.meas = np.zeros((length + 1, 2), dtype=np.int64)
        self.status = np.zeros(k.STATUS_WORDS, dtype=np.int64)
        self.m1 = np.zeros((2, 2), dtype=np.complex128)
        self.m2 = np.zeros((4, 4), dtype=np.complex128)

    def run(self, recs: Any, *, factor: float = 0.0, expect: int = 0) -> int:
        return int(k.run_batch(recs, self.psi, self.nq, self.local, self.adj, k.now_ns(),
                               factor, 10**9, expect, self.late, self.meas, self.status,
                               self.m1, self.m2))


def _line(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def test_a_program_leaves_the_simulator_state() -> None:
    c = Circuit(num_qubits=4)
    for name, qs, ps in [("h", [0], []), ("cx", [0, 1], []), ("u", [2], [0.3, 1.0, -2.0]),
                         ("cp", [1, 2], [0.7]), ("swap", [2, 3], []), ("rzz", [0, 1], [1.1]),
                         ("sx", [3], []), ("cu", [3, 2], [0.1, 0.2, 0.3, 0.4])]:
        c.append(name, qs, ps)
    recs = encode(schedule(c, DurationModel()))
    eng = Engine(4, [0, 1, 2, 3], _line(4), len(recs))
    assert eng.run(recs) == len(recs)
    assert (eng.status[k.S_ENDED], eng.status[k.S_FAULT]) == (1, 0)
    assert eng.status[k.S_EXECUTED] == len(recs)
    want = simulate(c).reshape(-1)
    assert fidelity(eng.psi, want) == pytest.approx(1.0, abs=1e-12)
    assert (eng.late >= 0).all()


def test_only_the_jobs_qubits_are_simulated() -> None:
    c = Circuit(num_qubits=27)
    c.append("x", [20])
    c.append("cx", [20, 26])
    recs = encode(schedule(c, DurationModel()))
    eng = Engine(27, [20, 26], [(20, 26)], len(recs))
    eng.run(recs)
    assert eng.psi.size == 4 and abs(eng.psi[3]) == pytest.approx(1.0)


def _faulting(mutate: Any, *, edges: list[tuple[int, int]] | None = None) -> Engine:
    c = Circuit(num_qubits=3)
    c.append("h", [0])
    c.append("cx", [0, 1])
    c.append("x", [2])
    recs = encode(schedule(c, DurationModel()))
    recs = recs[np.argsort(recs["seq"])]
    mutate(recs)
    eng = Engine(3, [0, 1, 2], _line(3) if edges is None else edges, len(recs))
    eng.run(recs)
    return eng


@pytest.mark.parametrize(("mutate", "code", "seq"), [
    (lambda r: r["version"].__setitem__(1, 9), k.F_BAD_VERSION, 1),
    (lambda r: r["opcode"].__setitem__(2, 0x3F), k.F_BAD_OPCODE, 2),
    (lambda r: r["opcode"].__setitem__(0, 0), k.F_BAD_OPCODE, 0),
    (lambda r: r["q0"].__setitem__(2, 40), k.F_BAD_QUBIT, 2),
    (lambda r: r["seq"].__setitem__(1, 5), k.F_BAD_SEQ, 5),
])
def test_malformed_records_fault_with_their_seq(mutate: Any, code: int, seq: int) -> None:
    eng = _faulting(mutate)
    assert (eng.status[k.S_FAULT], eng.status[k.S_FAULT_INDEX]) == (code, seq)
    assert eng.status[k.S_ENDED] == 0


def test_a_gate_off_the_coupling_map_is_refused_not_executed() -> None:
    def to_0_2(r: Any) -> None:
        i = int(np.flatnonzero(r["opcode"] == Opcode.CX)[0])
        r["q1"][i] = 2

    eng = _faulting(to_0_2)
    assert eng.status[k.S_FAULT] == k.F_NOT_COUPLED
    # h ran, the cx did not: qubit 2 is untouched and 0 is in superposition
    probs = np.abs(eng.psi.reshape(2, 2, 2)) ** 2
    assert probs.sum(axis=(1, 2)).tolist() == pytest.approx([0.5, 0.5])
    assert probs.sum(axis=(0, 1)).tolist() == pytest.approx([1.0, 0.0])


def test_a_batch_stops_before_a_record_that_is_far_ahead() -> None:
    c = Circuit(num_qubits=1)
    c.append("x", [0])
    c.append("x", [0])
    recs = encode(schedule(c, DurationModel()))
    eng = Engine(1, [0], [], len(recs))
    n = int(k.run_batch(recs, eng.psi, 1, eng.local, eng.adj, k.now_ns(), 1e9, 1000, 0,
                        eng.late, eng.meas, eng.status, eng.m1, eng.m2))
    assert n == 1 and eng.status[k.S_EXECUTED] == 1


def test_sampling_follows_the_born_rule() -> None:
    psi = np.array([np.sqrt(0.2), 0, 0, np.sqrt(0.8)], dtype=np.complex128)
    meas = np.array([[2, 0], [0, 0], [1, 3]], dtype=np.int64)  # q0 -> c0, q1 -> c3
    out = np.zeros(20_000, dtype=np.int64)
    k.seed(3)
    k.sample(psi, 2, meas, len(out), 0, out, 0)
    values, counts = np.unique(out, return_counts=True)
    assert values.tolist() == [0, 0b1001]
    assert counts[1] / len(out) == pytest.approx(0.8, abs=0.02)

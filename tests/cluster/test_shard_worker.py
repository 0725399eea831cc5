"""Shard workers against a whole-register model: four workers of a 5-qubit register,
driven step by step in this process, always concatenate to the model's amplitudes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from qpuos.cluster._plan import LocalOp, SwapStep
from qpuos.cluster._shard_worker import Half, ShardWorker, peak_bytes
from qpuos.errors import ShardError
from qpuos.quantum.gates import gate_matrix
from qpuos.quantum.statevector import apply_gate, zero

N, K = 5, 2
LOCAL = list(range(K, N))
GLOBAL = list(range(K))


def unitary(rng: np.random.Generator, dim: int) -> np.ndarray:
    z = rng.standard_normal((dim, dim)) + 1j * rng.standard_normal((dim, dim))
    q, r = np.linalg.qr(z)
    return np.ascontiguousarray(q * (np.diagonal(r) / abs(np.diagonal(r))))


class ShardedRegister(RuleBasedStateMachine):
    """Model: the whole register on physical positions; a swap of positions g and l is
    ``swapaxes(g, l)`` of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.workers = [ShardWorker() for _ in range(1 << K)]
        for s, w in enumerate(self.workers):
            w.reset(N, K, s, None)
        self.model = zero(N)
        self.epoch = 0

    def _segment(self, ops: list[LocalOp]) -> None:
        for w in self.workers:
            w.apply(ops, self.epoch)
        for op in ops:
            apply_gate(self.model, op.matrix, op.positions)

    @rule(seed=st.integers(0, 2**32 - 1), two=st.booleans(),
          where=st.permutations(LOCAL))
    def local_gate(self, seed: int, two: bool, where: list[int]) -> None:
        width = 2 if two else 1
        self._segment([LocalOp(unitary(np.random.default_rng(seed), 1 << width),
                               tuple(where[:width]))])

    @rule(g=st.sampled_from(GLOBAL), loc=st.sampled_from(LOCAL),
          theta=st.floats(-3.1, 3.1), control_global=st.booleans())
    def gate_diagonal_on_a_global_qubit(self, g: int, loc: int, theta: float,
                                        control_global: bool) -> None:
        m = gate_matrix("crx", [theta]) if control_global else gate_matrix("cp", [theta])
        self._segment([LocalOp(np.ascontiguousarray(m), (g, loc))])

    @rule(g=st.sampled_from(GLOBAL), theta=st.floats(-3.1, 3.1))
    def phase_on_a_global_qubit(self, g: int, theta: float) -> None:
        self._segment([LocalOp(np.ascontiguousarray(gate_matrix("rz", [theta])), (g,))])

    @rule(g=st.sampled_from(GLOBAL), loc=st.sampled_from(LOCAL))
    def swap(self, g: int, loc: int) -> None:
        step = SwapStep(g, loc)
        halves = [w.pack(step, self.epoch, 0.0) for w in self.workers]
        flip = 1 << (K - 1 - g)
        for s, w in enumerate(self.workers):
            assert w.unpack(step, self.epoch, halves[s ^ flip], False) == self.epoch + 1
        self.epoch += 1
        self.model = np.ascontiguousarray(np.swapaxes(self.model, g, loc))

    @invariant()
    def shards_concatenate_to_the_model(self) -> None:
        got = np.concatenate([w.fetch() for w in self.workers])
        np.testing.assert_allclose(got, self.model.reshape(-1), atol=1e-10)
        assert {w.counters()[0] for w in self.workers} == {self.epoch}


TestShardedRegister = ShardedRegister.TestCase
TestShardedRegister.settings = settings(max_examples=40, stateful_step_count=25,
                                        deadline=None)


def test_worker_refuses_a_half_from_the_wrong_epoch_and_then_stops() -> None:
    w = ShardWorker()
    w.reset(3, 1, 0, None)
    step = SwapStep(0, 1)
    good = w.pack(step, 0, 0.0)
    with pytest.raises(ShardError, match=r"^shard 0 at epoch 0 expected the half of shard 1 "
                                         r"at the same epoch, got shard 1 at epoch 2"):
        w.unpack(step, 0, Half(1, 2, good.data), False)
    with pytest.raises(ShardError, match=r"^shard 0 stopped after an earlier failure"):
        w.mass()
    w.reset(3, 1, 0, None)
    with pytest.raises(ShardError, match=r"^shard 0 got a segment for epoch 1 while at "
                                         r"epoch 0"):
        w.apply((), 1)


def test_a_shard_that_does_not_fit_its_limit_refuses_to_allocate() -> None:
    w = ShardWorker()
    with pytest.raises(ShardError, match=r"^a register of 10 qubits over 2 shard\(s\) needs "
                                         r"16,384 bytes per shard, over the limit of "
                                         r"16,000; use 4 shards \(8,192 bytes each\)$"):
        w.reset(10, 1, 0, 16000)
    assert w.reset(10, 1, 0, peak_bytes(10, 1)) > 0

"""The sharded simulator on Ray: equal to the single-process simulator in both safe
modes, the sync statistics add up, the memory limit holds, and a shard actor killed
mid-run gives a clear error, never a wrong answer."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qpuos.cluster._plan import split_measurements
from qpuos.cluster._shard_worker import peak_bytes
from qpuos.cluster.shards import Drift, ShardedSimulator
from qpuos.errors import ClosedResourceError, ShardError, UsageError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.statevector import simulate

ONE = ["h", "sx", "rz", "u3", "t"]
TWO = ["cx", "cz", "swap", "rxx", "ch"]
PARAMS = {"rz": 1, "u3": 3, "rxx": 1}


@st.composite
def circuits(draw: st.DrawFn, shard_bits: int) -> Circuit:
    n = draw(st.integers(shard_bits + 2, shard_bits + 4))
    c = Circuit(num_qubits=n)
    for _ in range(draw(st.integers(5, 40))):
        name = draw(st.sampled_from(ONE + TWO))
        qubits = draw(st.permutations(range(n)))[:1 if name in ONE else 2]
        c.append(name, qubits, [draw(st.floats(-3.2, 3.2)) for _ in range(PARAMS.get(name, 0))])
    return c


@pytest.fixture(scope="module")
def sim(ray_session: Any) -> Iterator[ShardedSimulator]:
    with ShardedSimulator(shards=8) as s:
        yield s


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(1, 3))
def test_sharded_runs_equal_the_simulator_in_both_safe_modes(
        sim: ShardedSimulator, data: st.DataObject, k: int) -> None:
    c = data.draw(circuits(k))
    want = simulate(c)
    n = c.num_qubits
    for mode in ("barrier", "pairwise"):
        stats = sim.run(c, shards=1 << k, mode=mode)  # type: ignore[arg-type]
        np.testing.assert_allclose(sim.state(), want, atol=1e-10)
        assert stats.mode == mode
        assert stats.epochs == stats.swaps
        assert stats.bytes_exchanged == stats.swaps * 8 * 2**n
        assert stats.acquire_checks == stats.swaps * (1 << k)
        assert stats.stale_reads == 0
        assert stats.barrier_waits == (stats.swaps + 1 if mode == "barrier" else 1)


def bell_across(n: int) -> Circuit:
    c = Circuit(num_qubits=n, num_clbits=2)
    c.append("h", [n - 1])
    c.append("cx", [n - 1, 0])
    c.append("measure", [0], clbits=[0])
    c.append("measure", [n - 1], clbits=[1])
    return c


def test_samples_and_correlations_of_a_bell_pair_across_shards(sim: ShardedSimulator) -> None:
    stats = sim.run(bell_across(5), shards=4, mode="pairwise")
    counts = sim.sample(1000, seed=3)
    assert set(counts) - {"00", "11"} == set()
    assert sum(counts.values()) == 1000
    assert 400 < counts["00"] < 600
    assert sim.correlation([0, 4]) == pytest.approx(1.0, abs=1e-12)
    assert sim.correlation([0]) == pytest.approx(0.0, abs=1e-12)
    assert sim.norm() == pytest.approx(1.0, abs=1e-12)
    assert stats.global_gates == 1
    assert stats.bytes_per_global_gate == stats.bytes_exchanged


def test_memory_limit_refuses_one_shard_and_four_shards_fit(ray_session: Any) -> None:
    n = 12
    limit = peak_bytes(n, 2)          # four shards fit exactly, one does not
    c = Circuit(num_qubits=n)
    for q in range(n):
        c.append("h", [q])
    for q in range(n - 1):
        c.append("cx", [q, q + 1])
    with ShardedSimulator(shards=4, memory_limit=limit) as small:
        with pytest.raises(ShardError, match=re.escape(
                f"a register of 12 qubits over 1 shard(s) needs {peak_bytes(n, 0):,} bytes "
                f"per shard, over the limit of {limit:,}; use 4 shards")):
            small.run(c, shards=1)
        small.run(c, shards=4, mode="pairwise")
        np.testing.assert_allclose(small.state(), simulate(c), atol=1e-10)


def test_a_shard_killed_mid_run_is_a_clear_error_then_a_correct_rerun(
        sim: ShardedSimulator, ray_session: Any) -> None:
    c = bell_across(5)
    victim = sim.worker_handles[1]
    killer = threading.Timer(0.5, lambda: ray_session.kill(victim))
    killer.start()
    try:
        with pytest.raises(ShardError, match=r"^a shard actor died \(.*\); the register is "
                                             r"lost: run the circuit again"):
            sim.run(c, shards=2, mode="pairwise", drift=Drift(shard=0, lag_s=2.0))
    finally:
        killer.join()
    with pytest.raises(UsageError, match=r"^no register yet"):
        sim.sample(10)
    sim.run(c, shards=2, mode="barrier")
    assert sim.worker_handles[1] != victim
    assert set(sim.sample(500, seed=1)) - {"00", "11"} == set()


def test_drift_changes_nothing_in_the_safe_modes(sim: ShardedSimulator) -> None:
    c = bell_across(4)
    c.instructions.insert(0, c.instructions[0].with_qubits([1]))  # live data in the swap
    for mode in ("barrier", "pairwise"):
        stats = sim.run(c, shards=2, mode=mode,  # type: ignore[arg-type]
                        drift=Drift(shard=1, lag_s=0.2))
        assert stats.swaps >= 1
        assert stats.stale_reads == 0
        np.testing.assert_allclose(sim.state(), simulate(split_measurements(c)[0]),
                                   atol=1e-10)


def test_bad_options_are_refused() -> None:
    with pytest.raises(UsageError, match=r"^shards must be a power of two"):
        ShardedSimulator(shards=3, backend="inline")
    with ShardedSimulator(shards=2, backend="inline") as s:
        with pytest.raises(UsageError, match=r"^4 shards asked but the pool has 2$"):
            s.run(Circuit(num_qubits=4), shards=4)
        with pytest.raises(UsageError, match=r"^mode must be one of barrier, pairwise, "
                                             r"relaxed, got 'fast'$"):
            s.run(Circuit(num_qubits=4), mode="fast")  # type: ignore[arg-type]
    s.close()
    with pytest.raises(ClosedResourceError):
        s.run(Circuit(num_qubits=4))

"""Calibration: Bell/GHZ correlations across shard boundaries pass in the safe modes
even with an injected drift, and catch the drift in the unsafe relaxed mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from qpuos.cluster._plan import split_measurements
from qpuos.cluster.calibrate import bell_circuit, calibrate, ghz_circuit
from qpuos.cluster.shards import Drift, ShardedSimulator
from qpuos.errors import UsageError
from qpuos.quantum.statevector import simulate

LAG = Drift(shard=1, lag_s=0.1)


@pytest.fixture(scope="module")
def sim(ray_session: Any) -> Iterator[ShardedSimulator]:
    with ShardedSimulator(shards=4) as s:
        yield s


@pytest.mark.parametrize(("mode", "shards"), [("barrier", 4), ("pairwise", 2),
                                              ("pairwise", 4)])
def test_safe_modes_never_raise_a_false_alarm_under_drift(
        sim: ShardedSimulator, mode: str, shards: int) -> None:
    report = calibrate(sim, num_qubits=5, shards=shards, mode=mode,  # type: ignore[arg-type]
                       drift=LAG, shots=300)
    assert [c.kind for c in report.checks] == ["bell", "ghz"]
    failed = [c for c in report.checks if not c.passed]
    assert failed == []
    assert report.inconsistency_rate == 0.0
    assert all(c.stale_reads == 0 for c in report.checks)


def test_relaxed_mode_is_caught_when_a_shard_drifts(sim: ShardedSimulator) -> None:
    report = calibrate(sim, num_qubits=5, shards=2, mode="relaxed", drift=LAG, shots=300)
    assert report.inconsistency_rate > 0
    assert not report.passed
    # the drifting shard's halves were not ready when read: the cause, seen from inside
    assert sum(c.stale_reads for c in report.checks) > 0


def test_correlations_report_theory_exact_and_measured(sim: ShardedSimulator) -> None:
    report = calibrate(sim, num_qubits=4, shards=2, mode="pairwise", shots=200)
    bell = report.checks[0]
    assert [(x.paulis, x.qubits, x.theory) for x in bell.correlations] == [
        ("ZZ", (3, 0), 1.0), ("XX", (3, 0), 1.0), ("YY", (3, 0), -1.0)]
    for x in bell.correlations:
        assert x.exact == pytest.approx(x.theory, abs=1e-12)
        assert x.measured == x.theory
    ghz = report.checks[1]
    assert ghz.qubits == (3, 2, 0)
    assert [x.paulis for x in ghz.correlations] == ["ZZ", "ZZ", "XXX"]


@pytest.mark.parametrize("paulis,expected", [("ZZ", 1.0), ("XX", 1.0), ("YY", -1.0),
                                             ("ZI", 0.0), ("XY", 0.0)])
def test_bell_circuit_gives_the_theory_on_the_plain_simulator(paulis: str,
                                                              expected: float) -> None:
    body, measured = split_measurements(bell_circuit(3, 2, 0, paulis))
    assert measured == ((2, 0), (0, 1))
    probs = (np.abs(simulate(body)) ** 2).reshape(-1)
    index = np.arange(probs.size)
    parity = np.zeros(probs.size, dtype=np.int64)
    for q, clbit in measured:
        if paulis[clbit] != "I":
            parity ^= (index >> (2 - q)) & 1
    assert float((probs * (1 - 2 * parity)).sum()) == pytest.approx(expected, abs=1e-12)


def test_bad_calibration_requests_are_refused() -> None:
    with ShardedSimulator(shards=4, backend="inline") as s, pytest.raises(
            UsageError, match=r"^calibration over 4 shards needs at least 4 qubits, got 3$"):
        calibrate(s, num_qubits=3)
    with pytest.raises(UsageError, match=r"^GHZ qubits \[1, 1\] must be"):
        ghz_circuit(3, [1, 1], "ZZ")
    with pytest.raises(UsageError, match=r"^paulis 'ZQ' must give"):
        ghz_circuit(3, [0, 1], "ZQ")

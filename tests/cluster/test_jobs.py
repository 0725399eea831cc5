"""Jobs on QPU node actors: placement by fit, results gathered, a node killed mid-job
retried elsewhere (never a wrong answer), and clear errors when nothing fits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from qpuos.cluster.executors import ControllerExecutor, SimulatorExecutor
from qpuos.cluster.jobs import Cluster
from qpuos.errors import ClosedResourceError, NodeLost, TopologyError, UsageError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.device import Device, line_device

SIM = SimulatorExecutor()


def ghz(n: int) -> Circuit:
    c = Circuit(num_qubits=n, num_clbits=n)
    c.append("h", [0])
    for q in range(n - 1):
        c.append("cx", [q, q + 1])
    for q in range(n):
        c.append("measure", [q], clbits=[q])
    return c


def assert_ghz(counts: dict[str, int], n: int, shots: int) -> None:
    assert set(counts) - {"0" * n, "1" * n} == set()
    assert sum(counts.values()) == shots


def device(name: str, n: int, error: float) -> Device:
    line = line_device(n)
    return Device(name, n, line.edges, native_2q="cx", gate_errors={"cx": error})


@pytest.fixture(scope="module")
def ray(ray_session: Any) -> Any:
    return ray_session


@pytest.fixture
def cluster(ray: Any) -> Iterator[Cluster]:
    with Cluster() as c:
        yield c


def test_placement_by_size_fidelity_and_queue(cluster: Cluster) -> None:
    cluster.add_node(device("good", 3, 0.001), name="good", executor=SIM)
    cluster.add_node(device("poor", 3, 0.05), name="poor", executor=SIM)
    cluster.add_node(device("wide", 6, 0.02), name="wide", executor=SIM)
    results = cluster.run([ghz(5), ghz(2), ghz(2), ghz(2)], shots=200, seed=4)
    # 5 qubits fit only "wide"; then "good" (best fidelity); then its queue of one
    # halves its score below "poor"; then "good" again (0.999/2 > 0.98/2 > 0.95/2).
    assert [r.node for r in results] == ["wide", "good", "poor", "good"]
    for r, n in zip(results, [5, 2, 2, 2], strict=True):
        assert_ghz(r.counts, n, 200)
        assert r.attempts == 1
        assert r.estimated_fidelity == pytest.approx(
            (1 - {"wide": 0.02, "good": 0.001, "poor": 0.05}[r.node]) ** (n - 1))
    assert [s.queued for s in cluster.status()] == [0, 0, 0]


def test_a_node_killed_mid_job_is_detected_and_its_jobs_retried(cluster: Cluster,
                                                               ray: Any) -> None:
    # "slow" holds each job for 100 shots x 0.1 s: it is surely mid-job when killed.
    cluster.add_node(device("slow", 3, 0.001), name="slow",
                     executor=SimulatorExecutor(shot_time_s=0.1))
    cluster.add_node(device("fast", 3, 0.002), name="fast", executor=SIM)
    killer = threading.Timer(1.0, lambda: ray.kill(cluster.node_handle("slow")))
    killer.start()
    try:
        results = cluster.run([ghz(3) for _ in range(4)], shots=100, seed=1)
    finally:
        killer.join()
    assert {r.node for r in results} == {"fast"}
    assert sorted(r.attempts for r in results) == [1, 1, 2, 2]
    for r in results:
        assert_ghz(r.counts, 3, 100)
    assert {s.name: s.alive for s in cluster.status()} == {"slow": False, "fast": True}


def test_the_only_fitting_node_dying_is_node_lost(cluster: Cluster, ray: Any) -> None:
    cluster.add_node(device("big", 4, 0.01), name="big",
                     executor=SimulatorExecutor(shot_time_s=0.1))
    cluster.add_node(device("small", 2, 0.01), name="small", executor=SIM)
    killer = threading.Timer(1.0, lambda: ray.kill(cluster.node_handle("big")))
    killer.start()
    try:
        with pytest.raises(NodeLost, match=r"^job 0 \(4 qubits\) lost node 'big' and no "
                                           r"living node has enough qubits"):
            cluster.run([ghz(4)], shots=100)
    finally:
        killer.join()


def test_the_emulated_controller_runs_jobs_inside_a_node(cluster: Cluster) -> None:
    cluster.add_node(line_device(4), name="qpu", executor=ControllerExecutor())
    [r] = cluster.run([ghz(3)], shots=300, seed=2)
    assert_ghz(r.counts, 3, 300)
    assert r.device == "line:4"


def test_bad_requests_are_refused() -> None:
    with Cluster(backend="inline") as c:
        with pytest.raises(UsageError, match=r"^the cluster has no nodes"):
            c.run([ghz(2)])
        c.add_node(line_device(2), name="a", executor=SIM)
        with pytest.raises(UsageError, match=r"^a node named 'a' already exists"):
            c.add_node(line_device(2), name="a")
        with pytest.raises(TopologyError, match=r"^job 1 has 3 qubits but the largest "
                                                r"living node has 2"):
            c.run([ghz(2), ghz(3)])
        with pytest.raises(UsageError, match=r"^no node named 'b'; nodes: a$"):
            c.node_handle("b")
    with pytest.raises(ClosedResourceError):
        c.run([ghz(2)])

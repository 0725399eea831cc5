"""The compile pipeline end to end: bench circuits and the demo, verified, with a report.

The bench circuits live in the shared folder beside the repository (``../shared``) or
wherever ``QPUOS_SHARED`` points; without it those cases are skipped, not failed.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import TopologyError
from qpuos.quantum.circuit import Circuit, Condition
from qpuos.quantum.compile import CompileResult, compile_circuit
from qpuos.quantum.device import Device, grid_device, line_device, load_device, ring_device
from qpuos.quantum.gates import GATES
from qpuos.quantum.qasm import load_qasm
from qpuos.quantum.routing import RoutingOptions

OPTIONS = RoutingOptions(seed=1, layout_trials=4, routing_trials=2, iterations=1)
MAX_QUBITS = 16
REPORT_TYPES: dict[str, type | tuple[type, ...]] = {
    "swaps": int,
    "depth": int,
    "two_qubit_depth": int,
    "makespan_ns": float,
    "initial_layout": list,
    "final_layout": list,
    "num_two_qubit_gates": int,
    "compile_seconds": float,
    "verified": bool,
    "verify_seconds": float,
}


def shared_dir() -> Path | None:
    env = os.environ.get("QPUOS_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared")
    return next((p for p in candidates if (p / "bench" / "quantum" / "manifest.json").is_file()),
                None)


def bench_cases() -> list[Any]:
    shared = shared_dir()
    if shared is None:
        return [pytest.param(None, id="no-shared-folder", marks=pytest.mark.skip(
            reason="shared bench folder not found (set QPUOS_SHARED)"))]
    bench = shared / "bench" / "quantum"
    manifest = json.loads((bench / "manifest.json").read_text(encoding="utf-8"))
    cases = []
    for entry in manifest["circuits"]:
        if entry["n_qubits"] <= MAX_QUBITS:
            device = shared / "devices" / f"{entry['device']}.json"
            cases.append(pytest.param((bench / entry["file"], device),
                                      id=Path(entry["file"]).stem))
    return cases


def check_result(r: CompileResult, circuit: Circuit, device: Device) -> dict[str, Any]:
    assert r.verification is not None and r.verification.ok, r.verification
    report = r.report()
    missing = set(REPORT_TYPES) - set(report)
    assert missing == set()
    wrong = {k: type(report[k]).__name__ for k, t in REPORT_TYPES.items()
             if not isinstance(report[k], t) or (t is int and isinstance(report[k], bool))}
    assert wrong == {}
    assert report["verified"] is True
    n = r.logical.num_qubits
    assert n == circuit.num_qubits
    for key in ("initial_layout", "final_layout"):
        layout = report[key]
        assert len(layout) == n and len(set(layout)) == n, (key, layout)
        assert {p for p in layout if not isinstance(p, int) or not 0 <= p < device.num_qubits
                } == set()
    assert report["swaps"] == r.routed.swaps >= 0
    assert report["num_two_qubit_gates"] == r.circuit.num_two_qubit_gates
    assert report["depth"] == r.circuit.depth() >= report["two_qubit_depth"] >= 0
    assert report["makespan_ns"] == r.schedule.makespan_ns >= 0
    assert report["compile_seconds"] >= 0 and report["verify_seconds"] >= 0
    off_edges = {(min(i.qubits), max(i.qubits)) for i in r.circuit.instructions
                 if i.is_two_qubit_gate} - set(device.edges)
    assert off_edges == set()
    assert len(r.schedule.ops) == len(r.circuit)
    json.dumps(report)  # the CLI writes it as JSON
    return report


@pytest.mark.parametrize("case", bench_cases())
def test_bench_circuit_compiles_and_verifies(case: tuple[Path, Path]) -> None:
    qasm, device_file = case
    circuit = load_qasm(qasm)
    device = load_device(device_file)
    r = compile_circuit(circuit, device, options=OPTIONS)
    report = check_result(r, circuit, device)
    assert report["device"] == device.name


def test_demo_circuit_on_falcon() -> None:
    demo = resources.files("qpuos.quantum").joinpath("data", "demo.qasm")
    with resources.as_file(demo) as path:
        circuit = load_qasm(path)
    device = load_device("ibm_falcon_27")
    r = compile_circuit(circuit, device, options=OPTIONS)
    report = check_result(r, circuit, device)
    assert report["device"] == "ibm_falcon_27"
    assert report["durations_nominal"] is False
    assert report["seed"] == 1
    assert report["verify_method"] in ("structural", "structural+statevector")
    assert r.circuit.count_ops().get("measure", 0) == circuit.count_ops().get("measure", 0)


def test_same_options_same_compile() -> None:
    c = Circuit(num_qubits=4)
    for a, b in [(0, 2), (1, 3), (0, 3), (2, 1)]:
        c.append("h", [a])
        c.append("cx", [a, b])
    device = line_device(5)
    first = compile_circuit(c, device, options=OPTIONS)
    second = compile_circuit(c, device, options=OPTIONS)
    assert first.circuit.instructions == second.circuit.instructions
    keep = {k: v for k, v in first.report().items() if not k.endswith("seconds")}
    assert keep == {k: v for k, v in second.report().items() if not k.endswith("seconds")}


def test_three_qubit_gates_are_decomposed_then_routed() -> None:
    c = Circuit(num_qubits=3)
    c.append("h", [0])
    c.append("ccx", [0, 1, 2])
    c.append("cswap", [2, 0, 1])
    r = compile_circuit(c, line_device(3), options=OPTIONS)
    check_result(r, c, line_device(3))
    assert r.verification is not None and "statevector" in r.verification.method


@pytest.mark.parametrize("policy", ["asap", "alap"])
@pytest.mark.parametrize("optimize", [True, False])
def test_policy_and_optimise_switches(policy: str, optimize: bool) -> None:
    c = Circuit.with_registers([("q", 3)], [("c", 1)])
    c.append("h", [0])
    c.append("cx", [0, 2])
    c.append("cx", [0, 2])
    c.append("cx", [1, 2])
    c.append("measure", [2], [], [0])
    c.append("x", [0], [], [], Condition("c", 1))
    device = line_device(4)
    r = compile_circuit(c, device, options=OPTIONS, policy=policy,  # type: ignore[arg-type]
                        optimize=optimize)
    report = check_result(r, c, device)
    assert report["schedule_policy"] == policy
    if not optimize:
        assert r.circuit is r.routed.circuit


def test_without_verification_the_report_says_so() -> None:
    c = Circuit(num_qubits=2)
    c.append("cx", [0, 1])
    r = compile_circuit(c, line_device(2), options=OPTIONS, verify=False)
    assert r.verification is None
    report = r.report()
    assert (report["verified"], report["verify_method"], report["verify_seconds"]) == (
        False, None, 0.0)


def test_circuit_wider_than_the_device_raises() -> None:
    c = Circuit(num_qubits=4)
    with pytest.raises(TopologyError, match=r"^circuit uses 4 qubits but device 'line:3' has 3; "
                       r"pick a larger device \(`qpuos devices`\)$"):
        compile_circuit(c, line_device(3), options=OPTIONS)


@st.composite
def small_problems(draw: st.DrawFn) -> tuple[Circuit, Device]:
    device = draw(st.sampled_from([line_device(4), ring_device(5), grid_device(2, 3)]))
    n = draw(st.integers(3, device.num_qubits))
    c = Circuit.with_registers([("q", n)], [("c", 1)])
    qubit = st.integers(0, n - 1)
    names = ("h", "t", "rz", "sx", "cx", "cx", "cz", "cp", "swap", "ccx", "cswap", "rzz")
    for _ in range(draw(st.integers(0, 25))):
        name = draw(st.sampled_from(names))
        k = GATES[name].num_qubits
        c.append(name, draw(st.lists(qubit, min_size=k, max_size=k, unique=True)),
                 [0.25] * GATES[name].num_params)
    if draw(st.booleans()):
        c.append("measure", [draw(qubit)], [], [0])
    return c, device


@settings(max_examples=30, deadline=None)
@given(small_problems())
def test_random_circuits_compile_and_verify(problem: tuple[Circuit, Device]) -> None:
    circuit, device = problem
    r = compile_circuit(circuit, device, options=OPTIONS)
    report = check_result(r, circuit, device)
    assert report["verify_method"] == "structural+statevector"

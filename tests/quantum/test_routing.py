"""The SABRE-class router against "every 2-qubit gate on an edge" and the verifier.

The verifier (``verify.verify_routed``) shares no code with the router: it follows the
routed circuit's SWAPs itself and simulates both circuits, so these tests check routing
end to end rather than the router's own bookkeeping.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import TopologyError, UsageError
from qpuos.quantum.circuit import Circuit, Condition
from qpuos.quantum.device import Device, grid_device, heavy_hex_device, line_device, ring_device
from qpuos.quantum.gates import GATES
from qpuos.quantum.routing import RoutedCircuit, RoutingOptions, SabreRouter
from qpuos.quantum.verify import verify_routed

ONE_QUBIT = ("h", "x", "rz", "s", "t", "sx", "u", "ry", "sdg")
TWO_QUBIT = ("cx", "cx", "cx", "cz", "cp", "swap", "rzz", "crx", "ch", "cy")

GENERATED = [line_device(5), ring_device(6), grid_device(2, 3), grid_device(3, 4),
             line_device(12), ring_device(9), heavy_hex_device(3)]
MAX_SIM_QUBITS = 20  # verify_routed's default: wider routed circuits get the structural check


def options(seed: int, **kw: object) -> RoutingOptions:
    return RoutingOptions(seed=seed, layout_trials=4, routing_trials=2, iterations=1,
                          **kw)  # type: ignore[arg-type]


@st.composite
def connected_devices(draw: st.DrawFn, *, max_qubits: int = 12) -> Device:
    """A generated device (heavy_hex:3, 25 qubits, whatever ``max_qubits``), or a random
    connected graph (a random tree plus extra edges)."""
    if draw(st.booleans()):
        return draw(st.sampled_from([d for d in GENERATED if d.num_qubits <= max_qubits
                                     or d.name.startswith("heavy_hex")]))
    n = draw(st.integers(2, max_qubits))
    label = draw(st.permutations(range(n)))
    edges = {tuple(sorted((label[i], label[draw(st.integers(0, i - 1))])))
             for i in range(1, n)}
    others = [(a, b) for a in range(n) for b in range(a + 1, n) if (a, b) not in edges]
    if others:
        edges |= set(draw(st.lists(st.sampled_from(others), max_size=n, unique=True)))
    return Device(f"random{n}", n, tuple(sorted(edges)))  # type: ignore[arg-type]


def add_random_gates(draw: st.DrawFn, c: Circuit, count: int) -> None:
    qubit = st.integers(0, c.num_qubits - 1)
    for _ in range(count):
        if c.num_qubits >= 2 and draw(st.integers(0, 2)) > 0:
            name = draw(st.sampled_from(TWO_QUBIT))
            qs = draw(st.lists(qubit, min_size=2, max_size=2, unique=True))
        else:
            name = draw(st.sampled_from(ONE_QUBIT))
            qs = [draw(qubit)]
        c.append(name, qs, [0.1 + 0.37 * k for k in range(GATES[name].num_params)])


@st.composite
def problems(draw: st.DrawFn) -> tuple[Device, Circuit, int]:
    """A connected device, a unitary circuit that fits on it and a seed."""
    device = draw(connected_devices())
    n = draw(st.integers(1, min(8, device.num_qubits)))
    c = Circuit(num_qubits=n)
    add_random_gates(draw, c, draw(st.integers(0, 30)))
    return device, c, draw(st.integers(0, 2**16))


def off_edges(routed: Circuit, device: Device) -> set[tuple[int, int]]:
    used = {(min(i.qubits), max(i.qubits)) for i in routed.instructions
            if i.is_two_qubit_gate}
    return used - set(device.edges)


def inserted_swaps(original: Circuit, routed: Circuit) -> int:
    return routed.count_ops().get("swap", 0) - original.count_ops().get("swap", 0)


def check_routed(original: Circuit, device: Device, r: RoutedCircuit) -> None:
    """Every invariant a routing result must satisfy; the statevector check must run
    unless the routed circuit is too wide to simulate."""
    assert off_edges(r.circuit, device) == set()
    assert r.circuit.num_qubits == device.num_qubits
    n = original.num_qubits
    for layout in (r.initial_layout, r.final_layout):
        assert len(layout) == n and len(set(layout)) == n
        assert {p for p in layout if not 0 <= p < device.num_qubits} == set()
    assert r.swaps == inserted_swaps(original, r.circuit)
    assert r.estimated_makespan_ns >= 0
    report = verify_routed(original, r.circuit, edges=device.edges,
                           initial_layout=r.initial_layout, final_layout=r.final_layout,
                           seed=3)
    touched = {q for i in r.circuit.instructions if i.name not in ("measure", "barrier")
               for q in i.qubits} | set(r.initial_layout) | set(r.final_layout)
    method = "statevector" if len(touched) <= MAX_SIM_QUBITS else "structural"
    assert (report.ok, report.method) == (True, method), report.detail


def clbit_wires(c: Circuit) -> list[list[tuple[object, ...]]]:
    """Per clbit, what writes or reads it, in order (routing must keep each such order)."""
    wires: list[list[tuple[object, ...]]] = [[] for _ in range(c.num_clbits)]
    for i in c.instructions:
        bits = set(i.clbits)
        if i.condition is not None:
            bits |= set(c.creg(i.condition.creg).bits)
        for b in bits:
            wires[b].append((i.name, i.params, i.clbits, i.condition))
    return wires


# --- the central property ---------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(problems())
def test_routed_circuits_use_only_edges_and_verify(problem: tuple[Device, Circuit, int]) -> None:
    device, c, seed = problem
    r = SabreRouter(device, options(seed)).route(c)
    check_routed(c, device, r)


@settings(max_examples=25, deadline=None)
@given(problems(), st.booleans())
def test_same_seed_same_result(problem: tuple[Device, Circuit, int], commutation: bool) -> None:
    device, c, seed = problem
    opts = options(seed, commutation=commutation)
    first = SabreRouter(device, opts).route(c)
    second = SabreRouter(device, opts).route(c)
    assert first.circuit.instructions == second.circuit.instructions
    assert first.initial_layout == second.initial_layout
    assert first.final_layout == second.final_layout
    assert (first.swaps, first.layout_method) == (second.swaps, second.layout_method)
    assert first.estimated_makespan_ns == second.estimated_makespan_ns
    check_routed(c, device, first)


@settings(max_examples=25, deadline=None)
@given(problems())
def test_makespan_objective_also_verifies(problem: tuple[Device, Circuit, int]) -> None:
    device, c, seed = problem
    r = SabreRouter(device, options(seed, objective="makespan", tie_time=True)).route(c)
    check_routed(c, device, r)


@settings(max_examples=25, deadline=None)
@given(problems(), st.booleans())
def test_router_without_commutation_or_noise_awareness_verifies(
        problem: tuple[Device, Circuit, int], noise_aware: bool) -> None:
    device, c, seed = problem
    r = SabreRouter(device, options(seed, commutation=False, noise_aware=noise_aware)).route(c)
    check_routed(c, device, r)


@settings(max_examples=30, deadline=None)
@given(problems(), st.sampled_from([0.0, 0.5, 10.0]), st.sampled_from([0, 1, 20]),
       st.sampled_from([0.0, 0.5]), st.sampled_from([1, 5]), st.integers(0, 2),
       st.sampled_from([None, 0.0, 1.0, 5.0]))
def test_extreme_options_still_verify(problem: tuple[Device, Circuit, int], lookahead: float,
                                      ext_size: int, decay_delta: float, decay_reset: int,
                                      iterations: int, merge_bonus: float | None) -> None:
    device, c, seed = problem
    opts = RoutingOptions(seed=seed, layout_trials=3, routing_trials=1, iterations=iterations,
                          lookahead=lookahead, ext_size=ext_size, decay_delta=decay_delta,
                          decay_reset=decay_reset, merge_bonus=merge_bonus)
    check_routed(c, device, SabreRouter(device, opts).route(c))


@st.composite
def queko(draw: st.DrawFn) -> tuple[Device, Circuit, int]:
    """A circuit made on device edges (1q gates too), then relabelled at random."""
    device = draw(st.sampled_from(GENERATED))
    edges = list(device.edges)
    used = draw(st.lists(st.sampled_from(edges), min_size=1, max_size=30))
    phys = sorted({p for e in used for p in e})
    hidden = draw(st.permutations(phys))  # logical i lives on hidden[i]
    to_logical = {p: i for i, p in enumerate(hidden)}
    c = Circuit(num_qubits=len(phys))
    for a, b in used:
        qs = [to_logical[a], to_logical[b]]
        name = draw(st.sampled_from(("cx", "cz", "cp")))
        c.append(name, qs if draw(st.booleans()) else qs[::-1], [0.4] if name == "cp" else [])
        if draw(st.booleans()):
            c.append("t", [qs[0]])
    return device, c, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None)
@given(queko())
def test_perfect_layout_cases_route_without_swaps(problem: tuple[Device, Circuit, int]) -> None:
    device, c, seed = problem
    r = SabreRouter(device, options(seed)).route(c)
    assert r.swaps == 0
    assert r.layout_method in ("trivial", "perfect")
    assert r.initial_layout == r.final_layout
    check_routed(c, device, r)


# --- directives and classical control survive ---------------------------------------


@st.composite
def problems_with_directives(draw: st.DrawFn) -> tuple[Device, Circuit, int]:
    device = draw(connected_devices(max_qubits=9))
    n = draw(st.integers(1, min(6, device.num_qubits)))
    c = Circuit.with_registers([("q", n)], [("c", 2), ("flag", 1)])
    qubit = st.integers(0, n - 1)
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(("gates", "gates", "measure", "reset", "barrier", "if")))
        if kind == "gates":
            add_random_gates(draw, c, 1)
        elif kind == "measure":
            c.append("measure", [draw(qubit)], [], [draw(st.integers(0, 2))])
        elif kind == "reset":
            c.append("reset", [draw(qubit)])
        elif kind == "barrier":
            c.append("barrier", draw(st.lists(qubit, min_size=1, max_size=n, unique=True)))
        else:
            cond = Condition(draw(st.sampled_from(("c", "flag"))), draw(st.integers(0, 1)))
            if n >= 2 and draw(st.booleans()):
                c.append(draw(st.sampled_from(("cx", "swap"))),
                         draw(st.lists(qubit, min_size=2, max_size=2, unique=True)), [], [],
                         cond)
            else:
                c.append("x", [draw(qubit)], [], [], cond)
    return device, c, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None)
@given(problems_with_directives())
def test_measures_resets_barriers_and_conditions_survive_routing(
        problem: tuple[Device, Circuit, int]) -> None:
    device, c, seed = problem
    r = SabreRouter(device, options(seed)).route(c)
    want = Counter(c.count_ops())
    got = Counter(r.circuit.count_ops())
    got["swap"] -= r.swaps
    assert +got == +want
    assert clbit_wires(r.circuit) == clbit_wires(c)
    assert [(reg.name, reg.size) for reg in r.circuit.cregs] == [("c", 2), ("flag", 1)]
    assert off_edges(r.circuit, device) == set()
    report = verify_routed(c, r.circuit, edges=device.edges, initial_layout=r.initial_layout,
                           final_layout=r.final_layout)
    assert report.ok, report.detail


def test_final_measurements_keep_the_statevector_check() -> None:
    c = Circuit.with_registers([("q", 3)], [("c", 3)])
    c.append("h", [0])
    c.append("cx", [0, 2])
    c.append("cx", [2, 1])
    c.append("cx", [0, 1])
    c.append("barrier", [0, 1, 2])
    for q in range(3):
        c.append("measure", [q], [], [q])
    device = line_device(4)
    r = SabreRouter(device, options(5)).route(c)
    check_routed(c, device, r)
    assert r.circuit.count_ops()["measure"] == 3


# --- hand-built cases -------------------------------------------------------------


def test_trivial_layout_is_kept_when_already_perfect() -> None:
    c = Circuit(num_qubits=3)
    c.append("cx", [0, 1])
    c.append("cx", [1, 2])
    device = line_device(3)
    r = SabreRouter(device, options(0)).route(c)
    assert (r.swaps, r.layout_method) == (0, "trivial")
    assert r.initial_layout == r.final_layout == (0, 1, 2)
    assert r.circuit.instructions == c.instructions
    check_routed(c, device, r)


def test_triangle_on_a_line_needs_a_swap() -> None:
    c = Circuit(num_qubits=3)
    c.append("cx", [0, 2])
    c.append("cx", [0, 1])
    c.append("cx", [1, 2])
    device = line_device(3)
    r = SabreRouter(device, options(0)).route(c)
    assert r.layout_method == "sabre"
    assert r.swaps >= 1
    check_routed(c, device, r)


def test_circuit_without_two_qubit_gates_routes_without_swaps() -> None:
    c = Circuit(num_qubits=2)
    c.append("h", [0])
    c.append("rz", [1], [0.5])
    device = grid_device(2, 2)
    r = SabreRouter(device, options(0)).route(c)
    assert r.swaps == 0
    check_routed(c, device, r)


def test_empty_circuit_routes() -> None:
    device = line_device(3)
    r = SabreRouter(device, options(0)).route(Circuit(num_qubits=2))
    assert (r.swaps, len(r.circuit)) == (0, 0)
    assert len(r.initial_layout) == 2


def test_single_qubit_device() -> None:
    c = Circuit(num_qubits=1)
    c.append("h", [0])
    device = line_device(1)
    r = SabreRouter(device, options(0)).route(c)
    assert (r.swaps, r.initial_layout, r.final_layout) == (0, (0,), (0,))
    check_routed(c, device, r)


def test_given_initial_layout_is_kept() -> None:
    c = Circuit(num_qubits=3)
    c.append("cx", [0, 1])
    c.append("cx", [1, 2])
    c.append("cx", [0, 2])
    device = line_device(5)
    r = SabreRouter(device, options(2)).route(c, initial_layout=[4, 0, 2])
    assert r.initial_layout == (4, 0, 2)
    assert r.layout_method == "given"
    check_routed(c, device, r)


@pytest.mark.parametrize("layout", [[0, 1], [0, 0, 1], [0, 1, 5]])
def test_bad_initial_layout_raises(layout: list[int]) -> None:
    c = Circuit(num_qubits=3)
    c.append("cx", [0, 2])
    with pytest.raises(UsageError, match=r"^initial_layout must place the 3 logical qubits on "
                       r"distinct physical qubits 0\.\.4, got \[[0-9, ]*\]$"):
        SabreRouter(line_device(5), options(0)).route(c, initial_layout=layout)


def test_router_is_reusable_and_deterministic_across_calls() -> None:
    c = Circuit(num_qubits=4)
    for a, b in [(0, 3), (1, 2), (0, 2), (3, 1), (2, 0)]:
        c.append("cx", [a, b])
    router = SabreRouter(ring_device(5), options(11))
    first, second = router.route(c), router.route(c)
    assert first == second


def test_device_with_edge_figures_routes_and_verifies() -> None:
    edges = ((0, 1), (1, 2), (2, 3), (0, 3), (1, 3))
    device = Device("figures4", 4, edges, gate_durations_ns={"cx": 300.0, "sx": 30.0},
                    edge_durations_ns={(1, 3): 900.0, (0, 3): 200.0},
                    edge_errors={(0, 1): 0.01, (1, 2): 0.02, (2, 3): 0.01, (0, 3): 0.005,
                                 (1, 3): 0.05})
    c = Circuit(num_qubits=4)
    for a, b in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (3, 0)]:
        c.append("cx", [a, b])
    r = SabreRouter(device, options(1)).route(c)
    check_routed(c, device, r)


def test_circuit_wider_than_the_device_raises() -> None:
    c = Circuit(num_qubits=5)
    with pytest.raises(TopologyError, match=r"^circuit uses 5 qubits but device 'line:3' has 3; "
                       r"pick a larger device \(`qpuos devices`\)$"):
        SabreRouter(line_device(3), options(0)).route(c)


def test_three_qubit_gate_raises() -> None:
    c = Circuit(num_qubits=3)
    c.append("ccx", [0, 1, 2])
    with pytest.raises(UsageError, match=r"^gate 'ccx' acts on 3 qubits; decompose it before "
                       r"routing \(decompose_multiqubit\)$"):
        SabreRouter(line_device(3), options(0)).route(c)


def test_barrier_on_three_qubits_is_fine() -> None:
    c = Circuit(num_qubits=3)
    c.append("cx", [0, 2])
    c.append("barrier", [0, 1, 2])
    c.append("cx", [2, 1])
    device = line_device(3)
    check_routed(c, device, SabreRouter(device, options(0)).route(c))


def test_disconnected_device_raises() -> None:
    device = Device("split", 4, ((0, 1), (2, 3)))
    with pytest.raises(TopologyError, match=r"^device 'split' is not connected; routing needs a "
                       r"connected coupling graph$"):
        SabreRouter(device)


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"layout_trials": 0}, r"^routing option layout_trials=0 is too small$"),
    ({"routing_trials": 0}, r"^routing option routing_trials=0 is too small$"),
    ({"iterations": -1}, r"^routing option iterations=-1 is too small$"),
    ({"decay_reset": 0}, r"^routing option decay_reset=0 is too small$"),
    ({"objective": "depth"}, r"^unknown objective 'depth'; use 'swaps' or 'makespan'$"),
    ({"seed": -1}, r"^seed must be >= 0, got -1$"),
])
def test_bad_options_raise(kw: dict[str, object], pattern: str) -> None:
    with pytest.raises(UsageError, match=pattern):
        RoutingOptions(**kw)  # type: ignore[arg-type]

"""Initial layouts: interaction counts, the perfect-layout search and the heuristic starts."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.quantum.circuit import Circuit, Condition
from qpuos.quantum.device import Device, grid_device, heavy_hex_device, line_device, ring_device
from qpuos.quantum.layout import (
    find_perfect_layout,
    heuristic_layouts,
    interaction_graph,
    is_trivial_layout_perfect,
    long_path,
)

DEVICES = {
    "line:9": line_device(9),
    "ring:8": ring_device(8),
    "grid:3x4": grid_device(3, 4),
    "grid:4x4": grid_device(4, 4),
    "heavy_hex:3": heavy_hex_device(3),
}


def edge_set(edges: object) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in edges}  # type: ignore[attr-defined]


def misplaced(pairs: object, layout: list[int], device: Device) -> set[tuple[int, int]]:
    """Logical pairs whose images are not a device edge (empty for a perfect layout)."""
    edges = edge_set(device.edges)
    return {(a, b) for a, b in pairs  # type: ignore[attr-defined]
            if (min(layout[a], layout[b]), max(layout[a], layout[b])) not in edges}


def assert_placement(layout: list[int], num_logical: int, num_physical: int) -> None:
    assert len(layout) == num_logical
    assert len(set(layout)) == num_logical, layout
    assert {p for p in layout if not 0 <= p < num_physical} == set()


@st.composite
def queko(draw: st.DrawFn, devices: dict[str, Device] = DEVICES
          ) -> tuple[Device, Circuit, list[int]]:
    """A circuit whose gates all sit on edges of a device, then relabelled at random.

    Returns the device, the circuit and the hidden layout (``hidden[logical] = physical``).
    """
    device = devices[draw(st.sampled_from(sorted(devices)))]
    edges = list(device.edges)
    used = draw(st.lists(st.sampled_from(edges), min_size=1, max_size=3 * len(edges)))
    phys = sorted({p for e in used for p in e})
    extra = draw(st.integers(0, device.num_qubits - len(phys)))
    n = len(phys) + extra
    idle = [p for p in range(device.num_qubits) if p not in set(phys)][:extra]
    hidden = draw(st.permutations([*phys, *idle]))  # logical i lives on hidden[i]
    to_logical = {p: i for i, p in enumerate(hidden)}
    c = Circuit(num_qubits=n)
    for a, b in used:
        la, lb = to_logical[a], to_logical[b]
        c.append(draw(st.sampled_from(("cx", "cz", "swap"))),
                 [la, lb] if draw(st.booleans()) else [lb, la])
        if draw(st.booleans()):
            c.append("h", [la])
    return device, c, hidden


# --- interaction_graph ------------------------------------------------------------


def test_interaction_graph_counts_unordered_pairs_of_two_qubit_gates() -> None:
    c = Circuit.with_registers([("q", 4)], [("c", 1)])
    c.append("cx", [0, 1])
    c.append("cx", [1, 0])
    c.append("cz", [2, 1])
    c.append("swap", [0, 2])
    c.append("h", [3])
    c.append("barrier", [0, 3])
    c.append("barrier", [0, 1, 2])
    c.append("measure", [1], [], [0])
    c.append("cp", [3, 0], [0.2], [], Condition("c", 1))
    assert interaction_graph(c) == {(0, 1): 2, (1, 2): 1, (0, 2): 1, (0, 3): 1}


def test_interaction_graph_of_a_circuit_without_pairs_is_empty() -> None:
    c = Circuit(num_qubits=2)
    c.append("h", [0])
    assert interaction_graph(c) == {}


# --- is_trivial_layout_perfect ----------------------------------------------------


def test_trivial_layout_check() -> None:
    line = line_device(4).edges
    assert is_trivial_layout_perfect([(0, 1), (2, 3)], 4, line, 4)
    assert is_trivial_layout_perfect([], 3, line, 4)
    assert not is_trivial_layout_perfect([(0, 2)], 3, line, 4)
    assert not is_trivial_layout_perfect([], 5, line, 4)  # wider than the device
    assert is_trivial_layout_perfect([(1, 2)], 3, [(2, 1)], 3)  # edge orientation ignored


# --- find_perfect_layout ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(queko())
def test_perfect_layout_found_for_circuits_built_on_device_edges(
        case: tuple[Device, Circuit, list[int]]) -> None:
    device, c, hidden = case
    pairs = interaction_graph(c)
    assert misplaced(pairs, hidden, device) == set()  # the generator's own promise
    layout = find_perfect_layout(pairs, c.num_qubits, device.edges, device.num_qubits)
    assert layout is not None
    assert_placement(layout, c.num_qubits, device.num_qubits)
    assert misplaced(pairs, layout, device) == set()


@settings(max_examples=30, deadline=None)
@given(queko())
def test_perfect_layout_accepts_plain_pair_lists(case: tuple[Device, Circuit, list[int]]) -> None:
    device, c, _ = case
    pairs = list(interaction_graph(c))
    reversed_pairs = [(b, a) for a, b in pairs]
    layout = find_perfect_layout(reversed_pairs, c.num_qubits, device.edges, device.num_qubits)
    assert layout is not None
    assert misplaced(pairs, layout, device) == set()


def test_idle_logical_qubits_take_the_lowest_free_physical_qubits() -> None:
    layout = find_perfect_layout({(1, 2): 1}, 4, line_device(5).edges, 5)
    assert layout is not None
    assert abs(layout[1] - layout[2]) == 1
    free = [p for p in range(5) if p not in (layout[1], layout[2])]
    assert [layout[0], layout[3]] == free[:2]


def test_no_pairs_gives_a_layout() -> None:
    assert find_perfect_layout({}, 3, line_device(3).edges, 3) == [0, 1, 2]


@pytest.mark.parametrize("device", [line_device(6), grid_device(3, 3), heavy_hex_device(3)],
                         ids=lambda d: d.name)
def test_triangle_has_no_perfect_layout_on_a_bipartite_device(device: Device) -> None:
    triangle = {(0, 1): 1, (1, 2): 1, (0, 2): 1}
    assert find_perfect_layout(triangle, 3, device.edges, device.num_qubits) is None


def test_triangle_fits_a_ring_of_three() -> None:
    triangle = {(0, 1): 1, (1, 2): 1, (0, 2): 1}
    layout = find_perfect_layout(triangle, 3, ring_device(3).edges, 3)
    assert layout is not None
    assert misplaced(triangle, layout, ring_device(3)) == set()


def test_star_needs_a_hub_of_enough_degree() -> None:
    star = {(0, k): 1 for k in range(1, 4)}
    assert find_perfect_layout(star, 4, line_device(8).edges, 8) is None
    layout = find_perfect_layout(star, 4, grid_device(3, 3).edges, 9)
    assert layout is not None
    assert misplaced(star, layout, grid_device(3, 3)) == set()


def test_more_logical_than_physical_qubits_gives_none() -> None:
    assert find_perfect_layout({}, 4, line_device(3).edges, 3) is None


def test_more_pairs_than_edges_gives_none() -> None:
    pairs = {(0, 1): 1, (1, 2): 1, (2, 3): 1, (0, 3): 1}
    assert find_perfect_layout(pairs, 4, line_device(4).edges, 4) is None


@st.composite
def random_problem(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, Device]:
    device = DEVICES[draw(st.sampled_from(sorted(DEVICES)))]
    n = draw(st.integers(2, min(8, device.num_qubits)))
    all_pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    pairs = draw(st.lists(st.sampled_from(all_pairs), max_size=12, unique=True))
    return pairs, n, device


@settings(max_examples=80, deadline=None)
@given(random_problem(), st.integers(0, 60))
def test_call_limit_gives_none_or_a_valid_layout(
        problem: tuple[list[tuple[int, int]], int, Device], limit: int) -> None:
    pairs, n, device = problem
    layout = find_perfect_layout(pairs, n, device.edges, device.num_qubits, call_limit=limit)
    if layout is not None:
        assert_placement(layout, n, device.num_qubits)
        assert misplaced(pairs, layout, device) == set()


@settings(max_examples=40, deadline=None)
@given(random_problem())
def test_unbounded_search_answers_are_valid(
        problem: tuple[list[tuple[int, int]], int, Device]) -> None:
    pairs, n, device = problem
    layout = find_perfect_layout(pairs, n, device.edges, device.num_qubits)
    if layout is not None:
        assert_placement(layout, n, device.num_qubits)
        assert misplaced(pairs, layout, device) == set()


def test_budget_large_enough_for_a_path_finds_it() -> None:
    path = {(k, k + 1): 1 for k in range(5)}
    layout = find_perfect_layout(path, 6, grid_device(2, 3).edges, 6, call_limit=10_000)
    assert layout is not None
    assert misplaced(path, layout, grid_device(2, 3)) == set()


# --- heuristic_layouts ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(random_problem())
def test_heuristic_layouts_are_full_permutations(
        problem: tuple[list[tuple[int, int]], int, Device]) -> None:
    pairs, n, device = problem
    weights = {p: k + 1 for k, p in enumerate(pairs)}
    dist = device.distance_matrix().tolist()
    layouts = heuristic_layouts(weights, n, device.edges, device.num_qubits, dist)
    assert layouts, "at least one starting layout"
    for lay in layouts:
        assert sorted(lay) == list(range(device.num_qubits)), lay
    assert len({tuple(lay) for lay in layouts}) == len(layouts)  # no repeats
    assert layouts[0] == list(range(device.num_qubits))
    again = heuristic_layouts(weights, n, device.edges, device.num_qubits, dist)
    assert again == layouts


def test_heuristic_layout_along_a_line_keeps_a_chain_adjacent() -> None:
    dev = line_device(6)
    chain = {(0, 3): 5, (1, 3): 5, (1, 2): 5}
    layouts = heuristic_layouts(chain, 4, dev.edges, 6, dev.distance_matrix().tolist())
    assert any(misplaced(chain, lay[:4], dev) == set() for lay in layouts), layouts


@pytest.mark.parametrize("device", list(DEVICES.values()), ids=list(DEVICES))
def test_long_path_is_a_simple_path_of_the_device(device: Device) -> None:
    path = long_path(device.edges, device.num_qubits)
    assert len(set(path)) == len(path) >= 2
    steps = {(min(a, b), max(a, b)) for a, b in itertools.pairwise(path)}
    assert steps - set(device.edges) == set()


@pytest.mark.parametrize("device", [line_device(7), ring_device(6), grid_device(3, 4)],
                         ids=lambda d: d.name)
def test_long_path_covers_graphs_with_a_hamiltonian_path(device: Device) -> None:
    assert len(long_path(device.edges, device.num_qubits)) == device.num_qubits

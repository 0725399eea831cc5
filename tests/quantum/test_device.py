"""Tests for qpuos.quantum.device and qpuos.quantum.topologies."""

from __future__ import annotations

import doctest
import json
import math
import re
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import DeviceFormatError, DeviceNotFound, TopologyError, UsageError
from qpuos.quantum import device as device_module
from qpuos.quantum import topologies
from qpuos.quantum.device import (
    UNREACHABLE,
    Device,
    builtin_device_names,
    describe_devices,
    generator_forms,
    grid_device,
    heavy_hex_device,
    line_device,
    load_device,
    require_fits,
    ring_device,
)

# The README table of /work/shared/devices: name -> (qubits, edges, QUEKO prefix).
BUILTINS = {
    "rigetti_aspen4_16": (16, 18, "16QBT"),
    "ibm_tokyo_20": (20, 43, "20QBT"),
    "ibm_rochester_53": (53, 58, "53QBT"),
    "google_sycamore_54": (54, 88, "54QBT"),
    "ibm_falcon_27": (27, 28, None),
    "ibm_eagle_127": (127, 144, None),
}
SHARED = Path("/work/shared/devices")


def _raw(name: str) -> dict[str, Any]:
    path = resources.files("qpuos.quantum").joinpath("data", "devices", f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _floyd_warshall(n: int, edges: list[tuple[int, int]]) -> list[list[float]]:
    d = [[0.0 if i == j else math.inf for j in range(n)] for i in range(n)]
    for a, b in edges:
        d[a][b] = d[b][a] = 1.0
    for k in range(n):
        for i in range(n):
            for j in range(n):
                d[i][j] = min(d[i][j], d[i][k] + d[k][j])
    return d


def _check_distance_properties(dev: Device) -> None:
    dist = dev.distance_matrix()
    n = dev.num_qubits
    assert dist.dtype == np.int32
    assert dist.shape == (n, n)
    assert not dist.flags.writeable
    assert np.array_equal(dist, dist.T)
    assert not np.diagonal(dist).any()
    at_one = {(int(a), int(b)) for a, b in zip(*np.nonzero(dist == 1), strict=True) if a < b}
    assert at_one - set(dev.edges) == set()
    assert set(dev.edges) - at_one == set()
    d64 = dist.astype(np.int64)
    for k in range(n):  # triangle inequality through every k
        assert (d64 <= d64[:, k:k + 1] + d64[k:k + 1, :]).all(), f"violated through {k}"


# -- built-ins -----------------------------------------------------------------------------

def test_builtin_names_match_the_table() -> None:
    assert builtin_device_names() == sorted(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_loads_and_matches_its_file(name: str) -> None:
    qubits, edges, prefix = BUILTINS[name]
    dev = load_device(name)
    raw = _raw(name)
    assert (dev.name, dev.num_qubits, len(dev.edges)) == (name, qubits, edges)
    assert dev.edges == tuple(tuple(e) for e in raw["edges"])
    assert dev.queko_prefix == prefix
    assert dev.is_connected()
    assert dev.to_json() == raw  # everything in the file survives, nothing is added
    assert Device.from_json(dev.to_json(), origin="x") == dev
    assert load_device(name) is dev  # built-ins are cached
    _check_distance_properties(dev)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared device set is not on this machine")
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_packaged_copy_equals_the_shared_file(name: str) -> None:
    assert _raw(name) == json.loads((SHARED / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("alias", "name"), [("16QBT", "rigetti_aspen4_16"),
                                             ("20QBT", "ibm_tokyo_20"),
                                             ("53QBT", "ibm_rochester_53"),
                                             ("54qbt", "google_sycamore_54")])
def test_queko_aliases(alias: str, name: str) -> None:
    assert load_device(alias) is load_device(name)


def test_typical_figures() -> None:
    falcon = load_device("ibm_falcon_27")
    assert falcon.native_2q == "cx"
    assert falcon.two_qubit_duration_ns(1, 0) == 405.3
    assert falcon.two_qubit_error(0, 1) == 0.008992
    assert (falcon.t1_us, falcon.t2_us, falcon.dt_ns) == (99.6, 77.9, 0.2222)
    assert falcon.gate_durations_ns["sx"] == 35.6
    with pytest.raises(TypeError):
        falcon.gate_durations_ns["sx"] = 1.0  # type: ignore[index]
    eagle = load_device("ibm_eagle_127")
    assert (eagle.native_2q, eagle.typical_two_qubit_duration_ns) == ("ecr", 533.3)
    rochester = load_device("ibm_rochester_53")  # no native_2q: falls back to "cx"
    assert (rochester.native_2q, rochester.typical_two_qubit_error) == (None, 0.04355)
    sycamore = load_device("google_sycamore_54")  # free-text native gate: "2q..." keys
    assert sycamore.typical_two_qubit_duration_ns == 12.0
    assert sycamore.typical_two_qubit_error == 0.0062
    tokyo = load_device("ibm_tokyo_20")
    assert not tokyo.has_figures
    assert tokyo.two_qubit_duration_ns(0, 1) is None
    assert tokyo.two_qubit_error(0, 1) is None


def test_describe_devices() -> None:
    rows = {r.name: r for r in describe_devices()}
    assert set(rows) == set(BUILTINS)
    for name, (qubits, edges, prefix) in BUILTINS.items():
        assert (rows[name].num_qubits, rows[name].num_edges) == (qubits, edges)
        assert rows[name].queko_prefix == prefix
        assert rows[name].source
    assert {n: r.native_2q for n, r in rows.items()} == {
        "google_sycamore_54": "fSim", "ibm_eagle_127": "ecr", "ibm_falcon_27": "cx",
        "ibm_rochester_53": "cx", "ibm_tokyo_20": None, "rigetti_aspen4_16": None}
    assert {n for n, r in rows.items() if r.has_figures} == {
        "google_sycamore_54", "ibm_eagle_127", "ibm_falcon_27", "ibm_rochester_53"}


def test_unknown_device_lists_choices_and_suggests() -> None:
    tail = ("built-in: google_sycamore_54, ibm_eagle_127, ibm_falcon_27, ibm_rochester_53, "
            "ibm_tokyo_20, rigetti_aspen4_16; QUEKO aliases: 16QBT, 20QBT, 53QBT, 54QBT; "
            "generated: line:N, ring:N, grid:RxC, heavy_hex:D; or a .json file path")
    with pytest.raises(DeviceNotFound, match="^" + re.escape(
            "unknown device 'ibm_falcon27'; did you mean 'ibm_falcon_27'? " + tail) + "$"):
        load_device("ibm_falcon27")
    with pytest.raises(DeviceNotFound, match=r"^unknown device '16QBX'; did you mean '16QBT'\? "):
        load_device("16QBX")
    with pytest.raises(DeviceNotFound, match="^" + re.escape(
            "unknown device 'zzzz'; " + tail) + "$"):
        load_device("zzzz")
    assert generator_forms() == ["line:N", "ring:N", "grid:RxC", "heavy_hex:D"]


def test_doctests() -> None:
    assert doctest.testmod(device_module).failed == 0


# -- distances -----------------------------------------------------------------------------

@st.composite
def graphs(draw: st.DrawFn, *, connected: bool) -> tuple[int, list[tuple[int, int]]]:
    n = draw(st.integers(1, 12))
    edges: set[tuple[int, int]] = set()
    if connected:  # a random spanning tree first
        for v in range(1, n):
            edges.add((draw(st.integers(0, v - 1)), v))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    if pairs:
        edges |= set(draw(st.lists(st.sampled_from(pairs), max_size=2 * n)))
    return n, sorted(edges)


@settings(max_examples=150, deadline=None)
@given(graphs(connected=True))
def test_distance_matrix_equals_floyd_warshall_on_connected_graphs(
        graph: tuple[int, list[tuple[int, int]]]) -> None:
    n, edges = graph
    dev = Device("g", n, tuple(edges))
    assert dev.is_connected()
    assert dev.distance_matrix().tolist() == _floyd_warshall(n, edges)
    _check_distance_properties(dev)
    require_fits(dev, n)


@settings(max_examples=150, deadline=None)
@given(graphs(connected=False))
def test_components_and_unreachable_on_any_graph(
        graph: tuple[int, list[tuple[int, int]]]) -> None:
    n, edges = graph
    dev = Device("g", n, tuple(reversed([(b, a) for a, b in edges])))  # any order, any way
    assert dev.edges == tuple(edges)
    fw = _floyd_warshall(n, edges)
    expected = [[UNREACHABLE if math.isinf(x) else int(x) for x in row] for row in fw]
    assert dev.distance_matrix().tolist() == expected
    comps = dev.connected_components()
    assert sorted(q for c in comps for q in c) == list(range(n))
    for comp in comps:
        assert all(not math.isinf(fw[comp[0]][q]) for q in comp)
    assert [len(c) for c in comps] == sorted((len(c) for c in comps), reverse=True)
    assert dev.is_connected() == (len(comps) == 1)
    for q in range(n):
        assert set(dev.neighbors(q)) == {b for a, b in edges if a == q} | {
            a for a, b in edges if b == q}


def test_neighbors_and_has_edge() -> None:
    dev = ring_device(5)
    assert dev.neighbors(0) == (1, 4)
    assert dev.has_edge(4, 0) and dev.has_edge(0, 4) and not dev.has_edge(0, 2)
    assert not dev.has_edge(0, 99)
    with pytest.raises(UsageError, match=r"^qubit 5 is out of range for device 'ring:5' "
                                         r"\(0\.\.4\)$"):
        dev.neighbors(5)
    assert dev.edge_array().tolist() == [list(e) for e in dev.edges]
    assert line_device(1).edge_array().shape == (0, 2)


# -- generators ----------------------------------------------------------------------------

def _degrees(dev: Device) -> list[int]:
    return [len(dev.neighbors(q)) for q in range(dev.num_qubits)]


def _two_colouring(dev: Device) -> list[int] | None:
    colour = [-1] * dev.num_qubits
    for start in range(dev.num_qubits):
        if colour[start] >= 0:
            continue
        colour[start] = 0
        queue = deque([start])
        while queue:
            u = queue.popleft()
            for v in dev.neighbors(u):
                if colour[v] < 0:
                    colour[v] = 1 - colour[u]
                    queue.append(v)
                elif colour[v] == colour[u]:
                    return None
    return colour


def _girth(dev: Device) -> float:
    best = math.inf
    for src in range(dev.num_qubits):
        dist, parent = {src: 0}, {src: -1}
        queue = deque([src])
        while queue:
            u = queue.popleft()
            for v in dev.neighbors(u):
                if v not in dist:
                    dist[v], parent[v] = dist[u] + 1, u
                    queue.append(v)
                elif parent[u] != v:
                    best = min(best, dist[u] + dist[v] + 1)
    return best


@pytest.mark.parametrize("n", [1, 2, 3, 20])
def test_line(n: int) -> None:
    dev = line_device(n)
    assert (dev.name, dev.num_qubits, dev.edges) == (f"line:{n}", n,
                                                     tuple((i, i + 1) for i in range(n - 1)))
    assert dev.is_connected()
    assert dev.distance_matrix()[0, n - 1] == n - 1
    assert load_device(f"line:{n}") == dev


@pytest.mark.parametrize("n", [3, 4, 16])
def test_ring(n: int) -> None:
    dev = ring_device(n)
    assert len(dev.edges) == n and set(_degrees(dev)) == {2}
    assert dev.has_edge(n - 1, 0)
    assert dev.distance_matrix()[0].max() == n // 2
    assert load_device(f"ring:{n}") == dev


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 4), (5, 6), (3, 3)])
def test_grid(rows: int, cols: int) -> None:
    dev = grid_device(rows, cols)
    assert dev.num_qubits == rows * cols
    assert len(dev.edges) == 2 * rows * cols - rows - cols
    expected = {(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)}
    expected |= {(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)}
    assert set(dev.edges) ^ expected == set()
    assert dev.distance_matrix()[0, rows * cols - 1] == rows + cols - 2
    assert _two_colouring(dev) is not None
    assert load_device(f"grid:{rows}x{cols}") == dev
    _check_distance_properties(dev)


@pytest.mark.parametrize("d", [3, 5, 7, 9])
def test_heavy_hex_properties(d: int) -> None:
    dev = heavy_hex_device(d)
    n, m = dev.num_qubits, len(dev.edges)
    assert n == (5 * d * d + 2 * d - 1) // 2 == topologies.heavy_hex_num_qubits(d)
    assert m == 3 * d * d - 1
    assert dev.is_connected()
    assert max(_degrees(dev)) == 3
    assert _two_colouring(dev) is not None
    assert m - n + 1 == (d - 1) ** 2 // 2  # independent cycles = hexagons
    assert _girth(dev) == 12  # every hexagon has a qubit on each of its six edges
    # Each degree-3 qubit's neighbours have degree <= 2: qubits sit on the hexagons' edges.
    deg = _degrees(dev)
    assert {q for q in range(n) if deg[q] == 3 and any(deg[v] == 3 for v in dev.neighbors(q))
            } == set()
    assert load_device(f"heavy_hex:{d}") == dev
    _check_distance_properties(dev)


def test_heavy_hex_7_minus_two_corners_is_eagle() -> None:
    dev = heavy_hex_device(7)
    corners = [q for q in range(dev.num_qubits) if len(dev.neighbors(q)) == 1]
    assert corners == [14, 114]  # row 0's last column, row 6's first
    keep = [q for q in range(dev.num_qubits) if q not in corners]
    new = {q: i for i, q in enumerate(keep)}
    relabelled = {(new[a], new[b]) for a, b in dev.edges if a in new and b in new}
    assert relabelled ^ set(load_device("ibm_eagle_127").edges) == set()


@pytest.mark.parametrize(("spec", "message"), [
    ("grid:5x0", "grid:5x0: rows and columns must be >= 1"),
    ("grid:0x3", "grid:0x3: rows and columns must be >= 1"),
    ("grid:5", "grid:5: expected grid:RxC with integer rows and columns, e.g. grid:5x6"),
    ("line:0", "line:0: a line needs n >= 1 qubits"),
    ("line:x", "line:x: expected line:N with an integer, e.g. line:20"),
    ("line:", "line:: expected line:N with an integer, e.g. line:20"),
    ("ring:2", "ring:2: a ring needs n >= 3 qubits; use line:2 for fewer"),
    ("ring:-4", "ring:-4: expected ring:N with an integer, e.g. ring:16"),
    ("heavy_hex:4", "heavy_hex:4: distance must be odd and >= 3 (3, 5, 7, ...)"),
    ("heavy_hex:1", "heavy_hex:1: distance must be odd and >= 3 (3, 5, 7, ...)"),
    ("heavy_hex:d", "heavy_hex:d: expected heavy_hex:D with an integer, e.g. heavy_hex:3"),
    ("grid:1000x1000", "grid:1000x1000: 1000000 qubits is more than the 100000 qpuos supports"),
])
def test_bad_generator_specs(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match="^" + re.escape(message) + "$"):
        load_device(spec)


def test_bad_generator_arguments() -> None:
    with pytest.raises(UsageError, match=r"^line:True: n must be an integer, got bool$"):
        line_device(True)
    with pytest.raises(UsageError, match=r"^grid:2x2\.0: cols must be an integer, got float$"):
        grid_device(2, 2.0)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^ring:1: a ring needs n >= 3 qubits"):
        ring_device(1)


# -- files and the schema ------------------------------------------------------------------

def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "ibm_x", "num_qubits": 6,
                           "edges": [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]],
                           "directed": False, "source": "test"}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def _write(tmp_path: Path, content: Any, name: str = "ibm_x.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_from_file(tmp_path: Path) -> None:
    doc = _doc(typical={"native_2q": "cz", "gate_durations_ns": {"cz": 50, "x": 20.5},
                        "gate_errors": {"cz": 0.01}, "t1_us": 100},
               edge_figures=[{"edge": [2, 1], "duration_ns": 80.0},
                             {"edge": [3, 4], "error": 0.05},
                             {"edge": [0, 1], "duration_ns": 60, "error": 0.02}])
    path = _write(tmp_path, doc)
    for spec in (str(path), path):
        dev = load_device(spec)
        assert (dev.name, dev.num_qubits, len(dev.edges)) == ("ibm_x", 6, 5)
    assert dev.edge_durations_ns == {(0, 1): 60.0, (1, 2): 80.0}
    assert dev.edge_errors == {(0, 1): 0.02, (3, 4): 0.05}
    assert dev.two_qubit_duration_ns(2, 1) == 80.0  # per edge
    assert dev.two_qubit_duration_ns(3, 4) == 50.0  # typical cz
    assert dev.two_qubit_error(4, 3) == 0.05
    assert dev.two_qubit_error(4, 5) == 0.01
    with pytest.raises(UsageError, match=r"^qubits 0 and 5 are not coupled on device 'ibm_x'$"):
        dev.two_qubit_duration_ns(0, 5)
    again = Device.from_json(json.loads(json.dumps(dev.to_json())), origin="copy")
    assert again == dev and hash(again) == hash(dev)
    assert [e["edge"] for e in dev.to_json()["edge_figures"]] == [[0, 1], [1, 2], [3, 4]]


def test_directed_files_merge_orientations(tmp_path: Path) -> None:
    dev = load_device(_write(tmp_path, _doc(directed=True, edges=[[0, 1], [1, 0], [2, 1]])))
    assert dev.edges == ((0, 1), (1, 2))
    assert dev.to_json()["directed"] is False
    with pytest.raises(DeviceFormatError, match=r"edges\[2\] = \[0, 1\] repeats edges\[0\]"):
        load_device(_write(tmp_path, _doc(directed=True, edges=[[0, 1], [1, 0], [0, 1]])))


_BAD_DOCS: list[tuple[Any, str]] = [
    (_doc(edges=[[0, 1], [1, 2], [2, 3], [5, 5]]), r"edges\[3\] = \[5, 5\] is a self-loop"),
    (_doc(edges=[[0, 1], [1, 0]]), r"edges\[1\] = \[1, 0\] repeats edges\[0\] = \[0, 1\]"),
    (_doc(edges=[[0, 1], [0, 1]]), r"edges\[1\] = \[0, 1\] repeats edges\[0\] = \[0, 1\]"),
    (_doc(edges=[[0, 1], [5, 6]]), r"edges\[1\] = \[5, 6\] names qubit 6, outside 0\.\.5"),
    (_doc(edges=[[-1, 1]]), r"edges\[0\] = \[-1, 1\] names qubit -1, outside 0\.\.5"),
    (_doc(edges=[[0, 1], [1]]), r"edges\[1\] = \[1\] must be a pair of integer qubit indices"),
    (_doc(edges=[[0, 1.0]]), r"edges\[0\] = \[0, 1\.0\] must be a pair of integer qubit "
                             r"indices"),
    (_doc(edges=[[0, True]]), r"edges\[0\] = \[0, true\] must be a pair of integer qubit "
                              r"indices"),
    (_doc(edges={"0": 1}), r"edges must be an array of \[a, b\] pairs, got object"),
    (_doc(num_qubits=0), r"num_qubits = 0 must be a positive integer"),
    (_doc(num_qubits="6"), r'num_qubits = "6" must be a positive integer'),
    (_doc(num_qubits=True), r"num_qubits = true must be a positive integer"),
    (_doc(num_qubits=10**6), r"num_qubits = 1000000 is above the supported 100000"),
    (_doc(name=""), r'name = "" must be a non-empty string'),
    (_doc(source=3), r"source = 3 must be a string"),
    (_doc(directed="yes"), r'directed = "yes" must be true or false'),
    (_doc(edges=...), r"missing required field 'edges'"),
    (_doc(edgse=[]), r"unknown field 'edgse' \(did you mean 'edges'\?\); allowed: name, "
                     r"num_qubits, edges, directed, source, queko_prefix, typical, edge_figures"),
    ([1, 2], r"expected a JSON object at the top level, got array"),
    (_doc(typical=[]), r"typical must be an object, got array"),
    (_doc(typical={"t1us": 5}), r"unknown field 'typical\.t1us' \(did you mean 'typical\.t1_us'\?\)"
                              r"; allowed: note, native_2q, dt_ns, gate_durations_ns, "
                              r"gate_errors, t1_us, t2_us"),
    (_doc(typical={"gate_durations_ns": {"cx": -1}}),
     r"typical\.gate_durations_ns\.cx = -1 must be a non-negative number"),
    (_doc(typical={"gate_durations_ns": {"cx": "fast"}}),
     r'typical\.gate_durations_ns\.cx = "fast" must be a non-negative number'),
    (_doc(typical={"gate_errors": {"cx": 1.5}}),
     r"typical\.gate_errors\.cx = 1\.5 must be a number in \[0, 1\]"),
    (_doc(typical={"gate_errors": [0.1]}),
     r"typical\.gate_errors must be an object of gate name to number, got array"),
    (_doc(typical={"t2_us": False}), r"typical\.t2_us = false must be a non-negative number"),
    (_doc(typical={"dt_ns": 10**400}),
     r"typical\.dt_ns = 10{56}\.\.\. must be a non-negative number"),
    (_doc(typical={"native_2q": ""}), r'typical\.native_2q = "" must be a non-empty string'),
    (_doc(edge_figures={}), r"edge_figures must be an array of objects, got object"),
    (_doc(edge_figures=[3]), r"edge_figures\[0\] must be an object, got number"),
    (_doc(edge_figures=[{"duration_ns": 3}]), r"missing required field 'edge_figures\[0\]\.edge'"),
    (_doc(edge_figures=[{"edge": [0, 2], "error": 0.1}]),
     r"edge_figures\[0\]\.edge = \[0, 2\] is not an edge of the device"),
    (_doc(edge_figures=[{"edge": [0, 1], "error": 0.1}, {"edge": [1, 0], "error": 0.2}]),
     r"edge_figures\[1\]\.edge = \[1, 0\] repeats edge_figures\[0\]"),
    (_doc(edge_figures=[{"edge": [0, 1]}]), r"edge_figures\[0\] gives neither duration_ns nor "
                                            r"error"),
    (_doc(edge_figures=[{"edge": [0, 1], "error": 2}]),
     r"edge_figures\[0\]\.error = 2 must be a number in \[0, 1\]"),
    (_doc(edge_figures=[{"edge": [0, 1], "duration_ns": -3.5}]),
     r"edge_figures\[0\]\.duration_ns = -3\.5 must be a non-negative number"),
    (_doc(edge_figures=[{"edge": [0, 0], "error": 0.1}]),
     r"edge_figures\[0\]\.edge = \[0, 0\] is a self-loop"),
    (_doc(edge_figures=[{"edge": [0, 1], "eror": 0.1}]),
     r"unknown field 'edge_figures\[0\]\.eror' \(did you mean 'edge_figures\[0\]\.error'\?\); "
     r"allowed: edge, duration_ns, error"),
    ("{", r"not valid JSON: Expecting property name enclosed in double quotes "
          r"\(line 1, column 2\)"),
    ('{"name": "x", "num_qubits": 2, "edges": [], "typical": {"dt_ns": NaN}}',
     r"typical\.dt_ns = NaN must be a non-negative number"),
]


@pytest.mark.parametrize(("content", "message"), _BAD_DOCS)
def test_format_errors_name_the_file_and_field(tmp_path: Path, content: Any,
                                               message: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(DeviceFormatError, match="^" + re.escape(str(path)) + ": " + message
                       + "$"):
        load_device(str(path))


def test_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(DeviceFormatError, match="^" + re.escape(str(path)) +
                       r": not UTF-8 text \(invalid continuation byte at byte 13\)$"):
        load_device(str(path))
    missing = tmp_path / "missing.json"
    with pytest.raises(DeviceNotFound, match="^" + re.escape(f"no device file at {str(missing)!r}")
                       + "$"):
        load_device(str(missing))
    folder = tmp_path / "dir.json"
    folder.mkdir()
    with pytest.raises(DeviceNotFound, match="^" + re.escape(
            f"cannot read device file {str(folder)!r}: Is a directory") + "$"):
        load_device(folder)


def test_direct_construction_is_validated_and_normalised() -> None:
    dev = Device("d", 3, ((2, 1), (0, 1)), gate_errors={"cz": 0.5},
                 edge_durations_ns={(2, 1): 10})
    assert dev.edges == ((0, 1), (1, 2))
    assert dict(dev.edge_durations_ns) == {(1, 2): 10.0}
    assert repr(dev) == "Device(name='d', num_qubits=3, edges=<2 edges>, native_2q=None)"
    with pytest.raises(DeviceFormatError, match=r"^device 'd': edges\[0\] = \[1, 1\] is a "
                                                r"self-loop$"):
        Device("d", 3, ((1, 1),))
    with pytest.raises(DeviceFormatError, match=r"^device 'd': edge_errors key \[0, 2\] is not "
                                                r"an edge$"):
        Device("d", 3, ((0, 1),), edge_errors={(0, 2): 0.1})
    with pytest.raises(DeviceFormatError, match=r"^device 'd': t1_us = -1 must be a "
                                                r"non-negative number$"):
        Device("d", 3, (), t1_us=-1)
    with pytest.raises(DeviceFormatError, match=r"^device '': name must be a non-empty string$"):
        Device("", 3, ())


@settings(max_examples=60, deadline=None)
@given(graphs(connected=False), st.data())
def test_to_json_round_trip(graph: tuple[int, list[tuple[int, int]]], data: st.DataObject
                            ) -> None:
    n, edges = graph
    figures = st.floats(0, 1, allow_nan=False)
    picked = data.draw(st.lists(st.sampled_from(edges), unique=True)) if edges else []
    dev = Device("r", n, tuple(edges), source="s", native_2q=data.draw(st.sampled_from(
        [None, "cx", "cz"])), gate_durations_ns=data.draw(st.dictionaries(
            st.sampled_from(["cx", "cz", "sx"]), st.floats(0, 1e4))),
        gate_errors=data.draw(st.dictionaries(st.sampled_from(["cx", "2q"]), figures)),
        edge_errors={e: data.draw(figures) for e in picked},
        edge_durations_ns={e: data.draw(figures) for e in picked[::2]},
        t1_us=data.draw(st.none() | st.floats(0, 1e3)), figures_note=data.draw(st.text()))
    doc = json.loads(json.dumps(dev.to_json()))
    assert Device.from_json(doc, origin="rt") == dev


# -- require_fits --------------------------------------------------------------------------

def test_require_fits() -> None:
    falcon = load_device("ibm_falcon_27")
    require_fits(falcon, 27)
    require_fits(falcon, 0)
    with pytest.raises(TopologyError, match=r"^circuit uses 30 qubits but device "
                       r"'ibm_falcon_27' has 27; pick a larger device \(`qpuos devices`\)$"):
        require_fits(falcon, 30)
    split = Device("x", 8, ((0, 1), (1, 2), (2, 3), (3, 4), (5, 6), (6, 7)))
    with pytest.raises(TopologyError, match=r"^device 'x' is not connected \(components of "
                       r"sizes 5, 3\); routing needs a connected coupling graph$"):
        require_fits(split, 2)
    with pytest.raises(UsageError, match=r"^num_qubits must be a non-negative integer, got -1$"):
        require_fits(falcon, -1)

"""Coupling-graph generators (line, ring, grid, heavy-hex) and plain graph algorithms.

These are plain edge lists, sorted, each edge ``(a, b)`` with ``a < b``; ``device.py``
wraps them into :class:`~qpuos.quantum.device.Device` objects named by their spec
(``"line:20"``, ``"ring:16"``, ``"grid:5x6"``, ``"heavy_hex:3"``), so a generated device
can be loaded again from its own name.

Heavy-hex layout (our construction, not IBM's exact code layout): ``d`` rows, each a chain
of ``2d + 1`` qubits in columns ``0..2d``. Between row ``r`` and row ``r + 1`` sit bridge
qubits, each joined to the qubits of the same column above and below it: in columns
``0, 4, 8, ...`` when ``r`` is even and ``2, 6, 10, ...`` when ``r`` is odd. So every chain
qubit has degree at most 3, the degree-3 qubits of a row alternate up and down every two
columns, and each cell is a hexagon with a qubit on each of its six edges (12 qubits).
Numbering is row-major with each row's bridges right after the row, as on IBM chips:
``heavy_hex:7`` minus its two degree-1 corner qubits is exactly the 127-qubit Eagle graph.
It has ``(5d^2 + 2d - 1) / 2`` qubits, ``3d^2 - 1`` edges and ``(d - 1)^2 / 2`` hexagons.
"""

from __future__ import annotations

import re
from typing import Final

from qpuos.errors import UsageError

__all__ = [
    "GENERATOR_FORMS",
    "MAX_QUBITS",
    "adjacency",
    "components",
    "grid_edges",
    "heavy_hex_edges",
    "heavy_hex_num_qubits",
    "hop_distances",
    "line_edges",
    "parse_generator_spec",
    "ring_edges",
]

Edge = tuple[int, int]

#: Largest device qpuos builds: its all-pairs distance matrix alone is n^2 int32 (40 GB).
MAX_QUBITS: Final = 100_000

#: The spec forms ``load_device`` accepts for generated devices, for help and errors.
GENERATOR_FORMS: tuple[str, ...] = ("line:N", "ring:N", "grid:RxC", "heavy_hex:D")

_SPEC = re.compile(r"^(?P<kind>line|ring|grid|heavy_hex):(?P<args>.*)$")
_EXAMPLES = {"line": "line:20", "ring": "ring:16", "grid": "grid:5x6", "heavy_hex": "heavy_hex:3"}


def _check_int(value: object, what: str, spec: str) -> int:
    # bool is an int subclass; line_edges(True) is a bug, not a one-qubit line.
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{spec}: {what} must be an integer, got {type(value).__name__}")
    return value


def _check_size(n: int, spec: str) -> None:
    if n > MAX_QUBITS:
        raise UsageError(f"{spec}: {n} qubits is more than the {MAX_QUBITS} qpuos supports")


def line_edges(n: int) -> tuple[Edge, ...]:
    """Edges ``(i, i + 1)`` of an ``n``-qubit line; a 1-qubit line has none.

    Raises:
        UsageError: ``n`` is not an integer >= 1.
    """
    spec = f"line:{n}"
    if _check_int(n, "n", spec) < 1:
        raise UsageError(f"{spec}: a line needs n >= 1 qubits")
    _check_size(n, spec)
    return tuple((i, i + 1) for i in range(n - 1))


def ring_edges(n: int) -> tuple[Edge, ...]:
    """The line's edges plus ``(0, n - 1)`` closing the ring.

    Raises:
        UsageError: ``n`` is not an integer >= 3 (smaller rings would repeat an edge).
    """
    spec = f"ring:{n}"
    if _check_int(n, "n", spec) < 3:
        raise UsageError(f"{spec}: a ring needs n >= 3 qubits; use line:{n} for fewer")
    _check_size(n, spec)
    return tuple(sorted([(i, i + 1) for i in range(n - 1)] + [(0, n - 1)]))


def grid_edges(rows: int, cols: int) -> tuple[Edge, ...]:
    """Edges of a ``rows`` x ``cols`` grid: qubit ``r * cols + c`` joins its right and lower
    neighbours.

    Raises:
        UsageError: ``rows`` or ``cols`` is not an integer >= 1.
    """
    spec = f"grid:{rows}x{cols}"
    _check_int(rows, "rows", spec)
    _check_int(cols, "cols", spec)
    if rows < 1 or cols < 1:
        raise UsageError(f"{spec}: rows and columns must be >= 1")
    _check_size(rows * cols, spec)
    edges: list[Edge] = []
    for r in range(rows):
        for c in range(cols):
            q = r * cols + c
            if c + 1 < cols:
                edges.append((q, q + 1))
            if r + 1 < rows:
                edges.append((q, q + cols))
    return tuple(sorted(edges))


def _check_distance(d: int) -> None:
    spec = f"heavy_hex:{d}"
    if _check_int(d, "distance", spec) < 3 or d % 2 == 0:
        raise UsageError(f"{spec}: distance must be odd and >= 3 (3, 5, 7, ...)")
    _check_size((5 * d * d + 2 * d - 1) // 2, spec)


def heavy_hex_num_qubits(d: int) -> int:
    """Number of qubits of ``heavy_hex_edges(d)``: ``(5d^2 + 2d - 1) / 2``.

    Raises:
        UsageError: ``d`` is not an odd integer >= 3.
    """
    _check_distance(d)
    return (5 * d * d + 2 * d - 1) // 2


def heavy_hex_edges(d: int) -> tuple[Edge, ...]:
    """Edges of the distance-``d`` heavy-hex patch described in the module docstring.

    Raises:
        UsageError: ``d`` is not an odd integer >= 3.
    """
    _check_distance(d)
    width = 2 * d + 1
    edges: list[Edge] = []
    row_start = 0  # index of column 0 of the current row
    for r in range(d):
        edges.extend((row_start + c, row_start + c + 1) for c in range(width - 1))
        if r == d - 1:
            break
        bridge_cols = range(0 if r % 2 == 0 else 2, width, 4)
        next_row = row_start + width + len(bridge_cols)
        for k, c in enumerate(bridge_cols):
            bridge = row_start + width + k
            edges.append((row_start + c, bridge))
            edges.append((bridge, next_row + c))
        row_start = next_row
    return tuple(sorted(edges))


def adjacency(n: int, edges: tuple[Edge, ...]) -> tuple[tuple[int, ...], ...]:
    """Each qubit's neighbours, ascending, from an undirected edge list."""
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        nbrs[a].append(b)
        nbrs[b].append(a)
    return tuple(tuple(sorted(x)) for x in nbrs)


def hop_distances(adj: tuple[tuple[int, ...], ...]) -> list[int]:
    """All-pairs hop distances, row-major ``n * n``, ``-1`` where unreachable.

    BFS from every qubit: O(n (n + m)) in plain Python, milliseconds for today's chips.
    Rejected: all-sources BFS as numpy level steps, which costs O(diameter * n^2) and is
    slower on long lines and rings.
    """
    n = len(adj)
    out: list[int] = []
    for src in range(n):
        row = [-1] * n
        row[src] = 0
        frontier, level = [src], 0
        while frontier:
            level += 1
            nxt = []
            for u in frontier:
                for v in adj[u]:
                    if row[v] < 0:
                        row[v] = level
                        nxt.append(v)
            frontier = nxt
        out.extend(row)
    return out


def components(adj: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """Connected components as sorted qubit tuples, largest first, ties by least qubit."""
    seen = [False] * len(adj)
    comps: list[tuple[int, ...]] = []
    for start in range(len(adj)):
        if seen[start]:
            continue
        seen[start] = True
        comp, stack = [start], [start]
        while stack:
            for v in adj[stack.pop()]:
                if not seen[v]:
                    seen[v] = True
                    comp.append(v)
                    stack.append(v)
        comps.append(tuple(sorted(comp)))
    return tuple(sorted(comps, key=lambda c: (-len(c), c[0])))


def parse_generator_spec(spec: str) -> tuple[str, tuple[int, ...]] | None:
    """Split a generator spec into its kind and integer arguments, without range checks.

    Returns:
        ``("grid", (5, 6))`` for ``"grid:5x6"``, ``("line", (20,))`` for ``"line:20"``, and
        so on; ``None`` when ``spec`` does not start with a generator prefix.

    Raises:
        UsageError: the prefix is known but the arguments are not integers of its form.
    """
    m = _SPEC.match(spec)
    if m is None:
        return None
    kind, args = m["kind"], m["args"]
    if kind == "grid":
        g = re.fullmatch(r"(\d+)[xX](\d+)", args)
        if g is None:
            raise UsageError(f"{spec}: expected grid:RxC with integer rows and columns, "
                             f"e.g. {_EXAMPLES[kind]}")
        return kind, (int(g[1]), int(g[2]))
    if not re.fullmatch(r"\d+", args):
        form = "heavy_hex:D" if kind == "heavy_hex" else f"{kind}:N"
        raise UsageError(f"{spec}: expected {form} with an integer, e.g. {_EXAMPLES[kind]}")
    return kind, (int(args),)

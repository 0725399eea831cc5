"""Quantum devices: coupling graphs with optional typical gate figures.

A device file is JSON::

    {"name": "ibm_falcon_27", "num_qubits": 27, "edges": [[0, 1], [1, 2], ...],
     "directed": false, "source": "where the graph came from",
     "queko_prefix": "53QBT",                                   (optional)
     "typical": {"note": "...", "native_2q": "cx", "dt_ns": 0.2222,   (all optional)
                 "gate_durations_ns": {"cx": 405.3, "sx": 35.6, ...},
                 "gate_errors": {"cx": 0.008992, ...}, "t1_us": 99.6, "t2_us": 77.9},
     "edge_figures": [{"edge": [0, 1], "duration_ns": 300.0, "error": 0.008}, ...]}

``edge_figures`` is our extension for per-edge two-qubit figures; each entry needs
``edge`` (an edge of the device) and at least one of ``duration_ns`` and ``error``.

Some facts the rest of ``quantum/`` relies on:

- Validation is strict and happens once, at construction: qubit indices in range, no
  self-loops, no edge listed twice (in either orientation), figures finite and
  non-negative, error rates at most 1, no unknown keys. Messages name the origin and the
  field (``ibm_x.json: edges[3] = [5, 5] is a self-loop``).
- Edges are undirected, stored ``(a, b)`` with ``a < b``, sorted. ``"directed": true`` is
  accepted (both orientations of an edge may then be listed) but direction is dropped:
  the router treats every coupling as usable both ways, and a later basis-translation
  step fixes up 2q-gate direction. It is not modelled here.
- A ``Device`` is immutable, so loaded built-ins and distance matrices are cached; the
  cached matrix is read-only (copy it to modify).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from qpuos.errors import DeviceFormatError, DeviceNotFound, TopologyError, UsageError
from qpuos.quantum import topologies
from qpuos.quantum._device_schema import (
    Edge,
    check_edge_map,
    check_edges,
    check_figures,
    check_num_qubits,
    check_number,
    device_to_json,
    parse_device_json,
    parse_json_text,
    read_json_file,
)

__all__ = [
    "UNREACHABLE",
    "Device",
    "DeviceSummary",
    "builtin_device_names",
    "describe_devices",
    "generator_forms",
    "grid_device",
    "heavy_hex_device",
    "line_device",
    "load_device",
    "require_fits",
    "ring_device",
]

#: Distance between qubits in different components; twice it still fits in int32.
UNREACHABLE: Final[int] = int(np.iinfo(np.int32).max // 2)

# When "native_2q" is absent or not a key of the figures, the first of these present is
# used; then the first key starting with "2q" (Sycamore's "2q_simultaneous").
_TWO_QUBIT_FALLBACK: Final = ("cx", "ecr", "cz")


def _empty() -> Mapping[Any, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Device:
    """A coupling graph with optional typical figures (public, not live calibration).

    Attributes:
        name: the built-in name, the generator spec (``"grid:5x6"``) or the file's name.
        num_qubits: physical qubits, numbered ``0..num_qubits - 1``.
        edges: undirected couplings ``(a, b)``, ``a < b``, sorted, unique.
        source: where the graph and figures come from.
        native_2q: the native two-qubit gate as the file names it ("cx", "ecr", ...).
        gate_durations_ns: typical duration per gate name (read-only; may be empty).
        gate_errors: typical error rate per gate name (read-only; may be empty).
        edge_durations_ns: per-edge two-qubit gate durations, where the file gives them.
        edge_errors: per-edge two-qubit gate error rates, where the file gives them.
        t1_us: typical T1, or ``None``. t2_us: typical T2, or ``None``.
        dt_ns: the control system's sample time, or ``None``.
        figures_note: the file's note on where its typical figures come from.
        queko_prefix: the QUEKO benchmark prefix for this graph ("16QBT"), or ``None``.

    Raises:
        DeviceFormatError: on construction, when any field breaks the schema rules.
    """

    name: str
    num_qubits: int
    edges: tuple[Edge, ...]
    source: str = ""
    native_2q: str | None = None
    gate_durations_ns: Mapping[str, float] = field(default_factory=_empty, hash=False)
    gate_errors: Mapping[str, float] = field(default_factory=_empty, hash=False)
    edge_durations_ns: Mapping[Edge, float] = field(default_factory=_empty, hash=False)
    edge_errors: Mapping[Edge, float] = field(default_factory=_empty, hash=False)
    t1_us: float | None = None
    t2_us: float | None = None
    dt_ns: float | None = None
    figures_note: str = ""
    queko_prefix: str | None = None
    _adjacency: tuple[tuple[int, ...], ...] = field(
        init=False, repr=False, compare=False, hash=False)
    _edge_set: frozenset[Edge] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"device {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise DeviceFormatError(f"{where}: name must be a non-empty string")
        n = check_num_qubits(self.num_qubits, where)
        edges = check_edges(self.edges, n, where)
        edge_set = frozenset(edges)
        put = object.__setattr__  # frozen: normalise once, here
        put(self, "num_qubits", n)
        put(self, "edges", edges)
        put(self, "_edge_set", edge_set)
        put(self, "_adjacency", topologies.adjacency(n, edges))
        for attr, prob in (("gate_durations_ns", False), ("gate_errors", True)):
            figs = check_figures(getattr(self, attr), where, attr, probability=prob)
            put(self, attr, MappingProxyType(figs))
        for attr, prob in (("edge_durations_ns", False), ("edge_errors", True)):
            figs_e = check_edge_map(getattr(self, attr), edge_set, n, where, attr,
                                    probability=prob)
            put(self, attr, MappingProxyType(figs_e))
        for attr in ("t1_us", "t2_us", "dt_ns"):
            if getattr(self, attr) is not None:
                put(self, attr, check_number(getattr(self, attr), where, attr))

    def __repr__(self) -> str:
        return (f"Device(name={self.name!r}, num_qubits={self.num_qubits}, "
                f"edges=<{len(self.edges)} edges>, native_2q={self.native_2q!r})")

    # -- graph ---------------------------------------------------------------------------

    def _check_qubit(self, q: int) -> None:
        if not 0 <= q < self.num_qubits:
            raise UsageError(f"qubit {q} is out of range for device {self.name!r} "
                             f"(0..{self.num_qubits - 1})")

    def neighbors(self, q: int) -> tuple[int, ...]:
        """The qubits coupled to ``q``, ascending.

        Raises:
            UsageError: ``q`` is not a qubit of this device.
        """
        self._check_qubit(q)
        return self._adjacency[q]

    def has_edge(self, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` are coupled (either orientation)."""
        return ((a, b) if a < b else (b, a)) in self._edge_set

    def edge_array(self) -> np.ndarray:
        """The edges as a fresh ``(len(edges), 2)`` int32 array, for kernels."""
        return np.array(self.edges, dtype=np.int32).reshape(len(self.edges), 2)

    def distance_matrix(self) -> np.ndarray:
        """Hop distances between all qubit pairs, by BFS from every qubit.

        Returns:
            A read-only int32 ``(n, n)`` array, cached per graph: symmetric, zero diagonal,
            1 between neighbours, :data:`UNREACHABLE` between components.
        """
        return _distance_matrix(self.num_qubits, self.edges)

    def connected_components(self) -> tuple[tuple[int, ...], ...]:
        """The qubit sets of the connected components, largest first (ties by least qubit)."""
        return topologies.components(self._adjacency)

    def is_connected(self) -> bool:
        """Whether every qubit can reach every other through couplings."""
        return len(self.connected_components()) == 1

    # -- figures -------------------------------------------------------------------------

    def _typical_key(self, figures: Mapping[str, float]) -> str | None:
        if self.native_2q is not None and self.native_2q in figures:
            return self.native_2q
        for key in _TWO_QUBIT_FALLBACK:
            if key in figures:
                return key
        return next((k for k in figures if k.startswith("2q")), None)

    @property
    def has_figures(self) -> bool:
        """Whether the device carries any gate or coherence figures."""
        return bool(self.gate_durations_ns or self.gate_errors or self.edge_durations_ns
                    or self.edge_errors or self.t1_us is not None or self.t2_us is not None)

    @property
    def typical_two_qubit_duration_ns(self) -> float | None:
        """The typical native 2q duration: ``gate_durations_ns[native_2q]``, else the first
        of "cx", "ecr", "cz", else the first key starting with "2q", else ``None``."""
        key = self._typical_key(self.gate_durations_ns)
        return None if key is None else self.gate_durations_ns[key]

    @property
    def typical_two_qubit_error(self) -> float | None:
        """The typical native 2q error rate, chosen like the duration from ``gate_errors``."""
        key = self._typical_key(self.gate_errors)
        return None if key is None else self.gate_errors[key]

    def _edge_key(self, a: int, b: int) -> Edge:
        if not self.has_edge(a, b):
            raise UsageError(f"qubits {a} and {b} are not coupled on device {self.name!r}")
        return (a, b) if a < b else (b, a)

    def two_qubit_duration_ns(self, a: int, b: int) -> float | None:
        """The 2q-gate duration on edge ``(a, b)``: per-edge if given, else typical, else None.

        Raises:
            UsageError: ``a`` and ``b`` are not coupled.
        """
        per_edge = self.edge_durations_ns.get(self._edge_key(a, b))
        return self.typical_two_qubit_duration_ns if per_edge is None else per_edge

    def two_qubit_error(self, a: int, b: int) -> float | None:
        """The 2q-gate error rate on edge ``(a, b)``: per-edge if given, else typical, else None.

        Raises:
            UsageError: ``a`` and ``b`` are not coupled.
        """
        per_edge = self.edge_errors.get(self._edge_key(a, b))
        return self.typical_two_qubit_error if per_edge is None else per_edge

    # -- JSON ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The device as a JSON-ready dict in the file schema; ``from_json`` reads it back."""
        return device_to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, origin: str) -> Device:
        """Build a device from parsed JSON in the file schema (see the module docstring).

        Args:
            data: the parsed JSON object.
            origin: where it came from (a file name), for error messages.

        Raises:
            DeviceFormatError: naming ``origin`` and the offending field.
        """
        return cls(**parse_device_json(data, origin))


@lru_cache(maxsize=32)
def _distance_matrix(n: int, edges: tuple[Edge, ...]) -> np.ndarray:
    hops = np.array(topologies.hop_distances(topologies.adjacency(n, edges)), dtype=np.int64)
    hops = hops.reshape(n, n)
    dist = np.where(hops >= 0, hops, UNREACHABLE).astype(np.int32)
    dist.flags.writeable = False
    return dist


def require_fits(device: Device, num_qubits: int) -> None:
    """Check a circuit of ``num_qubits`` qubits can be routed on ``device``.

    Raises:
        UsageError: ``num_qubits`` is not a non-negative integer.
        TopologyError: the circuit is wider than the device, or the device's coupling graph
            is not connected (always refused: routing needs one component).
    """
    if isinstance(num_qubits, bool) or not isinstance(num_qubits, int) or num_qubits < 0:
        raise UsageError(f"num_qubits must be a non-negative integer, got {num_qubits!r}")
    if num_qubits > device.num_qubits:
        raise TopologyError(f"circuit uses {num_qubits} qubits but device {device.name!r} has "
                            f"{device.num_qubits}; pick a larger device (`qpuos devices`)")
    comps = device.connected_components()
    if len(comps) > 1:
        sizes = ", ".join(str(len(c)) for c in comps)
        raise TopologyError(f"device {device.name!r} is not connected (components of sizes "
                            f"{sizes}); routing needs a connected coupling graph")


# -- generated devices ---------------------------------------------------------------------

def line_device(n: int) -> Device:
    """An ``n``-qubit line ``0 - 1 - ... - n-1`` named ``line:n`` (UsageError if n < 1)."""
    return Device(f"line:{n}", n, topologies.line_edges(n), source="generated line")


def ring_device(n: int) -> Device:
    """An ``n``-qubit ring named ``ring:n`` (UsageError if n < 3)."""
    return Device(f"ring:{n}", n, topologies.ring_edges(n), source="generated ring")


def grid_device(rows: int, cols: int) -> Device:
    """A ``rows`` x ``cols`` grid named ``grid:RxC``, qubit ``r * cols + c`` (UsageError if < 1)."""
    return Device(f"grid:{rows}x{cols}", rows * cols, topologies.grid_edges(rows, cols),
                  source="generated grid")


def heavy_hex_device(distance: int) -> Device:
    """A heavy-hex patch named ``heavy_hex:d``; see :mod:`qpuos.quantum.topologies`.

    Raises:
        UsageError: ``distance`` is not an odd integer >= 3.
    """
    n = topologies.heavy_hex_num_qubits(distance)
    return Device(f"heavy_hex:{distance}", n, topologies.heavy_hex_edges(distance),
                  source="generated heavy-hex lattice (qpuos construction)")


_GENERATORS: Final[dict[str, Callable[..., Device]]] = {
    "line": line_device, "ring": ring_device, "grid": grid_device,
    "heavy_hex": heavy_hex_device}


def generator_forms() -> list[str]:
    """The generator spec forms ``load_device`` accepts, e.g. ``"grid:RxC"``."""
    return list(topologies.GENERATOR_FORMS)


# -- built-ins and loading -----------------------------------------------------------------

def _data_dir() -> Any:
    return resources.files("qpuos.quantum").joinpath("data", "devices")


@lru_cache(maxsize=1)
def _builtin_files() -> dict[str, Any]:
    files = {p.name.removesuffix(".json"): p for p in _data_dir().iterdir()
             if p.name.endswith(".json")}
    return dict(sorted(files.items()))


def builtin_device_names() -> list[str]:
    """Names of the built-in devices, sorted (``"ibm_falcon_27"``, ...)."""
    return list(_builtin_files())


@cache
def _load_builtin(name: str) -> Device:
    path = _builtin_files()[name]
    data = parse_json_text(path.read_text(encoding="utf-8"), f"{name}.json (built-in)")
    return Device.from_json(data, origin=f"{name}.json (built-in)")


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    return {d.queko_prefix.lower(): d.name for d in map(_load_builtin, _builtin_files())
            if d.queko_prefix is not None}


def load_device(spec: str | os.PathLike[str]) -> Device:
    """Load a device by built-in name, QUEKO prefix, generator spec or JSON file path.

    Args:
        spec: ``"ibm_falcon_27"``; a QUEKO prefix (``"16QBT"``, ``"20QBT"``, ``"53QBT"``,
            ``"54QBT"``); ``"line:N"``, ``"ring:N"``, ``"grid:RxC"``, ``"heavy_hex:D"``;
            or the path of a JSON file in the device schema (a ``str`` or path object).
            A string is tried in that order, names case-insensitively, so a file must not
            be called like a built-in. Built-ins are loaded once and shared.

    Returns:
        The device.

    Raises:
        DeviceNotFound: no such name and no such file; the message lists what exists.
        DeviceFormatError: the file is not valid JSON or breaks the schema.
        UsageError: a generator spec with bad arguments (``grid:5x0``).

    >>> dev = load_device("ibm_falcon_27")
    >>> dev.num_qubits, len(dev.edges), dev.native_2q, dev.two_qubit_duration_ns(0, 1)
    (27, 28, 'cx', 405.3)
    """
    if isinstance(spec, os.PathLike):
        path = Path(spec)
        return Device.from_json(read_json_file(path, str(path)), origin=str(path))
    if not isinstance(spec, str):
        raise UsageError(f"device spec must be a string or path, got {type(spec).__name__}")
    key = spec.strip().lower()
    if key in _builtin_files():
        return _load_builtin(key)
    if key in _aliases():
        return _load_builtin(_aliases()[key])
    generated = topologies.parse_generator_spec(key)
    if generated is not None:
        kind, args = generated
        return _GENERATORS[kind](*args)
    path = Path(spec)
    if path.is_file() or spec.endswith(".json") or os.sep in spec:
        return Device.from_json(read_json_file(path, spec), origin=spec)
    aliases = sorted(a.upper() for a in _aliases())
    known = [*_builtin_files(), *aliases]
    close = difflib.get_close_matches(key, [k.lower() for k in known], n=1)
    hint = "".join(f"did you mean {k!r}? " for k in known if close and k.lower() == close[0])
    raise DeviceNotFound(f"unknown device {spec!r}; {hint}built-in: {', '.join(_builtin_files())}"
                         f"; QUEKO aliases: {', '.join(aliases)}; generated: "
                         f"{', '.join(topologies.GENERATOR_FORMS)}; or a .json file path")


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """One row of the ``qpuos devices`` table."""

    name: str
    num_qubits: int
    num_edges: int
    native_2q: str | None
    has_figures: bool
    queko_prefix: str | None
    source: str


def describe_devices() -> list[DeviceSummary]:
    """One summary per built-in device, sorted by name, for ``qpuos devices``.

    ``native_2q`` is shortened to the gate's leading name ("fSim" for Sycamore's long
    description) and, when the file names none, inferred from its figures ("cx").
    """
    rows = []
    for name in _builtin_files():
        d = _load_builtin(name)
        native = d.native_2q.split("(")[0].split()[0] if d.native_2q else \
            d._typical_key(d.gate_durations_ns)
        rows.append(DeviceSummary(d.name, d.num_qubits, len(d.edges), native, d.has_figures,
                                  d.queko_prefix, d.source))
    return rows

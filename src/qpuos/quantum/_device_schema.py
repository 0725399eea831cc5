"""Device JSON: reading files, checking the schema, writing it back.

The checks are shared by ``Device.from_json`` and ``Device.__init__``.

Every check raises :class:`~qpuos.errors.DeviceFormatError` as ``"{where}: {field} ..."``,
where ``where`` is the file (``ibm_x.json``) or ``device 'name'`` for objects built in code,
and ``field`` is a JSON path (``edges[3]``, ``typical.gate_errors.cx``). The schema itself
is documented in :mod:`qpuos.quantum.device`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qpuos.errors import DeviceFormatError, DeviceNotFound
from qpuos.quantum.topologies import MAX_QUBITS

if TYPE_CHECKING:
    from qpuos.quantum.device import Device

__all__ = ["Edge", "check_edge_map", "check_edges", "check_figures", "check_num_qubits",
           "check_number", "check_pair", "device_to_json", "parse_device_json", "parse_json_text",
           "read_json_file", "show"]

Edge = tuple[int, int]

_TOP_KEYS = ("name", "num_qubits", "edges", "directed", "source", "queko_prefix", "typical",
             "edge_figures")
_TYPICAL_KEYS = ("note", "native_2q", "dt_ns", "gate_durations_ns", "gate_errors", "t1_us",
                 "t2_us")
_FIGURE_KEYS = ("edge", "duration_ns", "error")


def show(value: object) -> str:
    """``value`` as JSON would spell it, cut to 60 characters for messages."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: object) -> str:
    for kind, name in ((bool, "boolean"), (str, "string"), (int, "number"), (float, "number"),
                       (Mapping, "object"), (list, "array"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def parse_json_text(text: str, origin: str) -> Any:
    """``json.loads``, with a syntax error turned into a ``DeviceFormatError``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeviceFormatError(f"{origin}: not valid JSON: {exc.msg} "
                                f"(line {exc.lineno}, column {exc.colno})") from exc


def read_json_file(path: Path, origin: str) -> Any:
    """Read and parse a device file; a missing or unreadable one is ``DeviceNotFound``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DeviceNotFound(f"no device file at {origin!r}") from exc
    except OSError as exc:
        raise DeviceNotFound(f"cannot read device file {origin!r}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeviceFormatError(f"{origin}: not UTF-8 text ({exc.reason} at byte "
                                f"{exc.start})") from exc
    return parse_json_text(text, origin)


def check_num_qubits(value: object, where: str) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise DeviceFormatError(f"{where}: num_qubits = {show(value)} must be a positive "
                                "integer")
    if value > MAX_QUBITS:
        raise DeviceFormatError(f"{where}: num_qubits = {value} is above the supported "
                                f"{MAX_QUBITS}")
    return int(value)


def check_pair(item: object, n: int, where: str, label: str) -> Edge:
    if not (isinstance(item, list | tuple | np.ndarray) and len(item) == 2
            and all(_is_int(x) for x in item)):
        raise DeviceFormatError(f"{where}: {label} = {show(item)} must be a pair of integer "
                                "qubit indices")
    a, b = int(item[0]), int(item[1])
    if a == b:
        raise DeviceFormatError(f"{where}: {label} = {show(item)} is a self-loop")
    for q in (a, b):
        if not 0 <= q < n:
            raise DeviceFormatError(f"{where}: {label} = {show(item)} names qubit {q}, "
                                    f"outside 0..{n - 1}")
    return (a, b) if a < b else (b, a)


def check_edges(raw: object, n: int, where: str, *, directed: bool = False
                 ) -> tuple[Edge, ...]:
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
        raise DeviceFormatError(f"{where}: edges must be an array of [a, b] pairs, got "
                                f"{_json_type(raw)}")
    items = list(raw)
    first: dict[Edge, int] = {}  # undirected key -> index of its first listing
    oriented: dict[Edge, int] = {}  # as written -> index, for directed files
    for i, item in enumerate(items):
        edge = check_pair(item, n, where, f"edges[{i}]")
        as_written = (int(item[0]), int(item[1]))
        j = oriented.get(as_written) if directed else first.get(edge)
        if j is not None:
            raise DeviceFormatError(f"{where}: edges[{i}] = {show(item)} repeats edges[{j}] = "
                                    f"{show(items[j])}")
        oriented[as_written] = i
        first.setdefault(edge, i)
    return tuple(sorted(first))


def check_number(value: object, where: str, label: str, *, probability: bool = False
                  ) -> float:
    number = math.nan
    if isinstance(value, int | float | np.integer | np.floating) and \
            not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer too large for a float
            number = float(value)
    if not (math.isfinite(number) and 0 <= number <= (1 if probability else math.inf)):
        want = "a number in [0, 1]" if probability else "a non-negative number"
        raise DeviceFormatError(f"{where}: {label} = {show(value)} must be {want}")
    return number


def check_figures(raw: object, where: str, label: str, *, probability: bool
                   ) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise DeviceFormatError(f"{where}: {label} must be an object of gate name to number, "
                                f"got {_json_type(raw)}")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise DeviceFormatError(f"{where}: {label} has key {key!r}, not a gate name")
        out[key] = check_number(value, where, f"{label}.{key}", probability=probability)
    return out


def check_edge_map(raw: object, edge_set: frozenset[Edge], n: int, where: str, label: str,
                   *, probability: bool) -> dict[Edge, float]:
    """Check a mapping of edge to figure (``Device.edge_errors``); keys come out ``a < b``."""
    if not isinstance(raw, Mapping):
        raise DeviceFormatError(f"{where}: {label} must be a mapping of edge to number")
    out: dict[Edge, float] = {}
    for key, value in raw.items():
        edge = check_pair(key, n, where, f"{label} key")
        if edge not in edge_set:
            raise DeviceFormatError(f"{where}: {label} key {show(key)} is not an edge")
        out[edge] = check_number(value, where, f"{label}[{show(list(edge))}]",
                                 probability=probability)
    return dict(sorted(out.items()))


def _check_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str, prefix: str,
                required: tuple[str, ...] = ()) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise DeviceFormatError(f"{where}: unknown field {prefix + str(key)!r}{hint}; "
                                    f"allowed: {', '.join(allowed)}")
    for key in required:
        if key not in obj:
            raise DeviceFormatError(f"{where}: missing required field {prefix + key!r}")


def _text(value: object, where: str, label: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        want = "a non-empty string" if nonempty else "a string"
        raise DeviceFormatError(f"{where}: {label} = {show(value)} must be {want}")
    return value


def _parse_edge_figures(raw: object, edges: tuple[Edge, ...], n: int, where: str
                        ) -> tuple[dict[Edge, float], dict[Edge, float]]:
    if not isinstance(raw, list):
        raise DeviceFormatError(f"{where}: edge_figures must be an array of objects, got "
                                f"{_json_type(raw)}")
    edge_set = set(edges)
    durations: dict[Edge, float] = {}
    errors: dict[Edge, float] = {}
    first: dict[Edge, int] = {}
    for i, entry in enumerate(raw):
        label = f"edge_figures[{i}]"
        if not isinstance(entry, Mapping):
            raise DeviceFormatError(f"{where}: {label} must be an object, got "
                                    f"{_json_type(entry)}")
        _check_keys(entry, _FIGURE_KEYS, where, f"{label}.", required=("edge",))
        edge = check_pair(entry["edge"], n, where, f"{label}.edge")
        if edge not in edge_set:
            raise DeviceFormatError(f"{where}: {label}.edge = {show(entry['edge'])} is not an "
                                    "edge of the device")
        if edge in first:
            raise DeviceFormatError(f"{where}: {label}.edge = {show(entry['edge'])} repeats "
                                    f"edge_figures[{first[edge]}]")
        first[edge] = i
        if entry.get("duration_ns") is None and entry.get("error") is None:
            raise DeviceFormatError(f"{where}: {label} gives neither duration_ns nor error")
        if entry.get("duration_ns") is not None:
            durations[edge] = check_number(entry["duration_ns"], where, f"{label}.duration_ns")
        if entry.get("error") is not None:
            errors[edge] = check_number(entry["error"], where, f"{label}.error",
                                         probability=True)
    return durations, errors


def parse_device_json(data: object, where: str) -> dict[str, Any]:
    """Check parsed JSON against the schema; return ``Device`` keyword arguments."""
    if not isinstance(data, Mapping):
        raise DeviceFormatError(f"{where}: expected a JSON object at the top level, got "
                                f"{_json_type(data)}")
    _check_keys(data, _TOP_KEYS, where, "", required=("name", "num_qubits", "edges"))
    n = check_num_qubits(data["num_qubits"], where)
    directed = data.get("directed")
    directed = False if directed is None else directed
    if not isinstance(directed, bool):
        raise DeviceFormatError(f"{where}: directed = {show(directed)} must be true or false")
    edges = check_edges(data["edges"], n, where, directed=directed)
    kw: dict[str, Any] = {"name": _text(data["name"], where, "name", nonempty=True),
                          "num_qubits": n, "edges": edges,
                          "source": _text(data.get("source") or "", where, "source")}
    # Optional fields may be absent or null; both mean "not given".
    if data.get("queko_prefix") is not None:
        kw["queko_prefix"] = _text(data["queko_prefix"], where, "queko_prefix", nonempty=True)
    typical = data.get("typical")
    if typical is not None:
        if not isinstance(typical, Mapping):
            raise DeviceFormatError(f"{where}: typical must be an object, got "
                                    f"{_json_type(typical)}")
        _check_keys(typical, _TYPICAL_KEYS, where, "typical.")
        if typical.get("note") is not None:
            kw["figures_note"] = _text(typical["note"], where, "typical.note")
        if typical.get("native_2q") is not None:
            kw["native_2q"] = _text(typical["native_2q"], where, "typical.native_2q",
                                    nonempty=True)
        for key in ("dt_ns", "t1_us", "t2_us"):
            if typical.get(key) is not None:
                kw[key] = check_number(typical[key], where, f"typical.{key}")
        for key, prob in (("gate_durations_ns", False), ("gate_errors", True)):
            if typical.get(key) is not None:
                kw[key] = check_figures(typical[key], where, f"typical.{key}",
                                         probability=prob)
    if data.get("edge_figures") is not None:
        kw["edge_durations_ns"], kw["edge_errors"] = _parse_edge_figures(
            data["edge_figures"], edges, n, where)
    return kw



def device_to_json(device: Device) -> dict[str, Any]:
    """The inverse of ``parse_device_json``: optional parts only when present."""
    out: dict[str, Any] = {"name": device.name, "num_qubits": device.num_qubits,
                           "edges": [list(e) for e in device.edges], "directed": False,
                           "source": device.source}
    if device.queko_prefix is not None:
        out["queko_prefix"] = device.queko_prefix
    typical: dict[str, Any] = {}
    for key, value in (("note", device.figures_note or None), ("native_2q", device.native_2q),
                       ("dt_ns", device.dt_ns),
                       ("gate_durations_ns", dict(device.gate_durations_ns) or None),
                       ("gate_errors", dict(device.gate_errors) or None),
                       ("t1_us", device.t1_us), ("t2_us", device.t2_us)):
        if value is not None:
            typical[key] = value
    if typical:
        out["typical"] = typical
    figured = sorted(set(device.edge_durations_ns) | set(device.edge_errors))
    if figured:
        rows: list[dict[str, Any]] = []
        for edge in figured:
            row: dict[str, Any] = {"edge": list(edge)}
            if edge in device.edge_durations_ns:
                row["duration_ns"] = device.edge_durations_ns[edge]
            if edge in device.edge_errors:
                row["error"] = device.edge_errors[edge]
            rows.append(row)
        out["edge_figures"] = rows
    return out

"""Probe: where the adaptive interpreter (PEP 659) stops specialising.

Two sweeps, each timed per operation with repeats:

1. Attribute loads ``o.target`` against the number of instance attributes set before
   ``target`` (plain classes, and ``__slots__`` classes for comparison). While an
   instance's keys are shared with its class, the load can specialise to a direct
   index; when they stop being shared it falls back to a hashed lookup. The step is
   found by :func:`~qpuos.lab.knee.find_step` on the timings, and separately from the
   specialised instruction ``dis`` reports (``adaptive=True``) at each point.
2. Method calls ``o.m()`` at one call site against the number of receiver types cycling
   through it: a monomorphic site keeps its specialisation, a polymorphic one misses.

Nothing here knows where the steps are: the sweeps cover ranges and the detector decides.
"""

from __future__ import annotations

import dis
import time
import types
from collections.abc import Callable
from typing import Any

from qpuos.lab._measure import sweep
from qpuos.lab.knee import find_step
from qpuos.lab.model import (
    Finding,
    Mark,
    Miss,
    Panel,
    ProbeResult,
    Progress,
    Series,
    Size,
    check_size,
    relative_spread,
)

__all__ = ["PROBE", "QUANTITIES", "run"]

PROBE = "specialization"
QUANTITIES = ("instance_attributes", "attribute_instruction", "receiver_types")

# size -> (largest attribute count, repeats, loads per measurement, largest type count)
_PLAN = {"tiny": (36, 3, 10_000, 8), "quick": (44, 7, 100_000, 16),
         "full": (64, 11, 400_000, 24)}
_UNROLL = 8


def _attr_class(k: int, slots: bool) -> type:
    """A class whose instances set ``k - 1`` filler attributes, then ``target``."""
    names = [f"f{i}" for i in range(k - 1)] + ["target"]

    def init(self: Any) -> None:
        for n in names:
            setattr(self, n, 1)

    ns: dict[str, Any] = {"__init__": init}
    if slots:
        ns["__slots__"] = tuple(names)
    return type(f"Attrs{k}{'S' if slots else ''}", (), ns)


def _make_loader() -> Callable[[Any, int], None]:
    """A fresh function (own inline caches) doing ``_UNROLL`` loads per iteration."""
    def load(o: Any, n: int) -> None:
        for _ in range(n):
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
            o.target  # noqa: B018 - the load is what is timed
    return load


def _specialised(fn: Callable[..., object], prefix: str) -> str:
    """The adaptive instruction ``dis`` shows for the first ``prefix*`` opcode in ``fn``."""
    for ins in dis.get_instructions(fn, adaptive=True):
        if ins.opname.startswith(prefix):
            return ins.opname
    return "?"


def _attr_ns(k: int, slots: bool, loads: int, seen: dict[int, list[str]] | None) -> float:
    cls = _attr_class(k, slots)
    objs = [cls() for _ in range(4)]     # several instances: keys really are shared
    obj = objs[-1]
    fn = _make_loader()
    fn(obj, 256)                         # warm: let the site specialise
    if seen is not None:
        seen.setdefault(k, []).append(_specialised(fn, "LOAD_ATTR"))
    n = max(1, loads // _UNROLL)
    t0 = time.perf_counter_ns()
    fn(obj, n)
    return (time.perf_counter_ns() - t0) / (n * _UNROLL)


def _call_site(objs: list[Any], n: int) -> None:
    for _ in range(n):
        for o in objs:
            o.m()


def _receivers_ns(m: int, calls: int) -> float:
    classes = [type(f"Recv{i}", (), {"m": lambda self: None}) for i in range(m)]
    objs = [classes[i % m]() for i in range(16)]   # 16 per round, cycling the types
    site: Callable[[list[Any], int], None] = _copy(_call_site)
    site(objs, 64)
    n = max(1, calls // len(objs))
    t0 = time.perf_counter_ns()
    site(objs, n)
    return (time.perf_counter_ns() - t0) / (n * len(objs))


def _copy(fn: Callable[..., None]) -> Callable[..., None]:
    """A new function object over a copy of ``fn``'s code: its own inline caches."""
    code = fn.__code__.replace()
    new: Callable[..., None] = types.FunctionType(code, fn.__globals__, fn.__name__)
    return new


def _first_change(seen: dict[int, list[str]], ks: list[int]) -> tuple[int, float] | None:
    """First k whose usual instruction differs from the first k's; agreement of repeats."""
    base = _usual_name(seen, ks[0])
    for k in ks[1:]:
        if _usual_name(seen, k) != base:
            names = seen[k]
            agree = sum(1 for s in names if s != base) / len(names)
            return k, agree
    return None


def run(*, size: Size = "quick", progress: Progress | None = None,
        seed: int = 0) -> ProbeResult:
    """Sweep attribute counts and receiver types; find where specialisation stops.

    Args:
        size: ``tiny`` (tests), ``quick`` or ``full``.
        progress: told the fraction done.
        seed: seed of the sweep order and the bootstrap.

    Returns:
        The probe's panels, findings and misses.

    >>> r = run(size="tiny")
    >>> r.searched() == set(QUANTITIES)
    True
    """
    t_start = time.perf_counter()
    k_max, repeats, loads, m_max = _PLAN[check_size(size)]
    ks = list(range(1, k_max + 1))
    seen: dict[int, list[str]] = {}
    dict_reps = sweep(ks, repeats, lambda k: _attr_ns(k, False, loads, seen),
                      progress=progress, seed=seed, share=0.4)
    slot_reps = sweep(ks, repeats, lambda k: _attr_ns(k, True, loads, None),
                      progress=progress, seed=seed + 1, done=0.4, share=0.3)
    ms = list(range(1, m_max + 1))
    recv_reps = sweep(ms, repeats, lambda m: _receivers_ns(m, loads), progress=progress,
                      seed=seed + 2, done=0.7, share=0.3)
    findings: list[Finding] = []
    misses: list[Miss] = []
    attr_marks: list[Mark] = []
    step = find_step(ks, dict_reps, seed=seed)
    if step is None:
        misses.append(Miss(PROBE, "instance_attributes",
                           f"attribute load time is flat within noise for 1..{k_max} "
                           "instance attributes"))
    else:
        before = seen.get(int(step.x), ["?"])[0]
        after = seen.get(int(step.x_after), ["?"])[0]
        findings.append(Finding(
            PROBE, "instance_attributes", step.x, "attributes", step.ratio, step.confidence,
            f"attribute loads on instances with more than {step.x:g} attributes cost "
            f"{step.ratio:.2f}x ({step.before:.1f} -> {step.after:.1f} ns): "
            f"{before} becomes {after}"))
        attr_marks.append(Mark(step.x, f"step after {step.x:g}"))
    change = _first_change(seen, ks)
    if change is None:
        misses.append(Miss(PROBE, "attribute_instruction",
                           f"dis shows {_usual_name(seen, ks[0])} for every count 1..{k_max}"))
    else:
        k, agree = change
        i = ks.index(k)
        med = Series.of("", ks, dict_reps).medians()
        ratio = (sum(med[i:]) / len(med[i:])) / (sum(med[:i]) / i)
        findings.append(Finding(
            PROBE, "attribute_instruction", float(k - 1), "attributes", ratio, agree,
            f"past {k - 1} instance attributes dis shows {_usual_name(seen, k)} instead "
            f"of {_usual_name(seen, ks[0])} (mean load time x{ratio:.2f})"))
        attr_marks.append(Mark(float(k - 1), "instruction changes"))
    recv_step = find_step(ms, recv_reps, min_seg=1, seed=seed)
    recv_marks: tuple[Mark, ...] = ()
    if recv_step is None:
        misses.append(Miss(PROBE, "receiver_types",
                           f"call cost is flat within noise for 1..{m_max} receiver types"))
    else:
        findings.append(Finding(
            PROBE, "receiver_types", recv_step.x, "types", recv_step.ratio,
            recv_step.confidence,
            f"a call site seeing more than {recv_step.x:g} receiver type(s) costs "
            f"{recv_step.ratio:.2f}x per call ({recv_step.before:.0f} -> "
            f"{recv_step.after:.0f} ns): the site stops being specialised"))
        recv_marks = (Mark(recv_step.x, f"step after {recv_step.x:g}"),)
    panels = (
        Panel("attribute load vs instance attributes", "instance attributes",
              "ns per load", (Series.of("plain class", ks, dict_reps),
                              Series.of("__slots__", ks, slot_reps)),
              log_x=False, log_y=False, marks=tuple(attr_marks)),
        Panel("method call vs receiver types at one call site", "receiver types",
              "ns per call", (Series.of("o.m()", ms, recv_reps),), log_x=False,
              log_y=False, marks=recv_marks),
    )
    slot_med = Series.of("", ks, slot_reps).medians()
    dict_med = Series.of("", ks, dict_reps).medians()
    notes = (f"__slots__ load at {k_max} attributes: {slot_med[-1]:.1f} ns vs "
             f"{dict_med[-1]:.1f} ns for a plain class",
             "specialised instruction per attribute count: " + ", ".join(
                 f"{k}:{_usual_name(seen, k).removeprefix('LOAD_ATTR_')}"
                 for k in (ks[0], *(c[0] for c in [change] if c), ks[-1])))
    return ProbeResult(PROBE, "Interpreter specialisation", panels, tuple(findings),
                       tuple(misses), notes, time.perf_counter() - t_start,
                       relative_spread(panels))


def _usual_name(seen: dict[int, list[str]], k: int) -> str:
    names = seen.get(k, ["?"])
    return max(set(names), key=names.count)

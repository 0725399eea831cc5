"""The GC guard's records: per-generation pause statistics, the guard's totals, and the
evidence handed to the degrade callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DegradeEvidence", "EvidenceKind", "GCStats", "GenerationStats", "Policy"]

Policy = Literal["default", "frozen", "scheduled"]
EvidenceKind = Literal["pause", "idle_overrun", "pending", "valve"]


@dataclass(frozen=True, slots=True)
class DegradeEvidence:
    """Why the guard called ``on_degrade``: which pause, in which phase, against what budget.

    Kinds: ``"pause"`` a collection outside an idle window took longer than the phase's
    budget; ``"idle_overrun"`` a collection run in an idle window took longer than the
    window (the prediction was wrong); ``"pending"`` the young garbage waiting has grown
    past what one collection can clear within the budget (``measured_ns`` is then the
    predicted pause); ``"valve"`` the guard or the interpreter collected anyway because
    pending garbage or memory passed its bound.

    Attributes:
        kind: one of the kinds above.
        phase: the innermost phase active at the pause ("idle" inside an idle window),
            or None outside every phase.
        generation: the generation collected (or that would have been).
        measured_ns: the pause measured (predicted, for ``"pending"``).
        budget_ns: the budget it was held against (the window, for ``"idle_overrun"``).
        pending: ``gc.get_count()[0]`` when the collection started.
        collected: unreachable objects found by that collection (0 for ``"pending"``).
        detail: one line in words.
    """

    kind: EvidenceKind
    phase: str | None
    generation: int
    measured_ns: int
    budget_ns: int
    pending: int
    collected: int
    detail: str


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Collections of one generation: how many, how long (ns), what they found.

    Quantiles come from a log-linear histogram: at most 1/16 above the true value.
    """

    generation: int
    count: int
    collected: int
    total_ns: int
    p50_ns: int
    p999_ns: int
    max_ns: int


@dataclass(frozen=True, slots=True)
class GCStats:
    """What a :class:`~qpuos.rt.GCGuard` saw while it was active.

    Attributes:
        policy: the guard's policy.
        generations: one :class:`GenerationStats` per generation, 0 to 2.
        inside_idle: collections the guard ran in idle windows.
        outside_idle: every other collection (asked, valve, automatic, external).
        asked: full collections asked for with ``collect_full()``, and the start-up
            collection of the frozen policy (before freezing) and of the scheduled one
            (promoting start-up's young objects).
        valve: collections forced by a bound on pending garbage or memory.
        automatic: collections the interpreter started on its own thresholds (default
            and frozen policies; under the scheduled policy these are valves).
        external: collections someone else asked for (``gc.collect()``).
        degrade: evidence records handed to ``on_degrade`` (or logged).
        idle_calls: times ``idle()`` was called.
        idle_skipped: idle calls where young garbage waited but no collection fitted.
        mispredicted: idle collections longer than predicted.
    """

    policy: str
    generations: tuple[GenerationStats, ...]
    inside_idle: int
    outside_idle: int
    asked: int
    valve: int
    automatic: int
    external: int
    degrade: int
    idle_calls: int
    idle_skipped: int
    mispredicted: int

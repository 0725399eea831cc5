"""The GC guard's instrument: times every collection, classifies it, holds the budgets
and queues the evidence. :mod:`qpuos.rt.gcguard` builds the policies on top of it.

Classification, at a collection's ``"start"``: the guard's own collections say what they
are (``_source``); any other one was started by the interpreter when ``gc.get_count()[0]``
is above threshold 0 (it collects the moment the count crosses it; an explicit
``gc.collect()`` finds it lower) and by someone's ``gc.collect()`` otherwise. Under the
scheduled policy, an interpreter-started collection is the young valve.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from qpuos.errors import UsageError
from qpuos.rt._gctypes import DegradeEvidence, EvidenceKind, GCStats, GenerationStats, Policy
from qpuos.rt._hist import _Histogram
from qpuos.rt._predict import _PauseModel

__all__ = ["GCPhase"]

log = logging.getLogger("qpuos.rt.gcguard")

_IDLE, _ASKED, _VALVE, _AUTOMATIC, _EXTERNAL = range(5)  # where a collection came from
_QUEUE_MAX = 1024  # undelivered evidence kept (a loop with no safe point must not grow)
_WARN_EVERY_NS = 1_000_000_000


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} µs"


class GCPhase:
    """A named stretch of the loop with its own pause budget; reusable and nestable.

    Made by :meth:`GCGuard.phase`. A collection that starts inside it (and not in an
    idle window) is held against ``budget_ns``; its exit is a safe point where queued
    evidence reaches ``on_degrade``.
    """

    __slots__ = ("_guard", "_saved", "budget_ns", "name")

    def __init__(self, guard: _Recorder, name: str, budget_ns: int) -> None:
        self._guard = guard
        self._saved: list[tuple[str | None, int]] = []
        self.name = name
        self.budget_ns = budget_ns

    def __enter__(self) -> GCPhase:
        g = self._guard
        self._saved.append((g._phase_name, g._phase_budget))
        g._phase_name, g._phase_budget = self.name, self.budget_ns
        return self

    def __exit__(self, *exc: object) -> None:
        g = self._guard
        g._phase_name, g._phase_budget = self._saved.pop()
        if g._queue:
            g._deliver()


class _Recorder:
    """Measuring, budgets and evidence: the half of the guard no policy changes."""

    def __init__(self, policy: Policy, budget_ns: int,
                 on_degrade: Callable[[DegradeEvidence], None] | None,
                 max_pending: int) -> None:
        self.policy: Policy = policy
        self.budget_ns = budget_ns
        self._on_degrade = on_degrade
        self._max_pending = max_pending
        self._cb = self._on_gc
        self._hists = (_Histogram(), _Histogram(), _Histogram())
        self._collected = [0, 0, 0]
        self._sources = [0, 0, 0, 0, 0]
        self._source: int | None = None   # set while the guard itself collects
        self._current = _EXTERNAL
        self._t0 = 0
        self._start_pending = 0
        self._last: tuple[int, int, int] | None = None  # (generation, pause, collected)
        # priors: ~50-130 ns per young object was measured here (1e5-1e6 live objects)
        self._models = (_PauseModel(base_ns=5_000, per_object_ns=100),
                        _PauseModel(base_ns=5_000, per_object_ns=100))
        self._phase_name: str | None = None
        self._phase_budget = budget_ns
        self._queue: list[DegradeEvidence] = []
        self._degrade = 0
        self._warned_at = -_WARN_EVERY_NS
        self._unwarned = 0
        self._idle_calls = self._idle_skipped = self._mispredicted = 0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside every collection, in whatever thread allocated: keep it short.
        if phase == "start":
            source = self._source
            if source is None:
                pending = gc.get_count()[0]
                threshold = gc.get_threshold()[0]
                if 0 < threshold < pending:
                    source = _VALVE if self.policy == "scheduled" else _AUTOMATIC
                else:
                    source = _EXTERNAL
                self._start_pending = pending
            self._current = source
            self._t0 = perf_counter_ns()
            return
        pause = perf_counter_ns() - self._t0
        gen: int = info["generation"]
        collected: int = info["collected"]
        self._hists[gen].record(pause)
        self._collected[gen] += collected
        source = self._current
        self._sources[source] += 1
        self._last = (gen, pause, collected)
        if self._source is not None:
            return  # the guard's own collection: judged by the code that ran it
        if source == _VALVE:
            self._models[0 if gen == 0 else 1].update(self._start_pending, pause)
            self._evidence("valve", gen, pause, self._phase_budget, self._start_pending,
                           collected, f"the interpreter collected generation {gen} "
                           f"outside an idle window: {self._start_pending} pending > "
                           f"max_pending {self._max_pending}", warn=True)
        elif pause > self._phase_budget:
            self._evidence("pause", gen, pause, self._phase_budget, self._start_pending,
                           collected, f"generation {gen} collection took {_us(pause)}, "
                           f"budget {_us(self._phase_budget)}")

    def _evidence(self, kind: EvidenceKind, gen: int, measured: int, budget: int,
                  pending: int, collected: int, detail: str, *, warn: bool = False,
                  phase: str | None = None) -> None:
        where = phase or self._phase_name
        ev = DegradeEvidence(kind, where, gen, measured, budget, pending, collected,
                             detail + (f" (phase {where!r})" if where else ""))
        if len(self._queue) < _QUEUE_MAX:
            self._queue.append(ev)
        self._degrade += 1
        if warn:  # one line per valve, but at most one a second: a log must not flood
            now = perf_counter_ns()
            if now - self._warned_at < _WARN_EVERY_NS:
                self._unwarned += 1
                return
            more = f" ({self._unwarned} more valves since the last line)" \
                if self._unwarned else ""
            self._warned_at, self._unwarned = now, 0
            log.warning("GC safety valve: %s; pause %s%s. Give the loop longer idle "
                        "windows or raise the bound.", ev.detail, _us(measured), more)

    def _deliver(self) -> None:
        while self._queue:
            ev = self._queue.pop(0)
            if self._on_degrade is None:
                log.debug("GC budget broken: %s", ev.detail)
            else:
                self._on_degrade(ev)

    def _collect(self, gen: int, source: int) -> tuple[int, int] | None:
        """Run one collection as ``source``; (pause, collected) or None if none ran."""
        self._source, self._last = source, None
        try:
            gc.collect(gen)
        finally:
            self._source = None
        if self._last is None:  # a collection was already running (another thread)
            return None
        return self._last[1], self._last[2]

    def phase(self, name: str, *, budget_ns: int | None = None) -> GCPhase:
        """A named phase with its own pause budget (default: the guard's).

        Args:
            name: the phase's name, as it appears in evidence.
            budget_ns: the longest acceptable pause inside it.

        Returns:
            A reusable context manager.

        Raises:
            UsageError: a budget below 1 ns.

        >>> from qpuos.rt import GCGuard
        >>> with GCGuard("default") as guard, guard.phase("issue", budget_ns=10_000) as issue:
        ...     (issue.name, issue.budget_ns)
        ('issue', 10000)
        """
        budget = self.budget_ns if budget_ns is None else budget_ns
        if budget < 1:
            raise UsageError(f"phase {name!r} budget_ns must be at least 1, got {budget}")
        return GCPhase(self, name, budget)

    def stats(self) -> GCStats:
        """What the guard has seen so far (also after close)."""
        gens = tuple(GenerationStats(g, h.n, self._collected[g], h.total, h.quantile(0.5),
                                     h.quantile(0.999), h.max)
                     for g, h in enumerate(self._hists))
        s = self._sources
        return GCStats(self.policy, gens, s[_IDLE], s[_ASKED] + s[_VALVE] + s[_AUTOMATIC] +
                       s[_EXTERNAL], s[_ASKED], s[_VALVE], s[_AUTOMATIC], s[_EXTERNAL],
                       self._degrade, self._idle_calls, self._idle_skipped,
                       self._mispredicted)

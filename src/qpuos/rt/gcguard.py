"""Garbage-collector pauses under a budget: measure them, schedule them, degrade on breach.

Some facts about CPython 3.11's cyclic collector, which this module is built around:

- It stops the world and is not incremental. A collection of generation ``g`` scans
  every object of generations ``0..g``, so a young collection costs in proportion to
  the young set (a few µs for a few hundred objects), and a full one ~95 ns per tracked
  object (0.1 s at 1e6). ``gc.freeze()`` moves everything alive into a permanent
  generation that no collection scans.
- ``gc.get_count()[0]`` is tracked allocations minus deallocations since the last young
  collection; the interpreter collects when it passes threshold 0, before the
  allocation returns. So a collection that starts with the count above threshold 0 was
  started by the interpreter; an explicit ``gc.collect()`` finds it lower.
- ``gc.callbacks`` entries run at ``"start"`` and ``"stop"`` of every collection,
  while no other collection can start.

The guard, accordingly:

1. measures every collection (one ``gc.callbacks`` entry, ``perf_counter_ns``) into a
   constant-memory histogram per generation, and classifies it: idle (run by
   :meth:`GCGuard.idle`), asked, valve, automatic (the interpreter's thresholds) or
   external (someone else's ``gc.collect()``);
2. applies a policy: ``"default"`` measures only; ``"frozen"`` collects then freezes
   at entry (the start-up heap leaves the collector's reach; automatic collection
   stays); ``"scheduled"`` raises threshold 0 to ``max_pending``, so the interpreter
   collects only as a safety valve, and collects young generations in idle windows
   when the predicted pause fits (:mod:`qpuos.rt._predict`); full collections run only
   when asked (:meth:`GCGuard.collect_full`) or as the memory valve;
3. holds a budget per phase (:meth:`GCGuard.phase`) and hands a
   :class:`DegradeEvidence` to ``on_degrade`` when a pause or the pending garbage
   breaks it. Evidence from a collection the interpreter started, inside arbitrary
   code that may hold the callback's locks, is queued and delivered at the next safe
   point: ``idle()``, a phase's exit, :meth:`GCGuard.check`, or the guard's exit;
4. bounds memory (scheduled policy): the interpreter's own threshold 0 bounds young
   garbage even when the loop never idles; ``idle()`` forces a generation-1
   collection after ``max_young_collections`` young ones; at safe points, resident
   memory grown by more than ``max_rss_growth`` forces a full collection. Each valve
   is counted and reported, and logged as one warning line (at most one a second,
   naming how many were not logged).

Threads: ``idle()`` and phases belong to the loop's thread. A collection another thread
triggers is charged to the loop's current phase, which is fair: it stops the loop too.
Order with :class:`~qpuos.rt.RealtimeProfile`: apply ``mlock`` before entering the
guard, or the memory valve takes the locked pages for garbage.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from time import perf_counter_ns

from qpuos.errors import ClosedResourceError, RealtimeError, UsageError
from qpuos.rt._gcrecord import _ASKED, _IDLE, _VALVE, GCPhase, _Recorder, _us
from qpuos.rt._gctypes import DegradeEvidence, Policy

__all__ = ["GCGuard", "GCPhase"]

_POLICIES = ("default", "frozen", "scheduled")
_NO_THRESHOLD = 2**31 - 1  # a C int: the interpreter never reaches it
_RELEARN = 1000  # idle windows skipped in a row before the pause models start over
_PAGE = os.sysconf("SC_PAGE_SIZE")
_active: list[GCGuard] = []  # the collector is process-wide: one guard at a time


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


class GCGuard(_Recorder):
    """Keeps CPython's garbage-collector pauses inside a real-time loop's budget.

    Args:
        policy: ``"default"``, ``"frozen"`` or ``"scheduled"`` (see the module).
        budget_ns: the pause budget outside any phase (phases set their own).
        on_degrade: receives a :class:`DegradeEvidence` at a safe point whenever a
            budget is broken or a valve fires; None logs it at debug level.
        max_pending: scheduled policy: young garbage (``gc.get_count()[0]``) past
            which the interpreter collects anyway (the young valve).
        young_ratio: scheduled policy: young collections before an idle window
            also takes generation 1 (as the interpreter's threshold 1 does). Whatever
            is alive then moves to generation 2, which only full collections scan:
            in the benchmark's loop 10 sent a third of its short-lived cycles there,
            30 an eighth (generation-1 pauses 1.2 -> 2.4 µs p50).
        max_young_collections: scheduled policy: young collections after which
            ``idle()`` collects generation 1 even if it does not fit (a valve).
        young_every_ns: scheduled policy: the least time between two young
            collections in idle windows (0: every window that fits). Time, not the
            count, paces them: the count nets frees against allocations, so a loop
            whose survivors replace older objects shows none while its young set,
            which is what a collection scans, keeps growing.
        slack_ns: kept free at the end of every idle window.
        max_rss_growth: scheduled policy: resident bytes the process may gain before
            a safe point forces a full collection (None: no memory valve).
        rss_every_ns: how often safe points read the resident size.

    Raises:
        UsageError: an unknown policy or a bound out of range.

    >>> with GCGuard("scheduled", budget_ns=40_000) as guard:
    ...     garbage = [[] for _ in range(100)]
    ...     guard.idle(None)
    >>> guard.stats().inside_idle
    1
    """

    def __init__(self, policy: Policy = "scheduled", *, budget_ns: int = 40_000,
                 on_degrade: Callable[[DegradeEvidence], None] | None = None,
                 max_pending: int = 10_000, young_ratio: int = 30,
                 max_young_collections: int = 100, young_every_ns: int = 0,
                 slack_ns: int = 2_000,
                 max_rss_growth: int | None = 256 * 2**20,
                 rss_every_ns: int = 100_000_000) -> None:
        if policy not in _POLICIES:
            raise UsageError(f"GC policy {policy!r} is not one of {', '.join(_POLICIES)}")
        if budget_ns < 1 or max_pending < 1 or young_ratio < 1 or young_every_ns < 0 or \
                max_young_collections < young_ratio or slack_ns < 0 or rss_every_ns < 0 \
                or (max_rss_growth is not None and max_rss_growth < 1):
            raise UsageError(
                f"GCGuard bounds out of range (budget_ns={budget_ns}, max_pending="
                f"{max_pending}, young_ratio={young_ratio}, max_young_collections="
                f"{max_young_collections}, young_every_ns={young_every_ns}, slack_ns={slack_ns}, "
                f"max_rss_growth={max_rss_growth}); budgets and bounds must be positive "
                f"and max_young_collections at least young_ratio")
        super().__init__(policy, budget_ns, on_degrade, max_pending)
        self._young_ratio = young_ratio
        self._max_young = max_young_collections
        self._young_every = young_every_ns
        self._slack = slack_ns
        self._max_rss = max_rss_growth
        self._rss_every = rss_every_ns
        self._entered = self._closed = self._froze = False
        self._saved: tuple[bool, tuple[int, ...], int] = (True, (700, 10, 10), 0)
        self._gen1_pending = 0
        self._last_young = 0
        self._pending_reported = False
        self._starved = 0
        self._rss_base = self._rss_at = 0

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> GCGuard:
        if self._closed:
            raise ClosedResourceError("this GCGuard was closed; make a new one")
        if self._entered:
            raise RealtimeError("this GCGuard is already active; enter a guard once")
        if _active:
            raise RealtimeError(f"another GCGuard (policy {_active[0].policy!r}) is active; "
                                f"the collector is process-wide: exit that one first")
        self._saved = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
        gc.callbacks.append(self._cb)
        _active.append(self)
        self._entered = True
        try:
            if self.policy == "frozen":
                self._collect(2, _ASKED)  # garbage frozen now would never be freed
                gc.freeze()
                self._froze = True
            elif self.policy == "scheduled":
                # Start-up's young objects move to generation 2 now, so idle windows
                # start with an empty young set (this scans only the young set).
                self._collect(1, _ASKED)
                gc.set_threshold(self._max_pending, self._max_young, _NO_THRESHOLD)
                gc.enable()  # the interpreter's threshold 0 is the young valve
                if self._max_rss is not None:
                    self._rss_base, self._rss_at = _rss_bytes(), perf_counter_ns()
        except BaseException:
            self._restore()
            raise
        self._last_young = perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Deliver queued evidence and restore the collector as it was; idempotent.

        Restores enabled state and thresholds, removes the callback, and unfreezes
        what the frozen policy froze (unless objects were already frozen at entry:
        ``gc.unfreeze()`` cannot tell whose they are, so they stay frozen).
        """
        if self._closed:
            return
        self._closed = True
        if self._entered:
            try:
                if self._queue:
                    self._deliver()
            finally:
                self._restore()

    def _restore(self) -> None:
        if self._cb in gc.callbacks:
            gc.callbacks.remove(self._cb)
        enabled, thresholds, frozen_before = self._saved
        gc.set_threshold(*thresholds)
        if self._froze and frozen_before == 0:
            gc.unfreeze()
        if enabled:
            gc.enable()
        else:
            gc.disable()
        if self in _active:
            _active.remove(self)
        self._entered = False

    def _require_active(self) -> None:
        if self._closed:
            raise ClosedResourceError("this GCGuard was closed; make a new one")
        if not self._entered:
            raise RealtimeError("this GCGuard is not active; use it as `with guard: ...`")

    # --------------------------------------------------------------- schedule, valves

    def idle(self, budget_ns: int | None) -> None:
        """The loop is idle for ``budget_ns`` (None: no deadline): collect if it fits.

        The signature of the kernel scheduler's ``idle_hook``. Under the scheduled
        policy it collects generation 1 when ``young_ratio`` young collections have
        passed and its predicted pause fits, else generation 0 when garbage waits and
        its predicted pause fits; it checks the valves; and it delivers queued
        evidence. Under the other policies it only delivers evidence.

        Args:
            budget_ns: time left to the loop's next deadline, or None.

        Raises:
            RealtimeError: the guard is not active.
            ClosedResourceError: the guard was closed.
        """
        if not self._entered:
            self._require_active()
        self._idle_calls += 1
        if self.policy == "scheduled":
            self._idle_collect(budget_ns)
            if self._max_rss is not None:
                self._check_rss()
        if self._queue:
            self._deliver()

    def _idle_collect(self, budget_ns: int | None) -> None:
        now = perf_counter_ns()
        pending, young, _ = gc.get_count()
        window = None if budget_ns is None else budget_ns - self._slack
        if young >= self._max_young:
            self._run_young(1, pending, window, None, valve=True)
            return
        if young >= self._young_ratio:
            predicted = self._models[1].predict(self._gen1_pending + pending)
            if window is None or predicted <= window:
                self._run_young(1, pending, window, predicted)
                return
        if now - self._last_young < self._young_every:
            return
        predicted = self._models[0].predict(pending)
        if window is None or predicted <= window:
            self._run_young(0, pending, window, predicted)
            return
        self._idle_skipped += 1
        self._starved += 1
        if self._starved >= _RELEARN:
            # No sample for this long: the model may describe a past burst, and it
            # cannot learn otherwise. After the valve empties the young set, the prior
            # lets small collections run again.
            self._starved = 0
            for model in self._models:
                model.reset()
        if predicted > self.budget_ns and not self._pending_reported:
            self._pending_reported = True
            self._evidence("pending", 0, int(predicted), self.budget_ns, pending, 0,
                           f"{pending} pending young objects: predicted pause "
                           f"{_us(predicted)} exceeds the budget {_us(self.budget_ns)}")

    def _run_young(self, gen: int, pending: int, window: int | None,
                   predicted: float | None, *, valve: bool = False) -> None:
        x = pending if gen == 0 else self._gen1_pending + pending
        done = self._collect(gen, _VALVE if valve else _IDLE)
        self._last_young = perf_counter_ns()
        if done is None:
            return
        pause, collected = done
        self._gen1_pending = self._gen1_pending + max(0, pending - collected) if gen == 0 \
            else 0
        self._pending_reported = False
        self._starved = 0
        self._models[gen].update(x, pause)
        if valve:
            self._evidence("valve", gen, pause, self.budget_ns, pending, collected,
                           f"{self._max_young} young collections without a window for "
                           f"generation 1: collected it anyway", warn=True, phase="idle")
            return
        if predicted is not None and pause > predicted:
            self._mispredicted += 1
        if window is not None and pause > window:
            self._evidence("idle_overrun", gen, pause, max(0, window), pending, collected,
                           f"generation {gen} collection took {_us(pause)} in an idle "
                           f"window of {_us(window)} (predicted {_us(predicted or 0)})",
                           phase="idle")

    def _check_rss(self) -> None:
        now = perf_counter_ns()
        if now - self._rss_at < self._rss_every or self._max_rss is None:
            return
        self._rss_at = now
        grown = _rss_bytes() - self._rss_base
        if grown <= self._max_rss:
            return
        pending = gc.get_count()[0]
        done = self._collect(2, _VALVE)
        after = _rss_bytes()
        self._rss_base = max(self._rss_base, after)
        pause, collected = done if done is not None else (0, 0)
        self._evidence("valve", 2, pause, self.budget_ns, pending, collected,
                       f"resident memory grew {grown / 2**20:.1f} MiB, past max_rss_growth "
                       f"{self._max_rss / 2**20:.1f} MiB: full collection found {collected} "
                       f"unreachable, {after / 2**20:.1f} MiB resident now", warn=True)

    def check(self) -> None:
        """A safe point: deliver queued evidence and check the memory valve.

        For loops that never go idle and use no phases.

        Raises:
            RealtimeError: the guard is not active.
            ClosedResourceError: the guard was closed.
        """
        self._require_active()
        if self.policy == "scheduled" and self._max_rss is not None:
            self._check_rss()
        if self._queue:
            self._deliver()

    def collect_full(self) -> int:
        """Collect every generation now (a long pause: ask where the loop can afford it).

        Returns:
            The number of unreachable objects found.

        Raises:
            RealtimeError: the guard is not active.
            ClosedResourceError: the guard was closed.
        """
        self._require_active()
        done = self._collect(2, _ASKED)
        self._gen1_pending = 0
        if self._max_rss is not None and self.policy == "scheduled":
            self._rss_base = _rss_bytes()
        return 0 if done is None else done[1]

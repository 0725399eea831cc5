"""Staged rollouts with an error threshold, in the fleet registry (both backends).

A rollout takes the devices the registry knows when it starts, in device-id order, and
splits them into cumulative stages given as percentages (``10, 50, 100``: the first 10 %,
then up to half, then all). Only the devices of opened stages get the rollout's version
as their target. Every report from a stage member counts once: success when the device
reports ``updated`` (or ``current``) running the rollout's version, failure when it
reports anything else (``rolled-back``, ``error: ...``) or another version; ``current``
at another version is no attempt and does not count.

The failure rate of a stage is its failed reports over its size (as hawkBit's error
threshold counts the group): the next stage opens when the open one's successes reach
``ceil((1 - max_failure_rate) * size)``, and when the failure rate passes
``max_failure_rate`` the rollout halts (hawkBit's emergency shutdown): no device gets the
target any more, those not yet assigned keep their current target, and the state says
why. Once every member has reported, one of the two has happened. A member already
running the version when its stage opens counts as a success. Devices that check in
after the start are not members and are never assigned.

The logic runs inside the registry's own write transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL with the rollout row locked ``FOR UPDATE``), so concurrent reports from
several update servers count each result once and open each stage once. The SQL here is
the subset both engines share, with ``?`` placeholders the backend translates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qpuos.errors import UsageError

__all__ = ["RolloutState", "parse_stages"]

SCHEMA = ("""
CREATE TABLE IF NOT EXISTS rollout (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    version          TEXT NOT NULL,
    stages           TEXT NOT NULL,
    max_failure_rate DOUBLE PRECISION NOT NULL,
    stage            INTEGER NOT NULL,
    state            TEXT NOT NULL,
    reason           TEXT
)""", """
CREATE TABLE IF NOT EXISTS rollout_members (
    device_id TEXT PRIMARY KEY,
    stage     INTEGER NOT NULL,
    outcome   TEXT
)""")

#: Runs one statement (``?`` placeholders) in the open transaction; returns its rows
#: (empty for statements without a result).
Exec = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_OK_RESULTS = ("updated", "current")


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A rollout as the registry holds it.

    ``state`` is "running", "halted" or "done"; ``stage`` the open stage (0-based; for
    "done", the number of stages); ``stage_size``, ``succeeded`` and ``failed`` count the
    open (or halting) stage's members and their results; ``reason`` says why it halted.
    """

    version: str
    stages: tuple[int, ...]
    max_failure_rate: float
    stage: int
    state: str
    reason: str | None
    members: int
    stage_size: int
    succeeded: int
    failed: int


def parse_stages(text: str | Sequence[int]) -> tuple[int, ...]:
    """Validate cumulative stage percentages (``"10,50,100"`` or a sequence of ints).

    Args:
        text: comma-separated percentages, or the ints themselves.

    Returns:
        The stages, strictly increasing, each in 1..100, ending at 100.

    Raises:
        UsageError: when they are not.

    >>> parse_stages("10,50,100")
    (10, 50, 100)
    """
    try:
        stages = tuple(int(s) for s in text.split(",")) if isinstance(text, str) \
            else tuple(int(s) for s in text)
    except ValueError:
        raise UsageError(f"stages {text!r} are not comma-separated integers; "
                         "give percentages such as 10,50,100") from None
    if (not stages or stages[-1] != 100 or any(not 0 < s <= 100 for s in stages)
            or any(a >= b for a, b in itertools.pairwise(stages))):
        raise UsageError(f"stages {stages} must be increasing percentages in 1..100 "
                         "ending at 100, such as 10,50,100")
    return stages


def _stage_of(index: int, total: int, stages: tuple[int, ...]) -> int:
    for k, pct in enumerate(stages):
        if index < math.ceil(pct * total / 100):
            return k
    return len(stages) - 1


def start(ex: Exec, version: str, stages: tuple[int, ...], max_failure_rate: float) -> None:
    """Replace any rollout with a new one over the known devices and open stage 0."""
    if not 0.0 <= max_failure_rate < 1.0:
        raise UsageError(f"max failure rate {max_failure_rate} is outside [0, 1); "
                         "give a fraction such as 0.2")
    ex("DELETE FROM rollout_members", ())
    ex("DELETE FROM rollout", ())
    ex("INSERT INTO rollout (id, version, stages, max_failure_rate, stage, state) "
       "VALUES (1, ?, ?, ?, 0, 'running')",
       (version, ",".join(map(str, stages)), max_failure_rate))
    ids = [r[0] for r in ex("SELECT device_id FROM devices ORDER BY device_id", ())]
    for i, dev in enumerate(ids):
        ex("INSERT INTO rollout_members (device_id, stage) VALUES (?, ?)",
           (dev, _stage_of(i, len(ids), stages)))
    _open(ex, version, 0)
    _evaluate(ex, lock="")


def _open(ex: Exec, version: str, stage: int) -> None:
    """Assign the stage's members; those already running the version count as done."""
    ex("UPDATE rollout_members SET outcome = 'success' WHERE stage = ? AND device_id IN "
       "(SELECT device_id FROM devices WHERE current_version = ?)", (stage, version))
    ex("UPDATE devices SET target_version = ? WHERE device_id IN "
       "(SELECT device_id FROM rollout_members WHERE stage = ?)", (version, stage))


def _counts(ex: Exec, stage: int) -> tuple[int, int, int]:
    rows = ex("SELECT COUNT(*), COALESCE(SUM(CASE WHEN outcome = 'success' THEN 1 ELSE 0 "
              "END), 0), COALESCE(SUM(CASE WHEN outcome = 'failure' THEN 1 ELSE 0 END), 0) "
              "FROM rollout_members WHERE stage = ?", (stage,))
    size, ok, bad = rows[0]
    return int(size), int(ok), int(bad)


def _evaluate(ex: Exec, *, lock: str) -> None:
    """Halt or open stages until the open stage waits for more reports."""
    while True:
        row = ex("SELECT version, stages, max_failure_rate, stage, state FROM rollout "
                 f"WHERE id = 1{lock}", ())
        if not row or row[0][4] != "running":
            return
        version, text, rate, stage, _ = row[0]
        stages = parse_stages(text)
        size, ok, bad = _counts(ex, stage)
        if size and bad / size > rate:
            why = (f"stage {stage + 1} of {len(stages)} ({stages[stage]}%): {bad} of "
                   f"{size} devices failed to update, {bad / size:.0%} > the maximum "
                   f"{rate:.0%}; fix the image and start a new rollout")
            ex("UPDATE rollout SET state = 'halted', reason = ? WHERE id = 1", (why,))
            return
        if ok < math.ceil((1.0 - rate) * size):
            return
        if stage + 1 == len(stages):
            ex("UPDATE rollout SET state = 'done', stage = ? WHERE id = 1", (stage + 1,))
            return
        ex("UPDATE rollout SET stage = ? WHERE id = 1", (stage + 1,))
        _open(ex, version, stage + 1)


def on_report(ex: Exec, device_id: str, version: str, result: str, *, lock: str) -> None:
    """Count a stage member's first report of the running rollout, then re-evaluate.

    ``lock`` is appended to the rollout row's SELECT (`` FOR UPDATE`` on PostgreSQL), so
    concurrent reports serialise on it before they read the counts.
    """
    row = ex(f"SELECT version, stage, state FROM rollout WHERE id = 1{lock}", ())
    if not row or row[0][2] != "running":
        return
    want, stage, _ = row[0]
    if result == "current" and version != want:
        return  # it checked before its stage opened: no attempt, so no result
    outcome = "success" if result in _OK_RESULTS and version == want else "failure"
    ex("UPDATE rollout_members SET outcome = ? WHERE device_id = ? AND stage <= ? "
       "AND outcome IS NULL", (outcome, device_id, stage))
    _evaluate(ex, lock=lock)


def state(ex: Exec) -> RolloutState | None:
    """The rollout and its open stage's counts, or None when none was started."""
    row = ex("SELECT version, stages, max_failure_rate, stage, state, reason FROM rollout "
             "WHERE id = 1", ())
    if not row:
        return None
    version, text, rate, stage, st, reason = row[0]
    stages = parse_stages(text)
    members = int(ex("SELECT COUNT(*) FROM rollout_members", ())[0][0])
    size, ok, bad = _counts(ex, min(stage, len(stages) - 1))
    return RolloutState(version, stages, float(rate), int(stage), st, reason, members,
                        size, ok, bad)

"""The scheduler's watchdog: names a coroutine that runs too long without yielding.

A cooperative scheduler cannot preempt a coroutine that never awaits. The watchdog is
a daemon thread that wakes every quarter budget and looks at what the run loop
published when it resumed the current task (a step counter, the task, the start
time). A step older than the budget is reported once: the task's name and id, how long
it has run, and the stack it is running (``sys._current_frames``), so the report says
where it is stuck. The report goes to a callback (default: a warning on
``qpuos.kernel.scheduler``); nothing is interrupted.

Rejected: SIGALRM. Its handler runs in the main thread between bytecodes, which is no
earlier than a thread gets the GIL; it would tie the scheduler to the main thread and
take the process's only ITIMER_REAL. Both approaches are blind while C code holds the
GIL (e.g. an njit loop without ``nogil``); the report then comes when it returns.

The thread blocks every signal, so process-directed signals meant for a SignalSource
(which the loop's thread blocks) are never delivered to it instead.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Watchdog", "WatchdogReport"]

_log = logging.getLogger("qpuos.kernel.scheduler")


@dataclass(frozen=True, slots=True)
class WatchdogReport:
    """One coroutine step that exceeded the watchdog budget.

    Attributes:
        task_id: the task's id.
        task_name: the task's name.
        ran_ns: how long the step had run when reported.
        budget_ns: the budget it exceeded.
        stack: where the coroutine was running (innermost last).
    """

    task_id: int
    task_name: str
    ran_ns: int
    budget_ns: int
    stack: str

    def __str__(self) -> str:
        return (f"coroutine {self.task_name!r} (task {self.task_id}) has run "
                f"{self.ran_ns / 1e6:.1f} ms without yielding (budget "
                f"{self.budget_ns / 1e6:.1f} ms); await checkpoint() in long loops or "
                f"move the work to a thread or process\n{self.stack}")


def _default_report(report: WatchdogReport) -> None:
    _log.warning("%s", report)


Probe = Callable[[], "tuple[int, Any, int]"]
"""Returns (step counter, running task or None, step start ns)."""


class Watchdog:
    """A daemon thread checking the loop's current step against ``budget_ns``."""

    def __init__(self, probe: Probe, budget_ns: int, *, clock: Callable[[], int],
                 on_report: Callable[[WatchdogReport], None] | None = None,
                 loop_thread: int | None = None) -> None:
        self._probe = probe
        self._budget = budget_ns
        self._clock = clock
        self._on_report = on_report or _default_report
        self._loop_thread = loop_thread if loop_thread is not None else threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reports = 0

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="qpuos-watchdog",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (bounded by one check period)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, 2 * self._budget / 1e9))
            self._thread = None

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        period = max(self._budget / 4e9, 0.001)
        reported = -1
        while not self._stop.wait(period):
            step, task, started = self._probe()
            if task is None or step == reported:
                continue
            ran = self._clock() - started
            if ran <= self._budget:
                continue
            reported = step
            frame = sys._current_frames().get(self._loop_thread)
            stack = "".join(traceback.format_stack(frame, limit=6)) if frame else ""
            task.watchdog_overruns += 1
            self.reports += 1
            try:
                self._on_report(WatchdogReport(task.id, task.name, ran, self._budget, stack))
            except Exception:
                _log.exception("the watchdog's report callback raised")

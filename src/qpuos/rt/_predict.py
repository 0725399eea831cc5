"""Predicting a collection's pause from the pending count, learned while running.

The pause of a young collection grows roughly linearly with the objects it scans; the
guard only sees ``gc.get_count()`` (tracked allocations minus deallocations), which
tracks that size loosely. So the model is a line fitted by weighted running least
squares (older samples fade by ``decay`` per sample, so it follows a changing
workload), and the prediction scales the line by ``1 + k`` times its running mean
relative error: where the count explains the pause poorly, the margin grows and the
guard waits for longer windows. Until three pauses are seen, a conservative prior line
stands in.

Two failure modes shaped it. An absolute error margin, learned from one long pause
(a valve, or the VM losing the CPU for milliseconds), made every later window look
too short; and a guard that never collects never learns again. So the margin is
relative to the line and each learned pause is clipped to 8 times the line plus 8 µs;
pauses of very different sizes (a valve's thousands of objects beside an idle
window's handful) then pin down the slope instead of inflating the margin.
"""

from __future__ import annotations

__all__ = ["_PauseModel"]

_CLIP_NS = 8_000.0
_FLOOR_NS = 1_000.0  # relative errors are taken against at least 1 µs
_RIDGE = 10_000.0    # the prior slope weighs as much as samples spread over ~100 objects


class _PauseModel:
    """Running fit ``pause_ns ~ a + b * pending`` with a relative safety margin."""

    __slots__ = ("_a", "_b", "_decay", "_dev", "_k", "_margin", "_prior_a", "_prior_b",
                 "_s0", "_s1", "_s2", "_t0", "_t1", "samples")

    def __init__(self, *, base_ns: float, per_object_ns: float, decay: float = 0.98,
                 k: float = 4.0) -> None:
        self._prior_a = base_ns
        self._prior_b = per_object_ns
        self._decay = decay
        self._k = k
        self.reset()

    def reset(self) -> None:
        """Forget every sample: back to the prior line and a 50 % margin."""
        self._dev = 0.5
        self._s0 = self._s1 = self._s2 = self._t0 = self._t1 = 0.0
        self.samples = 0
        self._a, self._b = self._prior_a, self._prior_b
        self._margin = 1.0 + self._k * self._dev

    def mean(self, pending: int) -> float:
        """The fitted pause for ``pending`` objects, in ns (never below 1 ns)."""
        return max(1.0, self._a + self._b * max(0, pending))

    def predict(self, pending: int) -> float:
        """The fitted pause times ``1 + k`` mean relative errors: what the guard plans
        with."""
        return max(1.0, self._a + self._b * max(0, pending)) * self._margin

    def update(self, pending: int, pause_ns: int) -> None:
        """Learn from one measured pause (clipped to 8 x the line + 8 µs first)."""
        d = self._decay
        fit = self.mean(pending)
        y = min(float(pause_ns), 8.0 * fit + _CLIP_NS)
        self._dev = d * self._dev + (1 - d) * abs(y - fit) / max(fit, _FLOOR_NS)
        self._margin = 1.0 + self._k * self._dev
        x = float(max(0, pending))
        self._s0 = s0 = d * self._s0 + 1.0
        self._s1 = s1 = d * self._s1 + x
        self._s2 = s2 = d * self._s2 + x * x
        self._t0 = t0 = d * self._t0 + y
        self._t1 = t1 = d * self._t1 + x * y
        self.samples += 1
        if self.samples < 3:
            return  # the prior line stands until three pauses are seen
        # The slope is shrunk toward the prior's (ridge): counts that barely vary (a
        # few objects between windows) cannot tell a slope from noise.
        sxx, sxy = s2 - s1 * s1 / s0, t1 - s1 * t0 / s0
        b = max(0.0, (sxy + _RIDGE * self._prior_b) / (sxx + _RIDGE))
        self._a, self._b = max(0.0, (t0 - b * s1) / s0), b

"""How much slower than real time the emulated controller runs a schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pick_dilation"]

_MAX_DILATION = 1e4
_WINDOW = 16


def pick_dilation(start_ns: Sequence[float] | np.ndarray[Any, Any], num_qubits: int
                  ) -> float:
    """Wall ns per schedule ns, so that the controller keeps pace with the schedule.

    One instruction on ``n`` qubits is modelled to cost ``2 µs + 4 ns * 2**n`` of
    controller time (the issue loop's fixed cost plus one pass over the state,
    generous for a shared 2-core machine). Over every window of ``K = 16`` consecutive
    records (fewer in a shorter stream) the dilated time must cover ``K`` costs, so the
    factor is the largest ``cost * K / (t[i + K] - t[i])``, times 1.5 for slack, at
    least 1 (never faster than real time) and at most 10**4. A window rather than each
    gap alone: two records a fraction of a ns apart would otherwise ask for an
    absurd factor. Records due at the same instant still issue one after another, so
    their lateness grows by one cost per record: the emulator has one core.

    >>> round(pick_dilation([0.0, 0.0, 50.0, 350.0], 3), 2)
    26.13
    """
    t = np.asarray(start_ns, dtype=np.float64)
    k = min(_WINDOW, len(t) - 1)
    if k < 1:
        return 1.0
    span = t[k:] - t[:-k]
    span = span[span > 0]
    if not len(span):
        return 1.0
    cost = 2000.0 + 4.0 * (1 << num_qubits)
    return min(_MAX_DILATION, max(1.0, 1.5 * cost * k / float(span.min())))

"""numba kernels the foreign-call probe times (compiled once, cached on disk)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["identity", "sum_squares"]


@njit(cache=True)
def identity(x: int) -> int:  # pragma: no cover - compiled
    """Return ``x``: a call whose cost is all dispatch."""
    return x


@njit(cache=True)
def sum_squares(a: npt.NDArray[np.float64]) -> float:  # pragma: no cover - compiled
    """Sum of ``a[i] ** 2``: one native call over a whole batch."""
    s = 0.0
    for v in a:
        s += v * v
    return s

"""Numba kernels a shard runs over its own amplitudes: one pass, no temporary arrays.

A shard of a 30-qubit register over 4 shards holds 2**28 amplitudes (4 GiB); numpy's
``np.abs(psi) ** 2`` and ``np.cumsum`` would each allocate another 2 GiB, so sampling
and parity sums walk the amplitudes once instead. Gates themselves run through the
single-process simulator's kernels (``qpuos.quantum.statevector.apply_gate``) on the
shard's local axes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["parity_mass", "sample_sorted"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(fn: _F) -> _F:
    return cast(_F, numba.njit(cache=True, nogil=True)(fn))


@_jit
def sample_sorted(psi: NDArray[np.complex128], targets: NDArray[np.float64],
                  out: NDArray[np.int64]) -> None:
    """Inverse-CDF sampling: ``out[i]`` is the first index whose running sum of
    ``|psi|**2`` exceeds ``targets[i]``; ``targets`` must be sorted ascending."""
    acc = 0.0
    j = 0
    m = targets.size
    last = 0
    for i in range(psi.size):  # hot loop
        a = psi[i]
        w = a.real * a.real + a.imag * a.imag
        if w > 0.0:
            last = i
        acc += w
        while j < m and targets[j] < acc:
            out[j] = i
            j += 1
        if j == m:
            return
    while j < m:  # rounding left targets past the end: the last nonzero amplitude
        out[j] = last
        j += 1


@_jit
def parity_mass(psi: NDArray[np.complex128], mask: int) -> tuple[float, float]:
    """Sums of ``|psi[i]|**2`` over indices with even and with odd ``popcount(i & mask)``."""
    even = 0.0
    odd = 0.0
    for i in range(psi.size):  # hot loop
        a = psi[i]
        w = a.real * a.real + a.imag * a.imag
        x = i & mask
        par = 0
        while x:
            x &= x - 1
            par ^= 1
        if par:
            odd += w
        else:
            even += w
    return even, odd

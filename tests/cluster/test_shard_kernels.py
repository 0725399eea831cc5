"""The shard kernels against plain numpy on random states."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.cluster._shard_kernels import parity_mass, sample_sorted
from qpuos.quantum.statevector import random_state


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**9 - 1), st.integers(0, 2**32 - 1))
def test_parity_mass_matches_numpy(n: int, mask: int, seed: int) -> None:
    psi = random_state(n, np.random.default_rng(seed)).reshape(-1)
    psi[::3] = 0  # some exact zeros
    mask &= (1 << n) - 1
    w = np.abs(psi) ** 2
    parity = np.array([bin(i & mask).count("1") & 1 for i in range(psi.size)])
    even, odd = parity_mass(psi, mask)
    assert abs(even - w[parity == 0].sum()) < 1e-12
    assert abs(odd - w[parity == 1].sum()) < 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_sample_sorted_is_the_inverse_cdf(n: int, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    psi = random_state(n, rng).reshape(-1)
    psi[rng.random(psi.size) < 0.4] = 0
    if not np.any(psi):
        psi[0] = 1
    total = float(np.vdot(psi, psi).real)
    targets = np.sort(rng.random(count)) * total
    out = np.full(count, -1, dtype=np.int64)
    sample_sorted(psi, targets, out)
    cdf = np.cumsum(np.abs(psi) ** 2)
    want = np.minimum(np.searchsorted(cdf, targets, side="right"), psi.size - 1)
    # rounding may move a target across a boundary only where the cdf is flat at it
    moved = out != want
    assert np.all(np.isclose(cdf[np.minimum(want, out)][moved], targets[moved], atol=1e-12))
    assert set(out.tolist()) - set(np.flatnonzero(psi).tolist()) == set()


def test_sample_sorted_draws_the_distribution() -> None:
    psi = np.array([0.6, 0, 0.8j, 0], dtype=np.complex128)
    rng = np.random.default_rng(0)
    targets = np.sort(rng.random(20000))
    out = np.zeros(20000, dtype=np.int64)
    sample_sorted(psi, targets, out)
    freq = np.bincount(out, minlength=4) / 20000
    assert freq[1] == freq[3] == 0
    assert abs(freq[0] - 0.36) < 0.02
    assert abs(freq[2] - 0.64) < 0.02

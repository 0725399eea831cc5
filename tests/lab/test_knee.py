"""The detectors: known steps and knees are found, pure noise yields none."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import UsageError
from qpuos.lab.knee import (
    find_crossover,
    find_hinge,
    find_inverse_crossing,
    find_step,
    medians,
)


def _noisy(levels: list[float], sigma: float, repeats: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(v * np.exp(rng.normal(0.0, sigma, repeats))) for v in levels]


@pytest.mark.parametrize("where", [5, 13, 22])
def test_step_is_found_where_it_is(where: int) -> None:
    xs = [16.0 * i for i in range(30)]
    levels = [50.0 if i < where else 75.0 for i in range(30)]
    k = find_step(xs, _noisy(levels, 0.05, 5, where))
    assert k is not None
    assert abs(k.index - where) <= 1
    assert k.x == xs[k.index - 1] and k.x_after == xs[k.index]
    assert k.ratio == pytest.approx(1.5, rel=0.1)
    assert k.confidence >= 0.8


def test_step_down_is_found_too() -> None:
    k = find_step(range(20), _noisy([9.0] * 8 + [3.0] * 12, 0.05, 5, 1))
    assert k is not None and k.index == 8 and k.ratio == pytest.approx(1 / 3, rel=0.1)


def test_ramp_is_not_a_step() -> None:
    assert find_step(range(30), [[1.0 + 0.05 * i] * 3 for i in range(30)]) is None


def test_small_step_below_min_effect_is_ignored() -> None:
    reps = _noisy([10.0] * 15 + [10.5] * 15, 0.001, 5, 2)
    assert find_step(range(30), reps) is None
    assert find_step(range(30), reps, min_effect=0.02) is not None


@pytest.mark.parametrize("knee_at", [16.0, 64.0, 256.0])
def test_hinge_is_found_where_the_slope_changes(knee_at: float) -> None:
    xs = [2.0 ** (i / 2) for i in range(24)]
    levels = [100.0 * max(1.0, x / knee_at) for x in xs]
    k = find_hinge(xs, _noisy(levels, 0.05, 5, int(knee_at)))
    assert k is not None
    assert abs(np.log2(k.x) - np.log2(knee_at)) <= 0.5 + 1e-9
    assert k.confidence >= 0.8
    assert k.after == pytest.approx(100.0 * xs[-1] / knee_at, rel=0.15)


def test_hinge_finds_the_end_of_a_falling_cost() -> None:
    xs = [2.0 ** i for i in range(12)]
    levels = [400.0 / x + 10.0 for x in xs]            # syscall / B + per-record cost
    k = find_hinge(xs, _noisy(levels, 0.03, 7, 3))
    assert k is not None and 16 <= k.x <= 64, k


def test_power_law_has_no_hinge() -> None:
    xs = [2.0 ** i for i in range(16)]
    assert find_hinge(xs, _noisy([3.0 * x ** 0.7 for x in xs], 0.05, 5, 4)) is None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sigma=st.sampled_from([0.01, 0.1, 0.4]),
       n=st.integers(8, 40), repeats=st.integers(3, 9))
def test_pure_noise_has_no_step_and_no_knee(seed: int, sigma: float, n: int,
                                            repeats: int) -> None:
    reps = _noisy([5.0] * n, sigma, repeats, seed)
    xs = [float(i + 1) for i in range(n)]
    assert find_step(xs, reps, boot=20) is None
    assert find_hinge(xs, reps, boot=20) is None


def test_crossover_of_a_loop_and_a_fixed_cost() -> None:
    xs = [2.0 ** i for i in range(10)]
    loop = _noisy([30.0 * x for x in xs], 0.05, 5, 5)
    native = _noisy([500.0 + 1.0 * x for x in xs], 0.05, 5, 6)
    k = find_crossover(xs, loop, native)
    assert k is not None and (k.x, k.x_after) == (16.0, 32.0)
    assert k.confidence >= 0.9


def test_crossover_needs_a_bracket() -> None:
    xs = [1.0, 2.0, 4.0, 8.0]
    assert find_crossover(xs, [[10.0]] * 4, [[1.0]] * 4) is None    # B wins everywhere
    assert find_crossover(xs, [[1.0]] * 4, [[10.0]] * 4) is None    # B never wins


def test_inverse_crossing_solves_for_the_level() -> None:
    xs = list(np.geomspace(1e-4, 1e-1, 8))
    reps = [[2e-6 / x + 0.002 + e for e in (-1e-4, 0.0, 1e-4)] for x in xs]
    k = find_inverse_crossing(xs, reps, level=0.01)
    assert k is not None
    assert k.x == pytest.approx(2e-6 / 0.008, rel=0.05)
    assert k.confidence >= 0.9
    constant = [[0.05, 0.051, 0.049]] * 8
    assert find_inverse_crossing(xs, constant, level=0.01) is None


def test_bad_tables_are_refused() -> None:
    with pytest.raises(UsageError, match=r"^sweep has 3 x values but 2 rows of repeats; "):
        find_step([1, 2, 3], [[1.0], [2.0]])
    with pytest.raises(UsageError, match=r"^sweep has 3 points; this detector needs at "
                                         r"least 4$"):
        find_step([1, 2, 3], [[1.0]] * 3)
    with pytest.raises(UsageError, match=r"^sweep point 1 \(x=2\) has a value <= 0; "):
        find_step([1, 2, 3, 4], [[1.0], [0.0], [1.0], [1.0]])
    with pytest.raises(UsageError, match=r"^sweep point 2 \(x=3\) has no repeats "):
        find_hinge([1, 2, 3, 4, 5], [[1.0], [1.0], [], [1.0], [1.0]])


def test_same_data_same_answer() -> None:
    reps = _noisy([1.0] * 10 + [2.0] * 10, 0.2, 5, 9)
    assert find_step(range(20), reps, seed=3) == find_step(range(20), reps, seed=3)
    assert medians([[3.0, 1.0, 2.0]]).tolist() == [2.0]

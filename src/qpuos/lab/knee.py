"""Find where a sweep changes behaviour, and say how sure the finding is.

Every probe of the lab measures a quantity at each point ``x`` of a sweep, several times
(the repeats). Three detectors turn such a table into a threshold, or into "none":

1. :func:`find_step`: a change-point on the medians of the repeats. The best split into
   two constant levels (least squares over every split, O(n) with cumulative sums) is a
   step when it fits better than a straight line (a ramp is not a step), its size in
   units of the noise passes ``t_min``, and its relative size passes ``min_effect``.
   Use it where a cost jumps (an allocator's size class, a cache
   miss at one call site).
2. :func:`find_hinge`: a continuous two-segment piecewise-linear fit (a hinge at each
   interior sweep point, least squares, the best one kept), usually in log-log space.
   It is a knee when the change of slope passes ``t_min`` noise units and
   ``min_slope_change``. Use it where a curve bends (p99 breaking away, a per-record
   cost that stops falling).
3. :func:`find_crossover` (where one series falls below another for good) and
   :func:`find_inverse_crossing` (where a fitted ``c / x + d`` crosses a level).

The noise unit of 1 and 2 is the larger of two estimates: the robust spread of the fit's
residuals (1.4826 x MAD) and the standard error of a median from the repeats' own
spread (1.4826 x MAD again, so one stray repeat cannot inflate it). Taking the larger
keeps a perfectly smooth but noisy sweep, or a sweep whose repeats agree but whose
medians wander, from passing on either alone.

Confidence comes from the repeats: the detector runs again on ``boot`` resamples (at
every point, the repeats drawn with replacement) and the confidence is the fraction of
resamples that find the same threshold again (within one sweep point, or within a
factor of two for the fitted crossing). Resampling uses a seeded generator, so a result
is deterministic for given data. On pure noise the detectors report ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qpuos.errors import UsageError

__all__ = ["Knee", "find_crossover", "find_hinge", "find_inverse_crossing", "find_step",
           "medians"]

_F = npt.NDArray[np.float64]
_MAD_SIGMA = 1.4826     # MAD -> standard deviation for normal noise
_MEDIAN_SE = 1.2533     # standard error of a median / standard error of a mean


@dataclass(frozen=True, slots=True)
class Knee:
    """A threshold found in a sweep.

    ``x`` is the last sweep point on the old behaviour and ``x_after`` the first on the
    new one (for a hinge both are the hinge point). ``before``/``at``/``after`` are the
    fitted values at the first point, at the threshold and at the last point, in the
    sweep's own units. ``ratio`` is the new level over the old one (step), or the fitted
    value at the last point over the value at the knee (hinge). ``score`` is the test
    statistic in noise units.
    """

    method: str
    index: int
    x: float
    x_after: float
    before: float
    at: float
    after: float
    ratio: float
    score: float
    confidence: float


def medians(reps: Sequence[Sequence[float]]) -> _F:
    """The median of the repeats at each sweep point.

    >>> medians([[1.0, 3.0, 2.0], [5.0]]).tolist()
    [2.0, 5.0]
    """
    return np.array([float(np.median(np.asarray(r, dtype=float))) for r in reps])


def _table(x: Sequence[float], reps: Sequence[Sequence[float]], *, log: bool,
           min_points: int) -> tuple[_F, list[_F]]:
    """Validate a sweep; return x and the repeats (in log space when ``log``)."""
    xs = np.asarray(x, dtype=float)
    if xs.ndim != 1 or len(xs) != len(reps):
        raise UsageError(f"sweep has {len(xs)} x values but {len(reps)} rows of repeats; "
                         "give one row of repeats per sweep point")
    if len(xs) < min_points:
        raise UsageError(f"sweep has {len(xs)} points; this detector needs at least "
                         f"{min_points}")
    rows: list[_F] = []
    for i, r in enumerate(reps):
        arr = np.asarray(r, dtype=float)
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise UsageError(f"sweep point {i} (x={xs[i]:g}) has no repeats or a "
                             "non-finite value; drop the point or measure it again")
        if log:
            if np.any(arr <= 0):
                raise UsageError(f"sweep point {i} (x={xs[i]:g}) has a value <= 0; "
                                 "pass log=False for data that can be zero or negative")
            arr = np.log(arr)
        rows.append(arr)
    return xs, rows


def _resample(rows: list[_F], boot: int, rng: np.random.Generator) -> _F:
    """Medians of ``boot`` bootstrap resamples: shape (boot, n)."""
    out = np.empty((boot, len(rows)))
    for j, r in enumerate(rows):
        idx = rng.integers(0, len(r), size=(boot, len(r)))
        out[:, j] = np.median(r[idx], axis=1)
    return out


def _repeat_se(rows: list[_F]) -> float:
    """RMS standard error of the medians, from each point's repeats (robust spread)."""
    ses = [_MEDIAN_SE * _MAD_SIGMA * float(np.median(np.abs(r - np.median(r))))
           / math.sqrt(len(r)) for r in rows if len(r) > 1]
    return math.sqrt(sum(s * s for s in ses) / len(ses)) if ses else 0.0


def _robust_sigma(resid: _F) -> _F:
    """1.4826 x MAD of residuals along the last axis."""
    return _MAD_SIGMA * np.median(np.abs(resid - np.median(resid, axis=-1, keepdims=True)),
                                  axis=-1)


def _best_steps(y: _F, min_seg: int, se: float) -> tuple[_F, _F, _F, _F]:
    """Best split of each row of ``y`` (shape (m, n)): index, left mean, right mean, t."""
    n = y.shape[1]
    c1 = np.cumsum(y, axis=1)
    c2 = np.cumsum(y * y, axis=1)
    k = np.arange(1, n, dtype=float)
    ls, lq = c1[:, :-1], c2[:, :-1]
    rs, rq = c1[:, -1:] - ls, c2[:, -1:] - lq
    sse = lq - ls ** 2 / k + rq - rs ** 2 / (n - k)
    sse[:, : min_seg - 1] = np.inf
    sse[:, n - min_seg:] = np.inf
    best = np.argmin(sse, axis=1)            # split after point best -> index best + 1
    rows = np.arange(y.shape[0])
    nl = best + 1.0
    left = ls[rows, best] / nl
    right = rs[rows, best] / (n - nl)
    fitted = np.where(np.arange(n)[None, :] < nl[:, None], left[:, None], right[:, None])
    sigma = np.maximum(_robust_sigma(y - fitted), se)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(right - left) / (sigma * np.sqrt(1.0 / nl + 1.0 / (n - nl)))
    # a ramp is not a step: a straight line through the points must fit worse
    line = np.column_stack([np.ones(n), np.arange(n, dtype=float)])
    line_resid = y - (y @ np.linalg.pinv(line).T) @ line.T
    not_ramp = sse[rows, best] < np.sum(line_resid * line_resid, axis=1)
    t = np.where(not_ramp, np.nan_to_num(t, nan=0.0, posinf=np.inf), 0.0)
    return best + 1, left, right, t


def find_step(x: Sequence[float], reps: Sequence[Sequence[float]], *, log: bool = True,
              t_min: float = 6.0, min_effect: float = 0.1, min_seg: int = 2,
              boot: int = 200, seed: int = 0) -> Knee | None:
    """The one step between two levels in a sweep, or ``None`` when there is none.

    Args:
        x: the sweep points, in order.
        reps: the repeats measured at each point (one row per point).
        log: detect in log space (a step is then a ratio; values must be > 0).
        t_min: the step must be at least this many noise units (module docstring).
        min_effect: and at least this relative size (0.1: 10 %).
        min_seg: fewest points on each side of the step.
        boot: bootstrap resamples for the confidence.
        seed: seed of the resampling.

    Returns:
        The step (``x``: last point at the old level; ``ratio``: new / old level), or
        ``None`` when no split passes both tests.

    Raises:
        UsageError: mismatched lengths, too few points, empty or non-finite repeats.

    >>> xs = list(range(20))
    >>> reps = [[1.0, 1.01, 0.99] if i < 12 else [2.0, 2.02, 1.98] for i in xs]
    >>> k = find_step(xs, reps)
    >>> (k.x, k.x_after, round(k.ratio, 2), k.confidence > 0.9)
    (11.0, 12.0, 2.0, True)
    """
    xs, rows = _table(x, reps, log=log, min_points=2 * min_seg)
    se = _repeat_se(rows)
    med = np.array([np.median(r) for r in rows])[None, :]
    idx, left, right, t = _best_steps(med, min_seg, se)
    k, lo, hi, score = int(idx[0]), float(left[0]), float(right[0]), float(t[0])
    effect = (math.exp(hi - lo) if log else (hi / lo if lo else math.inf))

    def passes(tt: _F, ll: _F, rr: _F) -> npt.NDArray[np.bool_]:
        eff = np.exp(rr - ll) if log else np.divide(rr, ll, out=np.full_like(rr, np.inf),
                                                    where=ll != 0)
        return (tt >= t_min) & (np.abs(eff - 1.0) >= min_effect)

    if not passes(np.array([score]), np.array([lo]), np.array([hi]))[0]:
        return None
    b_idx, b_left, b_right, b_t = _best_steps(
        _resample(rows, boot, np.random.default_rng(seed)), min_seg, se)
    same_side = np.sign(b_right - b_left) == np.sign(hi - lo)
    agree = passes(b_t, b_left, b_right) & same_side & (np.abs(b_idx - k) <= 1)
    back = math.exp if log else float
    return Knee("step", k, float(xs[k - 1]), float(xs[k]), back(lo), back(lo), back(hi),
                effect, score, float(np.mean(agree)))


def _hinge_designs(u: _F, min_seg: int) -> list[tuple[int, _F, _F]]:
    """For each admissible hinge j: (j, design matrix, pseudo-inverse)."""
    out = []
    for j in range(min_seg, len(u) - min_seg):
        design = np.column_stack([np.ones_like(u), u, np.maximum(0.0, u - u[j])])
        out.append((j, design, np.linalg.pinv(design)))
    return out


def _best_hinges(y: _F, designs: list[tuple[int, _F, _F]], se: float
                 ) -> tuple[_F, _F, _F, _F]:
    """Best hinge of each row of ``y``: index, slope before, slope change, t of change."""
    m = y.shape[0]
    best_sse = np.full(m, np.inf)
    out_j, out_b, out_c, out_t = (np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m))
    for j, design, pinv in designs:
        coef = y @ pinv.T                                  # (m, 3)
        resid = y - coef @ design.T
        sse = np.sum(resid * resid, axis=1)
        better = sse < best_sse
        if not np.any(better):
            continue
        sigma = np.maximum(_robust_sigma(resid), se)
        var_c = float(np.linalg.inv(design.T @ design)[2, 2])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.abs(coef[:, 2]) / (sigma * math.sqrt(var_c))
        best_sse = np.where(better, sse, best_sse)
        out_j = np.where(better, j, out_j)
        out_b = np.where(better, coef[:, 1], out_b)
        out_c = np.where(better, coef[:, 2], out_c)
        out_t = np.where(better, np.nan_to_num(t, nan=0.0), out_t)
    return out_j, out_b, out_c, out_t


def find_hinge(x: Sequence[float], reps: Sequence[Sequence[float]], *, log_x: bool = True,
               log_y: bool = True, t_min: float = 6.0, min_slope_change: float = 0.3,
               min_seg: int = 2, boot: int = 200, seed: int = 0) -> Knee | None:
    """The knee of a two-segment piecewise-linear fit, or ``None`` when there is none.

    Args:
        x: the sweep points, in order (> 0 when ``log_x``).
        reps: the repeats measured at each point.
        log_x: fit against log x.
        log_y: fit log y (values must be > 0).
        t_min: the change of slope must be at least this many standard errors.
        min_slope_change: and at least this large (in the fitted coordinates: in log-log,
            0.3 means the local power law's exponent changes by 0.3).
        min_seg: fewest points on each side of the hinge.
        boot: bootstrap resamples for the confidence.
        seed: seed of the resampling.

    Returns:
        The knee (``x``: the hinge point; ``before``/``at``/``after``: fitted values at
        the first point, the hinge and the last point; ``ratio``: after / at), or
        ``None``.

    Raises:
        UsageError: mismatched lengths, too few points, bad values.

    >>> xs = [2.0 ** i for i in range(12)]
    >>> reps = [[1.0, 1.02, 0.98] if v <= 64 else [v / 64, v / 64 * 1.02, v / 64 * 0.98]
    ...         for v in xs]
    >>> k = find_hinge(xs, reps)
    >>> (k.x, round(k.ratio), k.confidence > 0.9)
    (64.0, 32, True)
    """
    xs, rows = _table(x, reps, log=log_y, min_points=2 * min_seg + 1)
    if log_x and np.any(xs <= 0):
        raise UsageError("log_x needs sweep points > 0; pass log_x=False")
    u = np.log(xs) if log_x else xs
    designs = _hinge_designs(u, min_seg)
    se = _repeat_se(rows)
    med = np.array([np.median(r) for r in rows])[None, :]
    j_, _, c_, t_ = _best_hinges(med, designs, se)
    j, change, score = int(j_[0]), float(c_[0]), float(t_[0])
    if score < t_min or abs(change) < min_slope_change:
        return None
    bj, _, bc, bt = _best_hinges(_resample(rows, boot, np.random.default_rng(seed)),
                                 designs, se)
    agree = ((bt >= t_min) & (np.abs(bc) >= min_slope_change)
             & (np.sign(bc) == np.sign(change)) & (np.abs(bj - j) <= 1))
    design = designs[[d[0] for d in designs].index(j)][1]
    fitted = design @ (designs[[d[0] for d in designs].index(j)][2] @ med[0])
    vals = np.exp(fitted) if log_y else fitted
    at, first, last = float(vals[j]), float(vals[0]), float(vals[-1])
    ratio = last / at if at else math.inf
    return Knee("hinge", j, float(xs[j]), float(xs[j]), first, at, last, ratio, score,
                float(np.mean(agree)))


def _crossing_index(a: _F, b: _F) -> int:
    """First index from which b < a at every later point (len when never)."""
    below = b < a
    k = len(a)
    while k > 0 and below[k - 1]:
        k -= 1
    return k


def find_crossover(x: Sequence[float], reps_a: Sequence[Sequence[float]],
                   reps_b: Sequence[Sequence[float]], *, boot: int = 200,
                   seed: int = 0) -> Knee | None:
    """Where series B (by medians) drops below series A for good, or ``None``.

    ``None`` when B never ends below A, or is below A from the first point (then the
    sweep does not bracket the crossover). ``x`` is the last point where A is still
    cheaper, ``ratio`` is A / B at the last point.

    Args:
        x: the sweep points.
        reps_a: repeats of series A (e.g. a Python loop's time).
        reps_b: repeats of series B (e.g. one native call's time).
        boot: bootstrap resamples for the confidence.
        seed: seed of the resampling.

    Returns:
        The crossover, or ``None``.

    Raises:
        UsageError: mismatched lengths or bad values.

    >>> xs = [1.0, 2.0, 4.0, 8.0, 16.0]
    >>> a = [[v, v] for v in xs]
    >>> b = [[5.0, 5.0]] * 5
    >>> k = find_crossover(xs, a, b)
    >>> (k.x, k.x_after, k.confidence)
    (4.0, 8.0, 1.0)
    """
    xs, ra = _table(x, reps_a, log=False, min_points=2)
    _, rb = _table(x, reps_b, log=False, min_points=2)
    ma = np.array([np.median(r) for r in ra])
    mb = np.array([np.median(r) for r in rb])
    k = _crossing_index(ma, mb)
    if k in (0, len(xs)):
        return None
    rng = np.random.default_rng(seed)
    ba, bb = _resample(ra, boot, rng), _resample(rb, boot, rng)
    hits = [abs(_crossing_index(ba[i], bb[i]) - k) <= 1 for i in range(boot)]
    ratio = float(ma[-1] / mb[-1]) if mb[-1] else math.inf
    return Knee("crossover", k, float(xs[k - 1]), float(xs[k]), float(ma[0]),
                float(mb[k]), float(mb[-1]), ratio, float(ma[-1] - mb[-1]),
                float(np.mean(hits)))


def _inverse_fit(u: _F, y: _F) -> tuple[_F, _F]:
    """Least-squares ``y = c u + d`` (u = 1/x) for each row of y: (c, d)."""
    design = np.column_stack([u, np.ones_like(u)])
    coef = y @ np.linalg.pinv(design).T
    return coef[:, 0], coef[:, 1]


def find_inverse_crossing(x: Sequence[float], reps: Sequence[Sequence[float]], *,
                          level: float, boot: int = 200, seed: int = 0) -> Knee | None:
    """Fit ``y = c / x + d`` and return the x where it crosses ``level``, or ``None``.

    Made for overheads that fall as an interval grows: below the returned ``x`` the
    overhead exceeds ``level``. ``None`` when ``c <= 0`` (no cost that grows as ``x``
    shrinks) or ``d >= level`` (above the level at every ``x``). Confidence: the
    fraction of resamples whose crossing is within a factor of two.

    Args:
        x: the sweep points (> 0).
        reps: the repeats at each point.
        level: the level to cross, in the units of the repeats.
        boot: bootstrap resamples for the confidence.
        seed: seed of the resampling.

    Returns:
        The crossing (``before``: fitted c, ``after``: fitted d, ``ratio``: fitted y at
        the smallest x over ``level``), or ``None``.

    Raises:
        UsageError: mismatched lengths, too few points, x <= 0.

    >>> xs = [1e-4, 1e-3, 1e-2, 1e-1]
    >>> k = find_inverse_crossing(xs, [[1e-5 / v] * 3 for v in xs], level=0.01)
    >>> round(k.x, 6), k.confidence
    (0.001, 1.0)
    """
    xs, rows = _table(x, reps, log=False, min_points=3)
    if np.any(xs <= 0):
        raise UsageError("find_inverse_crossing needs sweep points > 0")
    u = 1.0 / xs
    med = np.array([np.median(r) for r in rows])[None, :]
    c, d = (float(v[0]) for v in _inverse_fit(u, med))
    if c <= 0 or d >= level:
        return None
    cross = c / (level - d)
    bc, bd = _inverse_fit(u, _resample(rows, boot, np.random.default_rng(seed)))
    with np.errstate(divide="ignore", invalid="ignore"):
        bx = np.where((bc > 0) & (bd < level), bc / (level - bd), np.nan)
    agree = np.isfinite(bx) & (bx <= 2 * cross) & (bx >= cross / 2)
    k = int(np.searchsorted(xs, cross))
    return Knee("inverse", k, cross, cross, c, level, d, float((c * u[0] + d) / level), c,
                float(np.mean(agree)))

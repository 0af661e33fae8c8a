"""Significance statistics for model comparison: block-bootstrap confidence intervals, a paired bootstrap
of the Sharpe-ratio difference, and the probabilistic Sharpe ratio.

Pure numpy/scipy functions over 1-D series; results are JSON-ready dicts of plain Python numbers.
Every random draw comes from ``numpy.random.default_rng(seed)``, so the same input and seed give the
same result.

Block bootstrap (:func:`block_bootstrap_ci`, :func:`sharpe_difference_bootstrap`)
    Serially correlated series (per-bar log-loss differences of overlapping labels, daily strategy
    returns) cannot be resampled value by value without understating the variance of their mean. The
    *circular block bootstrap* (Politis & Romano 1992; the moving-block bootstrap of Künsch 1989 with the
    series wrapped on a circle so every value is equally likely to be drawn) resamples blocks of
    ``block`` consecutive values, starting anywhere, until the series' length is filled; the last block
    is cut short. The resampled mean is then unbiased for the sample mean. The confidence interval is
    the percentile interval of the ``reps`` resampled statistics. Like every block bootstrap it
    under-covers a little in short series: on 2000 simulated AR(1) series (phi 0.5, 2000 values, true
    mean 0) the 95 % interval held the true mean in 93.5 % of them (tests/test_stats.py).

Automatic block length
    ``block=None`` uses the rule of Politis & White (2004) with the correction of Patton, Politis &
    White (2009) for the circular block bootstrap: b = (2 G^2 / D)^(1/3) n^(1/3), G = sum_k lambda(k/M) |k|
    g_k, D = 4/3 (sum_k lambda(k/M) g_k)^2, with g_k the autocovariances, lambda the flat-top (trapezoid)
    kernel and M twice the first lag after which ``K_N`` = max(5, log10 n) autocorrelations are all
    below 2 sqrt(log10(n) / n) in absolute value (at most sqrt(n) + K_N); b is capped at
    min(3 sqrt(n), n / 3) and rounded up to a whole number of values (at least 1). It is the same rule
    as ``arch.bootstrap.optimal_block_length`` (column ``circular``), which the tests use as reference.

Sharpe ratio
    Sharpe = mean(r) / std(r, ddof=1), per period, times sqrt(periods_per_year) when annualised; the
    convention of :mod:`genesis_fw.backtest.metrics` (risk-free rate 0). Returns are fractions per
    period (0.01 = 1 %).

References
    Künsch, H. R. (1989). The jackknife and the bootstrap for general stationary observations.
    Annals of Statistics 17(3), 1217-1241.
    Politis, D. N. & Romano, J. P. (1992). A circular block-resampling procedure for stationary data.
    In Exploring the Limits of Bootstrap, Wiley, 263-270.
    Politis, D. N. & Romano, J. P. (1994). The stationary bootstrap. JASA 89(428), 1303-1313.
    Politis, D. N. & White, H. (2004). Automatic block-length selection for the dependent bootstrap.
    Econometric Reviews 23(1), 53-70; correction: Patton, A., Politis, D. N. & White, H. (2009),
    Econometric Reviews 28(4), 372-375.
    Ledoit, O. & Wolf, M. (2008). Robust performance hypothesis testing with the Sharpe ratio.
    Journal of Empirical Finance 15(5), 850-859.
    Bailey, D. H. & López de Prado, M. (2012). The Sharpe ratio efficient frontier.
    Journal of Risk 15(2), 3-44.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

#: Fewest values a series needs for any statistic here.
MIN_VALUES = 10
#: Values whose spread (max - min) is at most this are treated as constant (standard deviation 0); the
#: same tolerance as the backtest metrics.
CONSTANT_TOL = 1e-12
#: Most random block starts drawn at once (bounds memory: reps x blocks per resample integers).
_CHUNK = 2_000_000


def _series(x: Any, what: str) -> np.ndarray:
    """``x`` as a 1-D finite float64 array of at least :data:`MIN_VALUES` values, else a one-line DataError."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numbers: {exc}") from None
    if arr.ndim != 1:
        raise DataError(f"{what} must be a 1-D series, got shape {arr.shape}")
    if arr.size < MIN_VALUES:
        raise DataError(f"{what} is too short for a bootstrap: {arr.size} values, need at least {MIN_VALUES}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{what} holds NaN or infinite values (first at position {i}: {arr[i]!r})")
    return arr


def _is_constant(x: np.ndarray) -> bool:
    return float(x.max() - x.min()) <= CONSTANT_TOL


def _options(block: int | None, reps: int, alpha: float, n: int) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < 1:
        raise ConfigError(f"invalid bootstrap reps {reps!r}: expected a whole number >= 1")
    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise ConfigError(f"invalid alpha {alpha!r}: expected a number strictly between 0 and 1")
    if block is not None and (isinstance(block, bool) or not isinstance(block, int | np.integer)
                              or not 1 <= int(block) <= n):
        raise ConfigError(f"invalid block length {block!r}: expected a whole number in [1, {n}] (values)")


def optimal_block_length(x: Any) -> int:
    """Automatic block length (values) of the circular block bootstrap for the mean of ``x``: the rule of
    Politis & White (2004) with the Patton, Politis & White (2009) correction (see the module docstring),
    rounded up, at least 1. A constant series gets 1."""
    xv = _series(x, "the series")
    n = xv.size
    if _is_constant(xv):
        return 1
    e = xv - xv.mean()
    b_max = math.ceil(min(3.0 * math.sqrt(n), n / 3.0))
    kn = max(5, int(math.log10(n)))
    m_max = min(math.ceil(math.sqrt(n)) + kn, n - 1)
    threshold = 2.0 * math.sqrt(math.log10(n) / n)
    acv = np.array([float(e[k:] @ e[: n - k]) / n for k in range(m_max + 1)])
    rho = np.abs(acv / acv[0])
    # m_hat: the first lag m >= 1 from which kn autocorrelations in a row (lags m .. m + kn - 1) are all
    # insignificant (the convention of Patton's published code and of arch); M = 2 m_hat.
    m_hat = None
    for m in range(1, m_max - kn + 1):
        if np.all(rho[m : m + kn] < threshold):
            m_hat = m
            break
    big_m = m_max if m_hat is None else min(2 * m_hat, m_max)
    k = np.arange(1, big_m + 1)
    lam = np.where(k / big_m <= 0.5, 1.0, 2.0 * (1.0 - k / big_m))
    g = 2.0 * float(np.sum(lam * k * acv[1 : big_m + 1]))
    long_run = acv[0] + 2.0 * float(np.sum(lam * acv[1 : big_m + 1]))
    d = 4.0 / 3.0 * long_run**2
    if d <= 0.0 or not math.isfinite(d):
        return 1
    b = (2.0 * g**2 / d) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    if not math.isfinite(b):
        return 1
    return int(max(1, min(math.ceil(b), b_max)))


def _block_sums(columns: np.ndarray, block: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Circular block bootstrap: for each of ``reps`` resamples, the column sums of the resampled rows.

    ``columns`` is (n, c). A resample is ceil(n / block) blocks of consecutive rows starting at uniform
    random positions 0..n-1 (wrapping past the end), the last block cut to fill exactly n rows. Block sums
    come from cumulative sums, so a resample costs one random start per block. Returns (reps, c)."""
    n, c = columns.shape
    blocks = -(-n // block)
    last = n - (blocks - 1) * block
    wrapped = np.concatenate([columns, columns[:block]])
    csum = np.concatenate([np.zeros((1, c)), np.cumsum(wrapped, axis=0)])
    starts_all = np.arange(n)
    full = csum[starts_all + block] - csum[starts_all]
    part = csum[starts_all + last] - csum[starts_all]
    out = np.empty((reps, c))
    chunk = max(1, _CHUNK // blocks)
    for lo in range(0, reps, chunk):
        hi = min(reps, lo + chunk)
        starts = rng.integers(0, n, size=(hi - lo, blocks))
        out[lo:hi] = full[starts[:, :-1]].sum(axis=1) + part[starts[:, -1]]
    return out


def block_bootstrap_ci(d: Any, *, block: int | None = None, reps: int = 2000, alpha: float = 0.05,
                       seed: int = 0) -> dict[str, Any]:
    """Two-sided (1 - ``alpha``) confidence interval of the mean of ``d`` by the circular block bootstrap.

    ``d`` is a 1-D series of at least :data:`MIN_VALUES` finite values in any unit (for model comparison:
    per-bar log-loss differences in nats, candidate minus baseline); ``mean``, ``low`` and ``high`` are in
    that unit. ``block`` is the block length in values (``None`` = automatic, :func:`optimal_block_length`);
    ``reps`` resamples; the interval is the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the resampled
    means (percentile interval). A constant series has the interval [mean, mean] (block 1): nothing
    varies, so identical models give [0, 0].

    Returns ``{"mean", "low", "high", "block", "reps", "alpha", "n", "method"}``; ``method`` is
    ``"circular block bootstrap"``. DataError (one line) for NaN/infinite values, another shape or fewer
    than :data:`MIN_VALUES` values; ConfigError for bad ``block``, ``reps`` or ``alpha``.
    """
    dv = _series(d, "the series")
    n = dv.size
    _options(block, reps, alpha, n)
    mean = float(dv.mean())
    result = {"mean": mean, "low": mean, "high": mean, "block": 1, "reps": int(reps), "alpha": float(alpha),
              "n": n, "method": "circular block bootstrap"}
    if _is_constant(dv):
        return result
    b = optimal_block_length(dv) if block is None else int(block)
    rng = np.random.default_rng(seed)
    centred = dv - mean  # cumulative sums of centred values stay small: less rounding
    means = mean + _block_sums(centred[:, None], b, int(reps), rng)[:, 0] / n
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    result.update(low=float(low), high=float(high), block=b)
    return result


def sharpe_ratio(r: Any, periods_per_year: float = 1.0) -> float:
    """Sharpe ratio of the returns ``r`` (fractions per period): mean / std (ddof=1) times
    sqrt(``periods_per_year``) (1 = per period). DataError when the returns are constant (std 0)."""
    rv = _series(r, "the returns")
    if _is_constant(rv):
        raise DataError("the Sharpe ratio is undefined for constant returns (standard deviation 0)")
    return float(rv.mean() / rv.std(ddof=1) * math.sqrt(periods_per_year))


def _sharpe_influence(r: np.ndarray) -> np.ndarray:
    """The Sharpe ratio's influence function at each value (its first-order sensitivity), whose
    autocorrelation sets the automatic block length of the Sharpe bootstrap."""
    mu, sd = float(r.mean()), float(r.std())
    z = (r - mu) / sd
    return z - 0.5 * (mu / sd) * (z**2 - 1.0)


def sharpe_difference_bootstrap(r_a: Any, r_b: Any, *, periods_per_year: float, block: int | None = None,
                                reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Is the Sharpe ratio of ``r_b`` above that of ``r_a``? A paired circular block bootstrap.

    ``r_a`` (the baseline) and ``r_b`` (the candidate) are returns over the same periods (fractions per
    period, e.g. the daily returns of two backtests on the same candles); ``periods_per_year`` annualises
    (365.25 for calendar days). Each resample draws the same blocks from both series, which keeps their
    correlation (Ledoit & Wolf 2008 resample pairs this way; unlike them, the interval here is the plain
    percentile interval, not studentised). ``block`` in periods (``None`` = automatic: the Politis-White
    rule on the difference of the two Sharpe ratios' influence functions).

    ``difference`` = Sharpe(r_b) - Sharpe(r_a) (annualised); ``low``/``high`` its (1 - ``alpha``) percentile
    interval; ``p_value`` one-sided for "b better than a": the share of resampled differences, centred on
    the observed one, at least as large as the observed difference, (1 + count) / (1 + reps). Identical
    series give difference 0, interval [0, 0] and p-value 1. A resample in which a series is constant has
    that Sharpe ratio set to 0 (counted in ``degenerate_reps``).

    Returns ``{"sharpe_a", "sharpe_b", "difference", "low", "high", "p_value", "block", "reps", "alpha",
    "n", "degenerate_reps", "method"}``. DataError (one line) when the series differ in length, hold
    NaN/infinity, are too short or constant (Sharpe undefined).
    """
    a = _series(r_a, "the baseline's returns")
    b = _series(r_b, "the candidate's returns")
    if a.size != b.size:
        raise DataError(f"the two return series differ in length: {a.size} and {b.size} periods")
    if not (isinstance(periods_per_year, int | float) and periods_per_year > 0):
        raise ConfigError(f"invalid periods_per_year {periods_per_year!r}: expected a number > 0")
    n = a.size
    _options(block, reps, alpha, n)
    ann = math.sqrt(periods_per_year)
    sa, sb = sharpe_ratio(a, periods_per_year), sharpe_ratio(b, periods_per_year)
    diff = sb - sa
    result = {"sharpe_a": sa, "sharpe_b": sb, "difference": diff, "low": diff, "high": diff, "p_value": 1.0,
              "block": 1, "reps": int(reps), "alpha": float(alpha), "n": n, "degenerate_reps": 0,
              "method": "paired circular block bootstrap"}
    if np.array_equal(a, b):
        return result
    if block is None:
        influence = _sharpe_influence(b) - _sharpe_influence(a)
        bl = 1 if _is_constant(influence) else optimal_block_length(influence)
    else:
        bl = int(block)
    rng = np.random.default_rng(seed)
    ca, cb = a - a.mean(), b - b.mean()
    sums = _block_sums(np.column_stack([ca, ca**2, cb, cb**2]), bl, int(reps), rng)

    def resampled_sharpe(s1: np.ndarray, s2: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
        m = s1 / n  # the resample's mean minus the sample's mean
        var = np.maximum(s2 - n * m**2, 0.0) / (n - 1)
        sd = np.sqrt(var)
        flat = sd <= CONSTANT_TOL
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.where(flat, 0.0, (mu + m) / np.where(flat, 1.0, sd)) * ann
        return sharpe, flat

    sh_a, flat_a = resampled_sharpe(sums[:, 0], sums[:, 1], float(a.mean()))
    sh_b, flat_b = resampled_sharpe(sums[:, 2], sums[:, 3], float(b.mean()))
    diffs = sh_b - sh_a
    low, high = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
    count = int(np.count_nonzero(diffs - diff >= diff))
    result.update(low=float(low), high=float(high), p_value=(1 + count) / (1 + int(reps)), block=bl,
                  degenerate_reps=int(np.count_nonzero(flat_a | flat_b)))
    return result


def probabilistic_sharpe_ratio(r: Any, *, benchmark: float = 0.0) -> dict[str, Any]:
    """Probabilistic Sharpe ratio (Bailey & López de Prado 2012): the probability that the true Sharpe
    ratio of the returns ``r`` exceeds ``benchmark``, given the sample's length, skewness and kurtosis.

    PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2)), with SR the
    per-period Sharpe ratio (mean / std with ddof=1, NOT annualised), SR* = ``benchmark`` (per period),
    skew and kurtosis the sample moments (biased, as ``scipy.stats.skew`` and ``scipy.stats.kurtosis``
    with ``fisher=False``: a normal distribution has kurtosis 3), n the number of returns. ``r`` holds
    returns as fractions per period (e.g. daily returns of a backtest).

    Returns ``{"psr", "sharpe", "n", "skew", "kurtosis", "benchmark"}`` (``psr`` a probability 0..1,
    ``sharpe`` per period). DataError (one line) for constant returns (Sharpe undefined), NaN/infinity or
    fewer than :data:`MIN_VALUES` returns.
    """
    from scipy.stats import norm

    rv = _series(r, "the returns")
    if not (isinstance(benchmark, int | float) and math.isfinite(benchmark)):
        raise ConfigError(f"invalid benchmark Sharpe ratio {benchmark!r}: expected a finite number (per period)")
    sr = sharpe_ratio(rv)
    n = rv.size
    e = rv - rv.mean()
    m2 = float(np.mean(e**2))
    skew = float(np.mean(e**3)) / m2**1.5
    kurt = float(np.mean(e**4)) / m2**2
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    z = (sr - benchmark) * math.sqrt(n - 1)
    if var <= 0.0:
        psr = 1.0 if z > 0 else (0.0 if z < 0 else 0.5)
    else:
        psr = float(norm.cdf(z / math.sqrt(var)))
    return {"psr": psr, "sharpe": sr, "n": int(n), "skew": skew, "kurtosis": kurt, "benchmark": float(benchmark)}

"""Significance statistics (genesis_fw.selection.stats): known answers, arch as the independent reference for
the block bootstrap, simulated series whose true answer is known for coverage and false-positive rates, and
the probabilistic Sharpe ratio against its formula and a Monte-Carlo fact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.signal import lfilter

from genesis_fw.errors import ConfigError, DataError
from genesis_fw.selection import stats


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Zero-mean AR(1) series x_t = phi x_{t-1} + e_t along the last axis, started from the stationary
    distribution (so the true mean is exactly 0 at every t)."""
    e = rng.standard_normal(shape)
    e[..., 0] /= math.sqrt(1.0 - phi**2)
    return lfilter([1.0], [1.0, -phi], e, axis=-1)


def _binomial_band(rate: float, trials: int, sds: float = 3.5) -> tuple[float, float]:
    sd = math.sqrt(rate * (1.0 - rate) / trials)
    return rate - sds * sd, rate + sds * sd


# --- block_bootstrap_ci ------------------------------------------------------------------------------


def test_identical_series_difference_has_interval_zero():
    rng = np.random.default_rng(0)
    loss = rng.exponential(0.69, 500)
    result = stats.block_bootstrap_ci(loss - loss)
    assert (result["mean"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
    assert result["method"] == "circular block bootstrap"


def test_clearly_shifted_series_interval_excludes_zero_and_contains_mean():
    rng = np.random.default_rng(1)
    d = _ar1(rng, (1000,), 0.5) - 0.3
    result = stats.block_bootstrap_ci(d, seed=3)
    assert result["high"] < 0
    assert result["low"] < result["mean"] < result["high"]
    assert result["block"] > 1  # autocorrelated: the automatic rule picks blocks longer than 1


def test_same_seed_same_interval_other_seed_other_interval():
    d = _ar1(np.random.default_rng(2), (300,), 0.3)
    assert stats.block_bootstrap_ci(d, seed=5) == stats.block_bootstrap_ci(d, seed=5)
    assert stats.block_bootstrap_ci(d, seed=5)["low"] != stats.block_bootstrap_ci(d, seed=6)["low"]


def test_automatic_block_length_matches_arch():
    # arch's optimal_block_length (Politis-White 2004 with the Patton et al. 2009 correction) is the
    # reference. Our autocorrelation estimator is the standard acv_k / acv_0; arch divides each lag by the
    # norms of slightly different slices. So a series with an autocorrelation right at the cut-off can
    # land on different sides of it (and the rule's M, hence the block, jumps): every disagreement must be
    # such a borderline series, and they must be rare.
    from arch.bootstrap import optimal_block_length

    rng = np.random.default_rng(11)
    same = 0
    for _ in range(100):
        n = int(rng.integers(60, 3000))
        x = _ar1(rng, (n,), float(rng.uniform(-0.5, 0.95)))
        ours = stats.optimal_block_length(x)
        ref = max(1, math.ceil(float(optimal_block_length(x)["circular"].iloc[0])))
        if ours == ref:
            same += 1
            continue
        e = x - x.mean()
        lags = math.ceil(math.sqrt(n)) + max(5, int(math.log10(n)))
        rho = np.abs([e[k:] @ e[: n - k] / (e @ e) for k in range(1, lags + 1)])
        cut = 2 * math.sqrt(math.log10(n) / n)
        assert np.min(np.abs(rho - cut)) < 0.02 * cut, (n, ours, ref)
    assert same >= 95

def test_interval_equals_arch_circular_block_bootstrap_within_monte_carlo_error():
    from arch.bootstrap import CircularBlockBootstrap

    d = _ar1(np.random.default_rng(4), (1500,), 0.6) + 0.05
    reps = 20_000
    ours = stats.block_bootstrap_ci(d, block=12, reps=reps, seed=1)
    bs = CircularBlockBootstrap(12, d, seed=np.random.default_rng(99))
    low, high = bs.conf_int(np.mean, reps=reps, method="percentile", size=0.95)[:, 0]
    se = float(bs.apply(np.mean, reps=4000).std())
    # The Monte-Carlo standard deviation of a 2.5 % quantile from 20 000 resamples is about 0.02 se.
    assert abs(ours["low"] - low) < 0.1 * se
    assert abs(ours["high"] - high) < 0.1 * se
    assert ours["mean"] == pytest.approx(float(d.mean()), rel=1e-12)


def test_interval_coverage_on_ar1_with_true_mean_zero_is_near_nominal():
    # 1000 AR(1) series (phi 0.5, 2000 values: a few months of hourly bars) whose true mean is 0: the 95 %
    # interval must contain 0 in about 95 % of them. The percentile block bootstrap under-covers a little
    # in series this short (about 93.5 %, measured on 2000 such series with other seeds), so the band is
    # 3.5 binomial standard deviations around 95 %, widened below by that known 2.5 points.
    rng = np.random.default_rng(20)
    series = _ar1(rng, (1000, 2000), 0.5)
    cover = sum(
        r["low"] <= 0.0 <= r["high"] for r in (stats.block_bootstrap_ci(x, reps=500, seed=i) for i, x in
                                               enumerate(series))
    )
    lo, hi = _binomial_band(0.95, 1000)
    assert lo - 0.025 <= cover / 1000 <= hi, cover / 1000

def test_iid_bootstrap_ignoring_autocorrelation_would_under_cover():
    # The reason for blocks: with block 1 on the same kind of AR(1) series the interval is far too narrow.
    rng = np.random.default_rng(21)
    series = _ar1(rng, (200, 2000), 0.5)
    cover = sum(r["low"] <= 0.0 <= r["high"] for r in
                (stats.block_bootstrap_ci(x, block=1, reps=300, seed=i) for i, x in enumerate(series)))
    assert cover / 200 < 0.85


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0.1, float("nan")] + [0.0] * 20, "NaN"),
        ([0.1] * 5, "too short"),
        (np.zeros((20, 2)), "1-D"),
        (["a"] * 20, "numbers"),
        ([0.1, float("inf")] + [0.0] * 20, "NaN or infinite"),
    ],
)
def test_bad_series_is_one_line_data_error(value, message):
    with pytest.raises(DataError, match=message) as exc:
        stats.block_bootstrap_ci(value)
    assert "\n" not in str(exc.value)


def test_constant_series_has_its_value_as_interval():
    result = stats.block_bootstrap_ci(np.full(50, 0.25))
    assert (result["low"], result["high"], result["block"]) == (0.25, 0.25, 1)


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.5}, {"reps": 0}, {"block": 0}, {"block": 10_000}])
def test_bad_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        stats.block_bootstrap_ci(np.arange(50.0), **kwargs)


# --- sharpe_difference_bootstrap -----------------------------------------------------------------------


def test_sharpe_of_identical_returns_no_difference():
    r = np.random.default_rng(5).normal(0.001, 0.02, 400)
    result = stats.sharpe_difference_bootstrap(r, r.copy(), periods_per_year=365.25)
    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
    assert result["p_value"] == 1.0


def test_sharpe_matches_backtest_metrics_convention():
    r = np.random.default_rng(6).normal(0.001, 0.02, 400)
    result = stats.sharpe_difference_bootstrap(r, r * 2 + 0.001, periods_per_year=365.25)
    assert result["sharpe_a"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365.25), rel=1e-12)


def test_clearly_better_returns_significant():
    rng = np.random.default_rng(7)
    common = rng.normal(0.0, 0.01, 730)
    a = common + rng.normal(0.0, 0.005, 730)
    b = common + rng.normal(0.0, 0.005, 730) + 0.004  # the same market exposure plus a steady edge
    result = stats.sharpe_difference_bootstrap(a, b, periods_per_year=365.25, seed=2)
    assert result["difference"] > 0 and result["low"] > 0
    assert result["p_value"] < 0.01


def test_worse_candidate_is_not_significant():
    rng = np.random.default_rng(8)
    a = rng.normal(0.003, 0.01, 500)
    b = rng.normal(0.0, 0.01, 500)
    assert stats.sharpe_difference_bootstrap(a, b, periods_per_year=365.25)["p_value"] > 0.5


def test_sharpe_difference_false_positive_rate_near_alpha():
    # Two independent zero-mean return series (true Sharpe ratios both 0), mildly autocorrelated: the
    # one-sided test at alpha 0.05 must reject in about 5 % of 400 pairs.
    rng = np.random.default_rng(30)
    pairs = _ar1(rng, (400, 2, 500), 0.2) * 0.01
    rejections = sum(
        stats.sharpe_difference_bootstrap(a, b, periods_per_year=365.25, reps=500, seed=i)["p_value"] < 0.05
        for i, (a, b) in enumerate(pairs)
    )
    lo, hi = _binomial_band(0.05, 400)
    assert lo <= rejections / 400 <= hi, rejections / 400


def test_sharpe_difference_bad_input():
    r = np.random.default_rng(9).normal(0, 1, 100)
    with pytest.raises(DataError, match="differ in length"):
        stats.sharpe_difference_bootstrap(r, r[:50], periods_per_year=365.25)
    with pytest.raises(DataError, match="constant returns"):
        stats.sharpe_difference_bootstrap(np.zeros(100), r, periods_per_year=365.25)
    with pytest.raises(ConfigError, match="periods_per_year"):
        stats.sharpe_difference_bootstrap(r, r + 1, periods_per_year=0)


# --- probabilistic_sharpe_ratio --------------------------------------------------------------------------


def test_psr_equals_direct_formula_with_scipy_moments():
    r = np.random.default_rng(10).lognormal(0.0, 0.6, 300) * 0.01 - 0.0115
    result = stats.probabilistic_sharpe_ratio(r, benchmark=0.02)
    sr = r.mean() / r.std(ddof=1)
    g3 = sps.skew(r)
    g4 = sps.kurtosis(r, fisher=False)
    expected = sps.norm.cdf((sr - 0.02) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert result["psr"] == pytest.approx(expected, rel=1e-10)
    assert result["skew"] == pytest.approx(g3, rel=1e-10)
    assert result["kurtosis"] == pytest.approx(g4, rel=1e-10)
    assert (result["n"], result["benchmark"]) == (300, 0.02)
    assert result["skew"] > 1  # the skewed sample makes the skew term matter


@pytest.mark.parametrize("skewed", [False, True])
def test_psr_false_positive_rate_when_true_sharpe_equals_benchmark(skewed):
    # The true per-period Sharpe ratio is exactly the benchmark: PSR > 0.95 must happen about 5 % of the time
    # (skewed returns too: that is what the skew/kurtosis terms are for).
    rng = np.random.default_rng(40 + skewed)
    sims, n, true_sr = 2000, 500, 0.05
    if skewed:
        s = 0.5
        z = rng.lognormal(0.0, s, (sims, n))
        z = (z - math.exp(s**2 / 2)) / math.sqrt((math.exp(s**2) - 1) * math.exp(s**2))
    else:
        z = rng.standard_normal((sims, n))
    hits = sum(stats.probabilistic_sharpe_ratio(x + true_sr, benchmark=true_sr)["psr"] > 0.95 for x in z)
    lo, hi = _binomial_band(0.05, sims)
    assert lo <= hits / sims <= hi, hits / sims


def test_psr_is_the_probability_that_the_true_sharpe_beats_the_benchmark():
    # Monte-Carlo fact (flat prior over the true Sharpe ratio): among samples with a PSR near q, the true
    # Sharpe ratio exceeds the benchmark in a share q of them.
    rng = np.random.default_rng(50)
    sims, n, bench = 6000, 250, 0.05
    true = rng.uniform(-0.25, 0.35, sims)
    psr = np.array([stats.probabilistic_sharpe_ratio(rng.standard_normal(n) + mu, benchmark=bench)["psr"]
                    for mu in true])
    for lo_q, hi_q in [(0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9)]:
        inside = (psr >= lo_q) & (psr < hi_q)
        k = int(inside.sum())
        share = float(np.mean(true[inside] > bench))
        expected = float(psr[inside].mean())
        assert abs(share - expected) < 3.5 * math.sqrt(expected * (1 - expected) / k) + 0.02, (lo_q, share, expected)


def test_psr_degenerate_input():
    with pytest.raises(DataError, match="constant returns"):
        stats.probabilistic_sharpe_ratio(np.full(30, 0.001))
    with pytest.raises(DataError, match="too short"):
        stats.probabilistic_sharpe_ratio([0.01, -0.02, 0.03])
    with pytest.raises(DataError, match="NaN"):
        stats.probabilistic_sharpe_ratio([0.01, float("nan")] * 10)

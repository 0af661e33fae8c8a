"""Evaluation scores (genesis_fw.ml.evaluation): every figure equals scikit-learn's on the same data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ml_sample import logreg_on_sample
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from genesis_fw.errors import DataError
from genesis_fw.ml import evaluation


def _sklearn_scores(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """The reference figures, straight from sklearn.metrics (NaN where sklearn finds them undefined)."""
    yhat = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "up_rate": float(np.mean(y)),
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p, pos_label=1),
        "roc_auc": skm.roc_auc_score(y, p) if both else None,
        "pr_auc": skm.average_precision_score(y, p) if y.sum() > 0 else None,
        "precision": skm.precision_score(y, yhat, zero_division=np.nan),
        "recall": skm.recall_score(y, yhat, zero_division=np.nan),
        "accuracy": skm.accuracy_score(y, yhat),
        "confusion": skm.confusion_matrix(y, yhat, labels=[0, 1]).tolist(),
    }


def _ece_reference(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    """ECE from sklearn's calibration_curve (uniform bins) and the same bins' counts."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / len(p) * np.abs(prob_pred - prob_true)))


def _assert_matches(got: dict, want: dict) -> None:
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert got[key] is None, key
        elif value is None or isinstance(value, list | int):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("part", ["validation", "test"])
def test_scores_of_a_real_model_equal_sklearn(part):
    data = logreg_on_sample()[part]
    y, p = data["y"], data["p"]
    got = evaluation.scores(y, p)
    _assert_matches(got, _sklearn_scores(y, p))
    assert got["ece"] == pytest.approx(_ece_reference(y, p, 10), rel=1e-12)
    json.dumps(got, allow_nan=False)  # JSON-ready, NaN-free
    assert all(type(v) in (int, float, list, type(None)) for v in got.values())
    for threshold in (0.45, 0.55):
        _assert_matches(evaluation.scores(y, p, threshold=threshold), _sklearn_scores(y, p, threshold))


@st.composite
def _cases(draw):
    n = draw(st.integers(1, 60))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    prob = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.1, 0.3, 0.7]), st.floats(0.0, 1.0))
    p = np.array(draw(st.lists(prob, min_size=n, max_size=n)), dtype=np.float64)
    return y, p, draw(st.integers(1, 20)), draw(st.sampled_from([0.5, 0.3, 0.7]))


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_property_scores_equal_sklearn(case):
    y, p, bins, threshold = case
    got = evaluation.scores(y, p, threshold=threshold, bins=bins)
    _assert_matches(got, _sklearn_scores(y, p, threshold))
    assert got["ece"] == pytest.approx(_ece_reference(y, p, bins), rel=1e-9, abs=1e-15)
    json.dumps(got, allow_nan=False)


def test_edge_cases_one_class_and_certain_probabilities():
    y = np.array([1, 1, 1])
    p = np.array([1.0, 0.0, 0.5])
    s = evaluation.scores(y, p)
    assert s["roc_auc"] is None  # one class: undefined
    assert s["pr_auc"] == skm.average_precision_score(y, p)
    # p = 0 for a positive is clipped like sklearn (to the float64 machine epsilon), so the loss is finite
    eps = np.finfo(np.float64).eps
    assert s["log_loss"] == pytest.approx(-(math.log(1 - eps) + math.log(eps) + math.log(0.5)) / 3, rel=1e-12)
    assert s["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
    zeros = evaluation.scores(np.array([0, 0]), np.array([0.2, 0.9]))
    assert zeros["roc_auc"] is None and zeros["pr_auc"] is None and zeros["recall"] is None
    assert zeros["precision"] == 0.0 and zeros["confusion"] == [[1, 1], [0, 0]]
    none_up = evaluation.scores(np.array([0, 1]), np.array([0.2, 0.3]))
    assert none_up["precision"] is None  # nothing predicted up


def test_ece_by_hand():
    # bin [0, .5]: p .2 .4 (mean .3), y 0 1 (rate .5); bin (.5, 1]: p .6 .8 1 (mean .8), y 1 1 1 (rate 1)
    y = np.array([0, 1, 1, 1, 1])
    p = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    s = evaluation.scores(y, p, bins=2)
    assert s["ece"] == pytest.approx(2 / 5 * 0.2 + 3 / 5 * 0.2)
    rel = evaluation.reliability(y, p, bins=2)
    assert [b["count"] for b in rel["bins"]] == [2, 3]
    assert rel["bins"][0]["mean_predicted"] == pytest.approx(0.3)
    assert rel["bins"][1]["observed_rate"] == pytest.approx(1.0)
    # an edge value belongs to the bin below it, like sklearn's calibration_curve
    assert [b["count"] for b in evaluation.reliability(np.array([0, 1]), np.array([0.5, 0.0]), bins=2)["bins"]] \
        == [2, 0]
    empty = evaluation.reliability(y, p, bins=10)["bins"][0]  # [0, 0.1]: no p there
    assert empty["count"] == 0 and empty["mean_predicted"] is None and empty["observed_rate"] is None


def test_baselines_skill_and_verdict_on_a_real_model():
    data = logreg_on_sample()
    y, p = data["test"]["y"], data["test"]["p"]
    rates = {"train_rate": data["train_rate"], "validation_rate": float(data["validation"]["y"].mean())}
    base = evaluation.baselines(y, rates)
    assert set(base) == set(rates)
    for name, rate in rates.items():
        _assert_matches(base[name], _sklearn_scores(y, np.full(len(y), rate)))
        assert base[name]["roc_auc"] == 0.5
    model = evaluation.scores(y, p)
    sk = evaluation.skill(model, base["train_rate"])
    assert sk["log_loss_skill"] == pytest.approx(1 - model["log_loss"] / base["train_rate"]["log_loss"])
    assert sk["brier_skill"] == pytest.approx(1 - model["brier"] / base["train_rate"]["brier"])
    text = evaluation.verdict(model, base)
    best = min(b["log_loss"] for b in base.values())
    if model["log_loss"] < best:
        assert text.startswith("skill: log loss ")
    else:
        assert text.startswith("no skill: log loss ")
    assert "Brier" in text and "\n" not in text


def test_verdict_says_no_skill_plainly():
    y = np.array([0, 1] * 50)
    base = evaluation.baselines(y, {"train_rate": 0.5, "validation_rate": 0.6})
    noise = evaluation.scores(y, np.where(np.arange(100) % 3 == 0, 0.55, 0.45))
    text = evaluation.verdict(noise, base)
    assert text.startswith("no skill: log loss ")
    assert f"{noise['log_loss']:.4f}" in text and f"{base['train_rate']['log_loss']:.4f}" in text
    assert "train_rate" in text and "Brier" in text
    # equal to the base rate is no skill either (not strictly below)
    assert evaluation.verdict(base["train_rate"], base).startswith("no skill")
    good = evaluation.scores(y, np.where(y == 1, 0.8, 0.2))
    text = evaluation.verdict(good, base)
    sk = evaluation.skill(good, base["train_rate"])
    assert text.startswith(f"skill: log loss {good['log_loss']:.4f} vs base rate {base['train_rate']['log_loss']:.4f}")
    assert f"(log-loss skill {sk['log_loss_skill'] * 100:.2f} %)" in text


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1], [0.5, 1.2], "outside"),
        ([0, 1], [0.5, -0.1], "outside"),
        ([0, 1], [0.5, float("nan")], "NaN"),
        ([0, 2], [0.5, 0.5], "0 or 1"),
        ([0, 1, 1], [0.5, 0.5], "length"),
        ([], [], "no rows"),
        ([[0, 1]], [[0.5, 0.5]], "1-D"),
    ],
)
def test_bad_input_is_a_one_line_data_error(y, p, match):
    with pytest.raises(DataError, match=match) as err:
        evaluation.scores(np.array(y), np.array(p))
    assert "\n" not in str(err.value)


def test_bad_baseline_rate_and_no_baselines():
    with pytest.raises(DataError, match="rate"):
        evaluation.baselines(np.array([0, 1]), {"train_rate": 1.5})
    with pytest.raises(DataError, match="baseline"):
        evaluation.verdict(evaluation.scores(np.array([0, 1]), np.array([0.4, 0.6])), {})


# ---------------------------------------------------------------------------------------------
# The paired test of the per-row log-loss differences (Diebold-Mariano with a Newey-West variance)


def _per_row_log_loss(y, p):
    eps = np.finfo(float).eps
    p = np.clip(p, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


@pytest.mark.parametrize("horizon", [1, 2, 5, 20])
def test_loss_difference_test_equals_statsmodels_hac(horizon):
    # statsmodels is the independent reference: OLS of the differences on a constant with a HAC
    # covariance, truncated uniform kernel with h - 1 lags (Diebold & Mariano 1995), gives the t statistic;
    # Harvey, Leybourne & Newbold (1997) scale it by sqrt((n + 1 - 2h + h(h - 1)/n) / n) and read it
    # against Student's t with n - 1 degrees of freedom.
    import statsmodels.api as sm
    from scipy.stats import t as student_t
    from statsmodels.stats.sandwich_covariance import weights_uniform

    data = logreg_on_sample()
    y, p = data["test"]["y"], data["test"]["p"]
    rate = data["train_rate"]
    result = evaluation.loss_difference_test(y, p, np.full(len(y), rate), horizon)
    d = _per_row_log_loss(y, p) - _per_row_log_loss(y, np.full(len(y), rate))
    n, h = len(d), horizon
    ols = sm.OLS(d, np.ones((n, 1))).fit(cov_type="HAC", cov_kwds={"maxlags": h - 1, "use_correction": False,
                                                                   "weights_func": weights_uniform})
    expected = float(ols.tvalues[0]) * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    assert result["statistic"] == pytest.approx(expected, rel=1e-9)
    assert result["mean_difference"] == pytest.approx(float(d.mean()), rel=1e-12)
    assert result["p_value"] == pytest.approx(float(student_t.cdf(expected, n - 1)), rel=1e-9)
    assert (result["lag"], result["horizon"], result["kernel"], result["n"]) == (h - 1, h, "uniform", n)
    assert result["fallback"] is None
    json.dumps(result, allow_nan=False)


def test_a_non_positive_uniform_variance_falls_back_to_bartlett_and_says_so():
    # An alternating series has a negative rectangular long-run variance at 1 lag (g0 + 2 g1 < 0); the
    # Bartlett estimate with twice the lags is positive (it matches statsmodels' Newey-West).
    import statsmodels.api as sm

    d = np.tile([1.0, -1.0], 50) + np.linspace(-0.3, 0.1, 100)
    result = evaluation.hac_mean_test(d, 2)
    assert result["kernel"] == "bartlett" and result["lag"] == 2
    assert "not positive" in result["fallback"] and "Bartlett" in result["fallback"]
    n, h = d.size, 2
    ols = sm.OLS(d, np.ones((n, 1))).fit(cov_type="HAC", cov_kwds={"maxlags": 2, "use_correction": False})
    expected = float(ols.tvalues[0]) * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    assert result["statistic"] == pytest.approx(expected, rel=1e-9)


def _ma_differences(rng, reps, n, h):
    """``reps`` series of ``n`` per-bar differences with mean 0 that are MA(h - 1), as labels over h bars
    make them: each is the sum of h consecutive independent normals."""
    e = np.cumsum(np.pad(rng.standard_normal((reps, n + h - 1)), ((0, 0), (1, 0))), axis=1)
    return e[:, h:] - e[:, :-h]


def _overlapping_label_differences(rng, reps, n, h, *, edge=0.0):
    """Per-bar log-loss differences of two models on a random-walk price, label = up over the next ``h``
    bars. Both models' probabilities are persistent (moving averages of 50 bars of their own noise), as
    features make them; with ``edge`` > 0 the first model also sees ``edge`` times the future move."""
    price = np.cumsum(rng.standard_normal((reps, n + h)), axis=1)
    move = price[:, h:] - price[:, :n]
    y = (move > 0).astype(float)

    def probabilities(extra):
        c = np.cumsum(np.pad(rng.standard_normal((reps, n + 50)), ((0, 0), (1, 0))), axis=1)
        z = (c[:, 50:] - c[:, :-50])[:, :n] / 50
        return 1 / (1 + np.exp(-(3 * z + extra)))

    def loss(p):
        return -(y * np.log(p) + (1 - y) * np.log1p(-p))

    return loss(probabilities(edge * move / np.sqrt(h))) - loss(probabilities(0.0))


# At alpha 0.05 a test that holds its size rejects 5 % of the series with no true difference. With 600
# series the share of rejections has a standard deviation of 0.0089, so [0.025, 0.08] is over 2.8 of
# them either side of 0.05 (the upper bound is looser since a small excess is the known small-sample
# bias of a long-run variance). The old Bartlett variance with lag h rejected 0.08-0.10 at h >= 5.
FPR_REPS, FPR_LOW, FPR_HIGH = 600, 0.025, 0.08


@pytest.mark.parametrize("horizon", [1, 5, 20])
def test_false_positive_rate_on_ma_differences_is_near_alpha(horizon):
    rng = np.random.default_rng(2024 + horizon)
    d = _ma_differences(rng, FPR_REPS, 2000, horizon)
    rate = np.mean([evaluation.hac_mean_test(row, horizon)["p_value"] < 0.05 for row in d])
    assert FPR_LOW <= rate <= FPR_HIGH, rate


def test_false_positive_rate_on_overlapping_labels_of_two_no_skill_models_is_near_alpha():
    rng = np.random.default_rng(99)
    h = 20
    d = _overlapping_label_differences(rng, FPR_REPS, 2000, h)
    rate = np.mean([evaluation.hac_mean_test(row, h)["p_value"] < 0.05 for row in d])
    assert FPR_LOW <= rate <= FPR_HIGH, rate


def test_a_model_that_sees_part_of_the_future_move_is_found_better():
    rng = np.random.default_rng(5)
    h = 20
    d = _overlapping_label_differences(rng, 50, 2000, h, edge=1.0)
    hits = sum(evaluation.hac_mean_test(row, h)["p_value"] < 0.05 for row in d)
    assert hits >= 45, hits


def test_without_the_autocovariances_the_test_rejects_far_too_often():
    # the same MA(19) differences tested as if the labels did not overlap (horizon 1): the variance
    # ignores the autocorrelation and the test rejects far more than 5 %, so the horizon matters.
    rng = np.random.default_rng(12345)
    d = _ma_differences(rng, 200, 2000, 20)
    assert np.mean([evaluation.hac_mean_test(row, 1)["p_value"] < 0.05 for row in d]) > 0.2


def test_hac_mean_test_finds_a_real_improvement():
    rng = np.random.default_rng(7)
    n, hits = 2000, 0
    for _ in range(50):
        e = rng.normal(size=n)
        d = -0.15 + e + 0.5 * np.r_[0.0, e[:-1]]
        hits += evaluation.hac_mean_test(d, 5)["p_value"] < 0.05
    assert hits >= 45


def test_verdict_needs_significance_for_skill():
    rng = np.random.default_rng(0)
    y = (rng.random(1000) < 0.5).astype(int)
    rate = float(y.mean())
    base = evaluation.baselines(y, {"train_rate": rate})
    p = np.full(1000, rate)
    p[int(np.argmax(y))] += 1e-7  # one row a hair better: a meaningless improvement
    tiny = evaluation.scores(y, p)
    assert tiny["log_loss"] < base["train_rate"]["log_loss"]
    test = evaluation.loss_difference_test(y, p, np.full(1000, rate), 20)
    text = evaluation.verdict(tiny, base, test=test)
    assert text.startswith("no significant skill: log loss "), text
    how = "Diebold-Mariano, Harvey-Leybourne-Newbold t test, HAC lag 19, uniform kernel)"
    assert f"p = {test['p_value']:.3f} by {how}" in text, text
    good_p = np.where(y == 1, 0.7, 0.3)
    good = evaluation.scores(y, good_p)
    test = evaluation.loss_difference_test(y, good_p, np.full(1000, rate), 20)
    assert evaluation.verdict(good, base, test=test).startswith("skill: log loss ")
    assert "p < 1e-15" in evaluation.verdict(good, base, test=test)
    assert evaluation.verdict(good, base, test={**test, "p_value": 0.01}, alpha=0.005).startswith("no significant")
    worse = evaluation.scores(y, np.where(y == 1, 0.3, 0.7))
    assert evaluation.verdict(worse, base, test=test).startswith("no skill: ")


def test_summary_tests_against_the_best_baseline_over_the_horizon():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.5).astype(int)
    p = np.full(500, 0.5)
    p[0] += 1e-7
    result = evaluation.summary(y, p, {"method": "none"}, {"train_rate": 0.5}, split="test",
                                model={"name": "m", "model_type": "logreg", "symbol": "tBTCUSD",
                                       "timeframe": "1h", "horizon": 20},
                                period={"start": "a", "end": "b"})
    assert result["test"]["horizon"] == 20 and result["test"]["lag"] == 19
    assert result["test"]["baseline"] == "train_rate"
    assert result["verdict"].startswith(("no significant skill", "no skill")), result["verdict"]


def test_the_fallback_is_said_in_the_verdict_and_by_evaluate():
    from genesis_fw.cli import _evaluation_text

    # labels alternating up/down and a constant model: the loss differences alternate, so the uniform
    # long-run variance over 1 lag (horizon 2) is negative and the Bartlett fallback is used
    y = np.tile([1, 0], 200)
    result = evaluation.summary(y, np.full(400, 0.6), {"method": "none"}, {"train_rate": 0.5}, split="test",
                                model={"name": "m", "model_type": "logreg", "symbol": "tBTCUSD",
                                       "timeframe": "1h", "horizon": 2},
                                period={"start": "2019-01-01T00:00", "end": "2019-01-17T15:00"})
    test = result["test"]
    assert test["kernel"] == "bartlett" and test["lag"] == 2 and "not positive" in test["fallback"]
    assert f"  Note: {test['fallback']}" in _evaluation_text(result)
    better = {**result["baselines"]["train_rate"], "log_loss": 0.1}
    text = evaluation.verdict(better, result["baselines"], test=test)
    assert "HAC lag 2, bartlett kernel (the uniform one was not positive)" in text, text

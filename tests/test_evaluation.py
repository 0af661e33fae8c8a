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

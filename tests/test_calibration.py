"""Calibration (genesis_fw.ml.calibration): Platt and isotonic as scikit-learn fits them, stored as plain
numbers, applied identically after a JSON round trip, and chosen by cross-validated log loss only."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ml_sample import logreg_on_sample
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from genesis_fw.errors import ConfigError, DataError
from genesis_fw.ml import calibration

H = 3_600_000


def _times(n: int) -> tuple[np.ndarray, np.ndarray]:
    start = np.arange(n, dtype=np.int64) * H
    return start, start + 5 * H  # 5-bar horizons on 1h


def _simulate(n: int, seed: int, overconfident: bool) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities, labels drawn from them, and reported p (pushed toward 0/1 when overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 0.8, n)
    true_p = expit(z)
    y = (rng.random(n) < true_p).astype(np.int64)
    return y, expit(3.0 * z) if overconfident else true_p


def test_platt_is_sklearns_logistic_regression_on_the_logit():
    data = logreg_on_sample()["validation"]
    p, y = data["p"], data["y"]
    cal = calibration.fit("platt", p, y)
    x = logit(np.clip(p, 1e-3, 1 - 1e-3)).reshape(-1, 1)
    ref = LogisticRegression(C=1e10, max_iter=1000).fit(x, y)
    assert cal["a"] == pytest.approx(float(ref.coef_[0, 0]), rel=1e-5)
    assert cal["b"] == pytest.approx(float(ref.intercept_[0]), rel=1e-5, abs=1e-8)
    test_p = logreg_on_sample()["test"]["p"]
    q = calibration.apply(cal, test_p)
    np.testing.assert_allclose(q, ref.predict_proba(logit(np.clip(test_p, 1e-3, 1 - 1e-3)).reshape(-1, 1))[:, 1],
                               rtol=1e-5)


def test_isotonic_equals_sklearn_and_survives_a_json_round_trip_bit_for_bit():
    data = logreg_on_sample()
    p, y = data["validation"]["p"], data["validation"]["y"]
    cal = calibration.fit("isotonic", p, y)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-3, y_max=1 - 1e-3).fit(p, y)
    test_p = np.concatenate([data["test"]["p"], [0.0, 1.0, p.min(), p.max()]])
    before = calibration.apply(cal, test_p)
    np.testing.assert_allclose(before, iso.predict(test_p), rtol=0, atol=1e-12)
    loaded = json.loads(json.dumps(cal))
    after = calibration.apply(loaded, test_p)
    assert before.tobytes() == after.tobytes()
    assert before.min() >= 1e-3 and before.max() <= 1 - 1e-3


@pytest.mark.parametrize("seed", range(5))
def test_isotonic_never_reaches_0_or_1(seed):
    # perfectly separable: plain isotonic regression would output exact 0s and 1s
    rng = np.random.default_rng(seed)
    p = rng.random(200)
    y = (p > 0.5).astype(int)
    q = calibration.apply(calibration.fit("isotonic", p, y), np.linspace(0, 1, 101))
    assert q.min() == pytest.approx(1e-3) and q.max() == pytest.approx(1 - 1e-3)
    assert q.min() > 0 and q.max() < 1
    assert np.isfinite(log_loss(1 - (np.linspace(0, 1, 101) > 0.5), q, labels=[0, 1]))


def test_none_is_the_identity_and_platt_survives_json_bit_for_bit():
    p = logreg_on_sample()["test"]["p"]
    assert calibration.apply({"method": "none"}, p).tobytes() == np.asarray(p, dtype=np.float64).tobytes()
    y = logreg_on_sample()["validation"]["y"]
    cal = calibration.fit("platt", logreg_on_sample()["validation"]["p"], y)
    assert calibration.apply(json.loads(json.dumps(cal)), p).tobytes() == calibration.apply(cal, p).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_overconfident_probabilities_get_a_calibrator_that_helps_on_held_out_data(seed):
    y, p = _simulate(1600, seed, overconfident=True)
    fit_rows, held = slice(0, 800), slice(800, None)
    start, end = _times(800)
    chosen = calibration.choose(p[fit_rows], y[fit_rows], start, end, "1h")
    assert chosen["method"] in ("platt", "isotonic")
    assert set(chosen["cv_log_loss"]) == set(calibration.METHODS)
    assert chosen["cv_log_loss"][chosen["method"]] < chosen["cv_log_loss"]["none"]
    assert chosen["method"] in chosen["chosen_because"]
    raw = log_loss(y[held], p[held], labels=[0, 1])
    assert log_loss(y[held], calibration.apply(chosen, p[held]), labels=[0, 1]) < raw
    json.dumps(chosen, allow_nan=False)


def test_calibrated_probabilities_keep_none_in_most_seeds():
    kept = []
    for seed in range(10):
        y, p = _simulate(800, 100 + seed, overconfident=False)
        start, end = _times(800)
        chosen = calibration.choose(p, y, start, end, "1h")
        kept.append(chosen["method"] == "none")
        if chosen["method"] == "none":
            assert chosen == {"method": "none", "cv_log_loss": chosen["cv_log_loss"],
                              "chosen_because": chosen["chosen_because"]}
    assert sum(kept) >= 7, kept


def test_choose_scores_each_method_on_purged_folds_by_hand():
    data = logreg_on_sample()["validation"]
    p, y, start, end = data["p"], data["y"], data["start_ms"], data["end_ms"]
    chosen = calibration.choose(p, y, start, end, "1h", n_splits=4, embargo=2)
    from genesis_fw.ml.splits import PurgedKFold

    folds = list(PurgedKFold(4, start_ms=start, end_ms=end, timeframe="1h", embargo=2).split(p))
    for method in calibration.METHODS:
        losses = [log_loss(y[te], calibration.apply(calibration.fit(method, p[tr], y[tr]), p[te]), labels=[0, 1])
                  for tr, te in folds]
        assert chosen["cv_log_loss"][method] == pytest.approx(float(np.mean(losses)), rel=1e-12)
    best = min(chosen["cv_log_loss"], key=chosen["cv_log_loss"].get)
    if chosen["method"] != "none":
        assert chosen["method"] == best
        refit = calibration.fit(best, p, y)
        assert calibration.apply(chosen, p).tobytes() == calibration.apply(refit, p).tobytes()
    only = calibration.choose(p, y, start, end, "1h", methods=("none", "platt"))
    assert set(only["cv_log_loss"]) == {"none", "platt"}


def test_errors():
    p, y = np.array([0.2, 0.8, 0.4, 0.6]), np.array([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="unknown calibration method 'beta'"):
        calibration.fit("beta", p, y)
    with pytest.raises(ConfigError, match="unknown calibration method"):
        calibration.apply({"method": "beta"}, p)
    with pytest.raises(ConfigError, match="unknown calibration method"):
        calibration.choose(p, y, *_times(4), "1h", methods=("none", "beta"), n_splits=2)
    with pytest.raises(ConfigError, match="platt"):
        calibration.apply({"method": "platt", "a": 1.0}, p)
    with pytest.raises(DataError, match="outside"):
        calibration.fit("platt", np.array([0.2, 1.5]), np.array([0, 1]))
    with pytest.raises(DataError, match="outside"):
        calibration.apply({"method": "none"}, np.array([0.2, 1.5]))
    with pytest.raises(DataError, match="both"):
        calibration.fit("platt", p, np.ones(4, dtype=int))

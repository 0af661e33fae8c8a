"""Scores of predicted probabilities against 0/1 labels, the constant base-rate yardsticks, and the verdict.

Pure functions over numpy arrays: ``y`` holds 0/1 labels (1 = price up), ``p`` the predicted probability
of 1 (a fraction in [0, 1]). Every figure is computed by ``sklearn.metrics`` on the same data, so it
equals what scikit-learn reports; this module adds the input checks, the undefined cases (``None``
instead of NaN or a warning) and the expected calibration error, which scikit-learn does not offer.

Units: ``log_loss`` in nats per row (natural log; p is clipped to [eps, 1 - eps] with eps the float64
machine epsilon, as ``sklearn.metrics.log_loss`` does, so p = 0 for an up move costs about 36.04 nats,
not infinity); ``brier`` in probability squared (0 perfect, 0.25 for a constant 0.5); ``ece`` as a
probability (0 perfect); ``roc_auc``, ``pr_auc``, ``precision``, ``recall``, ``accuracy`` and ``up_rate``
as fractions. ``precision``, ``recall``, ``accuracy`` and ``confusion`` classify ``p >= threshold`` as up.

Expected calibration error (ECE): the [0, 1] range is cut into ``bins`` equal-width bins; bin k holds the
p in (k/bins, (k+1)/bins], the first bin also 0 (the binning of ``sklearn.calibration.calibration_curve``
with ``strategy="uniform"``). ECE = sum over non-empty bins of (count / n) * |mean p - observed up-rate|.

Significance: :func:`loss_difference_test` (Diebold-Mariano on the per-row log-loss differences, with the
uniform-kernel long-run variance over h - 1 lags because labels over h bars overlap, and the
Harvey-Leybourne-Newbold small-sample correction with Student-t critical values) decides whether
:func:`verdict` says "skill" or "no significant skill".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import DataError


def probabilities(p: Any, what: str = "probabilities") -> np.ndarray:
    """``p`` as a 1-D float64 array of probabilities; :class:`DataError` (one line, naming ``what`` and the
    first bad row) for another shape, non-numbers, NaN or values outside [0, 1]."""
    arr = np.asarray(p)
    if arr.ndim != 1:
        raise DataError(f"{what} must be a 1-D array, got shape {arr.shape}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numbers: {exc}") from None
    if np.isnan(arr).any():
        raise DataError(f"{what} contain NaN (first at row {int(np.argmax(np.isnan(arr)))})")
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{what}: {arr[i]!r} at row {i} is outside [0, 1]")
    return arr


def _check(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    ya, pa = np.asarray(y), np.asarray(p)
    if ya.ndim != 1 or pa.ndim != 1:
        raise DataError(f"labels and probabilities must be 1-D arrays, got shapes {ya.shape} and {pa.shape}")
    if ya.shape != pa.shape:
        raise DataError(f"labels and probabilities differ in length: {ya.size} labels, {pa.size} probabilities")
    if ya.size == 0:
        raise DataError("no rows to evaluate: the labels and probabilities are empty")
    pf = probabilities(pa)
    try:
        yf = ya.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"labels must be numbers: {exc}") from None
    wrong = (yf != 0) & (yf != 1)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise DataError(f"label {ya[i]!r} at row {i} is not 0 or 1")
    return yf.astype(np.int64), pf


def _opt(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def reliability(y: Any, p: Any, bins: int = 10) -> dict[str, Any]:
    """Per-bin calibration (for the reliability diagram and the ECE), equal-width bins on [0, 1].

    Returns ``{"bins": [{"lo", "hi", "count", "mean_predicted", "observed_rate"}, ...], "n", "ece"}``:
    one entry per bin in order (empty bins included, their mean and rate ``None``); ``lo``/``hi`` are the
    bin edges (probabilities); ``ece`` as in the module docstring.
    """
    yv, pv = _check(y, p)
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise DataError(f"invalid number of bins {bins!r}: expected a whole number >= 1")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    ids = np.searchsorted(edges[1:-1], pv)  # as sklearn.calibration.calibration_curve
    count = np.bincount(ids, minlength=bins)
    psum = np.bincount(ids, weights=pv, minlength=bins)
    ysum = np.bincount(ids, weights=yv.astype(np.float64), minlength=bins)
    out, ece = [], 0.0
    for k in range(int(bins)):
        c = int(count[k])
        mean_p = float(psum[k] / c) if c else None
        rate = float(ysum[k] / c) if c else None
        if c:
            ece += c / pv.size * abs(mean_p - rate)  # type: ignore[operator]
        out.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "count": c,
                    "mean_predicted": mean_p, "observed_rate": rate})
    return {"bins": out, "n": int(pv.size), "ece": float(ece)}


def scores(y: Any, p: Any, *, threshold: float = 0.5, bins: int = 10) -> dict[str, Any]:
    """The scores of probabilities ``p`` for labels ``y`` (units in the module docstring).

    Keys: ``n``, ``up_rate``, ``log_loss``, ``brier``, ``roc_auc``, ``pr_auc`` (average precision),
    ``precision``, ``recall``, ``accuracy``, ``confusion`` (``[[tn, fp], [fn, tp]]``, up when
    ``p >= threshold``), ``ece`` (``bins`` equal-width bins). Plain Python numbers, JSON-ready; ``None``
    where undefined: ``roc_auc`` with one class only, ``pr_auc`` and ``recall`` with no up label,
    ``precision`` when nothing is predicted up. Bad input raises :class:`DataError`.
    """
    from sklearn import metrics as skm

    yv, pv = _check(y, p)
    if not (isinstance(threshold, int | float | np.number) and 0 <= float(threshold) <= 1):
        raise DataError(f"invalid threshold {threshold!r}: expected a probability in [0, 1]")
    yhat = (pv >= float(threshold)).astype(np.int64)
    positives, predicted_up = int(yv.sum()), int(yhat.sum())
    both = 0 < positives < yv.size
    return {
        "n": int(yv.size),
        "up_rate": positives / yv.size,
        "log_loss": float(skm.log_loss(yv, pv, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(yv, pv, pos_label=1)),
        "roc_auc": float(skm.roc_auc_score(yv, pv)) if both else None,
        "pr_auc": float(skm.average_precision_score(yv, pv)) if positives else None,
        "precision": float(skm.precision_score(yv, yhat, zero_division=np.nan)) if predicted_up else None,
        "recall": float(skm.recall_score(yv, yhat, zero_division=np.nan)) if positives else None,
        "accuracy": float(skm.accuracy_score(yv, yhat)),
        "confusion": [[int(v) for v in row] for row in skm.confusion_matrix(yv, yhat, labels=[0, 1])],
        "ece": reliability(yv, pv, bins)["ece"],
    }


def baselines(y: Any, rates: dict[str, float], **options: Any) -> dict[str, dict[str, Any]]:
    """:func:`scores` of each constant predictor ``p = rate`` (e.g. ``{"train_rate": 0.52}``).

    ``options`` go to :func:`scores` (``threshold``, ``bins``). A rate outside [0, 1] raises :class:`DataError`.
    """
    yv, _ = _check(y, np.zeros(np.asarray(y).shape))
    out = {}
    for name, rate in rates.items():
        r = float(rate)
        if not (math.isfinite(r) and 0 <= r <= 1):
            raise DataError(f"baseline {name}: rate {rate!r} is not a probability in [0, 1]")
        out[name] = scores(yv, np.full(yv.size, r), **options)
    return out


def skill(model: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """Skill scores against a baseline: ``log_loss_skill = 1 - ll / ll_base``, ``brier_skill = 1 - b / b_base``.

    Fractions: 0 is no better than the baseline, above 0 better, 1 perfect; ``None`` when the baseline
    scores 0 (a perfect baseline leaves nothing to improve).
    """
    def ratio(key: str) -> float | None:
        base = baseline.get(key)
        return None if not base else _opt(1.0 - float(model[key]) / float(base))

    return {"log_loss_skill": ratio("log_loss"), "brier_skill": ratio("brier")}


def _pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with 4 decimals, or 6 when 4 make them look equal."""
    digits = 4 if f"{a:.4f}" != f"{b:.4f}" or a == b else 6
    return f"{a:.{digits}f}", f"{b:.{digits}f}"


def per_row_log_loss(y: Any, p: Any) -> np.ndarray:
    """Each row's log loss (nats), ``-(y ln p + (1 - y) ln(1 - p))`` with ``p`` clipped to [eps, 1 - eps]
    (eps = float64 machine epsilon, as ``sklearn.metrics.log_loss``); their mean is :func:`scores`'
    ``log_loss``."""
    yv, pv = _check(y, p)
    eps = np.finfo(np.float64).eps
    pc = np.clip(pv, eps, 1.0 - eps)
    return -(yv * np.log(pc) + (1 - yv) * np.log1p(-pc))


def hac_mean_test(d: Any, horizon: int) -> dict[str, Any]:
    """Is the mean of the series ``d`` below 0? The Diebold-Mariano test with the Harvey-Leybourne-Newbold
    correction, one-sided, for differences of forecasts ``horizon`` rows (bars) ahead.

    Forecasts over h rows whose outcomes overlap make ``d`` (at least) MA(h - 1): its autocovariances
    g_j = (1/n) * sum_t (d_t - mean)(d_{t-j} - mean) vanish beyond lag h - 1. The long-run variance is
    S = g_0 + 2 * sum_{j=1..h-1} g_j, the truncated uniform (rectangular) kernel of Diebold & Mariano
    (1995) (statsmodels' OLS on a constant with ``cov_type="HAC"``, ``maxlags=h - 1``,
    ``weights_func=weights_uniform``, ``use_correction=False``). ``statistic`` = mean / sqrt(S / n) times
    sqrt((n + 1 - 2h + h(h - 1)/n) / n), the small-sample factor of Harvey, Leybourne & Newbold (1997);
    ``p_value`` = the Student-t (n - 1 degrees of freedom) probability of a statistic this low or lower
    when the true mean is 0. Bartlett weights (Newey-West) at lag h, used before, underestimate S for
    MA(h - 1) series and rejected about 0.09 instead of 0.05 at h = 20 (docs/ML_TRAINING.md).

    The rectangular S can come out 0 or negative (strongly negatively autocorrelated ``d``); then S is
    the Bartlett estimate with 2(h - 1) lags, weights 1 - j / (2h - 1), which is never negative, and
    ``fallback`` says so (``None`` otherwise). Returns ``{"statistic", "p_value", "mean_difference",
    "lag", "n", "horizon", "kernel", "df", "small_sample_factor", "fallback"}``: ``lag`` the number of
    autocovariances in S (h - 1, or 2(h - 1) after the fallback), ``kernel`` ``"uniform"`` or
    ``"bartlett"``. ``statistic`` is ``None`` when S is 0 also after the fallback (all values equal;
    ``p_value`` is then 0 for a negative mean, else 1).
    """
    from scipy.stats import t as student_t

    dv = np.asarray(d, dtype=np.float64)
    if dv.ndim != 1 or dv.size < 2:
        raise DataError(f"a test of the mean needs a 1-D series of at least 2 values, got shape {dv.shape}")
    if not np.isfinite(dv).all():
        raise DataError("the series to test holds NaN or infinite values")
    n = int(dv.size)
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or not 1 <= int(horizon) < n:
        raise DataError(f"invalid forecast horizon {horizon!r}: expected a whole number in [1, {n - 1}] (rows)")
    h = int(horizon)
    mean = float(dv.mean())
    dc = dv - mean
    lags = min(2 * (h - 1), n - 1)
    g = np.array([float(dc[j:] @ dc[:n - j]) / n for j in range(lags + 1)])
    lag, kernel, fallback = h - 1, "uniform", None
    s = float(g[0] + 2.0 * g[1:h].sum())
    if s <= 0.0 and h > 1:
        j = np.arange(1, lags + 1)
        s_uniform, lag, kernel = s, lags, "bartlett"
        s = float(g[0] + 2.0 * ((1.0 - j / (lags + 1)) * g[1:]).sum())
        fallback = (f"the uniform-kernel long-run variance over {h - 1} lags is not positive ({s_uniform:.3g}); "
                    f"used the Bartlett estimate over {lags} lags instead")
    factor = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    if s <= 0.0:
        stat, pval = None, (0.0 if mean < 0 else 1.0)
    else:
        stat = mean / math.sqrt(s / n) * factor
        pval = float(student_t.cdf(stat, n - 1))
    return {"statistic": stat, "p_value": pval, "mean_difference": mean, "lag": lag, "n": n, "horizon": h,
            "kernel": kernel, "df": n - 1, "small_sample_factor": factor, "fallback": fallback}


def loss_difference_test(y: Any, p_model: Any, p_base: Any, horizon: int) -> dict[str, Any]:
    """Diebold-Mariano test: is the model's log loss below the baseline's by more than chance?

    The per-row differences ``d_t = loss_model_t - loss_base_t`` (:func:`per_row_log_loss`, nats; below
    0 where the model does better) are tested with :func:`hac_mean_test` (one-sided, against a true
    mean of 0; a small ``p_value`` means the model is significantly better). Labels over a horizon
    of h bars overlap, which makes neighbouring differences correlated up to h - 1 rows apart; pass
    ``horizon`` = h in rows (bars). ``p_base`` is the baseline's probabilities (a constant rate as an
    array). Returns :func:`hac_mean_test`'s dict, JSON-ready, for :func:`verdict`'s ``test``.
    """
    d = per_row_log_loss(y, p_model) - per_row_log_loss(y, p_base)
    return hac_mean_test(d, horizon)


def _p_text(p: float) -> str:
    """``= 0.123``, ``= 4.2e-05`` or ``< 1e-15`` (the normal tail underflows far out)."""
    return f"= {p:.3f}" if p >= 0.001 else (f"= {p:.1e}" if p >= 1e-15 else "< 1e-15")


def _test_text(test: dict[str, Any]) -> str:
    """How the p-value was found, e.g. "Diebold-Mariano, Harvey-Leybourne-Newbold t test, HAC lag 19, uniform
    kernel"; a test dict without ``kernel`` (recorded before the kernel was) reads "Diebold-Mariano with HAC lag L"."""
    kernel = test.get("kernel")
    if kernel is None:
        return f"Diebold-Mariano with HAC lag {test['lag']}"
    note = " (the uniform one was not positive)" if test.get("fallback") else ""
    return f"Diebold-Mariano, Harvey-Leybourne-Newbold t test, HAC lag {test['lag']}, {kernel} kernel{note}"


def verdict(model_scores: dict[str, Any], baseline_scores: dict[str, dict[str, Any]], *,
            test: dict[str, Any] | None = None, alpha: float = 0.05) -> str:
    """One plain sentence: has the model skill against the best constant baseline (lowest log loss)?

    * "no skill: ..." when the model's log loss is not strictly below the best baseline's;
    * "no significant skill: log loss X vs base rate Y (skill Z %, p = P by Diebold-Mariano,
      Harvey-Leybourne-Newbold t test, HAC lag L, uniform kernel) ..." when it is below but ``test``
      (:func:`loss_difference_test` against that baseline) has ``p_value >= alpha``;
    * "skill: ..." when it is below and significant (``p_value < alpha``); without a ``test`` the sentence
      says "skill: ... (log-loss skill Z %) ...; significance not tested".

    All mention the Brier scores. ``alpha`` is a probability (0.05 = 5 %).
    """
    if not baseline_scores:
        raise DataError("no baseline to compare with: give at least one base rate")
    if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0 < alpha < 1):
        raise DataError(f"invalid significance level {alpha!r}: expected a probability in (0, 1)")
    name, base = min(baseline_scores.items(), key=lambda kv: kv[1]["log_loss"])
    ll, ll_b = float(model_scores["log_loss"]), float(base["log_loss"])
    b, b_b = float(model_scores["brier"]), float(base["brier"])
    ll_t, ll_bt = _pair(ll, ll_b)
    b_t, b_bt = _pair(b, b_b)
    rate = f"the base rate's {ll_bt} (the constant {name})"
    if not ll < ll_b:
        return (f"no skill: log loss {ll_t} is not below {rate}; Brier {b_t} vs {b_bt}"
                f"{'' if b < b_b else ' (not below either)'}")
    sk = skill(model_scores, base)
    bs = sk["brier_skill"]
    brier = f"Brier {b_t} vs {b_bt}" + (f" (Brier skill {bs * 100:.2f} %)" if bs is not None else "")
    if test is None:
        return f"skill: log loss {ll_t} vs base rate {ll_bt} (log-loss skill {sk['log_loss_skill'] * 100:.2f} %) " \
               f"against {name}; {brier}; significance not tested"
    pval = float(test["p_value"])
    tested = (f"(skill {sk['log_loss_skill'] * 100:.2f} %, p {_p_text(pval)} by {_test_text(test)})")
    head = "skill" if pval < alpha else "no significant skill"
    return f"{head}: log loss {ll_t} vs base rate {ll_bt} {tested} against {name}; {brier}"


def summary(
    y: Any,
    p_raw: Any,
    calibration: dict[str, Any],
    rates: dict[str, float],
    *,
    model: dict[str, Any],
    split: str,
    period: dict[str, str],
    threshold: float = 0.5,
    bins: int = 10,
    horizon: int | None = None,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Everything an evaluation reports, laid out as
    :func:`genesis_fw.ml.evaluation_report.render_evaluation_html` takes it.

    ``p_raw`` are the model's raw probabilities for labels ``y``; ``calibration`` the stored calibration
    dict (:mod:`genesis_fw.ml.calibration`), applied to get the model's probabilities; ``rates`` the
    constant baselines (e.g. ``{"train_rate": ..., "validation_rate": ...}``); ``model`` ``{name,
    model_type, symbol, timeframe, horizon}``; ``split`` the part's name; ``period`` ``{start, end}``
    (UTC ISO of the first and last labelled bar). ``skill`` holds the skill against every baseline.
    ``test`` is :func:`loss_difference_test` of the calibrated probabilities against the best baseline
    (lowest log loss; its name under ``"baseline"``) for forecasts ``horizon`` rows ahead (default: the
    model's ``horizon``, whose overlapping labels make the loss differences autocorrelated; at least 1,
    at most the rows - 1), and the ``verdict`` uses it at significance level ``alpha``.
    """
    from .calibration import apply

    p = apply(calibration, p_raw)
    model_scores = scores(y, p, threshold=threshold, bins=bins)
    base = baselines(y, rates, threshold=threshold, bins=bins)
    best = min(base, key=lambda k: base[k]["log_loss"]) if base else None
    test = None
    if best is not None:
        h = int(model.get("horizon", 1)) if horizon is None else horizon
        test = {**loss_difference_test(y, p, np.full(np.asarray(p).size, float(rates[best])),
                                       max(1, min(h, np.asarray(p).size - 1))), "baseline": best}
    return {
        "model": dict(model),
        "split": split,
        "period": dict(period),
        "threshold": float(threshold),
        "scores": model_scores,
        "raw_scores": scores(y, p_raw, threshold=threshold, bins=bins),
        "baselines": base,
        "baseline_rates": {k: float(v) for k, v in rates.items()},
        "skill": {name: skill(model_scores, b) for name, b in base.items()},
        "test": test,
        "verdict": verdict(model_scores, base, test=test, alpha=alpha),
        "calibration": dict(calibration),
        "reliability": {"raw": reliability(y, p_raw, bins), "calibrated": reliability(y, p, bins)},
    }

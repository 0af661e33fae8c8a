"""The peer of bench_train.py: labels + split + grid search + calibration in plain pandas / scikit-learn.

The same recipe as ``genesis-fw train`` written the straightforward way, from a candle file and a feature
file (timestamp + feature columns): forward-return labels from the next bar's open to the close ``h`` bars
of time later (endpoint rule, exact-zero returns dropped), a 60/20/20 chronological split with each earlier
part purged of labels reaching the next part, ``GridSearchCV`` of StandardScaler + LogisticRegression over
five time-ordered purged folds of the training part scored by log loss, a refit of the best C, the
calibration (none / Platt / isotonic) chosen by log loss over five time-ordered purged folds of the
validation part, and the scores genesis-fw train reports for every part (the calibrated and the raw
model and the constants at the training and validation up-rates: log loss, Brier, ROC-AUC, PR-AUC,
precision, recall, accuracy, confusion matrix).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID = [0.001, 0.01, 0.1, 1.0, 10.0]
EPS = 1e-3  # as genesis_fw.ml.calibration.EPS


def purged_folds(start: np.ndarray, end: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K contiguous test blocks; training rows are those whose label ends before the block or starts after
    the block's last label end."""
    n = len(start)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    out, stop = [], 0
    for size in sizes:
        begin, stop = stop, stop + size
        lo, hi = start[begin], end[begin:stop].max()
        train = (end < lo) | (start > hi)
        train[begin:stop] = False
        out.append((np.flatnonzero(train), np.arange(begin, stop)))
    return out


def _ms(column: pd.Series) -> np.ndarray:
    """Open times as ms since the epoch, whatever the column's time unit."""
    return pd.to_datetime(column, utc=True).astype("datetime64[ms, UTC]").astype("int64").to_numpy()


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p)).reshape(-1, 1)


def _calibrator(method: str, p: np.ndarray, y: np.ndarray):
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "none":
        return lambda q: q
    if method == "platt":
        lr = LogisticRegression(C=1e10).fit(_logit(p), y)
        return lambda q: lr.predict_proba(_logit(q))[:, 1]
    iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(p, y)
    return iso.predict


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn import metrics as m

    yhat = (p >= 0.5).astype(int)
    return {"log_loss": m.log_loss(y, p, labels=[0, 1]), "brier": m.brier_score_loss(y, p),
            "roc_auc": m.roc_auc_score(y, p), "pr_auc": m.average_precision_score(y, p),
            "precision": m.precision_score(y, yhat, zero_division=0), "recall": m.recall_score(y, yhat),
            "accuracy": m.accuracy_score(y, yhat), "confusion": m.confusion_matrix(y, yhat, labels=[0, 1])}


def run(candles_path: str, features_path: str, timeframe_ms: int, horizon: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    candles = pd.read_parquet(candles_path, columns=["timestamp", "open", "close"])
    ts = _ms(candles["timestamp"])
    close = pd.Series(candles["close"].to_numpy(), index=ts)
    entry = candles["open"].shift(-1).to_numpy()
    end = ts + horizon * timeframe_ms
    exit_ = close.reindex(end).to_numpy()
    ret = exit_ / entry - 1.0
    labelled = pd.DataFrame({"timestamp": ts, "end": end, "ret": ret}).dropna()
    labelled = labelled[labelled["ret"] != 0.0]
    feats = pd.read_parquet(features_path)
    feats["timestamp"] = _ms(feats["timestamp"])
    data = labelled.merge(feats, on="timestamp", how="inner").dropna()
    names = [c for c in feats.columns if c != "timestamp"]
    X = data[names].to_numpy()
    y = (data["ret"].to_numpy() > 0).astype(int)
    start, end = data["timestamp"].to_numpy(), data["end"].to_numpy()

    n = len(data)
    cut1, cut2 = int(n * 0.6), int(n * 0.6) + int(n * 0.2)
    tr = np.arange(cut1)
    tr = tr[end[tr] < start[cut1]]
    va = np.arange(cut1, cut2)
    va = va[end[va] < start[cut2]]
    te = np.arange(cut2, n)

    folds = purged_folds(start[tr], end[tr], 5)
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                          {"logisticregression__C": GRID}, scoring="neg_log_loss", cv=folds, refit=True)
    search.fit(X[tr], y[tr])
    model = search.best_estimator_
    p_va = model.predict_proba(X[va])[:, 1]
    cv_ll = {}
    for method in ("none", "platt", "isotonic"):
        losses = []
        for f_tr, f_te in purged_folds(start[va], end[va], 5):
            cal = _calibrator(method, p_va[f_tr], y[va][f_tr])
            losses.append(log_loss(y[va][f_te], cal(p_va[f_te]), labels=[0, 1]))
        cv_ll[method] = float(np.mean(losses))
    best = min(cv_ll, key=lambda m: (cv_ll[m], m != "none"))
    cal = _calibrator(best, p_va, y[va])
    rates = {"train_rate": y[tr].mean(), "validation_rate": y[va].mean()}
    scores = {}
    for part, rows in (("train", tr), ("validation", va), ("test", te)):
        raw = model.predict_proba(X[rows])[:, 1]
        scores[part] = {"model": _scores(y[rows], cal(raw)), "raw": _scores(y[rows], raw),
                        **{k: _scores(y[rows], np.full(rows.size, r)) for k, r in rates.items()}}
    p_te = cal(model.predict_proba(X[te])[:, 1])
    return {"rows": int(n), "train": int(tr.size), "validation": int(va.size), "test": int(te.size),
            "best_C": float(search.best_params_["logisticregression__C"]), "calibration": best,
            "cv_log_loss": cv_ll, "test_log_loss": float(log_loss(y[te], p_te, labels=[0, 1]))}

"""Real probabilities on real candles for the evaluation and calibration tests.

A logistic regression fitted on the default features of the bundled sample (real tBTCUSD 1m candles,
2019-04..06, resampled to 1h), labelled with a 20-bar horizon and split 60/20/20 in time order; its
raw probabilities on the validation and test parts, with their labels and label horizons.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from genesis_fw.config import FeaturesConfig
from genesis_fw.data.store import resample
from genesis_fw.ml import features
from genesis_fw.ml.labels import labels_for_table
from genesis_fw.ml.splits import chronological_split

SAMPLE = Path(__file__).resolve().parents[1] / "genesis_fw" / "sample" / "tBTCUSD_1m.parquet"


@functools.lru_cache(maxsize=1)
def logreg_on_sample() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    table = resample(SAMPLE, "1h")
    cfg = FeaturesConfig()
    feats = features.build(table, cfg)
    labels = labels_for_table(table, "1h", 20)
    first = feats.warmup_dropped
    keep = labels.index >= first  # bars that have features
    names = features.names(cfg)
    X_all = np.column_stack([feats.table.column(n).to_numpy() for n in names])
    X = X_all[labels.index[keep] - first]
    y = labels.price_up[keep].astype(np.int64)
    start, end = labels.timestamp_ms[keep], labels.end_ms[keep]
    split = chronological_split(start, end, "1h", horizon=20)
    scaler = StandardScaler().fit(X[split.train])
    model = LogisticRegression(C=1.0).fit(scaler.transform(X[split.train]), y[split.train])
    out: dict[str, Any] = {"train_rate": float(y[split.train].mean())}
    for part in ("validation", "test"):
        rows = getattr(split, part)
        out[part] = {
            "y": y[rows], "p": model.predict_proba(scaler.transform(X[rows]))[:, 1],
            "start_ms": start[rows], "end_ms": end[rows],
        }
    return out


"""Chronological split and purged K-fold (genesis_fw.ml.splits): no label horizon crosses a boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold

from genesis_fw.data.store import resample
from genesis_fw.errors import ConfigError, DataError
from genesis_fw.ml.labels import add_bars, labels_for_table
from genesis_fw.ml.splits import PurgedKFold, chronological_split, split_labels

SAMPLE = Path(__file__).resolve().parents[1] / "genesis_fw" / "sample" / "tBTCUSD_1m.parquet"
M = 60_000


def _overlaps(s1, e1, s2, e2) -> bool:
    return s1 <= e2 and s2 <= e1


def test_chronological_split_on_real_candles_purges_overlapping_horizons():
    labels = labels_for_table(pq.read_table(BTC_2D), "1m", 20)
    split = split_labels(labels)
    t, e = labels.timestamp_ms, labels.end_ms
    # time order, disjoint, each part before the next
    assert t[split.train].max() < t[split.validation].min()
    assert t[split.validation].max() < t[split.test].min()
    # no horizon of an earlier part reaches the next part's first bar
    assert e[split.train].max() < t[split.validation].min()
    assert e[split.validation].max() < t[split.test].min()
    # the purge bit: the raw 60 % cut would have had overlapping rows, and those are what was removed
    n = len(labels)
    assert split.purged["train"] > 0 and split.purged["validation"] > 0 and split.purged["test"] == 0
    assert split.train.size + split.purged["train"] == int(0.6 * n)
    assert split.test.size == n - int(0.6 * n) - int(0.2 * n)
    # the purge removes only what it must: the last kept train row's successor does overlap validation
    assert e[split.train[-1] + 1] >= t[split.validation[0]]
    assert split.boundaries["train_start"] == "2019-04-01T00:00:00Z"
    assert split.boundaries["validation_start"] < split.boundaries["test_start"]
    assert split.boundaries["train_label_end"] < split.boundaries["validation_start"]


def test_embargo_widens_the_gap_in_bars_of_time():
    labels = labels_for_table(pq.read_table(BTC_2D), "1m", 10)
    plain = split_labels(labels)
    emb = split_labels(labels, embargo=30)
    t, e = labels.timestamp_ms, labels.end_ms
    assert e[emb.train].max() < t[emb.validation[0]] - 30 * M
    assert e[emb.validation].max() < t[emb.test[0]] - 30 * M
    assert emb.train.size < plain.train.size and emb.validation.size < plain.validation.size


def test_split_errors():
    t = np.arange(10, dtype=np.int64) * M
    with pytest.raises(DataError, match="too few labelled rows .*horizon 50 bars.*empty after purging"):
        chronological_split(t, t + 50 * M, "1m", horizon=50)
    with pytest.raises(DataError, match="too few labelled rows"):
        chronological_split(t[:2], t[:2], "1m")
    with pytest.raises(ConfigError, match="fractions"):
        chronological_split(t, t, "1m", fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ConfigError, match="embargo"):
        chronological_split(t, t, "1m", embargo=-1)
    with pytest.raises(DataError, match="increasing"):
        chronological_split(t[::-1], t[::-1], "1m")
    with pytest.raises(ConfigError, match="folds"):
        PurgedKFold(1, start_ms=t, end_ms=t, timeframe="1m")
    with pytest.raises(DataError, match="rows"):
        next(PurgedKFold(3, start_ms=t, end_ms=t, timeframe="1m").split(np.zeros((9, 1))))


def test_split_in_calendar_months():
    months = np.arange(np.datetime64("2018-01"), np.datetime64("2020-01")).astype("datetime64[ms]").astype(np.int64)
    end = add_bars(months, 2, "1M")
    split = chronological_split(months, end, "1M", embargo=1)
    assert end[split.train].max() < add_bars(months[split.validation[0]], -1, "1M")
    assert split.boundaries["train_start"] == "2018-01-01T00:00:00Z"


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_without_horizon_the_folds_are_sklearns_kfold(k):
    t = np.cumsum(np.random.default_rng(k).integers(1, 5, 103)).astype(np.int64) * M
    ours = list(PurgedKFold(k, start_ms=t, end_ms=t, timeframe="1m").split(t))
    theirs = list(KFold(k, shuffle=False).split(t))
    assert len(ours) == len(theirs) == k
    for (a_tr, a_te), (b_tr, b_te) in zip(ours, theirs, strict=True):
        assert np.array_equal(a_tr, b_tr) and np.array_equal(a_te, b_te)


@st.composite
def _cases(draw):
    n = draw(st.integers(4, 120))
    gaps = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    h = draw(st.integers(1, 60))
    per_row = draw(st.booleans())  # a horizon per row (e.g. 1M or mixed), else a fixed one
    horizons = draw(st.lists(st.integers(0, h), min_size=n, max_size=n)) if per_row else [h] * n
    k = draw(st.integers(2, min(8, n)))
    embargo = draw(st.integers(0, 20))
    return np.cumsum(gaps).astype(np.int64) * M, np.asarray(horizons, dtype=np.int64) * M, k, embargo


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_property_no_training_horizon_overlaps_its_test_fold(case):
    t, hz, k, embargo = case
    end = t + hz
    cv = PurgedKFold(k, start_ms=t, end_ms=end, timeframe="1m", embargo=embargo)
    folds = list(cv.split(np.zeros((t.size, 2))))
    assert len(folds) == cv.get_n_splits() == k
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(tests, np.arange(t.size))  # contiguous blocks, in order, covering every row once
    for train, test in folds:
        lo, hi = t[test].min(), end[test].max()
        assert not np.intersect1d(train, test).size
        for i in train:  # purge (both sides) and embargo after the fold
            assert not _overlaps(t[i], end[i], lo, hi)
            assert not (hi < t[i] <= hi + embargo * M)
        # and nothing else is dropped: every other row outside the fold trains
        outside = np.setdiff1d(np.arange(t.size), test)
        expected = [i for i in outside if end[i] < lo or t[i] > hi + embargo * M]
        assert train.tolist() == expected


def _features(table):
    """Causal features: log returns over the last 1, 2, 4 and 8 bars (bar t uses closes up to t only)."""
    close = table.column("close").to_numpy()
    logc = np.log(close)
    cols = []
    for lag in (1, 2, 4, 8):
        r = np.full(close.size, np.nan)
        r[lag:] = logc[lag:] - logc[:-lag]
        cols.append(r)
    return np.column_stack(cols)


def test_grid_search_runs_with_purged_folds_on_real_candles():
    table = resample(SAMPLE, "1h")
    labels = labels_for_table(table, "1h", 20)
    feats = _features(table)[labels.index]
    ok = np.isfinite(feats).all(axis=1)
    assert ok[20:].all()  # only the warm-up rows lack features
    split = split_labels(labels)
    rows = split.train[ok[split.train]]
    X, y = feats[rows], labels.price_up[rows]
    cv = PurgedKFold.from_labels(labels, rows, n_splits=5, embargo=5)
    grid = {"C": [0.01, 0.1, 1.0]}
    search = GridSearchCV(LogisticRegression(), grid, cv=cv, scoring="neg_log_loss").fit(X, y)
    assert search.best_params_["C"] in grid["C"]
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and np.all(scores < 0)
    assert all(f"split{i}_test_score" in search.cv_results_ for i in range(5))
    # the folds GridSearchCV used purge real overlaps: each inner fold trains on fewer rows than KFold
    t, e = labels.timestamp_ms[rows], labels.end_ms[rows]
    for (train, test), (kf_train, _) in zip(cv.split(X), KFold(5).split(X), strict=True):
        lo, hi = t[test].min(), e[test].max()
        assert not np.any((t[train] <= hi) & (e[train] >= lo))
        if test[0] > 0:
            assert train.size < kf_train.size

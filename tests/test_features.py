"""The default feature set (genesis_fw/ml/features.py): no lookahead, the warm-up, and each window feature
against pandas on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from genesis_fw import indicators
from genesis_fw.config import FeaturesConfig
from genesis_fw.data.store import CandleStore, resample
from genesis_fw.errors import DataError
from genesis_fw.ml import features

DATA = Path(__file__).parent / "data"
SAMPLE = CandleStore.sample().path("tBTCUSD", "1m")


@pytest.fixture(scope="module")
def real():
    """Real candles: a 2-day 1m fixture and the bundled 1m sample resampled to 1h."""
    return {"tETHUSD 1m": pq.read_table(DATA / "tETHUSD_1m_2019-04-01_2d.parquet"),
            "tBTCUSD 1h": resample(SAMPLE, "1h")}


SMALL = FeaturesConfig(ema_spans=(3, 8), rsi_period=5, adx_period=4, atr_period=6, return_lags=(1, 3),
                       volatility_window=5, volume_window=7)


@pytest.mark.parametrize("cfg", [FeaturesConfig(), SMALL], ids=["default", "small"])
def test_prefix_invariance_for_every_feature(real, cfg):
    """Features computed on the data cut at T equal, for every bar t <= T, those computed on all of it:
    bit for bit, warm-up rows included, at several cut points."""
    for name, table in real.items():
        full = features.compute(table, cfg)
        assert set(full) == set(features.names(cfg))
        for cut in (1, 2, 37, features.warmup_bars(cfg) + 1, table.num_rows // 2, table.num_rows - 1):
            part = features.compute(table.slice(0, cut), cfg)
            for feature, values in part.items():
                np.testing.assert_array_equal(values, full[feature][:cut], err_msg=f"{feature} on {name} cut {cut}")


def test_warmup_drops_exactly_the_undefined_and_unsettled_rows(real):
    cfg = FeaturesConfig()
    table = real["tBTCUSD 1h"]
    result = features.build(table, cfg)
    w = features.warmup_bars(cfg)
    assert w == indicators.ema_warmup(max(cfg.ema_spans))
    assert result.warmup_dropped == w and result.table.num_rows == table.num_rows - w
    assert result.table.column_names == ["timestamp", *features.names(cfg)]
    assert result.table.column("timestamp")[0] == table.column("timestamp")[w]
    full = features.compute(table, cfg)
    # Before the warm-up some feature is undefined; right after it every one is defined.
    assert np.isnan(full["volume_z_50"][cfg.volume_window - 2])
    for name in features.names(cfg):
        np.testing.assert_array_equal(result.table.column(name).to_numpy(), full[name][w:])


def test_features_are_the_shared_indicators(real):
    table = real["tETHUSD 1m"]
    h, lo, c = (table.column(k).to_numpy() for k in ("high", "low", "close"))
    got = features.compute(table, SMALL)
    np.testing.assert_array_equal(got["ema_8"], indicators.ema(c, 8) / c)
    np.testing.assert_array_equal(got["rsi_5"], indicators.rsi(c, 5))
    pdi, mdi, adx = indicators.dmi(h, lo, c, 4)
    np.testing.assert_array_equal(got["adx_4"], adx)
    np.testing.assert_array_equal(got["plus_di_4"], pdi)
    np.testing.assert_array_equal(got["minus_di_4"], mdi)
    np.testing.assert_array_equal(got["atr_6"], indicators.atr(h, lo, c, 6) / c)


def _rolling(x: np.ndarray, w: int, fn) -> np.ndarray:
    """``fn`` over each window of ``w`` values ending at each row (NaN before the first full one)."""
    out = np.full(x.size, np.nan)
    out[w - 1:] = fn(np.lib.stride_tricks.sliding_window_view(x, w), axis=-1)
    return out


def test_window_features_match_numpy_windows(real):
    """Each SQL window feature against a direct per-window numpy computation (exact windows, no
    running sums) on real candles."""
    for name, table in real.items():
        close, volume = (table.column(k).to_numpy() for k in ("close", "volume"))
        got = features.compute(table, SMALL)
        for k in SMALL.return_lags:
            expected = np.full(close.size, np.nan)
            expected[k:] = np.log(close[k:] / close[:-k])
            np.testing.assert_allclose(got[f"log_return_{k}"], expected, rtol=1e-12, equal_nan=True, err_msg=name)
        ret = np.concatenate([[np.nan], np.log(close[1:] / close[:-1])])
        np.testing.assert_allclose(got["volatility_5"], _rolling(ret, 5, lambda a, axis: a.std(axis=axis, ddof=1)),
                                   rtol=1e-9, atol=1e-15, equal_nan=True, err_msg=name)
        std = _rolling(volume, 7, lambda a, axis: a.std(axis=axis, ddof=1))
        mean = _rolling(volume, 7, np.mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std == 0, 0.0, (volume - mean) / std)
        np.testing.assert_allclose(got["volume_z_7"], z, rtol=1e-8, atol=1e-8, equal_nan=True, err_msg=name)
        assert np.isnan(got["volume_z_7"][:6]).all() and not np.isnan(got["volume_z_7"][6:]).any()


def test_too_few_rows_is_a_clear_error(real):
    table = real["tBTCUSD 1h"]
    w = features.warmup_bars(FeaturesConfig())
    with pytest.raises(DataError, match=f"too few rows: {w} candles"):
        features.build(table.slice(0, w), FeaturesConfig())
    assert features.build(table.slice(0, w + 1), FeaturesConfig()).table.num_rows == 1


def test_definitions_hash_changes_with_every_parameter():
    base = features.definitions_hash(FeaturesConfig())
    assert base == features.definitions_hash(FeaturesConfig())
    import attrs

    changed = {features.definitions_hash(attrs.evolve(FeaturesConfig(), **{k: v})) for k, v in [
        ("ema_spans", (5, 10)), ("rsi_period", 7), ("adx_period", 7), ("atr_period", 7),
        ("return_lags", (1, 2)), ("volatility_window", 30), ("volume_window", 30)]}
    assert base not in changed and len(changed) == 7

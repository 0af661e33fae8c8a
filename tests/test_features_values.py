"""The feature values are exactly those of the plain, one-query-per-feature computation.

``features.compute`` is organised for speed (one DuckDB query for all window features, running beside
the numba kernels). This test keeps the straightforward path it replaced: each window feature as its
own query (the SQL as it was when every feature had its own file) and each recursive feature from the
kernels on plain writable copies, one after the other, and requires the two to agree bit for bit
(NaNs in the same places) on real candles, for the default and a small parameter set.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genesis_fw import indicators
from genesis_fw._util import arrow_to_numpy
from genesis_fw.config import FeaturesConfig
from genesis_fw.data.store import CandleStore, resample
from genesis_fw.ml import features

DATA = Path(__file__).parent / "data"

LOG_RETURN = """
SELECT ln(close / lag(close, $lag) OVER (ORDER BY timestamp)) AS value
FROM candles
ORDER BY timestamp"""

VOLATILITY = """
WITH r AS (
    SELECT timestamp, ln(close / lag(close) OVER (ORDER BY timestamp)) AS ret
    FROM candles
)
SELECT CASE WHEN count(ret) OVER w = $window THEN stddev_samp(ret) OVER w END AS value
FROM r
WINDOW w AS (ORDER BY timestamp ROWS BETWEEN $window - 1 PRECEDING AND CURRENT ROW)
ORDER BY timestamp"""

VOLUME_Z = """
SELECT CASE
           WHEN count(volume) OVER w < $window THEN NULL
           WHEN stddev_samp(volume) OVER w = 0 THEN 0.0
           ELSE (volume - avg(volume) OVER w) / stddev_samp(volume) OVER w
       END AS value
FROM candles
WINDOW w AS (ORDER BY timestamp ROWS BETWEEN $window - 1 PRECEDING AND CURRENT ROW)
ORDER BY timestamp"""


def reference(table, cfg: FeaturesConfig) -> dict[str, np.ndarray]:
    h, lo, c = (np.array(table.column(k).to_numpy(), dtype=np.float64) for k in ("high", "low", "close"))
    out: dict[str, np.ndarray] = {}
    for n in cfg.ema_spans:
        out[f"ema_{n}"] = indicators.ema(c, n) / c
    out[f"rsi_{cfg.rsi_period}"] = indicators.rsi(c, cfg.rsi_period)
    pdi, mdi, adx = indicators.dmi(h, lo, c, cfg.adx_period)
    out[f"adx_{cfg.adx_period}"], out[f"plus_di_{cfg.adx_period}"], out[f"minus_di_{cfg.adx_period}"] = adx, pdi, mdi
    out[f"atr_{cfg.atr_period}"] = indicators.atr(h, lo, c, cfg.atr_period) / c
    con = duckdb.connect()
    con.register("candles", table)

    def run(sql: str, **params: int) -> np.ndarray:
        values = con.execute(sql, params).fetchall()
        return np.array([np.nan if v is None else v for (v,) in values], dtype=np.float64)

    for k in cfg.return_lags:
        out[f"log_return_{k}"] = run(LOG_RETURN, lag=k)
    out[f"volatility_{cfg.volatility_window}"] = run(VOLATILITY, window=cfg.volatility_window)
    out[f"volume_z_{cfg.volume_window}"] = run(VOLUME_Z, window=cfg.volume_window)
    con.close()
    return out


def same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """NaN in the same places and every other value with the same bits (so 0.0 and -0.0 differ)."""
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok].view(np.uint64), want[ok].view(np.uint64), err_msg=what)


SMALL = FeaturesConfig(ema_spans=(3, 8), rsi_period=5, adx_period=4, atr_period=6, return_lags=(1, 3),
                       volatility_window=5, volume_window=7)


@pytest.mark.parametrize("cfg", [FeaturesConfig(), SMALL], ids=["default", "small"])
def test_values_equal_the_one_query_per_feature_computation(cfg):
    tables = {"tETHUSD 1m": pq.read_table(DATA / "tETHUSD_1m_2019-04-01_2d.parquet"),
              "tBTCUSD 1m": pq.read_table(DATA / "tBTCUSD_1m_2019-04-01_2d.parquet"),
              "tBTCUSD 1h": resample(CandleStore.sample().path("tBTCUSD", "1m"), "1h")}
    for name, table in tables.items():
        got = features.compute(table, cfg)
        want = reference(table, cfg)
        assert list(got) == features.names(cfg) and set(want) == set(got)
        for feature in got:
            assert got[feature].dtype == np.float64
            same_bits(got[feature], want[feature], f"{feature} on {name}")
        table_out = features.build(table, cfg).table
        w = features.warmup_bars(cfg)
        for feature in got:
            same_bits(table_out.column(feature).to_numpy(), want[feature][w:], f"{feature} on {name} (build)")


def test_features_process_loads_neither_pandas_nor_scikit_learn(btc_store):
    """A cold `genesis-fw features` run (a real process) computes without importing pandas or
    scikit-learn: pyarrow's to_numpy/pa.array import pandas on first use, a large share of a short
    command's time, so the read, the hash and the features avoid them."""
    probe = ("import runpy, sys\n"
             f"sys.argv = ['genesis-fw', '--data-dir', {str(btc_store)!r}, 'features', '--symbol', 'tBTCUSD',"
             " '--timeframe', '1m']\n"
             "try:\n    runpy.run_module('genesis_fw', run_name='__main__')\n"
             "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn'}))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Wrote "), proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("arrow_type, dtype", [(pa.float64(), "float64"), (pa.int64(), "int64"),
                                                (pa.int32(), "float64"), (pa.float32(), "float64")])
def test_arrow_to_numpy_is_to_numpy(arrow_type, dtype):
    """Same values, dtype and writability as pyarrow's to_numpy: one chunk, several, a slice, nulls,
    empty, and types it leaves to pyarrow."""
    base = [pa.array([1, 2, 3, 4], arrow_type), pa.array([5, 6], arrow_type)]
    cases = [pa.chunked_array(base[:1]), pa.chunked_array(base), pa.chunked_array(base).slice(3),
             base[0].slice(1, 2), pa.chunked_array([], arrow_type),
             pa.chunked_array([pa.array([1, None, 3], arrow_type)])]
    for col in cases:
        got, want = arrow_to_numpy(col, dtype), col.to_numpy()
        assert got.dtype == want.dtype and got.flags.writeable == want.flags.writeable, col
        np.testing.assert_array_equal(got, want)

"""`genesis-fw features` as a real process: the files, their metadata, the content cache, resampling on the
fly, bad input; and the features section of `genesis-fw config`."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import ETH_2D, run_cli

from genesis_fw.config import FeaturesConfig
from genesis_fw.data.hashing import content_sha256
from genesis_fw.data.store import CandleStore, read
from genesis_fw.ml import features

SMALL = ["features.ema_spans=3,8", "features.rsi_period=5", "features.adx_period=4", "features.atr_period=6",
         "features.return_lags=1,3", "features.volatility_window=5", "features.volume_window=7"]
SMALL_CFG = FeaturesConfig(ema_spans=(3, 8), rsi_period=5, adx_period=4, atr_period=6, return_lags=(1, 3),
                           volatility_window=5, volume_window=7)


def _ok(*args: str):
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return r


def test_writes_features_and_metadata_then_is_cached(btc_store):
    r = _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m")
    out, meta_path = btc_store / "features" / "tBTCUSD_1m.parquet", btc_store / "features" / "tBTCUSD_1m.json"
    assert "Wrote" in r.stdout and "warm-up rows dropped" in r.stdout
    candles = read(CandleStore.open(btc_store).find("tBTCUSD", "1m"))
    expected = features.build(candles, FeaturesConfig())
    got = pq.read_table(out)
    assert got.equals(expected.table)
    meta = json.loads(meta_path.read_text())
    assert meta["sha256"] == content_sha256(candles)
    assert meta["definitions_hash"] == features.definitions_hash(FeaturesConfig())
    assert (meta["rows"], meta["warmup_dropped"]) == (got.num_rows, features.warmup_bars(FeaturesConfig()))
    assert meta["rows"] + meta["warmup_dropped"] == candles.num_rows == meta["candles"]
    assert meta["features"] == got.column_names[1:]
    assert {"numpy", "duckdb", "pyarrow", "numba"} <= set(meta["libraries"])
    before = (out.stat().st_mtime_ns, meta_path.stat().st_mtime_ns)
    r = _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m")
    assert r.stdout.startswith("cached")
    assert (out.stat().st_mtime_ns, meta_path.stat().st_mtime_ns) == before


def test_changed_definitions_or_dataset_recompute_and_same_content_stays_cached(btc_store):
    _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m")
    meta_path = btc_store / "features" / "tBTCUSD_1m.json"
    r = _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m", *SMALL)
    assert "Wrote" in r.stdout
    meta = json.loads(meta_path.read_text())
    assert meta["definitions_hash"] == features.definitions_hash(SMALL_CFG)
    assert meta["features"][:3] == ["ema_3", "ema_8", "rsi_5"]
    # The same candles rewritten (new file, new mtime): read and hashed, and still cached.
    candles = btc_store / "candles" / "tBTCUSD_1m.parquet"
    pq.write_table(pq.read_table(candles), candles, compression="snappy")
    assert _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m", *SMALL).stdout.startswith("cached")
    # Other candles: recomputed, with their hash.
    shutil.copy(ETH_2D, candles)
    r = _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m", *SMALL)
    assert "Wrote" in r.stdout
    assert json.loads(meta_path.read_text())["sha256"] == content_sha256(pq.read_table(ETH_2D))


def test_resampled_on_the_fly_and_range(btc_store):
    r = _ok("features", "--symbol", "tBTCUSD", "--timeframe", "5m", "--start", "2019-04-01T12:00", *SMALL)
    assert "resampling tBTCUSD 1m to 5m on the fly" in r.stderr
    store = CandleStore.open(btc_store)
    from genesis_fw.data.timeframes import parse_time

    candles = read(store.find("tBTCUSD", "5m"), parse_time("2019-04-01T12:00"))
    got = pq.read_table(btc_store / "features" / "tBTCUSD_5m.parquet")
    assert got.equals(features.build(candles, SMALL_CFG).table)
    assert json.loads((btc_store / "features" / "tBTCUSD_5m.json").read_text())["sha256"] == content_sha256(candles)


@pytest.mark.parametrize(("args", "message"), [
    (["features.ema_spans=10,0"], "ema_spans must all be > 0"),
    (["features.ema_span=10"], "unknown config key 'features.ema_span' (did you mean 'ema_spans'?)"),
    (["commission=0"], "features takes features.PARAM=VALUE overrides"),
    (["--timeframe", "1h"], "too few rows: 48 candles"),
])
def test_bad_input_is_one_line_and_writes_nothing(btc_store, args, message):
    r = run_cli("features", "--symbol", "tBTCUSD", *(["--timeframe", "1m"] if "--timeframe" not in args else []),
                *args)
    assert r.returncode == 1, r.stdout
    lines = [line for line in r.stderr.splitlines() if not line.startswith("Note: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in r.stderr
    assert not (btc_store / "features").exists()


def test_config_shows_the_features_section(data_dir):
    r = _ok("config", "features.ema_spans=10,20,50")
    shown = json.loads(r.stdout)["features"]
    assert shown["ema_spans"] == [10, 20, 50] and shown["rsi_period"] == FeaturesConfig().rsi_period


def test_sql_console_has_a_features_view_and_skips_bad_files(btc_store):
    from genesis_fw.console import Console

    _ok("features", "--symbol", "tBTCUSD", "--timeframe", "1m")
    _ok("features", "--symbol", "tETHUSD", "--timeframe", "1m", *SMALL)
    (btc_store / "features" / "tLTCUSD_1m.parquet").write_bytes(b"PAR1 not really")
    console = Console(CandleStore.open(btc_store))
    got = console.query("SELECT symbol, timeframe, count(*) AS n, count(ema_5) AS e5, count(ema_3) AS e3 "
                        "FROM features GROUP BY ALL ORDER BY symbol").to_pylist()
    rows = {m["request"]["symbol"]: m["rows"] for m in (
        json.loads(p.read_text()) for p in sorted((btc_store / "features").glob("*.json")))}
    assert got == [
        {"symbol": "tBTCUSD", "timeframe": "1m", "n": rows["tBTCUSD"], "e5": rows["tBTCUSD"], "e3": 0},
        {"symbol": "tETHUSD", "timeframe": "1m", "n": rows["tETHUSD"], "e5": 0, "e3": rows["tETHUSD"]},
    ]
    cols = console.query("SELECT * FROM features LIMIT 0").column_names
    assert cols[:3] == ["symbol", "timeframe", "timestamp"] and "adx_14" in cols
    assert len(console.warnings) == 1 and "skipping" in console.warnings[0] and "tLTCUSD_1m" in console.warnings[0]
    console.close()
    r = _ok("sql", "SELECT count(*) AS n FROM features WHERE symbol = 'tBTCUSD'")
    assert str(rows["tBTCUSD"]) in r.stdout


def test_sql_console_features_view_is_empty_without_feature_files(btc_store):
    from genesis_fw.console import Console

    console = Console(CandleStore.open(btc_store))
    assert console.query("SELECT * FROM features").column_names == ["symbol", "timeframe", "timestamp"]
    console.close()

"""Candle sanity: NaN/inf, non-positive prices, negative volume and high below low never enter the store
(fetch refuses them page by page); open or close outside [low, high] is stored, and a backtest reports
(or, with --strict-data, refuses) inconsistent candles in its range.

The candles are the real two-day tBTCUSD file with a few rows spoiled on purpose.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, run_cli

from genesis_fw.data.store import CandleStore, candle_problems, check_candles
from genesis_fw.data.timeframes import from_ms
from genesis_fw.errors import DataError


def _spoil(rows: dict[int, dict[str, float]], source: Path = BTC_2D) -> pa.Table:
    """The real file with ``rows[i] = {column: value}`` replaced."""
    table = pq.read_table(source)
    for name in ("open", "high", "low", "close", "volume"):
        values = table.column(name).to_numpy().copy()
        touched = False
        for i, change in rows.items():
            if name in change:
                values[i] = change[name]
                touched = True
        if touched:
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.float64()))
    return table


def _time(i: int, source: Path = BTC_2D) -> str:
    ts = pq.read_table(source, columns=["timestamp"]).column("timestamp").cast(pa.int64())
    return from_ms(ts[i].as_py()).isoformat()


def _one_error(proc) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def test_candle_problems_counts_each_rule_once_per_row():
    t = _spoil({
        3: {"close": math.nan},
        5: {"high": math.inf},
        7: {"open": 0.0, "low": 0.0},
        9: {"volume": -1.0},
        11: {"high": 1.0, "low": 2.0},  # high below low (and below open/close)
        13: {"low": 1e9},  # low above open/close (and above high)
        15: {"high": 1.0},  # high below open/close (and below low)
    })
    found = candle_problems(t)
    assert found.counts == {"non_finite": 2, "non_positive_price": 1, "negative_volume": 1, "high_below_low": 3,
                            "high_low_not_bracketing": 3}
    assert found.unusable == 3 and found.inconsistent == 4
    first = t.column("timestamp").cast(pa.int64()).to_numpy()
    assert found.first_unusable == int(first[3]) and found.first_inconsistent == int(first[9])
    clean = candle_problems(pq.read_table(BTC_2D))
    assert clean.unusable == clean.inconsistent == 0 and clean.counts == dict.fromkeys(clean.counts, 0)


def test_store_write_refuses_candles_that_break_a_hard_rule(data_dir):
    """Every path into the store (import, resample, fetch: datasets.publish -> CandleStore.write) is checked."""
    store = CandleStore.open(data_dir)
    for change in ({"close": math.nan}, {"volume": -0.5}, {"high": 1.0, "low": 2.0}):
        with pytest.raises(DataError, match=r"tBTCUSD 1m: 1 candle\(s\) .* first at " + re.escape(_time(42))):
            store.write("tBTCUSD", "1m", _spoil({42: change}))
        assert not store.has("tBTCUSD", "1m")
    with pytest.raises(DataError, match="no candles"):
        check_candles(pq.read_table(BTC_2D).slice(0, 0), where="x", allow_empty=False)


def test_store_write_keeps_open_or_close_outside_high_low(data_dir):
    """Real exchanges occasionally send such candles: the store keeps them (backtest notes them)."""
    t = pq.read_table(BTC_2D)
    high, low = t.column("high")[42].as_py(), t.column("low")[43].as_py()
    store = CandleStore.open(data_dir)
    soft = _spoil({42: {"open": high + 5.0}, 43: {"close": low - 5.0}})
    store.write("tBTCUSD", "1m", soft)
    assert pq.read_table(store.path("tBTCUSD", "1m")).to_pydict() == soft.to_pydict()
    found = candle_problems(soft)
    assert found.counts["high_low_not_bracketing"] == 2 and found.inconsistent == 2


@pytest.mark.parametrize(("change", "what"), [
    ({"close": math.nan}, "NaN or infinite"),
    ({"open": -math.inf}, "NaN or infinite"),
    ({"volume": math.nan}, "NaN or infinite"),
    ({"low": 0.0}, "price <= 0"),
    ({"volume": -3.0}, "negative volume"),
    ({"high": 1.0, "low": 2.0}, "high below low"),
    ({"high": 1.0}, "high below low"),  # high under the low too: the real candle's low is far above 1.0
    ({"low": 1e9}, "high below low"),
])
def test_import_refuses_bad_candles_in_one_line(data_dir, tmp_path, change, what):
    bad = tmp_path / "bad.parquet"
    pq.write_table(_spoil({100: change, 200: change}), bad)
    line = _one_error(run_cli("import", str(bad), "--symbol", "tBTCUSD", "--timeframe", "1m"))
    assert "2 candle(s)" in line and what in line and f"first at {_time(100)}" in line, line
    assert not (data_dir / "candles").exists() or list((data_dir / "candles").rglob("*.parquet")) == []
    assert not (data_dir / "genesis.db").exists()


def test_import_stores_a_candle_whose_range_misses_its_close_and_validate_reports_it(data_dir, tmp_path):
    """high/low not bracketing open/close is a soft inconsistency: stored, noted by backtest, reported by validate."""
    t = pq.read_table(BTC_2D)
    high = t.column("high")[7].as_py()
    src = tmp_path / "soft.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(_spoil({7: {"close": high + 1.0}}), src)
    proc = run_cli("import", str(src), "--symbol", "tBTCUSD", "--timeframe", "1m")
    assert proc.returncode == 0, proc.stderr
    assert CandleStore.open(data_dir).has("tBTCUSD", "1m")
    bt = run_cli("backtest", "--no-report", "--output", str(tmp_path / "bt.html"))
    assert bt.returncode == 0, bt.stderr
    (note,) = [ln for ln in bt.stderr.splitlines() if "inconsistent" in ln]
    assert "1 inconsistent candle(s)" in note and "not bracketing open/close (1)" in note and _time(7) in note
    report = run_cli("validate", "--symbol", "tBTCUSD", "--timeframe", "1m", "--format", "json",
                     "--report-dir", str(tmp_path / "q"))
    assert json.loads(report.stdout)["counts"]["ohlc"] == 1, report.stdout + report.stderr


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_import_refuses_an_empty_file_instead_of_an_empty_version(data_dir, tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    table = pq.read_table(BTC_2D).slice(0, 0)
    if suffix == ".csv":
        empty.write_text("timestamp,open,high,low,close,volume\n")
    else:
        pq.write_table(table, empty)
    line = _one_error(run_cli("import", str(empty), "--symbol", "tBTCUSD", "--timeframe", "1m"))
    assert "no candles" in line and str(empty) in line, line
    assert not (data_dir / "genesis.db").exists()
    assert run_cli("datasets", "list").stdout.strip() == "(no datasets in the store)"


def _store_file(data_dir: Path, table: pa.Table, name: str = "tBTCUSD_1m.parquet") -> None:
    """Place a file in the store as an older version of the framework could have written it."""
    (data_dir / "candles").mkdir(exist_ok=True)
    pq.write_table(table, data_dir / "candles" / name)


def test_backtest_reports_inconsistent_candles_and_strict_data_refuses_them(data_dir, tmp_path):
    _store_file(data_dir, _spoil({50: {"high": 1.0, "low": 2.0}, 60: {"volume": -1.0}, 70: {"low": 1e9}}))
    out = tmp_path / "bt.html"
    proc = run_cli("backtest", "--no-report", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "inconsistent" in ln]
    assert len(notes) == 1, proc.stderr
    assert "3 inconsistent candle(s)" in notes[0] and f"first at {_time(50)}" in notes[0]
    assert "genesis-fw validate --symbol tBTCUSD --timeframe 1m" in notes[0]
    equity = [float(r["equity"]) for r in csv.DictReader(open(tmp_path / "bt.equity.csv"))]
    assert len(equity) == pq.read_metadata(BTC_2D).num_rows and all(math.isfinite(e) for e in equity)
    assert any("inconsistent" in n for n in json.loads((tmp_path / "bt.json").read_text())["notes"])

    strict = run_cli("backtest", "--no-report", "--strict-data", "--output", str(tmp_path / "strict.html"))
    line = _one_error(strict)
    assert "3 inconsistent candle(s)" in line and "genesis-fw validate --symbol tBTCUSD --timeframe 1m" in line
    assert "--strict-data" in line
    assert not (tmp_path / "strict.json").exists()
    with sqlite3.connect(data_dir / "genesis.db") as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # only the non-strict run


def test_backtest_of_a_resampled_timeframe_names_the_stored_file_to_validate(data_dir, tmp_path):
    """The loaded bars are checked (here 1h resampled on the fly); validate runs on the stored 1m file."""
    _store_file(data_dir, _spoil({50: {"high": math.nan}}))
    line = _one_error(run_cli("backtest", "--timeframe", "1h", "--no-report", "--output", str(tmp_path / "h.html")))
    assert "1 candle(s) that cannot be traded in tBTCUSD 1m" in line, line
    assert "genesis-fw validate --symbol tBTCUSD --timeframe 1m" in line


@pytest.mark.parametrize("timeframe", ["5m", "1h", "1D"])
def test_resampling_on_the_fly_does_not_hide_bad_source_candles(data_dir, tmp_path, timeframe):
    """A NaN close inside a bucket is never the bucket's close, and a negative volume vanishes in a
    positive sum: the resampled bars look clean, so the 1m candles they are built from are checked."""
    table = pq.read_table(BTC_2D)
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    i = int(np.flatnonzero(ts % 3_600_000 == 0)[3]) + 2  # the third minute of a full hour, inside every bucket
    _store_file(data_dir, _spoil({i: {"volume": -0.001}}))
    out = tmp_path / "bt.html"
    proc = run_cli("backtest", "--timeframe", timeframe, "--no-report", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "inconsistent" in line]
    assert len(notes) == 1 and "1 inconsistent candle(s) in tBTCUSD 1m" in notes[0]
    assert f"first at {_time(i)}" in notes[0] and "--timeframe 1m" in notes[0]
    strict = run_cli("backtest", "--timeframe", timeframe, "--strict-data", "--no-report", "--output", str(out))
    assert "refused by --strict-data" in _one_error(strict)
    _store_file(data_dir, _spoil({i: {"close": math.nan}}))
    line = _one_error(run_cli("backtest", "--timeframe", timeframe, "--no-report", "--output", str(out)))
    assert "1 candle(s) that cannot be traded in tBTCUSD 1m" in line and f"first at {_time(i)}" in line


@pytest.mark.parametrize("change", [{"close": math.nan}, {"high": math.inf}, {"open": 0.0}])
def test_backtest_always_refuses_candles_that_cannot_be_traded(data_dir, tmp_path, change):
    _store_file(data_dir, _spoil({80: change}))
    line = _one_error(run_cli("backtest", "--no-report", "--output", str(tmp_path / "bt.html")))
    assert "1 candle(s)" in line and f"first at {_time(80)}" in line
    assert "genesis-fw validate --symbol tBTCUSD --timeframe 1m" in line
    assert not (tmp_path / "bt.json").exists() and not (tmp_path / "bt.equity.csv").exists()
    assert not (data_dir / "genesis.db").exists()  # nothing reached the catalog


def test_the_range_checked_is_the_range_loaded(data_dir, tmp_path):
    """A bad candle outside [start, end) does not concern the run (and is not read)."""
    _store_file(data_dir, _spoil({5: {"close": math.nan}}))
    proc = run_cli("backtest", "--start", "2019-04-01T12:00", "--no-report", "--output", str(tmp_path / "bt.html"))
    assert proc.returncode == 0, proc.stderr
    assert "inconsistent" not in proc.stderr
    equity = np.array([float(r["equity"]) for r in csv.DictReader(open(tmp_path / "bt.equity.csv"))])
    assert np.isfinite(equity).all()


SAMPLE = CandleStore.sample().path("tBTCUSD", "1m")


def _row_at(when: str, source: Path = SAMPLE) -> int:
    ts = pq.read_table(source, columns=["timestamp"]).column("timestamp").cast(pa.int64()).to_numpy()
    return int(np.searchsorted(ts, int(np.datetime64(when, "ms").astype(np.int64))))


def _fetch_cli(server, tmp_path: Path, start: str, end: str):
    """``genesis-fw fetch`` of tBTCUSD 1m from the local server; 2 attempts per request (1 s of backoff)."""
    config = tmp_path / "exchange.json"
    config.write_text(json.dumps({"exchange": {"base_url": server.url, "rate_limit": 6000, "max_attempts": 2}}))
    return run_cli("fetch", "--config", str(config), "--symbol", "tBTCUSD", "--timeframe", "1m", "--start", start,
                   "--end", end, "--quiet")


@pytest.mark.parametrize(("change", "what"), [({"volume": -2.0}, "negative volume"),
                                              ({"high": 1.0}, "high below low")])
def test_fetch_fails_at_the_page_with_a_bad_candle_logs_it_and_a_narrower_range_succeeds(
        data_dir, tmp_path, change, what):
    """The exchange client refuses a page holding a candle the store would refuse (retried, then the dataset
    fails in one line naming the candle); pages after it are never asked for, the failure is in the fetch
    log, and a rerun over a range that ends before the bad candle publishes exactly that range."""
    from bitfinex_server import BitfinexServer

    from genesis_fw.data.store import Dataset, read

    bad = _row_at("2019-04-20T10:00")  # in the third page of 10,000 minutes
    source = tmp_path / "served.parquet"
    pq.write_table(_spoil({bad: change}, SAMPLE), source)
    bad_time = _time(bad, SAMPLE)
    bad_ms = pq.read_table(source).column("timestamp").cast(pa.int64())[bad].as_py()
    with BitfinexServer({"tBTCUSD": source}) as server:
        line = _one_error(_fetch_cli(server, tmp_path, "2019-04-01", "2019-05-01"))
        starts = [int(e.query.split("start=")[1].split("&")[0]) for e in server.log]
        assert "tBTCUSD 1m" in line and bad_time in line and what in line, line
        assert max(starts) <= bad_ms, "no page after the bad one was asked for"
        assert sum(s == max(starts) for s in starts) == 2, "the bad page was retried once (2 attempts)"
        assert not CandleStore.open(data_dir).has("tBTCUSD", "1m")
        log = [json.loads(x) for x in (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()]
        (failed,) = [r for r in log if r.get("event") == "fetch" and r.get("status") == "failed"]
        assert bad_time in failed["error"] and what in failed["error"]

        proc = _fetch_cli(server, tmp_path, "2019-04-01", "2019-04-15")
        assert proc.returncode == 0, proc.stderr
    store = CandleStore.open(data_dir)
    got = read(Dataset("tBTCUSD", "1m", store.path("tBTCUSD", "1m")))
    want = read(Dataset("tBTCUSD", "1m", source), from_ms(_time_ms("2019-04-01")), from_ms(_time_ms("2019-04-15")))
    assert got.equals(want)
    assert not (data_dir / "metadata" / "staging" / "tBTCUSD_1m").exists()


def _time_ms(when: str) -> int:
    return int(np.datetime64(when, "ms").astype(np.int64))


def test_fetch_stores_a_candle_with_open_above_high_and_backtest_notes_it(data_dir, tmp_path):
    from bitfinex_server import BitfinexServer

    row = _row_at("2019-04-02T07:00")
    high = pq.read_table(SAMPLE).column("high")[row].as_py()
    source = tmp_path / "served.parquet"
    pq.write_table(_spoil({row: {"open": high + 3.0}}, SAMPLE), source)
    with BitfinexServer({"tBTCUSD": source}) as server:
        proc = _fetch_cli(server, tmp_path, "2019-04-01", "2019-04-03")
    assert proc.returncode == 0, proc.stderr
    stored = pq.read_table(CandleStore.open(data_dir).path("tBTCUSD", "1m"))
    ts = stored.column("timestamp").cast(pa.int64()).to_numpy()
    i = int(np.searchsorted(ts, _time_ms("2019-04-02T07:00")))
    assert stored.column("open")[i].as_py() == high + 3.0
    bt = run_cli("backtest", "--no-report", "--output", str(tmp_path / "bt.html"))
    assert bt.returncode == 0, bt.stderr
    (note,) = [ln for ln in bt.stderr.splitlines() if "inconsistent" in ln]
    assert "1 inconsistent candle(s)" in note and _time(row, SAMPLE) in note, note
    strict = _one_error(run_cli("backtest", "--no-report", "--strict-data", "--output", str(tmp_path / "s.html")))
    assert "1 inconsistent candle(s)" in strict

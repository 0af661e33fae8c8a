"""The example queries in sql/examples/, run through the read-only console, checked against numpy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, ETH_2D, run_cli

from genesis_fw import sqlfiles
from genesis_fw.console import Console
from genesis_fw.data.store import CandleStore

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "sql" / "examples"
FILES = {"tBTCUSD": BTC_2D, "tETHUSD": ETH_2D}
MINUTE_MS = 60_000


def _query(store_dir: Path, name: str) -> pa.Table:
    console = Console(CandleStore.open(store_dir))
    try:
        return console.query(sqlfiles.load(f"examples/{name}"))
    finally:
        console.close()


def _ms(path_or_table) -> np.ndarray:
    table = pq.read_table(path_or_table) if isinstance(path_or_table, Path) else path_or_table
    return table.column("timestamp").cast(pa.int64()).to_numpy()


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _by_dataset(table: pa.Table) -> dict[tuple[str, str], dict]:
    rows = table.to_pylist()
    out = {(r["symbol"], r["timeframe"]): r for r in rows}
    assert len(out) == len(rows), "one row per symbol/timeframe"
    return out


def test_examples_are_packaged_and_documented():
    on_disk = sorted(p.stem for p in EXAMPLES_DIR.glob("*.sql"))
    assert sqlfiles.names("examples") == on_disk
    assert {"dataset_overview", "gaps", "daily_summary", "ohlc_inconsistencies", "zero_volume",
            "duplicates"} <= set(on_disk)
    for name in on_disk:
        text = sqlfiles.load(f"examples/{name}")
        assert text.startswith("-- "), f"{name}.sql must start with a comment saying what it answers"
        assert "$" not in text, f"{name}.sql must run as is in the console (no parameters)"


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES_DIR.glob("*.sql")))
def test_every_example_runs_in_the_console(btc_store: Path, name: str):
    table = _query(btc_store, name)
    assert table.num_rows > 0
    assert table.column_names[0] == "symbol"
    assert set(table.column("symbol").to_pylist()) == set(FILES)


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES_DIR.glob("*.sql")))
def test_every_example_runs_through_the_cli(btc_store: Path, name: str):
    result = run_cli("sql", "--file", str(EXAMPLES_DIR / f"{name}.sql"), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == _query(btc_store, name).num_rows


def test_examples_run_on_the_bundled_sample(data_dir: Path):
    for name in sqlfiles.names("examples"):
        table = _query(data_dir, name)
        assert table.num_rows > 0, name
        assert set(table.column("symbol").to_pylist()) == {"tBTCUSD"}, name


# --- values against independent computations ----------------------------------------------------------

def test_dataset_overview(btc_store: Path):
    rows = _by_dataset(_query(btc_store, "dataset_overview"))
    assert set(rows) == {(s, "1m") for s in FILES}
    for symbol, path in FILES.items():
        ts = _ms(path)
        row = rows[(symbol, "1m")]
        assert row["num_candles"] == ts.size
        assert row["first_candle"] == _dt(int(ts.min()))
        assert row["last_candle"] == _dt(int(ts.max()))
        assert row["span_days"] == pytest.approx(round((ts.max() - ts.min()) / 86_400_000, 2))


def _gap_stats(ts: np.ndarray) -> dict:
    """Gaps on the 1m grid, computed with numpy from sorted ms timestamps."""
    missing = np.diff(np.sort(ts)) // MINUTE_MS - 1
    runs = missing[missing > 0]
    out = {"num_candles": ts.size, "num_gaps": int(runs.size), "missing_candles": int(runs.sum()),
           "largest_gap": int(runs.max()) if runs.size else 0}
    if runs.size:
        i = int(np.argmax(missing))  # first (earliest) of the longest runs
        after = int(np.sort(ts)[i])
        out["largest_gap_from"] = _dt(after + MINUTE_MS)
        out["largest_gap_to"] = _dt(after + int(missing[i]) * MINUTE_MS)
    return out


def test_gaps_match_numpy(btc_store: Path):
    rows = _by_dataset(_query(btc_store, "gaps"))
    for symbol, path in FILES.items():
        expected = _gap_stats(_ms(path))
        row = rows[(symbol, "1m")]
        assert expected["num_gaps"] > 0
        assert row["num_gaps"] == expected["num_gaps"]
        assert row["missing_candles"] == expected["missing_candles"]
        # every minute of the two days is either stored or counted missing
        assert row["num_candles"] + row["missing_candles"] == 2 * 1440
        assert {k: row[k] for k in expected} == expected


def test_gaps_see_a_removed_block_and_other_timeframes(btc_store: Path):
    store = CandleStore.open(btc_store)
    table = pq.read_table(BTC_2D)
    ts = _ms(table)
    hole = (ts >= ts[0] + 600 * MINUTE_MS) & (ts < ts[0] + 900 * MINUTE_MS)  # 10:00 to 14:59 on day one
    store.write("tBTCUSD", "1m", table.filter(pa.array(~hole)))
    # a 1h dataset with two hours missing
    hours = [int(ts[0] // 3_600_000 + h) * 3_600_000 for h in (0, 1, 4, 5)]
    hourly = pa.table({"timestamp": pa.array(hours, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                       **{c: [1.0, 1.0, 1.0, 1.0] for c in ("open", "high", "low", "close", "volume")}})
    store.write("tETHUSD", "1h", hourly)
    rows = _by_dataset(_query(btc_store, "gaps"))
    expected = _gap_stats(ts[~hole])
    assert expected["largest_gap"] >= 300
    assert {k: rows[("tBTCUSD", "1m")][k] for k in expected} == expected
    assert expected["largest_gap_from"] == _dt(int(ts[0]) + 600 * MINUTE_MS)
    hour = rows[("tETHUSD", "1h")]
    assert (hour["num_gaps"], hour["missing_candles"], hour["largest_gap"]) == (1, 2, 2)


def test_daily_summary_matches_numpy(btc_store: Path):
    got = _query(btc_store, "daily_summary").to_pylist()
    expected = []
    for symbol, path in FILES.items():
        t = pq.read_table(path)
        ts = _ms(t)
        cols = {c: t.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
        day = ts // 86_400_000
        for d in np.unique(day):
            m = day == d
            expected.append({
                "symbol": symbol, "day": _dt(int(d) * 86_400_000).date(),
                "open": cols["open"][m][np.argmin(ts[m])], "high": cols["high"][m].max(),
                "low": cols["low"][m].min(), "close": cols["close"][m][np.argmax(ts[m])],
                "volume": pytest.approx(cols["volume"][m].sum(), rel=1e-12),
                "minutes_present": int(m.sum()), "minutes_missing": 1440 - int(m.sum()),
            })
    assert len(expected) == 4
    assert got == expected


@pytest.fixture
def dirty_store(btc_store: Path) -> tuple[Path, pa.Table]:
    """tBTCUSD 1m with known problems, written with pyarrow (the store itself would refuse duplicates)."""
    t = pq.read_table(BTC_2D)
    o, h, lo, c, v = (t.column(n).to_numpy().copy() for n in ("open", "high", "low", "close", "volume"))
    h[10] = min(o[10], c[10]) - 1.0                     # high below the body (and below low)
    lo[20] = max(o[20], c[20]) + 1.0                    # low above the body (and above high)
    h[30] = max(o[30], c[30]) - 0.01                    # high below the body only
    lo[30] = min(o[30], c[30], h[30]) - 0.0             # unchanged low
    c[40] = -5.0                                        # negative price (also below low)
    o[50] = 0.0                                         # zero price
    v[60] = -1.0                                        # negative volume
    v[100:105] = 0.0                                    # zero volume, not flat
    h[100:105] = np.maximum(o[100:105], c[100:105]) + 1.0
    o[200:203] = h[200:203] = lo[200:203] = c[200:203] = o[200]
    v[200:203] = 0.0                                    # zero volume, flat (padding-like)
    dirty = pa.table({"timestamp": t.column("timestamp"), "open": o, "high": h, "low": lo, "close": c, "volume": v})
    dirty = pa.concat_tables([dirty, dirty.slice(500, 3), dirty.slice(700, 1), dirty.slice(700, 1)])
    pq.write_table(dirty, btc_store / "candles" / "tBTCUSD_1m.parquet")
    return btc_store, dirty


def test_ohlc_inconsistencies_on_clean_data_are_zero(btc_store: Path):
    for row in _query(btc_store, "ohlc_inconsistencies").to_pylist():
        counts = [v for k, v in row.items() if k not in ("symbol", "timeframe", "num_candles", "first_bad")]
        assert counts == [0] * 6
        assert row["first_bad"] is None


def test_ohlc_inconsistencies_match_numpy(dirty_store):
    store_dir, dirty = dirty_store
    row = _by_dataset(_query(store_dir, "ohlc_inconsistencies"))[("tBTCUSD", "1m")]
    o, h, lo, c, v = (dirty.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume"))
    checks = {
        "high_below_body": h < np.maximum(o, c),
        "low_above_body": lo > np.minimum(o, c),
        "high_below_low": h < lo,
        "nonpositive_price": np.minimum.reduce([o, h, lo, c]) <= 0,
        "negative_volume": v < 0,
    }
    bad = np.logical_or.reduce(list(checks.values()))
    expected = {k: int(m.sum()) for k, m in checks.items()}
    assert all(expected.values())
    assert {k: row[k] for k in expected} == expected
    assert row["bad_candles"] == int(bad.sum())
    assert row["first_bad"] == _dt(int(_ms(dirty)[bad].min()))
    assert row["num_candles"] == dirty.num_rows


def test_zero_volume_matches_numpy(dirty_store):
    store_dir, dirty = dirty_store
    rows = _by_dataset(_query(store_dir, "zero_volume"))
    o, h, lo, c, v = (dirty.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume"))
    ts = _ms(dirty)
    zero = v == 0
    row = rows[("tBTCUSD", "1m")]
    assert row["zero_volume"] == int(zero.sum()) == 8
    assert row["flat_zero_volume"] == int((zero & (o == h) & (h == lo) & (lo == c)).sum()) == 3
    assert row["zero_volume_pct"] == pytest.approx(round(100 * zero.sum() / dirty.num_rows, 3))
    assert row["first_zero_volume"] == _dt(int(ts[zero].min()))
    assert row["last_zero_volume"] == _dt(int(ts[zero].max()))
    eth = rows[("tETHUSD", "1m")]
    assert (eth["zero_volume"], eth["first_zero_volume"]) == (0, None)


def test_duplicates_match_numpy(dirty_store):
    store_dir, dirty = dirty_store
    rows = _by_dataset(_query(store_dir, "duplicates"))
    _, counts = np.unique(_ms(dirty), return_counts=True)
    row = rows[("tBTCUSD", "1m")]
    assert row["num_candles"] == dirty.num_rows
    assert row["duplicated_timestamps"] == int((counts > 1).sum()) == 4
    assert row["extra_rows"] == int((counts - 1).sum()) == 5
    assert row["first_duplicate"] == _dt(int(_ms(dirty)[500]))
    eth = rows[("tETHUSD", "1m")]
    assert (eth["duplicated_timestamps"], eth["extra_rows"], eth["first_duplicate"]) == (0, 0, None)

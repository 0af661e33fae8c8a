"""Data validation (genesis_fw.data.validate, sql/validation/*.sql): defects of every kind injected into real
candles at known rows must be found exactly, and nothing else; gaps agree with numpy; the score behaves."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, ETH_2D, run_cli

from genesis_fw import sqlfiles
from genesis_fw.catalog import Catalog
from genesis_fw.data.hashing import content_sha256
from genesis_fw.data.store import CandleStore, resample
from genesis_fw.data.timeframes import timeframe_ms
from genesis_fw.data.validate import CHECKS, DEFAULT_PARAMS, QualityReport, validate
from genesis_fw.errors import DataError

SQL_DIR = Path(__file__).resolve().parents[1] / "sql" / "validation"
SAMPLE = CandleStore.sample().path("tBTCUSD", "1m")
MINUTE = 60_000
NO_FINDINGS = {c: 0 for c in CHECKS if c != "gaps"}

# --- helpers ---------------------------------------------------------------------------------------------------


def _columns(path: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(path)
    out = {name: t.column(name).to_numpy().copy() for name in ("open", "high", "low", "close", "volume")}
    out["timestamp"] = t.column("timestamp").cast(pa.int64()).to_numpy().copy()
    return out


def _write(cols: dict[str, np.ndarray], path: Path) -> Path:
    """Write candles with pyarrow directly: none of the store's checks, so any defect survives."""
    table = pa.table({
        "timestamp": pa.array(cols["timestamp"].astype(np.int64)).cast(pa.timestamp("ms", tz="UTC")),
        **{k: pa.array(cols[k].astype(np.float64)) for k in ("open", "high", "low", "close", "volume")},
    })
    pq.write_table(table, path, compression="zstd", row_group_size=1000)  # several row groups on purpose
    return path


def _insert(cols: dict[str, np.ndarray], at: int, row: dict[str, float]) -> dict[str, np.ndarray]:
    return {k: np.insert(v, at, row[k]) for k, v in cols.items()}


def _row(cols: dict[str, np.ndarray], i: int) -> dict[str, float]:
    return {k: v[i] for k, v in cols.items()}


def _rows(report: QualityReport, check: str) -> list[int]:
    """Row numbers of every finding of ``check`` (examples hold all of them when params examples is large);
    for duplicates, the rows after the first of each repeated timestamp."""
    if check == "duplicates":
        return [r for e in report.examples[check] for r in e["rows"][1:]]
    return [e["row"] for e in report.examples[check]]


def _findings(report: QualityReport) -> dict[str, int]:
    return {c: n for c, n in report.counts.items() if c != "gaps"}


def _numpy_gaps(ts: np.ndarray, step: int) -> list[tuple[int, int, int]]:
    """Independent gap list: (first missing ms, last missing ms, missing) from sorted unique aligned slots."""
    slots = np.unique(ts - ts % step)
    d = np.diff(slots)
    at = np.flatnonzero(d > step)
    return [(int(slots[i] + step), int(slots[i + 1] - step), int(d[i] // step - 1)) for i in at]


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


ALL = {"examples": 1_000_000, "max_ranges": 1_000_000}


def _check(path: Path, timeframe: str = "1m", **params) -> QualityReport:
    return validate(path, "tBTCUSD", timeframe, params={**ALL, **params})


@pytest.fixture(scope="module")
def baseline() -> dict[str, QualityReport]:
    return {p.name: _check(p) for p in (BTC_2D, ETH_2D, SAMPLE)}


# --- the SQL files ---------------------------------------------------------------------------------------------


def test_sql_files_are_packaged_commented_and_use_named_parameters_only():
    on_disk = sorted(p.stem for p in SQL_DIR.glob("*.sql"))
    assert sqlfiles.names("validation") == on_disk
    assert set(CHECKS) | {"coverage"} == set(on_disk)
    for name in on_disk:
        text = sqlfiles.load(f"validation/{name}")
        assert text.lower().startswith(f"-- {name.replace('_', ' ')}:"), name
        assert "read_parquet($source" in text
        assert "?" not in re.sub(r"--.*", "", text), f"{name}.sql: positional parameters"
        assert set(re.findall(r"\$(\w+)", text)) <= {"source", "step_ms", "origin_ms", "k", "window", "min_return",
                                                     "revert"}


@pytest.mark.parametrize("name", sorted(p.stem for p in SQL_DIR.glob("*.sql")))
@pytest.mark.parametrize("path", [BTC_2D, ETH_2D, SAMPLE], ids=["btc_2d", "eth_2d", "sample"])
def test_every_sql_file_runs_on_clean_data(name: str, path: Path, baseline):
    text = sqlfiles.load(f"validation/{name}")
    values = {"source": str(path), "step_ms": MINUTE, "origin_ms": 0,
              **{k: DEFAULT_PARAMS[k] for k in ("k", "window", "min_return", "revert")}}
    con = duckdb.connect()
    try:
        table = sqlfiles.to_arrow(con, text, {k: values[k] for k in set(re.findall(r"\$(\w+)", text))})
    finally:
        con.close()
    expected = {"coverage": 1, "gaps": baseline[path.name].counts["gaps"],
                "outliers": baseline[path.name].counts["outliers"]}.get(name, 0)
    assert table.num_rows == expected


def test_clean_files_have_no_findings_but_gaps(baseline):
    for name in (BTC_2D.name, ETH_2D.name):
        r = baseline[name]
        assert _findings(r) == NO_FINDINGS
        assert r.quality_score == 1.0 and r.defective_rows == 0
    sample = baseline[SAMPLE.name]  # three months: a few real flash wicks are flagged as spikes, nothing else
    assert {**_findings(sample), "outliers": 0} == NO_FINDINGS
    assert 0 < sample.counts["outliers"] <= 10
    assert 1 - sample.counts["outliers"] / sample.num_candles == pytest.approx(sample.quality_score)


# --- gaps against numpy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [BTC_2D, ETH_2D, SAMPLE], ids=["btc_2d", "eth_2d", "sample"])
def test_gaps_equal_an_independent_numpy_computation(path: Path, baseline):
    r = baseline[path.name]
    ts = _columns(path)["timestamp"]
    expected = _numpy_gaps(ts, MINUTE)
    got = [(_ms(g["from"]), _ms(g["to"]), g["missing"]) for g in r.gaps["ranges"]]
    assert got == expected
    assert r.gaps["count"] == len(expected) == r.counts["gaps"]
    assert r.gaps["missing"] == sum(m for *_, m in expected)
    big = max(expected, key=lambda g: (g[2], -g[0]))
    assert (r.gaps["largest_ms"], _ms(r.gaps["largest_from"]), _ms(r.gaps["largest_to"])) == \
        (big[2] * MINUTE, big[0], big[1])
    span = (ts[-1] - ts[0]) // MINUTE + 1
    assert r.expected_candles == span == r.num_candles + r.gaps["missing"]
    assert r.coverage == pytest.approx(r.num_candles / span)
    assert len(r.gaps["largest"]) == min(10, len(expected))


def test_removed_rows_become_exactly_one_new_gap(tmp_path: Path, baseline):
    cols = _columns(BTC_2D)
    ts = cols["timestamp"]
    lo, hi = 1000, 1020  # 20 rows removed; the candles either side stay
    cut = {k: np.delete(v, np.s_[lo:hi]) for k, v in cols.items()}
    r = _check(_write(cut, tmp_path / "cut.parquet"))
    assert _findings(r) == NO_FINDINGS
    before = {(_ms(g["from"]), _ms(g["to"])) for g in baseline[BTC_2D.name].gaps["ranges"]}
    new = [g for g in r.gaps["ranges"] if (_ms(g["from"]), _ms(g["to"])) not in before]
    assert len(new) == 1
    assert (_ms(new[0]["from"]), _ms(new[0]["to"])) == (ts[lo - 1] + MINUTE, ts[hi] - MINUTE)
    assert new[0]["prev_row"] == lo - 1 and new[0]["next_row"] == lo
    assert [(_ms(g["from"]), _ms(g["to"]), g["missing"]) for g in r.gaps["ranges"]] == \
        _numpy_gaps(cut["timestamp"], MINUTE)
    assert r.quality_score == 1.0  # gaps are coverage, not defects
    assert r.coverage < baseline[BTC_2D.name].coverage


# --- each defect, injected at known rows -----------------------------------------------------------------------


def test_duplicates(tmp_path: Path, baseline):
    cols = _columns(BTC_2D)
    cols = _insert(cols, 101, _row(cols, 100))                     # identical copy, right after its twin
    twin = _row(cols, 1500)
    twin["close"] = twin["open"]                                   # conflicting copy (still a valid candle)
    cols = _insert(cols, 1501, twin)
    r = _check(_write(cols, tmp_path / "dup.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "duplicates": 2, "not_increasing": 2}
    assert _rows(r, "duplicates") == [101, 1501]
    assert [e["rows"] for e in r.examples["duplicates"]] == [[100, 101], [1500, 1501]]
    assert [e["identical"] for e in r.examples["duplicates"]] == [True, False]
    assert r.details["duplicates"] == {"timestamps": 2, "identical": 1, "conflicting": 1}
    assert _rows(r, "not_increasing") == [101, 1501]
    assert r.gaps["ranges"] == baseline[BTC_2D.name].gaps["ranges"] or \
        [g["missing"] for g in r.gaps["ranges"]] == [g["missing"] for g in baseline[BTC_2D.name].gaps["ranges"]]
    assert r.defective_rows == 2  # a row found by two checks counts once
    assert r.quality_score == pytest.approx(1 - 2 / r.num_candles)


def test_duplicate_far_from_its_twin_is_also_out_of_order(tmp_path: Path):
    cols = _columns(BTC_2D)
    cols = _insert(cols, 2000, _row(cols, 10))
    r = _check(_write(cols, tmp_path / "dup_far.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "duplicates": 1, "not_increasing": 1}
    assert r.examples["duplicates"][0]["rows"] == [10, 2000]
    assert _rows(r, "not_increasing") == [2000]


def test_misaligned(tmp_path: Path, baseline):
    cols = _columns(BTC_2D)
    cols["timestamp"][200] += 30_000   # half a minute late
    cols["timestamp"][700] += 1        # one millisecond late
    r = _check(_write(cols, tmp_path / "mis.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "misaligned": 2}
    assert _rows(r, "misaligned") == [200, 700]
    assert [e["offset_ms"] for e in r.examples["misaligned"]] == [30_000, 1]
    assert r.counts["gaps"] == baseline[BTC_2D.name].counts["gaps"]  # a late candle still fills its slot


def test_not_increasing(tmp_path: Path, baseline):
    cols = _columns(BTC_2D)
    for i in (300, 1200):  # swap two neighbours: the second of each pair goes back in time
        for v in cols.values():
            v[[i, i + 1]] = v[[i + 1, i]]
    r = _check(_write(cols, tmp_path / "order.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "not_increasing": 2}
    assert _rows(r, "not_increasing") == [301, 1201]
    assert r.counts["gaps"] == baseline[BTC_2D.name].counts["gaps"]


def test_ohlc(tmp_path: Path):
    c = _columns(BTC_2D)
    assert c["open"][400] != c["close"][400] and c["open"][500] != c["close"][500]
    c["high"][400] = (c["open"][400] + c["close"][400]) / 2    # high below max(open, close)
    c["low"][500] = (c["open"][500] + c["close"][500]) / 2     # low above min(open, close)
    c["high"][600] = c["low"][600] - 1                         # high below low
    c["open"][800] = 0.0                                       # price <= 0
    c["close"][900] = np.nan                                   # non-finite price
    c["volume"][1000] = np.inf                                 # non-finite volume
    c["volume"][1100] = -1.5                                   # negative volume
    r = _check(_write(c, tmp_path / "ohlc.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "ohlc": 7}
    assert _rows(r, "ohlc") == [400, 500, 600, 800, 900, 1000, 1100]
    flags = ("non_finite", "non_positive_price", "high_below_open_close", "low_above_open_close", "high_below_low",
             "negative_volume")
    got = {e["row"]: {f for f in flags if e[f]} for e in r.examples["ohlc"]}
    assert got == {
        400: {"high_below_open_close"},
        500: {"low_above_open_close"},
        600: {"high_below_low", "high_below_open_close"},
        800: {"non_positive_price", "low_above_open_close"},
        900: {"non_finite"},
        1000: {"non_finite"},
        1100: {"negative_volume"},
    }
    assert r.details["ohlc"] == {"non_finite": 2, "non_positive_price": 1, "high_below_open_close": 2,
                                 "low_above_open_close": 2, "high_below_low": 1, "negative_volume": 1}
    assert r.examples["ohlc"][4]["close"] == "nan"  # JSON-safe
    json.loads(r.to_json())


def test_outliers_are_spikes_that_revert_not_moves_that_stay(tmp_path: Path):
    c = _columns(BTC_2D)
    up, down, step = 1500, 2200, 2500
    for i in (up, down):  # quiet where the spikes go: the bars either side are within 0.2 % of each other
        assert abs(np.log(c["close"][i + 1] / c["close"][i - 1])) < 0.002
    c["close"][up] *= 1.10
    c["high"][up] = max(c["high"][up], c["close"][up])
    c["close"][down] *= 0.92
    c["low"][down] = min(c["low"][down], c["close"][down])
    for k in ("open", "high", "low", "close"):  # a lasting 8 % jump: a move, not a spike
        c[k][step:] *= 1.08
    r = _check(_write(c, tmp_path / "spikes.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "outliers": 2}
    assert _rows(r, "outliers") == [up, down]
    ex = r.examples["outliers"]
    assert [e["reverted_after"] for e in ex] == [1, 1]
    assert ex[0]["log_return"] == pytest.approx(np.log(c["close"][up] / c["close"][up - 1]))
    assert all(e["threshold"] >= DEFAULT_PARAMS["min_return"] for e in ex)


def test_outlier_parameters(tmp_path: Path):
    c = _columns(BTC_2D)
    i = 1500
    c["close"][i] *= 1.03  # a 3 % spike lasting 3 bars
    c["close"][i + 1] = c["close"][i]
    c["close"][i + 2] = c["close"][i]
    for j in range(i, i + 3):
        c["high"][j] = max(c["high"][j], c["close"][j])
        c["low"][j] = min(c["low"][j], c["close"][j])
        c["open"][j] = min(max(c["open"][j], c["low"][j]), c["high"][j])
    path = _write(c, tmp_path / "spike3.parquet")
    assert _rows(_check(path), "outliers") == [i]
    assert _check(path, revert=2).counts["outliers"] == 0            # comes back after 3 bars, not 2
    assert _check(path, min_return=0.05).counts["outliers"] == 0     # smaller than the floor
    assert _check(path, k=1e6).counts["outliers"] == 0               # smaller than k robust sigmas
    with pytest.raises(DataError, match="unknown validation parameter 'kk'"):
        _check(path, kk=3)
    with pytest.raises(DataError, match="out of range"):
        _check(path, window=0)


def test_zero_volume(tmp_path: Path):
    c = _columns(BTC_2D)
    prev = c["close"][49]
    for k in ("open", "high", "low", "close"):
        c[k][50] = prev                     # a forward-filled candle
    c["volume"][50] = 0.0
    c["volume"][60] = 0.0                   # zero volume, prices untouched
    r = _check(_write(c, tmp_path / "zero.parquet"))
    assert _findings(r) == {**NO_FINDINGS, "zero_volume": 2}
    assert _rows(r, "zero_volume") == [50, 60]
    assert [e["flat"] for e in r.examples["zero_volume"]] == [True, False]
    assert r.weighted_defects == 1.0  # weight 0.5 each
    assert r.quality_score == pytest.approx(1 - 1 / r.num_candles)


def test_every_defect_at_once_in_the_sample(tmp_path: Path, baseline):
    """The bundled sample (129k rows, several row groups) with one defect of each kind."""
    base = baseline[SAMPLE.name]
    c = _columns(SAMPLE)
    n = c["timestamp"].size
    c["timestamp"][20_000] += 7_000                 # misaligned
    c["high"][30_000] = c["low"][30_000] - 5        # ohlc
    c["volume"][40_000] = 0.0                       # zero volume
    for v in c.values():                            # out of order
        v[[50_000, 50_001]] = v[[50_001, 50_000]]
    i = next(j for j in range(60_000, n) if abs(np.log(c["close"][j + 1] / c["close"][j - 1])) < 0.001)
    c["close"][i] *= 0.85                           # spike
    c["low"][i] = min(c["low"][i], c["close"][i])
    c = {k: np.delete(v, np.s_[100_000:100_030]) for k, v in c.items()}  # a 30-row hole
    c = _insert(c, 70_001, _row(c, 70_000))        # duplicate
    r = _check(_write(c, tmp_path / "sample_bad.parquet"))
    assert _findings(r) == {"duplicates": 1, "misaligned": 1, "not_increasing": 2, "ohlc": 1,
                            "outliers": base.counts["outliers"] + 1, "zero_volume": 1}
    assert _rows(r, "misaligned") == [20_000]
    assert _rows(r, "ohlc") == [30_000]
    assert _rows(r, "zero_volume") == [40_000]
    assert _rows(r, "not_increasing") == [50_001, 70_001]
    assert _rows(r, "duplicates") == [70_001]
    spike_at = {e["timestamp"] for e in r.examples["outliers"]} - {e["timestamp"] for e in base.examples["outliers"]}
    assert [_ms(t) for t in spike_at] == [int(c["timestamp"][i])]  # i < 70_000: same row before and after
    assert [(_ms(g["from"]), _ms(g["to"]), g["missing"]) for g in r.gaps["ranges"]] == \
        _numpy_gaps(c["timestamp"], MINUTE)
    assert r.quality_score < base.quality_score


def test_calendar_months_and_coarser_timeframes(tmp_path: Path):
    monthly = resample(SAMPLE, "1M")  # April, May, June 2019
    cols = {k: monthly.column(k).to_numpy().copy() for k in ("open", "high", "low", "close", "volume")}
    cols["timestamp"] = monthly.column("timestamp").cast(pa.int64()).to_numpy().copy()
    clean = _check(_write(cols, tmp_path / "m.parquet"), "1M")
    assert _findings(clean) == NO_FINDINGS and clean.counts["gaps"] == 0 and clean.expected_candles == 3
    no_may = {k: np.delete(v, 1) for k, v in cols.items()}
    no_may["timestamp"][1] += 86_400_000  # June 2nd: inside June, off the month grid
    r = _check(_write(no_may, tmp_path / "m2.parquet"), "1M")
    assert r.counts["gaps"] == 1 and r.gaps["largest_from"] == r.gaps["largest_to"] == "2019-05-01T00:00:00Z"
    assert r.gaps["largest_ms"] == 31 * 86_400_000
    assert _findings(r) == {**NO_FINDINGS, "misaligned": 1} and _rows(r, "misaligned") == [1]
    assert r.examples["misaligned"][0]["slot"] == "2019-06-01T00:00:00Z"

    hourly = resample(SAMPLE, "1h")
    hcols = {k: hourly.column(k).to_numpy().copy() for k in ("open", "high", "low", "close", "volume")}
    hcols["timestamp"] = hourly.column("timestamp").cast(pa.int64()).to_numpy().copy()
    h = _check(_write(hcols, tmp_path / "h.parquet"), "1h")
    assert {**_findings(h), "outliers": 0} == NO_FINDINGS
    assert [(_ms(g["from"]), _ms(g["to"]), g["missing"]) for g in h.gaps["ranges"]] == \
        _numpy_gaps(hcols["timestamp"], timeframe_ms("1h"))


def test_weeks_are_checked_on_the_monday_grid(tmp_path: Path):
    """Weekly candles of the real sample: Monday weeks are clean, a missing week is one gap named by its Monday,
    and a 1W file with the old epoch-aligned (Thursday) weeks is misaligned on every row."""
    weekly = resample(SAMPLE, "1W")
    cols = {k: weekly.column(k).to_numpy().copy() for k in ("open", "high", "low", "close", "volume")}
    cols["timestamp"] = weekly.column("timestamp").cast(pa.int64()).to_numpy().copy()
    assert cols["timestamp"][0] == _ms("2019-04-01T00:00:00Z")  # a Monday
    clean = _check(_write(cols, tmp_path / "w.parquet"), "1W")
    assert _findings(clean) == NO_FINDINGS and clean.counts["gaps"] == 0 and clean.expected_candles == 13

    no_week_3 = {k: np.delete(v, 2) for k, v in cols.items()}
    r = _check(_write(no_week_3, tmp_path / "w2.parquet"), "1W")
    assert r.counts["gaps"] == 1 and r.gaps["largest_from"] == r.gaps["largest_to"] == "2019-04-15T00:00:00Z"
    assert _findings(r) == NO_FINDINGS and r.expected_candles == 13 and r.coverage == pytest.approx(12 / 13)

    thursday = {**cols, "timestamp": cols["timestamp"] - 4 * 86_400_000}  # 2019-03-28, 2019-04-04, ...
    t = _check(_write(thursday, tmp_path / "thu.parquet"), "1W")
    assert t.counts["misaligned"] == t.num_candles == 13
    first = t.examples["misaligned"][0]
    assert (first["timestamp"], first["slot"], first["offset_ms"]) == \
        ("2019-03-28T00:00:00Z", "2019-03-25T00:00:00Z", 3 * 86_400_000)
    assert t.counts["gaps"] == 0 and t.expected_candles == 13  # each Thursday still fills its Monday week

    fortnights = resample(SAMPLE, "14D")
    fcols = {k: fortnights.column(k).to_numpy().copy() for k in ("open", "high", "low", "close", "volume")}
    fcols["timestamp"] = fortnights.column("timestamp").cast(pa.int64()).to_numpy().copy()
    f = _check(_write(fcols, tmp_path / "f.parquet"), "14D")
    assert _findings(f) == NO_FINDINGS and f.counts["gaps"] == 0 and f.expected_candles == 7
    shifted = {**fcols, "timestamp": fcols["timestamp"] + 7 * 86_400_000}  # Mondays, but off the 14-day grid
    assert _check(_write(shifted, tmp_path / "f2.parquet"), "14D").counts["misaligned"] == 7


def test_cli_reports_a_stored_thursday_week_file_as_misaligned(data_dir: Path):
    """A store holding a 1W file written with the old Thursday weeks: validate says so; backtest refuses it."""
    thursdays = np.arange(_ms("2019-03-28T00:00:00Z"), _ms("2019-06-27T00:00:00Z"), 7 * 86_400_000)
    price = 5000.0 + np.arange(thursdays.size)
    cols = {"timestamp": thursdays, "open": price, "high": price + 10, "low": price - 10, "close": price + 1,
            "volume": np.ones(thursdays.size)}
    (data_dir / "candles").mkdir()
    _write(cols, data_dir / "candles" / "tBTCUSD_1W.parquet")
    proc = run_cli("validate", "--symbol", "tBTCUSD", "--timeframe", "1W", "--report-dir", str(data_dir / "q"))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"misaligned\s+13\b", proc.stdout), proc.stdout
    bt = run_cli("backtest", "--symbol", "tBTCUSD", "--timeframe", "1W", "--no-report",
                 "--output", str(data_dir / "bt.html"))
    assert bt.returncode == 1 and "Traceback" not in bt.stderr
    last = bt.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "not aligned to the 1W grid (Mondays 00:00 UTC)" in last, bt.stderr
    # the fix the message names: rebuild the weeks from finer stored candles
    shutil.copy(BTC_2D, data_dir / "candles" / "tBTCUSD_1m.parquet")
    fix = "genesis-fw resample --symbol tBTCUSD --to 1W"
    assert fix in last
    assert run_cli(*fix.split()[1:]).returncode == 0
    rebuilt = validate(data_dir / "candles" / "tBTCUSD_1W.parquet", "tBTCUSD", "1W")
    assert rebuilt.counts["misaligned"] == 0 and rebuilt.first == "2019-04-01T00:00:00Z"


# --- the score -------------------------------------------------------------------------------------------------


def test_score_is_stable_bounded_and_falls_as_defects_grow(tmp_path: Path):
    clean = _columns(BTC_2D)
    scores = []
    for n_bad in (0, 1, 2, 5, 20, 100):
        c = {k: v.copy() for k, v in clean.items()}
        rows = np.arange(n_bad) * 20 + 5
        c["high"][rows] = c["low"][rows] - 1
        scores.append(_check(_write(c, tmp_path / f"bad{n_bad}.parquet")).quality_score)
    assert scores[0] == 1.0
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    assert scores[1] == pytest.approx(1 - 1 / clean["timestamp"].size)
    again = _check(tmp_path / "bad5.parquet")
    assert again.quality_score == scores[3]  # same data, same score

    c = {k: v.copy() for k, v in clean.items()}
    c["high"][:] = c["low"] - 1  # every row broken
    assert _check(_write(c, tmp_path / "all_bad.parquet")).quality_score == 0.0


def test_subset_of_checks_and_errors(tmp_path: Path):
    r = validate(BTC_2D, "tBTCUSD", "1m", checks=["ohlc", "gaps"])
    assert r.checks == ("gaps", "ohlc") and set(r.counts) == {"gaps", "ohlc"}
    r = validate(BTC_2D, "tBTCUSD", "1m", checks=["duplicates"])
    assert r.gaps is None and "Largest gaps" not in r.to_markdown()
    with pytest.raises(DataError, match="unknown check 'dupes'"):
        validate(BTC_2D, "tBTCUSD", "1m", checks=["dupes"])
    with pytest.raises(DataError, match="no candle file"):
        validate(tmp_path / "nope.parquet", "tBTCUSD", "1m")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), bad)
    with pytest.raises(DataError, match="cannot validate"):
        validate(bad, "tBTCUSD", "1m")
    with pytest.raises(DataError, match="unknown timeframe"):
        validate(BTC_2D, "tBTCUSD", "1x")


def test_report_outputs(baseline):
    r = baseline[SAMPLE.name]
    data = json.loads(r.to_json())
    assert data["quality_score"] == r.quality_score and data["counts"] == r.counts
    assert data["gaps"]["count"] == r.gaps["count"] and data["num_candles"] == 129_544
    # The content digest, the one dataset versions and backtests record (not the file's bytes).
    file_digest = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert data["data_sha256"] == content_sha256(pq.read_table(SAMPLE)) != file_digest
    md = r.to_markdown()
    for heading in ("# Data quality: tBTCUSD 1m", "## Checks", "## Largest gaps", "## Examples", "### outliers"):
        assert heading in md
    text = r.summary()
    assert "quality score" in text and "coverage" in text and f"{r.gaps['count']:,}" in text


# --- the command -----------------------------------------------------------------------------------------------


def test_cli_validates_the_store_writes_reports_and_records_the_catalog(btc_store: Path):
    proc = run_cli("validate", "--symbol", "tBTCUSD", "--timeframe", "1m", "--min-quality", "0.99")
    assert proc.returncode == 0, proc.stderr
    assert "quality score  1.000000" in proc.stdout and "Note:" not in proc.stderr
    report = btc_store / "metadata" / "tBTCUSD_1m.quality.json"
    data = json.loads(report.read_text())
    assert data["counts"]["gaps"] == 56 and data["quality_score"] == 1.0
    assert (btc_store / "metadata" / "tBTCUSD_1m.quality.md").read_text().startswith("# Data quality")
    con = sqlite3.connect(btc_store / "genesis.db")
    try:
        rows = con.execute("SELECT symbol, timeframe, num_candles, quality_score, gaps, missing, duplicates, ohlc, "
                           "outliers, zero_volume, report_path, data_sha256 FROM quality").fetchall()
        kinds = [r[0] for r in con.execute("SELECT kind FROM events")]
    finally:
        con.close()
    sha = content_sha256(pq.read_table(btc_store / "candles" / "tBTCUSD_1m.parquet"))  # joins dataset_versions.sha256
    assert rows == [("tBTCUSD", "1m", 2817, 1.0, 56, 63, 0, 0, 0, 0, str(report), sha)]
    assert "dataset.validated" in kinds
    assert "quality" in Catalog(btc_store / "genesis.db").read_tables()


def test_cli_min_quality_json_and_report_dir(btc_store: Path, tmp_path: Path):
    c = _columns(btc_store / "candles" / "tETHUSD_1m.parquet")
    c["close"][5] = np.nan
    _write(c, btc_store / "candles" / "tETHUSD_1m.parquet")
    out = tmp_path / "reports"
    proc = run_cli("validate", "--symbol", "tETHUSD", "--timeframe", "1m", "--min-quality", "0.9999",
                   "--format", "json", "--report-dir", str(out))
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    score = json.loads(proc.stdout)["quality_score"]
    assert line == (f"Error: tETHUSD 1m quality score {score:.6f} is below --min-quality 0.9999 "
                    f"(report: {out / 'tETHUSD_1m.quality.md'})")
    assert (out / "tETHUSD_1m.quality.json").is_file() and not (btc_store / "metadata").exists()


def test_cli_unknown_dataset_resampled_timeframe_and_sample_fallback(data_dir: Path):
    proc = run_cli("validate", "--symbol", "tXRPUSD", "--timeframe", "1m")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: no tXRPUSD candles at 1m or finer in the store at {data_dir} "
        "(the bundled sample has tBTCUSD 1m only); fetch or import them first"]
    proc = run_cli("validate", "--symbol", "tBTCUSD", "--timeframe", "1h")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "only resampled on the fly from the 1m file" in line and "validate 1m" in line
    proc = run_cli("validate", "--symbol", "tBTCUSD", "--timeframe", "1m")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Note: the store has no tBTCUSD 1m data; validating the bundled sample "
        "(real Bitfinex tBTCUSD 1m, 2019-04-01 .. 2019-06-30)"]
    assert (data_dir / "metadata" / "tBTCUSD_1m.quality.md").is_file()


def test_cli_refuses_a_timeframe_the_store_only_resamples(btc_store: Path):
    shutil.rmtree(btc_store / "metadata", ignore_errors=True)
    proc = run_cli("validate", "--symbol", "tBTCUSD", "--timeframe", "5m")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"Error: the store at {btc_store} has no tBTCUSD 5m file")

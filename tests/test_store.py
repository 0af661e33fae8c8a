"""The candle store (genesis_fw/data/store.py) and sql/resample.sql, on real Parquet files and real DuckDB."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_fw.data import store as store_mod
from genesis_fw.data.store import (
    COLUMNS,
    ROW_GROUP_SIZE,
    SCHEMA,
    CandleStore,
    Dataset,
    conform,
    default_data_dir,
    read,
    resample,
)
from genesis_fw.data.timeframes import parse_time, timeframe_ms
from genesis_fw.errors import DataError

DATA = Path(__file__).parent / "data"
BTC_2D = DATA / "tBTCUSD_1m_2019-04-01_2d.parquet"  # the same files as the conftest fixtures copy
ETH_2D = DATA / "tETHUSD_1m_2019-04-01_2d.parquet"
SAMPLE = Path(store_mod.__file__).parents[1] / "sample" / "tBTCUSD_1m.parquet"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_554_076_800_000  # 2019-04-01T00:00:00Z in ms


def ms(text: str) -> int:
    return (parse_time(text) - EPOCH) // timedelta(milliseconds=1)


def iso(ms_: int) -> str:
    return (EPOCH + timedelta(milliseconds=int(ms_))).isoformat()


def candles(ts, *, tz: str | None = "UTC", unit: str = "ms", **cols) -> pa.Table:
    """A candle table; OHLCV default to distinct values derived from the row index (low < open < close < high,
    so the store accepts them)."""
    n = len(ts)
    data = {"timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp(unit, tz=tz))}
    base = {"open": 200, "high": 400, "low": 100, "close": 300, "volume": 500}
    for name in COLUMNS[1:]:
        data[name] = pa.array(cols.get(name, [float(base[name] + k) for k in range(n)]), pa.float64())
    return pa.table(data)


def consistent(o: float, h: float, lo: float, c: float, v: float) -> tuple[float, ...]:
    """Random prices made a real candle: high the largest of the four, low the smallest."""
    return o, max(o, h, lo, c), min(o, h, lo, c), c, v


def rows(table: pa.Table) -> list[tuple]:
    """(ts_ms, open, high, low, close, volume) tuples of a candle table."""
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    return list(zip(ts, *(table.column(c).to_pylist() for c in COLUMNS[1:]), strict=True))


def month_start_ms(ts_ms: int) -> int:
    d = EPOCH + timedelta(milliseconds=ts_ms)
    return (datetime(d.year, d.month, 1, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


#: 1970-01-05 00:00 UTC in ms: the first Monday after the epoch, where the grids of whole weeks start.
MONDAY_1970 = 4 * 86_400_000


def bucket_of(ts_ms: int, timeframe: str) -> int:
    width = timeframe_ms(timeframe)
    if width == 0:
        return month_start_ms(ts_ms)
    origin = MONDAY_1970 if width % (7 * 86_400_000) == 0 else 0
    return ts_ms - (ts_ms - origin) % width


def reference_resample(src: list[tuple], timeframe: str) -> list[tuple]:
    """Naive pure-Python resample: UTC buckets (whole weeks from Monday 1970-01-05, other widths from the
    epoch, calendar months), first/max/min/last/sum, empty buckets absent."""
    groups: dict[int, list[tuple]] = defaultdict(list)
    for r in sorted(src):
        groups[bucket_of(r[0], timeframe)].append(r)
    out = []
    for b in sorted(groups):
        g = groups[b]
        out.append((b, g[0][1], max(r[2] for r in g), min(r[3] for r in g), g[-1][4], math.fsum(r[5] for r in g)))
    return out


def assert_same_candles(got: list[tuple], expected: list[tuple]) -> None:
    assert [r[0] for r in got] == [r[0] for r in expected], "bucket open times differ"
    for g, e in zip(got, expected, strict=True):
        assert g[1:5] == e[1:5], f"OHLC differs at {iso(g[0])}"
        assert g[5] == pytest.approx(e[5], rel=1e-12, abs=1e-9), f"volume differs at {iso(g[0])}"


def corrupt_row_groups(path: Path, groups: list[int]) -> None:
    """Overwrite every column chunk of the given row groups with garbage, leaving the footer (and its
    statistics) intact: a reader that touches those row groups fails, one that skips them does not."""
    md = pq.ParquetFile(path).metadata
    raw = bytearray(path.read_bytes())
    for i in groups:
        rg = md.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            offsets = [o for o in (col.dictionary_page_offset, col.data_page_offset) if o]
            start = min(offsets)
            raw[start : start + col.total_compressed_size] = b"\xff" * col.total_compressed_size
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def btc_rows() -> list[tuple]:
    return rows(pq.read_table(BTC_2D))


@pytest.fixture(scope="module")
def sample_rows() -> list[tuple]:
    return rows(pq.read_table(SAMPLE))


# ================================================================================================
# conform
# ================================================================================================


def test_conform_sorts_and_keeps_rows_together():
    ts = [T0 + 120_000, T0, T0 + 60_000]
    t = candles(ts, open=[3.0, 1.0, 2.0], high=[30.0, 10.0, 20.0], low=[0.3, 0.1, 0.2], close=[3.5, 1.5, 2.5],
                volume=[300.0, 100.0, 200.0])
    out = conform(t)
    assert out.schema == SCHEMA
    assert rows(out) == [
        (T0, 1.0, 10.0, 0.1, 1.5, 100.0),
        (T0 + 60_000, 2.0, 20.0, 0.2, 2.5, 200.0),
        (T0 + 120_000, 3.0, 30.0, 0.3, 3.5, 300.0),
    ]


def test_conform_rejects_duplicates_and_names_the_first():
    t = candles([T0 + 120_000, T0 + 60_000, T0, T0 + 60_000, T0 + 120_000])
    with pytest.raises(DataError) as exc:
        conform(t, where="tBTCUSD 1m")
    msg = str(exc.value)
    assert msg.startswith("tBTCUSD 1m: 2 duplicate timestamp(s)")
    assert "first at 2019-04-01T00:01:00+00:00" in msg


def test_conform_rejects_duplicates_created_by_truncation_to_ms():
    # 0.2 ms apart in nanoseconds: distinct in the input, identical once at millisecond resolution
    t = candles([T0 * 10**6, T0 * 10**6 + 200_000], unit="ns")
    with pytest.raises(DataError, match="duplicate timestamp"):
        conform(t)


@pytest.mark.parametrize("dropped", COLUMNS)
def test_conform_missing_column(dropped):
    t = candles([T0, T0 + 60_000]).drop_columns([dropped])
    with pytest.raises(DataError, match=f"missing column\\(s\\) {dropped};"):
        conform(t)


def test_conform_missing_several_columns_lists_them():
    t = candles([T0]).select(["timestamp", "open"])
    with pytest.raises(DataError, match="missing column\\(s\\) high, low, close, volume"):
        conform(t)


@pytest.mark.parametrize("name", COLUMNS)
def test_conform_rejects_nulls(name):
    t = candles([T0, T0 + 60_000, T0 + 120_000])
    col = t.column(name).to_pylist()
    col[1] = None
    t = t.set_column(COLUMNS.index(name), name, pa.array(col, t.schema.field(name).type))
    with pytest.raises(DataError, match=f"column '{name}' has 1 null value"):
        conform(t)


def test_conform_rejects_non_numeric_columns():
    t = candles([T0, T0 + 60_000])
    t = t.set_column(1, "open", pa.array(["1.0", "2.0"]))
    with pytest.raises(DataError, match="column 'open' has type string; expected numbers"):
        conform(t)
    t = candles([T0]).set_column(0, "timestamp", pa.array(["2019-04-01T00:00:00Z"]))
    with pytest.raises(DataError, match="column 'timestamp' has type string"):
        conform(t)


@pytest.mark.parametrize(
    ("unit", "scale"), [("s", 1 / 1000), ("ms", 1), ("us", 1000), ("ns", 10**6)]
)
@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Tokyo", "America/New_York"])
def test_conform_timestamp_units_and_zones_become_ms_utc(unit, scale, tz):
    instants = [T0 + 120_000, T0, T0 + 60_000]
    t = candles([int(x * scale) for x in instants], unit=unit, tz=tz)
    out = conform(t)
    assert out.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    # naive values are read as UTC; zoned values keep their instant
    assert out.column("timestamp").cast(pa.int64()).to_pylist() == sorted(instants)


def test_conform_truncates_sub_millisecond_precision():
    t = candles([T0 * 1000 + 999, T0 * 1000 + 60_000_500], unit="us")
    assert conform(t).column("timestamp").cast(pa.int64()).to_pylist() == [T0, T0 + 60_000]


@pytest.mark.parametrize("int_type", [pa.int64(), pa.int32(), pa.uint64()])
def test_conform_integer_timestamps_are_epoch_ms(int_type):
    values = [120_000, 0, 60_000] if int_type == pa.int32() else [T0 + 120_000, T0, T0 + 60_000]
    t = candles([0, 0, 0]).set_column(0, "timestamp", pa.array(values, int_type))
    out = conform(t)
    assert out.schema == SCHEMA
    assert out.column("timestamp").cast(pa.int64()).to_pylist() == sorted(values)
    assert out.column("timestamp")[0].as_py() == EPOCH + timedelta(milliseconds=min(values))


def test_conform_casts_numbers_drops_extra_columns_and_orders_columns():
    t = pa.table(
        {
            "volume": pa.array([5, 6], pa.int32()),
            "extra": ["a", "b"],
            "close": pa.array([1.5, 2.5], pa.float32()),
            "low": pa.array([1, 2], pa.int64()),
            "high": pa.array([2, 3], pa.int16()),
            "open": pa.array(["1.25", "2.25"]).cast(pa.decimal128(10, 2)),
            "timestamp": pa.array([T0, T0 + 60_000], pa.timestamp("ms", tz="UTC")),
        }
    )
    out = conform(t)
    assert out.schema == SCHEMA
    assert out.column_names == COLUMNS
    assert rows(out) == [(T0, 1.25, 2.0, 1.0, 1.5, 5.0), (T0 + 60_000, 2.25, 3.0, 2.0, 2.5, 6.0)]


def test_conform_empty_table():
    out = conform(candles([]))
    assert out.num_rows == 0
    assert out.schema == SCHEMA


def test_conform_real_file_is_unchanged(btc_rows):
    table = pq.read_table(BTC_2D)
    out = conform(table)
    assert out.schema == SCHEMA
    assert out.equals(table.cast(SCHEMA))
    assert rows(out) == btc_rows


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=0, max_size=50, unique=True),
    st.randoms(use_true_random=False),
)
def test_conform_is_idempotent_and_order_independent(minutes, rnd):
    ts = [T0 + m * 60_000 for m in minutes]
    base = candles(ts)
    shuffled_idx = list(range(len(ts)))
    rnd.shuffle(shuffled_idx)
    shuffled = base.take(pa.array(shuffled_idx, pa.int64()))
    once = conform(shuffled)
    assert once.equals(conform(base))
    assert conform(once).equals(once)
    got_ts = once.column("timestamp").cast(pa.int64()).to_pylist()
    assert got_ts == sorted(ts)
    # each row keeps its own values (open was 200 + original index)
    by_ts = {t: 200.0 + i for i, t in enumerate(ts)}
    assert once.column("open").to_pylist() == [by_ts[t] for t in got_ts]


# ================================================================================================
# CandleStore: layout, write, alignment, atomicity
# ================================================================================================


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GENESIS_DATA_DIR", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x"
    assert CandleStore.open().root == tmp_path / "x"
    assert CandleStore.open(tmp_path / "y").root == tmp_path / "y"
    monkeypatch.delenv("GENESIS_DATA_DIR")
    assert default_data_dir() == Path("data")
    monkeypatch.setenv("GENESIS_DATA_DIR", "")
    assert default_data_dir() == Path("data")


def test_store_layout(data_dir):
    s = CandleStore.open()
    assert s.root == data_dir
    assert s.candles_dir == data_dir / "candles"
    assert s.features_dir == data_dir / "features"
    assert s.metadata_dir == data_dir / "metadata"
    assert s.catalog_path == data_dir / "genesis.db"
    assert s.path("tBTCUSD", "1h") == data_dir / "candles" / "tBTCUSD_1h.parquet"
    assert s.path("tTESTBTC:TESTUSD", "1m") == data_dir / "candles" / "tTESTBTC:TESTUSD_1m.parquet"


def test_write_then_read_round_trip(data_dir, btc_rows):
    s = CandleStore.open()
    path = s.write("tBTCUSD", "1m", pq.read_table(BTC_2D))
    assert path == data_dir / "candles" / "tBTCUSD_1m.parquet"
    assert s.has("tBTCUSD", "1m") and not s.has("tBTCUSD", "5m")
    pf = pq.ParquetFile(path)
    assert pf.schema_arrow == SCHEMA
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    assert rows(read(s.find("tBTCUSD", "1m"))) == btc_rows
    assert sorted(p.name for p in path.parent.iterdir()) == ["tBTCUSD_1m.parquet"]  # no temp file left


def test_write_stores_sorted_rows_and_replaces_previous(data_dir):
    s = CandleStore.open()
    s.write("tBTCUSD", "1m", candles([T0 + 60_000, T0]))
    assert s.write("tBTCUSD", "1m", candles([T0 + 180_000, T0 + 120_000])) == s.path("tBTCUSD", "1m")
    stored = pq.read_table(s.path("tBTCUSD", "1m"))
    assert stored.column("timestamp").cast(pa.int64()).to_pylist() == [T0 + 120_000, T0 + 180_000]


def test_write_uses_row_groups_of_row_group_size(data_dir, sample_rows):
    s = CandleStore.open()
    path = s.write("tBTCUSD", "1m", pq.read_table(SAMPLE))
    md = pq.ParquetFile(path).metadata
    n = len(sample_rows)
    assert md.num_rows == n
    assert md.num_row_groups == -(-n // ROW_GROUP_SIZE) > 1
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups - 1)] == [ROW_GROUP_SIZE] * (
        md.num_row_groups - 1
    )
    assert md.row_group(0).column(0).statistics.has_min_max


@pytest.mark.parametrize("symbol", ["../../etc", "BTC USD", "tbtcusd", ""])
def test_write_refuses_bad_symbol_without_touching_disk(data_dir, symbol):
    with pytest.raises(DataError, match="invalid symbol"):
        CandleStore.open().write(symbol, "1m", candles([T0]))
    assert list(data_dir.rglob("*")) == []
    assert not (data_dir.parent / "etc").exists()


def test_write_refuses_bad_data_and_keeps_previous_file(btc_store):
    s = CandleStore.open()
    path = s.path("tBTCUSD", "1m")
    before = path.read_bytes()
    with pytest.raises(DataError, match="duplicate"):
        s.write("tBTCUSD", "1m", candles([T0, T0]))
    with pytest.raises(DataError, match="missing column"):
        s.write("tBTCUSD", "1m", candles([T0]).drop_columns(["volume"]))
    with pytest.raises(DataError, match="not aligned"):
        s.write("tBTCUSD", "1m", candles([T0 + 30_000]))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["tBTCUSD_1m.parquet", "tETHUSD_1m.parquet"]


@pytest.mark.parametrize(
    ("timeframe", "ts", "ok"),
    [
        ("1m", [T0, T0 + 60_000], True),
        ("1m", [T0, T0 + 60_001], False),
        ("5m", [T0, T0 + 300_000, T0 + 900_000], True),
        ("5m", [T0, T0 + 60_000], False),
        ("1h", [T0 + 3_600_000], True),
        ("1h", [T0 + 1_800_000], False),
        ("4h", [T0 + 4 * 3_600_000], True),
        ("4h", [T0 + 3_600_000], False),
        ("1D", [T0, T0 + 86_400_000], True),
        ("1D", [T0 + 3_600_000], False),
        ("1W", [ms("2019-04-01"), ms("2019-04-15")], True),  # weeks open on Mondays
        ("1W", [ms("2019-03-28")], False),  # a Thursday: the epoch's weekday
        ("1W", [ms("2019-04-01"), ms("2019-04-07")], False),  # a Sunday
        ("14D", [ms("1970-01-05"), ms("2019-03-25"), ms("2019-04-08")], True),  # every 14 days from 1970-01-05
        ("14D", [ms("2019-04-01")], False),  # a Monday, but off the 14-day grid
        ("14D", [ms("2019-03-28") - 7 * 86_400_000], False),  # the old epoch-aligned grid: Thursdays
        ("1M", [ms("2019-04-01"), ms("2019-05-01"), ms("2020-02-01")], True),
        ("1M", [ms("2019-04-01"), ms("2019-04-02")], False),
        ("1M", [ms("2019-04-01T01:00")], False),
    ],
)
def test_write_checks_grid_alignment(data_dir, timeframe, ts, ok):
    s = CandleStore.open()
    t = candles(ts)
    if ok:
        s.write("tBTCUSD", timeframe, t)
        assert pq.read_table(s.path("tBTCUSD", timeframe)).num_rows == len(ts)
    else:
        with pytest.raises(DataError, match=f"not aligned to the {timeframe} grid .*, first at"):
            s.write("tBTCUSD", timeframe, t)
        assert not s.path("tBTCUSD", timeframe).exists()


def _partial_writer(exc: BaseException):
    """A stand-in for pq.write_table that writes the first half of the real file's bytes, then fails."""

    def write_table(table, where, **kwargs):
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, **kwargs)
        data = buf.getvalue().to_pybytes()
        Path(where).write_bytes(data[: len(data) // 2])
        raise exc

    return write_table


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(28, "No space left on device"), DataError),
        (pa.ArrowInvalid("writer exploded"), pa.ArrowInvalid),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_write_is_atomic_when_the_writer_fails_midway(btc_store, monkeypatch, exc, expected):
    s = CandleStore.open()
    path = s.path("tBTCUSD", "1m")
    before = path.read_bytes()
    seen = []

    partial = _partial_writer(exc)

    def spy(table, where, **kwargs):
        seen.append(Path(where))
        assert where != path and not Path(where).exists() or Path(where).stat().st_size == 0
        monkeypatch.undo()  # so the stand-in itself serialises with the real pq.write_table
        return partial(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", spy)
    with pytest.raises(expected) as info:
        s.write("tBTCUSD", "1m", pq.read_table(ETH_2D))
    if expected is DataError:
        assert "cannot write" in str(info.value) and "No space left on device" in str(info.value)
    # the writer was aimed at a temp file beside the target, never at the target itself
    assert len(seen) == 1 and seen[0] != path and seen[0].parent == path.parent
    assert not seen[0].exists()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["tBTCUSD_1m.parquet", "tETHUSD_1m.parquet"]
    assert rows(read(s.find("tBTCUSD", "1m"))) == rows(pq.read_table(BTC_2D))


def test_write_survives_a_hard_crash_mid_write(btc_store):
    """A process killed while writing (no cleanup runs at all) leaves the previous file intact."""
    path = btc_store / "candles" / "tBTCUSD_1m.parquet"
    before = path.read_bytes()
    script = textwrap.dedent(
        """
        import os, sys
        import pyarrow.parquet as pq
        from genesis_fw.data.store import CandleStore

        def crash(table, where, **kwargs):
            w = pq.ParquetWriter(where, table.schema)
            w.write_table(table.slice(0, 500))
            os._exit(3)  # like SIGKILL or a power cut: no finally blocks, no cleanup

        pq.write_table = crash
        CandleStore(sys.argv[1]).write("tBTCUSD", "1m", pq.read_table(sys.argv[2]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(btc_store), str(ETH_2D)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert path.read_bytes() == before
    # at most a stray hidden temp file, which is not mistaken for a dataset
    stray = [p.name for p in path.parent.iterdir() if p.name not in ("tBTCUSD_1m.parquet", "tETHUSD_1m.parquet")]
    assert all(n.startswith(".tBTCUSD_1m.parquet.") and n.endswith(".tmp") for n in stray)
    s = CandleStore.open()
    assert [(d.symbol, d.timeframe) for d in s.datasets()] == [("tBTCUSD", "1m"), ("tETHUSD", "1m")]
    assert rows(read(s.find("tBTCUSD", "1m"))) == rows(pq.read_table(BTC_2D))


# ================================================================================================
# read
# ================================================================================================


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        ("2019-04-01T10:00", "2019-04-01T12:00"),
        ("2019-04-01T10:00:30", "2019-04-01T11:59:30"),  # bounds between candles
        ("2019-04-01T12:00+02:00", "2019-04-01T13:00+02:00"),  # offsets converted to UTC
        ("2019-04-02", None),
        (None, "2019-04-01T00:05"),
        ("2019-04-01T23:59", "2019-04-02T00:01"),
        ("2019-03-01", "2019-03-02"),  # before the data
        ("2019-04-05", None),  # after the data
        ("2019-04-01T12:00", "2019-04-01T12:00"),  # empty range
        ("2019-04-01T13:00", "2019-04-01T12:00"),  # reversed range
    ],
)
def test_read_range_is_half_open(btc_store, btc_rows, start, end):
    s = CandleStore.open()
    lo, hi = parse_time(start), parse_time(end)
    got = read(s.find("tBTCUSD", "1m"), lo, hi)
    assert got.schema == SCHEMA
    lo_ms = ms(start) if start else -math.inf
    hi_ms = ms(end) if end else math.inf
    expected = [r for r in btc_rows if lo_ms <= r[0] < hi_ms]
    assert rows(got) == expected


def test_read_includes_start_candle_and_excludes_end_candle(btc_store, btc_rows):
    ts = [r[0] for r in btc_rows]
    start, end = ts[100], ts[200]
    got = rows(read(CandleStore.open().find("tBTCUSD", "1m"), parse_time(iso(start)), parse_time(iso(end))))
    assert got[0][0] == start and got[-1][0] == ts[199] and len(got) == 100


def test_read_pushes_range_down_to_row_groups(data_dir, sample_rows):
    """Row groups outside the range are never read: corrupt them and a range read still works."""
    s = CandleStore.open()
    path = s.write("tBTCUSD", "1m", pq.read_table(SAMPLE))
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == 4
    stats = [md.row_group(i).column(0).statistics for i in range(4)]
    # a day well inside row group 1
    lo, hi = parse_time("2019-05-01"), parse_time("2019-05-02")
    assert stats[1].min < lo and hi < stats[1].max
    corrupt_row_groups(path, [0, 2, 3])
    dataset = s.find("tBTCUSD", "1m")
    got = read(dataset, lo, hi)
    assert rows(got) == [r for r in sample_rows if ms("2019-05-01") <= r[0] < ms("2019-05-02")]
    assert got.num_rows > 1400
    # the corruption is real: reading without a range (or touching a bad group) fails
    with pytest.raises(DataError, match="cannot read"):
        read(dataset)
    with pytest.raises(DataError, match="cannot read"):
        read(dataset, parse_time("2019-06-01"), parse_time("2019-06-02"))


def test_resample_pushes_range_down_to_row_groups(data_dir, sample_rows):
    """DuckDB also skips the row groups outside [lo, hi) of sql/resample.sql."""
    s = CandleStore.open()
    path = s.write("tBTCUSD", "1m", pq.read_table(SAMPLE))
    corrupt_row_groups(path, [0, 2, 3])
    lo, hi = "2019-05-01T00:30", "2019-05-01T06:30"
    got = rows(resample(path, "1h", parse_time(lo), parse_time(hi)))
    expected = [r for r in reference_resample(sample_rows, "1h") if ms(lo) <= r[0] < ms(hi)]
    assert len(expected) == 6
    assert_same_candles(got, expected)
    with pytest.raises(DataError, match="cannot resample"):
        resample(path, "1h")


def test_read_missing_or_broken_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read(Dataset("tBTCUSD", "1m", tmp_path / "nope.parquet"))
    bad = tmp_path / "tBTCUSD_1m.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="cannot read"):
        read(Dataset("tBTCUSD", "1m", bad))


def test_read_a_file_written_elsewhere_is_conformed(tmp_path):
    """A file with us timestamps, out of order, is returned sorted in the store schema."""
    t = candles([(T0 + 60_000) * 1000, T0 * 1000, (T0 + 120_000) * 1000], unit="us", tz="UTC")
    path = tmp_path / "x.parquet"
    pq.write_table(t, path)
    got = read(Dataset("tBTCUSD", "1m", path), parse_time("2019-04-01T00:01"), None)
    assert got.schema == SCHEMA
    assert got.column("timestamp").cast(pa.int64()).to_pylist() == [T0 + 60_000, T0 + 120_000]


# ================================================================================================
# resample (sql/resample.sql) against an independent computation
# ================================================================================================


@pytest.mark.parametrize("source", [BTC_2D, ETH_2D], ids=["btc", "eth"])
@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "4h", "1D", "1W", "1M"])
def test_resample_matches_reference_on_real_data(source, timeframe):
    src = rows(pq.read_table(source))
    got = resample(source, timeframe)
    assert got.schema == SCHEMA
    expected = reference_resample(src, timeframe)
    assert_same_candles(rows(got), expected)
    # and independently of the reference: the known bucket counts of two full days
    counts = {"5m": 576, "15m": 192, "1h": 48, "4h": 12, "1D": 2, "1W": 1, "1M": 1}
    assert got.num_rows == counts[timeframe]
    assert math.isclose(sum(got.column("volume").to_pylist()), math.fsum(r[5] for r in src), rel_tol=1e-12)


@pytest.mark.usefixtures("local_zone_new_york")
@pytest.mark.parametrize("timeframe", ["1h", "1D", "1M"])
def test_resample_buckets_are_utc_whatever_the_local_zone(sample_rows, timeframe):
    got = rows(resample(SAMPLE, timeframe, parse_time("2019-04-20"), parse_time("2019-06-10")))
    expected = [r for r in reference_resample(sample_rows, timeframe) if ms("2019-04-20") <= r[0] < ms("2019-06-10")]
    assert_same_candles(got, expected)


def test_resample_week_buckets_start_on_monday():
    got = resample(BTC_2D, "1W")  # Monday 2019-04-01 .. Tuesday 2019-04-02
    assert got.column("timestamp").to_pylist() == [datetime(2019, 4, 1, tzinfo=UTC)]


def _pandas_reference(source: Path, rule: str, **kw) -> list[tuple]:
    """Buckets of ``source`` computed by pandas, empty buckets dropped, as (ts_ms, o, h, l, c, v) tuples."""
    df = pq.read_table(source).to_pandas().set_index("timestamp")
    assert str(df.index.tz) == "UTC"
    df.index = df.index.tz_convert(None)  # naive UTC: pandas honours ``origin`` for day widths only there
    agg = df.resample(rule, **kw).agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                       "volume": "sum"})
    agg = agg[df["open"].resample(rule, **kw).count() > 0]
    opens = [int(t) for t in agg.index.as_unit("ms").asi8]  # ms since the epoch, UTC
    return [(t, *map(float, r)) for t, r in zip(opens, agg.itertuples(index=False), strict=True)]


@pytest.mark.parametrize(
    ("timeframe", "rule", "kw", "count"),
    [
        ("1W", "W-MON", {"label": "left", "closed": "left"}, 13),  # weeks Monday 00:00 UTC .. next Monday
        ("1M", "MS", {}, 3),  # calendar months
        ("14D", "14D", {"origin": "1970-01-05"}, 7),  # fortnights from the first Monday after the epoch
    ],
)
def test_weeks_and_months_equal_pandas_on_the_real_sample(timeframe, rule, kw, count):
    """The bundled sample (2019-04-01 Monday .. 2019-06-30 Sunday) resampled by sql/resample.sql and by pandas:
    identical buckets, OHLC exactly, volume to rounding."""
    import pandas as pd

    kw = {k: pd.Timestamp(v) if k == "origin" else v for k, v in kw.items()}
    got = rows(resample(SAMPLE, timeframe))
    expected = _pandas_reference(SAMPLE, rule, **kw)
    assert len(expected) == count
    assert_same_candles(got, expected)
    if timeframe != "1M":
        assert {datetime.fromtimestamp(r[0] / 1000, UTC).weekday() for r in got} == {0}  # Mondays only
        assert got[0][0] <= ms("2019-04-01") < got[0][0] + timeframe_ms(timeframe)


def test_weeks_built_from_daily_equal_weeks_built_from_minutes(tmp_path):
    """1D buckets nest inside Monday weeks: 1m -> 1D -> 1W gives the same weeks as 1m -> 1W."""
    s = CandleStore(tmp_path)
    daily = s.write("tBTCUSD", "1D", resample(SAMPLE, "1D"))
    for tf in ("1W", "14D", "1M"):
        assert_same_candles(rows(resample(daily, tf)), rows(resample(SAMPLE, tf)))


def test_a_week_range_ending_mid_week_returns_the_last_week_whole():
    """Buckets opening in [start, end) come back whole even when ``end`` cuts a week: Tuesday 2019-04-09."""
    full = {r[0]: r for r in rows(resample(SAMPLE, "1W"))}
    got = rows(resample(SAMPLE, "1W", parse_time("2019-04-03"), parse_time("2019-04-09")))
    assert [iso(r[0]) for r in got] == ["2019-04-08T00:00:00+00:00"]
    assert_same_candles(got, [full[r[0]] for r in got])
    got = rows(resample(SAMPLE, "14D", None, parse_time("2019-04-09")))
    assert [iso(r[0]) for r in got] == ["2019-03-25T00:00:00+00:00", "2019-04-08T00:00:00+00:00"]
    assert_same_candles(got, rows(resample(SAMPLE, "14D"))[:2])


def test_reading_a_thursday_aligned_week_file_is_refused_in_one_line(tmp_path):
    """A 1W file stored with the old epoch-aligned (Thursday) weeks: reading it says what is wrong and how
    to rebuild it, instead of handing out Thursday weeks."""
    thursdays = [ms("2019-03-28") + k * 7 * 86_400_000 for k in range(4)]
    path = tmp_path / "tBTCUSD_1W.parquet"
    pq.write_table(candles(thursdays), path)  # pyarrow directly: the store would refuse it
    with pytest.raises(DataError) as err:
        read(Dataset("tBTCUSD", "1W", path))
    msg = str(err.value)
    assert "\n" not in msg
    assert "4 timestamp(s) not aligned to the 1W grid (Mondays 00:00 UTC)" in msg
    assert "first at 2019-03-28T00:00:00+00:00" in msg and "genesis-fw resample --symbol tBTCUSD --to 1W" in msg


def test_resample_1h_first_bucket_by_hand(btc_rows):
    hour = [r for r in btc_rows if r[0] < T0 + 3_600_000]
    first = rows(resample(BTC_2D, "1h"))[0]
    assert first[0] == T0
    assert first[1] == hour[0][1]
    assert first[2] == max(np.array([r[2] for r in hour]))
    assert first[3] == min(np.array([r[3] for r in hour]))
    assert first[4] == hour[-1][4]
    assert first[5] == pytest.approx(float(np.sum([r[5] for r in hour])), rel=1e-12)


def test_resample_gap_in_real_data_is_absent(sample_rows):
    """The bundled sample has no trade at all between 2019-06-26 09:00 and 11:00 UTC."""
    gap_lo, gap_hi = ms("2019-06-26T09:00"), ms("2019-06-26T11:00")
    assert not [r for r in sample_rows if gap_lo <= r[0] < gap_hi]
    lo, hi = parse_time("2019-06-26T06:00"), parse_time("2019-06-26T14:00")
    got = rows(resample(SAMPLE, "1h", lo, hi))
    opens = [iso(r[0]) for r in got]
    assert "2019-06-26T09:00:00+00:00" not in opens
    assert "2019-06-26T10:00:00+00:00" not in opens
    assert "2019-06-26T08:00:00+00:00" in opens and "2019-06-26T11:00:00+00:00" in opens
    assert all(r[5] > 0 for r in got)  # nothing zero-filled
    assert_same_candles(got, [r for r in reference_resample(sample_rows, "1h") if ms("2019-06-26T06:00") <= r[0]
                              < ms("2019-06-26T14:00")])
    five = {r[0] for r in rows(resample(SAMPLE, "5m", lo, hi))}
    assert not [t for t in five if gap_lo <= t < gap_hi]


def test_resample_hole_cut_from_real_data_is_absent(tmp_path, btc_rows):
    hole_lo, hole_hi = ms("2019-04-01T10:00"), ms("2019-04-01T12:00")
    kept = [r for r in btc_rows if not hole_lo <= r[0] < hole_hi]
    s = CandleStore(tmp_path)
    path = s.write("tBTCUSD", "1m", candles([r[0] for r in kept], **{c: [r[i + 1] for r in kept]
                                                                     for i, c in enumerate(COLUMNS[1:])}))
    for tf in ("5m", "1h"):
        got = rows(resample(path, tf))
        assert not [r for r in got if hole_lo <= r[0] < hole_hi]
        assert len(got) == 48 * 3_600_000 // timeframe_ms(tf) - 2 * 3_600_000 // timeframe_ms(tf)
        assert_same_candles(got, reference_resample(kept, tf))


@pytest.mark.parametrize(
    ("timeframe", "start", "end", "expected_opens"),
    [
        ("1h", "2019-04-01T10:30", "2019-04-01T12:30", ["2019-04-01T11:00", "2019-04-01T12:00"]),
        ("1h", "2019-04-01T10:00", "2019-04-01T12:00", ["2019-04-01T10:00", "2019-04-01T11:00"]),
        ("1h", "2019-04-01T10:00:00.001", "2019-04-01T10:00:00.002", []),
        ("5m", "2019-04-01T23:58", "2019-04-02T00:03", ["2019-04-02T00:00"]),
        ("1D", "2019-04-01T06:00", None, ["2019-04-02"]),
        ("1D", None, "2019-04-01T06:00", ["2019-04-01"]),
        ("1D", "2019-04-01", "2019-04-01T00:01", ["2019-04-01"]),
        ("1M", "2019-04-01T06:00", None, []),
        ("1M", None, "2019-04-01T06:00", ["2019-04-01"]),
    ],
)
def test_resample_range_returns_whole_buckets_opening_in_range(btc_rows, timeframe, start, end, expected_opens):
    got = rows(resample(BTC_2D, timeframe, parse_time(start), parse_time(end)))
    assert [r[0] for r in got] == [ms(x) for x in expected_opens]
    # each returned bucket is whole: identical to the same bucket of the unrestricted resample
    full = {r[0]: r for r in reference_resample(btc_rows, timeframe)}
    assert_same_candles(got, [full[r[0]] for r in got])


def test_resample_month_buckets_across_a_year_boundary(tmp_path):
    """Daily candles Nov 2019 .. Feb 2020; month ranges cut mid-month and in December."""
    days = [ms("2019-11-01") + k * 86_400_000 for k in range((ms("2020-03-01") - ms("2019-11-01")) // 86_400_000)]
    rng = np.random.default_rng(7)
    prices = np.array([consistent(*p) for p in rng.uniform(5000, 10000, size=(len(days), 5))])
    src = [(d, *map(float, p)) for d, p in zip(days, prices, strict=True)]
    path = CandleStore(tmp_path).write(
        "tBTCUSD", "1D", candles(days, **{c: prices[:, i].tolist() for i, c in enumerate(COLUMNS[1:])})
    )
    ref = {r[0]: r for r in reference_resample(src, "1M")}
    months = [ms(m) for m in ("2019-11-01", "2019-12-01", "2020-01-01", "2020-02-01")]
    assert sorted(ref) == months
    cases = [
        (None, None, months),
        ("2019-11-15", None, months[1:]),
        (None, "2019-12-15", months[:2]),  # December returned whole, through Dec 31
        ("2019-12-01", "2020-01-01", months[1:2]),
        ("2019-12-31T23:59", "2020-01-01T00:01", months[2:3]),
        ("2019-12-15", "2020-02-15", months[2:4]),
    ]
    for start, end, expected in cases:
        got = rows(resample(path, "1M", parse_time(start), parse_time(end)))
        assert [r[0] for r in got] == expected, (start, end)
        assert_same_candles(got, [ref[m] for m in expected])
    # December is 31 daily candles: its volume is the sum of all of them
    dec = rows(resample(path, "1M", None, parse_time("2019-12-15")))[1]
    assert dec[5] == pytest.approx(math.fsum(r[5] for r in src if months[1] <= r[0] < months[2]), rel=1e-12)


def test_resample_empty_range_and_missing_source(tmp_path):
    got = resample(BTC_2D, "1h", parse_time("2020-01-01"), parse_time("2020-02-01"))
    assert got.num_rows == 0 and got.schema == SCHEMA
    with pytest.raises(DataError, match="cannot resample"):
        resample(tmp_path / "missing.parquet", "1h")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=60 * 24 * 75),  # minutes after 2019-01-29: spans 3 month ends
            *[st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)] * 5,
        ),
        min_size=1,
        max_size=150,
        unique_by=lambda r: r[0],
    ),
    timeframe=st.sampled_from(["5m", "15m", "30m", "1h", "3h", "6h", "12h", "1D", "1W", "14D", "1M"]),
    bounds=st.tuples(
        st.one_of(st.none(), st.integers(min_value=-60, max_value=60 * 24 * 76)),
        st.one_of(st.none(), st.integers(min_value=-60, max_value=60 * 24 * 76)),
        st.integers(min_value=0, max_value=59),
    ),
)
def test_resample_equals_naive_groupby(data, timeframe, bounds):
    base = ms("2019-01-29")
    src = [(base + m * 60_000, *consistent(*vals)) for m, *vals in data]
    start_min, end_min, seconds = bounds
    start = base + start_min * 60_000 + seconds * 1000 if start_min is not None else None
    end = base + end_min * 60_000 if end_min is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        path = CandleStore(tmp).write(
            "tBTCUSD", "1m", candles([r[0] for r in src], **{c: [r[i + 1] for r in src]
                                                             for i, c in enumerate(COLUMNS[1:])})
        )
        got = resample(
            path, timeframe,
            EPOCH + timedelta(milliseconds=start) if start is not None else None,
            EPOCH + timedelta(milliseconds=end) if end is not None else None,
        )
    expected = [
        r for r in reference_resample(src, timeframe)
        if (start is None or r[0] >= start) and (end is None or r[0] < end)
    ]
    assert_same_candles(rows(got), expected)


# ================================================================================================
# datasets / find / sample
# ================================================================================================


def test_datasets_lists_valid_files_only(btc_store):
    candles_dir = btc_store / "candles"
    shutil.copy(BTC_2D, candles_dir / "tBTCUSD_2m.parquet")  # unknown timeframe
    shutil.copy(BTC_2D, candles_dir / "btcusd_1m.parquet")  # invalid symbol
    shutil.copy(BTC_2D, candles_dir / "notes.parquet")
    shutil.copy(BTC_2D, candles_dir / "tBTCUSD_1h.csv")
    shutil.copy(BTC_2D, candles_dir / ".tBTCUSD_1h.parquet.abc123.tmp")
    s = CandleStore.open()
    found = s.datasets()
    assert [(d.symbol, d.timeframe, d.path.name, d.origin, d.resampled_from) for d in found] == [
        ("tBTCUSD", "1m", "tBTCUSD_1m.parquet", "store", None),
        ("tETHUSD", "1m", "tETHUSD_1m.parquet", "store", None),
    ]


def test_datasets_of_missing_store_is_empty(tmp_path):
    assert CandleStore(tmp_path / "nothing").datasets() == []


def test_find_exact_file(btc_store):
    d = CandleStore.open().find("tBTCUSD", "1m")
    assert d == Dataset("tBTCUSD", "1m", btc_store / "candles" / "tBTCUSD_1m.parquet", "store", None)
    assert d.describe() == "tBTCUSD 1m"


def test_find_falls_back_to_finer_timeframe(btc_store):
    s = CandleStore.open()
    d = s.find("tETHUSD", "1h")
    assert d.timeframe == "1h" and d.resampled_from == "1m" and d.origin == "store"
    assert d.path == btc_store / "candles" / "tETHUSD_1m.parquet"
    assert d.describe() == "tETHUSD 1h (resampled from 1m)"
    # reading the fallback dataset resamples, and honours the range
    lo, hi = parse_time("2019-04-01T05:00"), parse_time("2019-04-01T08:00")
    got = rows(read(d, lo, hi))
    assert [r[0] for r in got] == [ms("2019-04-01T05:00"), ms("2019-04-01T06:00"), ms("2019-04-01T07:00")]
    ref = {r[0]: r for r in reference_resample(rows(pq.read_table(ETH_2D)), "1h")}
    assert_same_candles(got, [ref[r[0]] for r in got])


def test_find_prefers_the_finest_source_and_the_exact_file(btc_store):
    s = CandleStore.open()
    s.write("tBTCUSD", "15m", resample(BTC_2D, "15m"))
    s.write("tBTCUSD", "5m", resample(BTC_2D, "5m"))
    s.write("tBTCUSD", "4h", resample(BTC_2D, "4h"))
    assert s.find("tBTCUSD", "15m").resampled_from is None
    one_hour = s.find("tBTCUSD", "1h")
    assert one_hour.resampled_from == "1m"  # the finest stored timeframe that divides 1h
    assert one_hour.path == s.path("tBTCUSD", "1m")
    # without the 1m file the next finest (5m) is used
    s.path("tBTCUSD", "1m").unlink()
    assert s.find("tBTCUSD", "1h").resampled_from == "5m"
    assert s.find("tBTCUSD", "12h").resampled_from == "5m"
    assert s.find("tBTCUSD", "1m") is None  # nothing finer than 1m
    # 4h does not divide 6h, 5m and 15m do
    assert s.find("tBTCUSD", "6h").resampled_from == "5m"


def test_find_never_uses_a_coarser_or_non_dividing_file(data_dir):
    s = CandleStore.open()
    s.write("tETHUSD", "4h", resample(ETH_2D, "4h"))
    assert s.find("tETHUSD", "1h") is None
    assert s.find("tETHUSD", "6h") is None
    assert s.find("tETHUSD", "12h").resampled_from == "4h"
    assert s.find("tETHUSD", "1M").resampled_from == "4h"
    assert s.find("tXRPUSD", "4h") is None
    assert s.find("tETHUSD", "1W").resampled_from == "4h"


def test_sample_store(sample_rows):
    s = CandleStore.sample()
    assert s.read_only
    assert [(d.symbol, d.timeframe, d.origin) for d in s.datasets()] == [("tBTCUSD", "1m", "sample")]
    d = s.find("tBTCUSD", "1m")
    assert d.origin == "sample" and d.resampled_from is None and d.describe() == "tBTCUSD 1m (bundled sample)"
    table = read(d)
    assert table.schema == SCHEMA
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    assert ts[0] == ms("2019-04-01") and ts[-1] == ms("2019-06-30T23:59")
    assert np.all(np.diff(ts) > 0) and np.all(ts % 60_000 == 0)
    assert len(ts) == len(sample_rows) > 100_000
    june = read(d, parse_time("2019-06-01"), parse_time("2019-07-01"))
    assert june.num_rows == sum(1 for r in sample_rows if ms("2019-06-01") <= r[0] < ms("2019-07-01"))


def test_sample_store_resamples_and_refuses_writes(sample_rows):
    s = CandleStore.sample()
    d = s.find("tBTCUSD", "1M")
    assert (d.origin, d.resampled_from) == ("sample", "1m")
    assert d.describe() == "tBTCUSD 1M (resampled from 1m, bundled sample)"
    got = rows(read(d))
    assert [iso(r[0])[:10] for r in got] == ["2019-04-01", "2019-05-01", "2019-06-01"]
    assert_same_candles(got, reference_resample(sample_rows, "1M"))
    before = SAMPLE.read_bytes()
    with pytest.raises(DataError, match="read-only"):
        s.write("tBTCUSD", "1m", candles([T0]))
    with pytest.raises(DataError, match="read-only"):
        s.write("tBTCUSD", "1h", candles([T0]))
    assert SAMPLE.read_bytes() == before
    assert not s.has("tBTCUSD", "1h")
    assert os.listdir(SAMPLE.parent).count("tBTCUSD_1h.parquet") == 0


def test_time_span_reads_the_footer_and_matches_the_data(tmp_path):
    from genesis_fw.data.store import time_span

    sample = CandleStore.sample().path("tBTCUSD", "1m")
    ts = pq.read_table(sample).column("timestamp").cast(pa.int64())
    assert time_span(sample) == (ts[0].as_py(), ts[-1].as_py())
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(sample).slice(0, 0), empty)
    assert time_span(empty) is None

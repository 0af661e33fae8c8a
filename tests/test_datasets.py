"""Dataset versions: publishing, unchanged content, kept versions, reloading and pruning."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, run_cli

from genesis_fw.data.datasets import (
    count_gaps,
    current,
    metadata_path,
    open_version,
    prune,
    publish,
    version_path,
    versions,
)
from genesis_fw.data.hashing import content_sha256
from genesis_fw.data.store import CandleStore, read
from genesis_fw.errors import DataError


@pytest.fixture
def store(data_dir):
    return CandleStore.open(data_dir)


def test_publish_creates_versions_only_when_content_changes(store):
    table = pq.read_table(BTC_2D)
    v1, new1 = publish(store, "tBTCUSD", "1m", table.slice(0, 1000), source="test")
    assert (v1.version, new1) == (1, True)
    same, new_same = publish(store, "tBTCUSD", "1m", table.slice(0, 1000), source="test")
    assert (same.version, new_same) == (1, False)
    v2, new2 = publish(store, "tBTCUSD", "1m", table, source="test")
    assert (v2.version, new2) == (2, True)
    assert [v.version for v in versions(store, "tBTCUSD", "1m")] == [1, 2]
    assert current(store, "tBTCUSD", "1m").version == 2
    # The previous version is reloadable, byte-identical in content.
    old = read(open_version(store, "tBTCUSD", "1m", 1))
    assert old.equals(read(open_version(store, "tBTCUSD", "1m", 2)).slice(0, 1000))
    assert content_sha256(old) == v1.sha256 != v2.sha256


def test_metadata_has_the_documented_fields(store):
    table = pq.read_table(BTC_2D)
    meta, _ = publish(store, "tBTCUSD", "1m", table, source="bitfinex")
    data = json.loads(metadata_path(store, "tBTCUSD", "1m").read_text())
    assert set(data) == {"symbol", "timeframe", "version", "fetched_at", "start_date", "end_date", "num_candles",
                         "gaps", "quality_score", "source", "sha256", "schema_version"}
    assert data["num_candles"] == table.num_rows == meta.num_candles
    assert data["start_date"] == "2019-04-01T00:00:00+00:00" and data["source"] == "bitfinex"
    ts = table.column("timestamp").cast("int64").to_numpy()
    assert data["gaps"] == int(((ts[1:] - ts[:-1]) > 60_000).sum()) > 0


def test_catalog_records_every_version(store):
    table = pq.read_table(BTC_2D)
    publish(store, "tBTCUSD", "1m", table.slice(0, 10), source="a")
    publish(store, "tBTCUSD", "1m", table.slice(0, 20), source="b")
    with sqlite3.connect(store.catalog_path) as con:
        rows = con.execute("SELECT version, num_candles, source FROM dataset_versions ORDER BY version").fetchall()
        cur = con.execute("SELECT version, num_candles FROM datasets").fetchall()
    assert rows == [(1, 10, "a"), (2, 20, "b")] and cur == [(2, 20)]


def test_prune_keeps_the_newest_and_the_current(store):
    table = pq.read_table(BTC_2D)
    for n in (10, 20, 30):
        publish(store, "tBTCUSD", "1m", table.slice(0, n), source="t")
    removed = prune(store, keep=2)
    assert removed == [("tBTCUSD", "1m", 1)]
    assert not version_path(store, "tBTCUSD", "1m", 1).exists() and version_path(store, "tBTCUSD", "1m", 3).exists()
    with pytest.raises(DataError, match="no kept version 1; kept: 2, 3"):
        open_version(store, "tBTCUSD", "1m", 1)
    assert prune(store, keep=1) == [("tBTCUSD", "1m", 2)]
    assert read(open_version(store, "tBTCUSD", "1m", 3)).num_rows == 30
    with pytest.raises(DataError):
        prune(store, keep=0)


def test_count_gaps():
    import numpy as np

    assert count_gaps(np.array([0, 60_000, 180_000, 240_000, 600_000]), "1m") == 2
    assert count_gaps(np.array([], dtype=np.int64), "1m") == 0


def test_count_gaps_counts_slots_of_the_same_grid_as_validate(tmp_path):
    """count_gaps (dataset metadata) and the gaps check (validate) count the same runs of missing slots,
    weeks on the Monday grid included."""
    import numpy as np
    import pyarrow as pa

    from genesis_fw.data.timeframes import to_ms
    from genesis_fw.data.validate import validate

    def day(text):
        return to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))

    cases = [
        # Mondays 04-01 and 04-15 plus Sunday 04-14, which lies in the week of Monday 04-08: no week is missing
        ("1W", ["2019-04-01", "2019-04-14", "2019-04-15"], 0),
        # Mondays 04-01, 04-22 and 05-06: the weeks of 04-08 and 04-15, and that of 04-29: two runs
        ("1W", ["2019-04-01", "2019-04-22", "2019-05-06"], 2),
        # Thursday 04-04 falls in the week of Monday 04-01, Monday 04-08 opens the next one: no gap
        ("1W", ["2019-04-04", "2019-04-08"], 0),
        # fortnights from Monday 1970-01-05: 03-25, 04-08 (holds Sunday 04-21), 04-22 missing, 05-06
        ("14D", ["2019-03-25", "2019-04-21", "2019-05-06"], 1),
        ("1D", ["2019-04-01", "2019-04-02T12:00", "2019-04-03", "2019-04-05"], 1),
        ("1M", ["2019-01-31", "2019-02-01", "2019-04-30"], 1),
    ]
    for timeframe, times, runs in cases:
        ts = np.array([day(t) for t in times], dtype=np.int64)
        path = tmp_path / "c.parquet"
        ones = {c: pa.array(np.ones(ts.size)) for c in ("open", "high", "low", "close", "volume")}
        pq.write_table(pa.table({"timestamp": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")), **ones}), path)
        assert validate(path, "tBTCUSD", timeframe, checks=["gaps"]).counts["gaps"] == runs, (timeframe, times)
        assert count_gaps(ts, timeframe) == runs, (timeframe, times)


def test_cli_import_refuses_thursday_weeks_in_one_line(data_dir, tmp_path):
    """Weekly candles opening on Thursdays (the epoch's weekday) are not the store's 1W: refused, nothing stored."""
    import numpy as np
    import pyarrow as pa

    from genesis_fw.data.timeframes import to_ms

    thursday = to_ms(datetime(2019, 3, 28, tzinfo=UTC))
    ts = thursday + np.arange(5, dtype=np.int64) * 7 * 86_400_000
    src = tmp_path / "weekly.parquet"
    pq.write_table(pa.table({"timestamp": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
                             **{c: pa.array(np.ones(ts.size)) for c in ("open", "high", "low", "close", "volume")}}),
                   src)
    proc = run_cli("import", str(src), "--symbol", "tBTCUSD", "--timeframe", "1W")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == ("Error: tBTCUSD 1W: 5 timestamp(s) not aligned to the 1W grid (Mondays 00:00 UTC), "
                    "first at 2019-03-28T00:00:00+00:00"), line
    assert not (data_dir / "candles" / "tBTCUSD_1W.parquet").exists()
    monday = pa.table({"timestamp": pa.array(ts + 4 * 86_400_000).cast(pa.timestamp("ms", tz="UTC")),
                       **{c: pa.array(np.ones(ts.size)) for c in ("open", "high", "low", "close", "volume")}})
    pq.write_table(monday, src)
    assert run_cli("import", str(src), "--symbol", "tBTCUSD", "--timeframe", "1W").returncode == 0


def test_cli_import_twice_and_datasets_commands(data_dir):
    first = run_cli("import", str(BTC_2D), "--symbol", "tBTCUSD", "--timeframe", "1m")
    assert first.returncode == 0 and "(version 1)" in first.stdout, first.stderr
    again = run_cli("import", str(BTC_2D), "--symbol", "tBTCUSD", "--timeframe", "1m")
    assert "unchanged, still version 1" in again.stdout
    hourly = run_cli("resample", "--symbol", "tBTCUSD", "--to", "1h")
    assert hourly.returncode == 0 and "(version 1)" in hourly.stdout
    listing = run_cli("datasets", "list")
    assert listing.returncode == 0
    assert "* tBTCUSD 1m v1" in listing.stdout and "* tBTCUSD 1h v1" in listing.stdout
    assert "resampled:1m" in listing.stdout
    out = run_cli("sql", "SELECT symbol, timeframe, version FROM dataset_versions ORDER BY timeframe", "--format",
                  "json")
    assert json.loads(out.stdout) == [{"symbol": "tBTCUSD", "timeframe": "1h", "version": 1},
                                      {"symbol": "tBTCUSD", "timeframe": "1m", "version": 1}]
    pruned = run_cli("datasets", "prune", "--keep", "1")
    assert pruned.returncode == 0 and "0 version file(s) removed" in pruned.stdout


def test_backtest_records_the_dataset_version(data_dir, tmp_path):
    assert run_cli("import", str(BTC_2D), "--symbol", "tBTCUSD", "--timeframe", "1m").returncode == 0
    out = tmp_path / "bt.html"
    proc = run_cli("backtest", "--no-report", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["dataset"]["version"] == 1 and summary["dataset"]["origin"] == "store"
    meta = json.loads((data_dir / "metadata" / "tBTCUSD_1m.json").read_text())
    assert summary["dataset"]["sha256"] == meta["sha256"]  # the whole dataset was used


def test_resampling_is_bit_for_bit_reproducible():
    """Resampled datasets are versioned by content hash, so the same input must give the same bytes."""
    from genesis_fw.data.store import resample

    path = CandleStore.sample().path("tBTCUSD", "1m")
    digests = {content_sha256(resample(path, tf)) for tf in ("1h",) for _ in range(4)}
    assert len(digests) == 1

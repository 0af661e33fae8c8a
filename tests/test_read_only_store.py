"""A read-only store (a shared, mounted dataset): the commands that read work, the ones that write say so
in one line, and nothing in the folder changes. Every case runs real ``genesis-fw`` processes against a
folder the kernel really refuses to write (see ``tests/readonly.py``)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, ETH_2D, run_cli
from readonly import genesis, read_only


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two versions of tBTCUSD 1m, tETHUSD 1m and one recorded backtest, built by the CLI."""
    root = tmp_path_factory.mktemp("shared")
    store = root / "store"
    for source, symbol in ((ETH_2D, "tBTCUSD"), (BTC_2D, "tBTCUSD"), (ETH_2D, "tETHUSD")):
        _ok(run_cli("--data-dir", str(store), "import", str(source), "--symbol", symbol, "--timeframe", "1m"))
    _ok(run_cli("--data-dir", str(store), "backtest", "strategy=ema_rsi", "timeframe=1h", "--no-report",
                cwd=root))
    assert not (store / "genesis.db-wal").exists(), "a cleanly closed catalog keeps no write-ahead log"
    return store


def test_readers_work_on_a_read_only_store(shared: Path, tmp_path: Path) -> None:
    before = _snapshot(shared)
    with read_only(shared) as run:
        runs = run(*genesis("--data-dir", str(shared), "sql", "SELECT count(*) AS n FROM runs", "--format", "json"))
        _ok(runs)
        assert json.loads(runs.stdout) == [{"n": 1}]
        per_symbol = "SELECT symbol, count(*) AS n FROM candles GROUP BY ALL ORDER BY ALL"
        candles = run(*genesis("--data-dir", str(shared), "sql", per_symbol, "--format", "json"))
        _ok(candles)
        assert json.loads(candles.stdout) == [{"symbol": "tBTCUSD", "n": pq.read_metadata(BTC_2D).num_rows},
                                              {"symbol": "tETHUSD", "n": pq.read_metadata(ETH_2D).num_rows}]
        assert candles.stderr == ""
        temp = run(*genesis("--data-dir", str(shared), "sql", "SELECT current_setting('temp_directory') AS t",
                            "--format", "json"))
        _ok(temp)
        assert json.loads(temp.stdout) == [{"t": ""}], "no spill folder where nothing can be written"
        listing = run(*genesis("--data-dir", str(shared), "datasets", "list"), cwd=tmp_path)
        _ok(listing)
        assert [line[:16] for line in listing.stdout.splitlines()] == [
            "  tBTCUSD 1m v1 ", "* tBTCUSD 1m v2 ", "* tETHUSD 1m v1 "]
    assert _snapshot(shared) == before


WRITERS = {
    "datasets prune": ["datasets", "prune"],
    "import": ["import", str(BTC_2D), "--symbol", "tXRPUSD", "--timeframe", "1m"],
    # refused before any request: nothing listens on the discard port
    "fetch": ["fetch", "--symbol", "tBTCUSD", "--timeframe", "1h", "--start", "2019-04-01", "--end", "2019-04-02",
              "--base-url", "http://127.0.0.1:9", "--quiet"],
    "resample": ["resample", "--symbol", "tBTCUSD", "--to", "1h"],
    "validate": ["validate", "--symbol", "tBTCUSD", "--timeframe", "1m"],
    "backtest": ["backtest", "strategy=ema_rsi", "--no-report"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_writers_fail_in_one_line_on_a_read_only_store(shared: Path, tmp_path: Path, command: str) -> None:
    before = _snapshot(shared)
    with read_only(shared) as run:
        proc = run(*genesis("--data-dir", str(shared), *WRITERS[command]), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"Error: the store at {shared} is read-only"), line
    assert _snapshot(shared) == before
    assert not (tmp_path / "results").exists(), "a backtest that cannot be recorded writes no files either"


_API_SCRIPT = """
import json, sys
from pathlib import Path
from genesis_fw.catalog import Catalog
from genesis_fw.data import datasets
from genesis_fw.data.store import CandleStore
from genesis_fw.errors import GenesisError

store = CandleStore.open(sys.argv[1])
out = {"tables": sorted(Catalog(store.catalog_path).read_tables())}
for name, call in [
    ("record", lambda: Catalog(store.catalog_path).record_dataset(
        symbol="tBTCUSD", timeframe="1m", path=Path("x"), num_candles=1, first_ts=None, last_ts=None,
        source="test")),
    ("prune", lambda: datasets.prune(store)),
]:
    try:
        call()
        out[name] = "no error"
    except GenesisError as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_the_python_api_reads_and_refuses_writes_on_a_read_only_store(shared: Path) -> None:
    before = _snapshot(shared)
    with read_only(shared) as run:
        proc = run(sys.executable, "-c", _API_SCRIPT, str(shared))
    _ok(proc)
    out = json.loads(proc.stdout)
    assert {"datasets", "events", "runs", "dataset_versions"} <= set(out["tables"])
    assert out["record"].startswith(f"CatalogError: the store at {shared} is read-only"), out["record"]
    assert out["prune"].startswith(f"DataError: the store at {shared} is read-only"), out["prune"]
    assert "\n" not in out["record"] + out["prune"]
    assert _snapshot(shared) == before


def _snapshot_while_writing(shared: Path, target: Path, *, with_shm: bool) -> None:
    """Copy the store while another process holds the catalog with a commit not yet checkpointed."""
    con = sqlite3.connect(shared / "genesis.db", isolation_level=None)
    try:
        con.execute("PRAGMA wal_autocheckpoint = 0")
        con.execute("INSERT INTO events (at, kind, subject, detail) VALUES ('2019-01-01', 'test.late', 'x', '{}')")
        shutil.copytree(shared, target, ignore=None if with_shm else shutil.ignore_patterns("*-shm"))
        con.execute("DELETE FROM events WHERE kind = 'test.late'")
    finally:
        con.close()
    assert (target / "genesis.db-wal").stat().st_size > 0


def test_a_read_only_catalog_with_a_write_ahead_log_shows_its_latest_commits(shared: Path, tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    _snapshot_while_writing(shared, snap, with_shm=True)
    with read_only(snap) as run:
        proc = run(*genesis("--data-dir", str(snap), "sql",
                            "SELECT count(*) AS n FROM events WHERE kind = 'test.late'", "--format", "json"))
    _ok(proc)
    assert json.loads(proc.stdout) == [{"n": 1}], "the commit in genesis.db-wal must not be ignored"


def test_a_read_only_catalog_with_a_log_but_no_index_is_a_one_line_error(shared: Path, tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    _snapshot_while_writing(shared, snap, with_shm=False)
    with read_only(snap) as run:
        proc = run(*genesis("--data-dir", str(snap), "sql", "SELECT count(*) AS n FROM events"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "genesis.db-wal" in line and "genesis.db-shm" in line, line

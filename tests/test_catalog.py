"""The catalog (``<data_dir>/genesis.db``): schema and migrations, upserts and events, Arrow reads,
one-line errors, and many real processes writing and reading it at the same moment."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, ETH_2D, run_cli

from genesis_fw import catalog as catalog_mod
from genesis_fw.catalog import MIGRATIONS, Catalog
from genesis_fw.errors import CatalogError

DATASETS_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("timeframe", pa.string()), ("path", pa.string()), ("num_candles", pa.int64()),
    ("first_ts", pa.string()), ("last_ts", pa.string()), ("source", pa.string()), ("updated_at", pa.string()),
    ("version", pa.int64()), ("sha256", pa.string()),
])
EVENTS_SCHEMA = pa.schema([
    ("id", pa.int64()), ("at", pa.string()), ("kind", pa.string()), ("subject", pa.string()), ("detail", pa.string()),
])


def _record(cat: Catalog, symbol: str = "tBTCUSD", timeframe: str = "1m", num_candles: int = 3, **kw) -> None:
    args = {"path": Path("/x") / f"{symbol}_{timeframe}.parquet", "first_ts": "2019-04-01T00:00:00+00:00",
            "last_ts": "2019-04-01T00:02:00+00:00", "source": "test"} | kw
    cat.record_dataset(symbol=symbol, timeframe=timeframe, num_candles=num_candles, **args)


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# --- (a) schema and migrations ---------------------------------------------------------------------


def test_schema_is_created_on_first_write(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "genesis.db"
    cat = Catalog(path)
    assert cat.tables() == [] and cat.read_tables() == {}
    assert not path.exists() and not path.parent.exists(), "reading must not create the catalog"

    _record(cat)

    assert path.is_file()
    assert {"datasets", "events"} <= set(cat.tables())
    con = _raw(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1
    finally:
        con.close()


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "genesis.db"
    _record(Catalog(path))
    con = _raw(path)
    try:
        schema_before = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        con.close()

    for _ in range(3):  # new Catalog objects, new connections, reads and writes: nothing is re-applied
        cat = Catalog(path)
        with cat.connect(write=True):
            pass
        with cat.connect() as c:
            assert c.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    _record(Catalog(path), "tETHUSD")

    con = _raw(path)
    try:
        assert con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema_before
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert con.execute("SELECT symbol FROM datasets ORDER BY symbol").fetchall() == [("tBTCUSD",), ("tETHUSD",)]
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    finally:
        con.close()


EXTRA_STEP = "CREATE TABLE test_extra (id TEXT PRIMARY KEY, n REAL);"


def test_migration_upgrades_an_old_catalog_and_a_failed_step_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "genesis.db"
    _record(Catalog(path))
    before = Catalog(path).tables()
    # A later stage appends a step: the existing catalog is upgraded in place and keeps its rows.
    v2 = [*MIGRATIONS, EXTRA_STEP]
    monkeypatch.setattr(catalog_mod, "MIGRATIONS", v2)
    assert Catalog(path).tables() == sorted([*before, "test_extra"])
    tables = Catalog(path).read_tables()
    assert tables["test_extra"].schema == pa.schema([("id", pa.string()), ("n", pa.float64())])
    assert tables["datasets"].num_rows == 1

    # A step that fails halfway is rolled back as a whole: no half-made table, version unchanged.
    failing = "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1)"
    monkeypatch.setattr(catalog_mod, "MIGRATIONS", [*v2, failing])
    with pytest.raises(CatalogError, match="no such table: no_such_table"):
        _record(Catalog(path), "tETHUSD")
    con = _raw(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(v2)
        assert "half" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert con.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1
    finally:
        con.close()


# --- (b) upserts, events, Arrow reads, errors ------------------------------------------------------


def test_record_dataset_upserts_and_logs_an_event(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "genesis.db")
    _record(cat, num_candles=3, source="import:a.parquet")
    _record(cat, num_candles=5, source="bitfinex", last_ts="2019-04-01T00:04:00+00:00")
    _record(cat, "tBTCUSD", "1h", num_candles=1, first_ts=None, last_ts=None, source="resampled:1m")

    tables = cat.read_tables()
    rows = sorted(tables["datasets"].to_pylist(), key=lambda r: r["timeframe"])
    assert [(r["symbol"], r["timeframe"], r["num_candles"], r["source"], r["last_ts"]) for r in rows] == [
        ("tBTCUSD", "1h", 1, "resampled:1m", None),
        ("tBTCUSD", "1m", 5, "bitfinex", "2019-04-01T00:04:00+00:00"),
    ]
    assert rows[1]["path"] == str(Path("/x") / "tBTCUSD_1m.parquet")
    assert rows[1]["updated_at"].endswith("+00:00")

    events = tables["events"].to_pylist()
    assert [(e["id"], e["kind"], e["subject"], json.loads(e["detail"])) for e in events] == [
        (1, "dataset.write", "tBTCUSD_1m", {"num_candles": 3, "source": "import:a.parquet"}),
        (2, "dataset.write", "tBTCUSD_1m", {"num_candles": 5, "source": "bitfinex"}),
        (3, "dataset.write", "tBTCUSD_1h", {"num_candles": 1, "source": "resampled:1m"}),
    ]


def test_a_failed_write_is_rolled_back(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "genesis.db")
    _record(cat)
    with pytest.raises(ZeroDivisionError), cat.connect(write=True) as con:
        con.execute("DELETE FROM datasets")
        Catalog._log(con, "dataset.delete", "tBTCUSD_1m", {})
        1 / 0  # noqa: B018
    tables = cat.read_tables()
    assert tables["datasets"].num_rows == 1 and tables["events"].num_rows == 1


def test_read_tables_has_declared_types_also_when_empty(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "genesis.db")
    with cat.connect(write=True):
        pass  # migrate only: tables exist, no rows
    tables = cat.read_tables()
    assert {"datasets", "events"} <= set(tables)
    assert all(t.num_rows == 0 for t in tables.values())
    assert all(isinstance(t, pa.Table) for t in tables.values())
    assert tables["datasets"].schema == DATASETS_SCHEMA and tables["datasets"].num_rows == 0
    assert tables["events"].schema == EVENTS_SCHEMA and tables["events"].num_rows == 0

    _record(cat, first_ts=None, last_ts=None)
    tables = cat.read_tables()
    assert tables["datasets"].schema == DATASETS_SCHEMA and tables["events"].schema == EVENTS_SCHEMA
    assert tables["datasets"].column("first_ts").null_count == 1
    assert tables["datasets"].column("num_candles").to_pylist() == [3]


def test_reading_a_missing_catalog_is_a_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "genesis.db"
    with pytest.raises(CatalogError, match="no catalog at .*genesis.db") as info, Catalog(path).connect():
        pass
    assert "\n" not in str(info.value)
    assert not path.parent.exists(), "a read must not create the catalog or its folder"


@pytest.mark.parametrize("case", ["data dir is a file", "catalog is a folder", "catalog is not a database"])
def test_an_unusable_location_is_a_one_line_catalog_error(tmp_path: Path, case: str) -> None:
    if case == "data dir is a file":
        (tmp_path / "store").write_text("not a folder")
        path = tmp_path / "store" / "genesis.db"
    elif case == "catalog is a folder":
        path = tmp_path / "genesis.db"
        path.mkdir()
    else:
        path = tmp_path / "genesis.db"
        path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(CatalogError) as info:
        _record(Catalog(path))
    message = str(info.value)
    assert str(path) in message and "\n" not in message and message.strip() == message
    if case != "data dir is a file":
        with pytest.raises(CatalogError):
            Catalog(path).read_tables()


def test_cli_reports_an_unwritable_catalog_in_one_line(btc_store: Path) -> None:
    (btc_store / "genesis.db").mkdir()
    proc = run_cli("--data-dir", str(btc_store), "import", str(ETH_2D), "--symbol", "tETHEUR", "--timeframe", "1m")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "genesis.db" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_first_write_waits_for_another_process_holding_the_fresh_catalog(tmp_path: Path) -> None:
    """Another process holds the write lock of a fresh (not yet WAL) catalog, as one that is creating it
    does: the first write must queue until it is done, not fail with "database is locked". (SQLite does
    not apply the busy timeout to the switch to WAL mode, so the catalog has to retry it.)"""
    path = tmp_path / "genesis.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "con.execute('BEGIN IMMEDIATE')\n"  # holds the write lock of the fresh catalog for 1 s
            "print('locked', flush=True)\n"
            "time.sleep(1.0)\n"
            "con.execute('COMMIT')\n"
        ), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        _record(Catalog(path))
        _record(Catalog(path), "tETHUSD")
    finally:
        out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    assert Catalog(path).read_tables()["datasets"].num_rows == 2


# --- (c) many real processes at once -----------------------------------------------------------------

WRITERS = 6
READERS = 2
KEYS_PER_WRITER = 50
SHARED_EVERY = 10  # each writer also upserts one row every writer shares, every 10th key
BARRIER_TIMEOUT_S = 60.0

#: One script for every role. It signals ``ready-<name>``, then waits for the file ``go`` so that all
#: processes start their work at the same moment. ``exec`` then replaces itself with a genesis-fw command.
WORKER = r"""
import json, os, sys, time
from pathlib import Path

role, name, data_dir, sync = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
rest = sys.argv[5:]
if role != "exec":
    import pyarrow  # imported before the barrier: every process starts working at once
    from genesis_fw.catalog import Catalog
    cat = Catalog(data_dir / "genesis.db")
(sync / f"ready-{name}").touch()
deadline = time.monotonic() + BARRIER_TIMEOUT_S
while not (sync / "go").exists():
    if time.monotonic() > deadline:
        sys.exit(f"{name}: barrier timeout")
    time.sleep(0.001)

if role == "exec":
    os.execv(rest[0], rest)
elif role == "writer":
    w, keys, shared_every = int(rest[0]), int(rest[1]), int(rest[2])
    for j in range(keys):
        cat.record_dataset(symbol=f"tW{w}", timeframe=f"k{j:03d}", path=data_dir / f"w{w}_{j}", num_candles=j,
                           first_ts=None, last_ts=None, source=f"writer{w}")
        if j % shared_every == 0:
            cat.record_dataset(symbol="tSHARED", timeframe="1m", path=data_dir / "shared", num_candles=w * 1000 + j,
                               first_ts=None, last_ts=None, source=f"writer{w}")
    print(json.dumps({"writes": keys + len(range(0, keys, shared_every))}))
elif role == "reader":
    reads, last_events, keys = 0, 0, []
    while True:
        final = (sync / "stop").exists()  # checked before reading: the last read sees every write
        tables = cat.read_tables()
        if tables:
            assert tables["datasets"].schema.field("num_candles").type == pyarrow.int64(), tables["datasets"].schema
            ids = tables["events"].column("id").to_pylist()
            assert len(ids) == len(set(ids)), "duplicate event ids"
            assert len(ids) >= last_events, f"event count went back from {last_events} to {len(ids)}"
            last_events = len(ids)
            keys = list(zip(tables["datasets"].column("symbol").to_pylist(),
                            tables["datasets"].column("timeframe").to_pylist()))
            assert len(keys) == len(set(keys)), "duplicate dataset keys"
        reads += 1
        if final:
            break
        if time.monotonic() > deadline + 120:
            sys.exit(f"{name}: no stop signal")
    print(json.dumps({"reads": reads, "datasets": len(keys), "events": last_events}))
elif role == "fresh":
    # Round r: at the agreed wall-clock moment, every process makes its first write to the new catalog r.
    t0, rounds, period = float((sync / "go").read_text()), int(rest[0]), float(rest[1])
    for r in range(rounds):
        time.sleep(max(0.0, t0 + r * period - time.time()))
        Catalog(data_dir / f"round{r}" / "genesis.db").record_dataset(
            symbol=f"t{name.upper()}", timeframe="1m", path=data_dir, num_candles=r, first_ts=None, last_ts=None,
            source=name)
    print(json.dumps({"rounds": rounds}))
""".replace("BARRIER_TIMEOUT_S", repr(BARRIER_TIMEOUT_S))


def _genesis_fw() -> list[str]:
    exe = Path(sys.executable).parent / "genesis-fw"
    assert exe.is_file(), f"genesis-fw is not installed next to {sys.executable}"
    return [str(exe)]


class _Processes:
    """Real worker processes (see :data:`WORKER`) started together through a file barrier."""

    def __init__(self, tmp_path: Path, data_dir: Path) -> None:
        self.sync = tmp_path / "sync"
        self.sync.mkdir()
        self.script = tmp_path / "worker.py"
        self.script.write_text(WORKER)
        self.data_dir = data_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.results: dict[str, tuple[int, str, str]] = {}

    def spawn(self, role: str, name: str, *rest: str) -> None:
        self.procs[name] = subprocess.Popen(
            [sys.executable, str(self.script), role, name, str(self.data_dir), str(self.sync), *rest],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def go(self, content: str = "") -> None:
        """Wait until every process waits at the barrier, then release them all at once."""
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while not all((self.sync / f"ready-{n}").exists() for n in self.procs):
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            assert not dead, f"died before the barrier: {dead}"
            assert time.monotonic() < deadline, "processes never became ready"
            time.sleep(0.01)
        tmp = self.sync / "go.tmp"
        tmp.write_text(content)
        tmp.replace(self.sync / "go")

    def wait(self, names: list[str]) -> None:
        for name in names:
            out, err = self.procs[name].communicate(timeout=120)
            self.results[name] = (self.procs[name].returncode, out, err)

    def kill_rest(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()

    def check_all_succeeded(self) -> None:
        assert set(self.results) == set(self.procs)
        for name, (code, out, err) in self.results.items():
            assert "database is locked" not in err, f"{name}: {err}"
            assert code == 0, f"{name} exited {code}:\n{out}\n{err}"
            assert "Traceback" not in err, f"{name}: {err}"


def test_many_processes_create_a_fresh_catalog_at_once(tmp_path: Path) -> None:
    """The first writes to a new catalog race to switch it to WAL and create the schema; 10 times over,
    8 processes do that at the same moment, and every one must succeed."""
    rounds, procs = 10, 8
    run = _Processes(tmp_path, tmp_path / "store")
    try:
        for i in range(procs):
            run.spawn("fresh", f"p{i}", str(rounds), "0.1")
        run.go(repr(time.time() + 0.05))
        run.wait(list(run.procs))
    finally:
        run.kill_rest()
    run.check_all_succeeded()
    for r in range(rounds):
        path = tmp_path / "store" / f"round{r}" / "genesis.db"
        con = _raw(path)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            assert sorted(con.execute("SELECT symbol, num_candles FROM datasets").fetchall()) == [
                (f"tP{i}", r) for i in range(procs)]
            assert con.execute("SELECT count(*) FROM events").fetchone()[0] == procs
        finally:
            con.close()


def test_concurrent_processes_write_and_read_the_catalog(btc_store: Path, tmp_path: Path) -> None:
    cli = _genesis_fw()
    data = str(btc_store)
    run = _Processes(tmp_path, btc_store)
    for w in range(WRITERS):
        run.spawn("writer", f"writer{w}", str(w), str(KEYS_PER_WRITER), str(SHARED_EVERY))
    for r in range(READERS):
        run.spawn("reader", f"reader{r}")
    imports = {"tBTCEUR": BTC_2D, "tETHEUR": ETH_2D}
    for symbol, source in imports.items():
        run.spawn("exec", f"import-{symbol}", *cli, "--data-dir", data, "import", str(source),
                  "--symbol", symbol, "--timeframe", "1m")
    run.spawn("exec", "resample", *cli, "--data-dir", data, "resample", "--symbol", "tBTCUSD", "--from", "1m",
              "--to", "1h")
    try:
        run.go()  # every process waits at the barrier now: they all start at the same moment
        run.wait([n for n in run.procs if not n.startswith("reader")])
        (run.sync / "stop").touch()  # the readers do one last read, then exit
        run.wait([n for n in run.procs if n.startswith("reader")])
    finally:
        run.kill_rest()
    run.check_all_succeeded()
    results = run.results

    writer_rows = {(f"tW{w}", f"k{j:03d}") for w in range(WRITERS) for j in range(KEYS_PER_WRITER)}
    shared_writes = len(range(0, KEYS_PER_WRITER, SHARED_EVERY))
    expected_events = WRITERS * (KEYS_PER_WRITER + shared_writes) + len(imports) + 1
    expected_rows = writer_rows | {("tSHARED", "1m"), ("tBTCEUR", "1m"), ("tETHEUR", "1m"), ("tBTCUSD", "1h")}
    for w in range(WRITERS):
        assert json.loads(results[f"writer{w}"][1]) == {"writes": KEYS_PER_WRITER + shared_writes}
    for r in range(READERS):
        summary = json.loads(results[f"reader{r}"][1])
        assert summary["reads"] >= 1
        assert (summary["datasets"], summary["events"]) == (len(expected_rows), expected_events), summary

    con = _raw(btc_store / "genesis.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = con.execute("SELECT symbol, timeframe, num_candles, source, first_ts, last_ts FROM datasets").fetchall()
        events = con.execute("SELECT id, kind, subject, detail FROM events ORDER BY id").fetchall()
    finally:
        con.close()

    keys = Counter((r[0], r[1]) for r in rows)
    assert set(keys) == expected_rows and set(keys.values()) == {1}, "every row present exactly once"
    by_key = {(r[0], r[1]): r[2:] for r in rows}
    for w in range(WRITERS):
        for j in range(KEYS_PER_WRITER):
            assert by_key[(f"tW{w}", f"k{j:03d}")][:2] == (j, f"writer{w}")

    assert len(events) == expected_events
    # Library writers log dataset.write; the CLI's import/resample publish versions (dataset.version).
    assert {e[1] for e in events} == {"dataset.write", "dataset.version"}
    subjects = Counter(e[2] for e in events)
    assert all(subjects[f"tW{w}_k{j:03d}"] == 1 for w in range(WRITERS) for j in range(KEYS_PER_WRITER))
    assert subjects["tSHARED_1m"] == WRITERS * shared_writes
    assert subjects["tBTCEUR_1m"] == subjects["tETHEUR_1m"] == subjects["tBTCUSD_1h"] == 1
    # The row and its event are written in one transaction: the shared row holds the last event's values.
    last_shared = json.loads([e for e in events if e[2] == "tSHARED_1m"][-1][3])
    assert by_key[("tSHARED", "1m")][:2] == (last_shared["num_candles"], last_shared["source"])

    # The CLI processes wrote real candle files and recorded what they wrote.
    for symbol, source in imports.items():
        original = pq.read_table(source)
        stored = pq.read_table(btc_store / "candles" / f"{symbol}_1m.parquet")
        assert stored.equals(original)
        ts = original.column("timestamp")
        assert by_key[(symbol, "1m")] == (original.num_rows, f"import:{source.name}",
                                          ts[0].as_py().isoformat(), ts[-1].as_py().isoformat())
    hours = pc.unique(pc.divide(pq.read_table(BTC_2D).column("timestamp").cast(pa.int64()), 3_600_000))
    resampled = pq.read_table(btc_store / "candles" / "tBTCUSD_1h.parquet")
    assert resampled.num_rows == len(hours) == 48
    assert by_key[("tBTCUSD", "1h")][:2] == (48, "resampled:1m")

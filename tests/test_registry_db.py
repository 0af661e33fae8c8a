"""The registry's catalog (``<models_dir>/registry.db``): schema and migrations, one champion per market,
the append-only audit table, visibility to another process, and reads that never create the file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from genesis_fw.catalog import MIGRATIONS as STORE_MIGRATIONS
from genesis_fw.catalog import Catalog
from genesis_fw.errors import CatalogError
from genesis_fw.registry import db

NOW = "2026-01-01T00:00:00.000+00:00"


def _model(name: str, status: str, symbol: str = "tBTCUSD", timeframe: str = "1h") -> tuple:
    version = int(name.rsplit("_v", 1)[1])
    return (name, symbol, timeframe, version, f"{name}.json", "ab" * 32, status, "logistic", 1, 0, "{}",
            NOW, NOW)


def _add_model(con: sqlite3.Connection, *row: object) -> None:
    con.execute("INSERT INTO models (name, symbol, timeframe, version, file, sha256, status, model_type, horizon, "
                "baseline, metrics, registered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def _add_event(con: sqlite3.Connection, seq: int, prev: str, sha: str, action: str = "register") -> None:
    con.execute("INSERT INTO model_events (seq, at, user, host, action, symbol, timeframe, from_model, to_model, "
                "reason, evidence, state_after, prev_sha256, sha256, entry) "
                "VALUES (?, ?, 'u', 'h', ?, 'tBTCUSD', '1h', NULL, 'tBTCUSD_1h_v1', 'r', '{}', '[]', ?, ?, '{}')",
                (seq, NOW, action, prev, sha))


def test_the_schema_is_created_with_wal_a_registry_id_and_its_own_migrations(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with db.open_db(models).write() as con:
        rid = db.registry_id(con)
    path = models / "registry.db"
    assert db.db_path(models) == path and path.is_file()
    assert uuid.UUID(hex=rid).version == 4 and len(rid) == 32 and rid == rid.lower()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(db.MIGRATIONS)
        names = {r[0]: r[1] for r in con.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
        assert {k for k, v in names.items() if v == "table"} == {"meta", "models", "champion_stack", "model_events"}
        assert names["models_one_champion"] == "index"
        columns = [r[1] for r in con.execute("PRAGMA table_info(model_events)")]
        assert columns == ["seq", "at", "user", "host", "action", "symbol", "timeframe", "from_model", "to_model",
                           "reason", "evidence", "state_after", "prev_sha256", "sha256", "entry"]
        assert [r[1] for r in con.execute("PRAGMA table_info(models)")] == [
            "name", "symbol", "timeframe", "version", "file", "sha256", "status", "model_type", "horizon", "baseline",
            "metrics", "registered_at", "updated_at"]
    finally:
        con.close()
    # Opened again (new objects, new connections): nothing re-applied, the id is kept.
    with db.open_db(models).read() as con:
        assert db.registry_id(con) == rid
    # The store catalog keeps its own schema: the generalised Catalog defaults to the store's migrations.
    store = Catalog(tmp_path / "store" / "genesis.db")
    assert store.migrations is None
    with store.connect(write=True) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(STORE_MIGRATIONS)
        assert "models" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}


def test_two_registries_get_different_ids(tmp_path: Path) -> None:
    ids = set()
    for name in ("a", "b"):
        with db.open_db(tmp_path / name).write() as con:
            ids.add(db.registry_id(con))
    assert len(ids) == 2


def test_one_champion_per_market_is_enforced_by_the_index(tmp_path: Path) -> None:
    rdb = db.open_db(tmp_path)
    with rdb.write() as con:
        _add_model(con, *_model("tBTCUSD_1h_v1", "champion"))
        _add_model(con, *_model("tBTCUSD_1h_v2", "challenger"))
        _add_model(con, *_model("tBTCUSD_1m_v1", "champion", timeframe="1m"))   # another market: fine
        _add_model(con, *_model("tETHUSD_1h_v1", "champion", symbol="tETHUSD"))
    unique = "UNIQUE constraint failed: models.symbol, models.timeframe"
    with pytest.raises(CatalogError, match=unique), rdb.write() as con:
        con.execute("UPDATE models SET status = 'champion' WHERE name = 'tBTCUSD_1h_v2'")
    # The failed transaction changed nothing; swapping in one transaction is fine.
    with rdb.write() as con:
        assert con.execute("SELECT name FROM models WHERE status = 'champion' AND symbol = 'tBTCUSD' "
                           "AND timeframe = '1h'").fetchall() == [("tBTCUSD_1h_v1",)]
        con.execute("UPDATE models SET status = 'retired' WHERE name = 'tBTCUSD_1h_v1'")
        con.execute("UPDATE models SET status = 'champion' WHERE name = 'tBTCUSD_1h_v2'")
    with pytest.raises(CatalogError, match="CHECK constraint failed"), rdb.write() as con:
        con.execute("UPDATE models SET status = 'king' WHERE name = 'tBTCUSD_1h_v2'")


def test_model_events_refuse_update_and_delete_and_out_of_chain_inserts(tmp_path: Path) -> None:
    rdb = db.open_db(tmp_path)
    a, b = "a" * 64, "b" * 64
    with rdb.write() as con:
        _add_event(con, 1, db.GENESIS_HASH, a)
        _add_event(con, 2, a, b)
    for statement in ("UPDATE model_events SET reason = 'edited' WHERE seq = 1",
                      "UPDATE model_events SET seq = 3 WHERE seq = 2",
                      "DELETE FROM model_events WHERE seq = 2",
                      "DELETE FROM model_events"):
        with pytest.raises(CatalogError, match="append-only"), rdb.write() as con:
            con.execute(statement)
    # Replacing (INSERT OR REPLACE deletes without firing DELETE triggers) and gaps are refused too.
    refused = {"replace": (2, a, "c" * 64), "gap": (4, b, "c" * 64), "broken link": (3, a, "c" * 64)}
    for case, (seq, prev, sha) in refused.items():
        with pytest.raises(CatalogError, match="append-only|chain"), rdb.write() as con:
            if case == "replace":
                con.execute("INSERT OR REPLACE INTO model_events SELECT * FROM model_events WHERE seq = 2")
            else:
                _add_event(con, seq, prev, sha)
    with rdb.read() as con:
        assert con.execute("SELECT seq, reason, sha256 FROM model_events ORDER BY seq").fetchall() == [
            (1, "r", a), (2, "r", b)]
    with rdb.write() as con:   # the next link in the chain is accepted
        _add_event(con, 3, b, "c" * 64)


def test_a_second_process_sees_committed_rows(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with db.open_db(models).write() as con:
        _add_model(con, *_model("tBTCUSD_1h_v1", "champion"))
        _add_event(con, 1, db.GENESIS_HASH, "a" * 64)
        rid = db.registry_id(con)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from genesis_fw.registry import db\n"
        "rdb = db.open_db(Path(sys.argv[1]))\n"
        "with rdb.read() as con:\n"
        "    print(db.registry_id(con), con.execute('SELECT name FROM models').fetchone()[0])\n"
        "with rdb.write() as con:\n"
        "    con.execute(\"UPDATE models SET status = 'retired'\")\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(models)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [rid, "tBTCUSD_1h_v1"]
    tables = db.read_tables(models)   # and this process sees the other's commit
    assert tables["models"].column("status").to_pylist() == ["retired"]
    assert tables["model_events"].column("seq").to_pylist() == [1]


def test_reading_a_missing_registry_never_creates_it(tmp_path: Path) -> None:
    models = tmp_path / "models"
    tables = db.read_tables(models)
    assert set(tables) == {"models", "model_events"}
    assert tables["models"].num_rows == 0 and tables["model_events"].num_rows == 0
    assert tables["models"].schema.field("version").type == pa.int64()
    assert tables["models"].schema.field("name").type == pa.string()
    assert tables["model_events"].schema.field("seq").type == pa.int64()
    assert tables["model_events"].column_names[-1] == "entry"
    with pytest.raises(CatalogError, match="registry.db"), db.open_db(models).read():
        pass
    assert not models.exists(), "a read must not create the registry or its folder"
    assert not db.open_db(models).exists()
    # The typed empty tables have the same schema as the tables of an existing registry.
    with db.open_db(tmp_path / "other").write():
        pass
    assert {k: v.schema for k, v in db.read_tables(tmp_path / "other").items()} == {
        k: v.schema for k, v in tables.items()}


def test_read_tables_neither_migrates_nor_writes_an_older_file(tmp_path: Path) -> None:
    """A registry.db made before the schema (user_version 0, no tables) is read as it is: empty typed
    tables, and the file is not upgraded by a reader (only a change migrates it)."""
    path = tmp_path / "registry.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE unrelated (x INTEGER)")
    con.commit()
    con.close()
    before = path.read_bytes()
    tables = db.read_tables(tmp_path)
    assert tables["models"].num_rows == 0 and tables["model_events"].schema == db.empty_tables()["model_events"].schema
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]
    with db.open_db(tmp_path).write() as con:   # a change brings it up to date
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(db.MIGRATIONS)

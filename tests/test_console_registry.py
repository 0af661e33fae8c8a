"""``genesis-fw sql`` sees the model registry of the models folder: ``models`` and ``model_events`` (the
audit log), read from ``<models_dir>/registry.db`` without writing it, and empty typed tables without one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from genesis_fw.console import Console
from genesis_fw.data.store import CandleStore
from genesis_fw.errors import ConsoleError
from genesis_fw.registry import audit, db

NOW = "2026-01-01T00:00:00.000+00:00"


def _registry(models_dir: Path) -> str:
    """A real registry.db with two models of tBTCUSD 1h and two audit entries (register, promote)."""
    rdb = db.open_db(models_dir)
    with rdb.write() as con:
        rid = db.registry_id(con)
        for version, status in ((1, "retired"), (2, "champion")):
            con.execute("INSERT INTO models VALUES (?, 'tBTCUSD', '1h', ?, ?, ?, ?, 'logistic', 1, ?, ?, ?, ?)",
                        (f"tBTCUSD_1h_v{version}", version, f"tBTCUSD_1h_v{version}.json", "ab" * 32, status,
                         int(version == 1), json.dumps({"log_loss": 0.7 - version / 100}), NOW, NOW))
        prev = audit.GENESIS_HASH
        for seq, (action, frm, to) in enumerate([("register", None, "tBTCUSD_1h_v2"),
                                                 ("promote", "tBTCUSD_1h_v1", "tBTCUSD_1h_v2")], start=1):
            e = audit.make_entry(seq=seq, prev_sha256=prev, registry_id=rid, action=action, symbol="tBTCUSD",
                                 timeframe="1h", from_model=frm, to_model=to, reason=f"{action} it",
                                 evidence={}, state_after=[])
            con.execute("INSERT INTO model_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (seq, e["at"], e["user"], e["host"], action, "tBTCUSD", "1h", frm, to, e["reason"], "{}", "[]",
                         prev, e["sha256"], audit.canonical(e)))
            prev = e["sha256"]
    return rid


JOIN = ("SELECT e.seq, e.action, e.to_model, m.status, m.version FROM model_events e "
        "JOIN models m ON m.name = e.to_model ORDER BY e.seq")


def test_cli_sql_queries_models_and_model_events_of_the_models_folder(btc_store: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _registry(models)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in models.iterdir()}
    proc = run_cli("--models-dir", str(models), "sql", JOIN, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"seq": 1, "action": "register", "to_model": "tBTCUSD_1h_v2", "status": "champion", "version": 2},
        {"seq": 2, "action": "promote", "to_model": "tBTCUSD_1h_v2", "status": "champion", "version": 2}]
    # $GENESIS_MODELS_DIR is the same folder; the audit table keeps its exact lines.
    env = {**os.environ, "GENESIS_MODELS_DIR": str(models)}
    proc = run_cli("sql", "SELECT name, status, baseline FROM models ORDER BY name", "--format", "csv", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["name,status,baseline", "tBTCUSD_1h_v1,retired,1", "tBTCUSD_1h_v2,champion,0"]
    proc = run_cli("sql", "SELECT entry FROM model_events ORDER BY seq", "--format", "json", env=env)
    lines = [row["entry"] for row in json.loads(proc.stdout)]
    assert audit.verify(lines, tmp_path / "no-mirror.jsonl", None).problems == []
    # Reading wrote nothing into the models folder (no -wal/-shm left behind, the file unchanged).
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in models.iterdir()} == before


def test_cli_sql_without_a_registry_shows_empty_tables_and_creates_nothing(btc_store: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    proc = run_cli("--models-dir", str(models), "sql",
                   "SELECT (SELECT count(*) FROM models) AS m, (SELECT count(*) FROM model_events) AS e",
                   "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["m,e", "0,0"]
    proc = run_cli("--models-dir", str(models), "sql", "DESCRIBE model_events", "--format", "json")
    assert [(c["column_name"], c["column_type"]) for c in json.loads(proc.stdout)][:2] == [
        ("seq", "BIGINT"), ("at", "VARCHAR")]
    assert list(models.iterdir()) == [], "reading must not create registry.db"
    proc = run_cli("--models-dir", str(tmp_path / "absent"), "sql", "SELECT count(*) AS n FROM models")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "absent").exists()


def test_registry_tables_are_read_only_in_the_console(btc_store: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _registry(models)
    console = Console(CandleStore.open(btc_store), models_dir=models)
    try:
        names = set(console.query("SHOW TABLES").column("name").to_pylist())
        assert {"candles", "models", "model_events"} <= names
        for statement in ["DELETE FROM model_events", "UPDATE models SET status = 'retired'", "DROP VIEW models"]:
            with pytest.raises(ConsoleError, match="read-only"):
                console.query(statement)
        assert console.query("SELECT count(*) AS n FROM model_events").column("n")[0].as_py() == 2
    finally:
        console.close()


def test_an_unreadable_registry_gives_empty_tables_and_a_warning(btc_store: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "registry.db").write_bytes(b"this is not a SQLite database" * 40)
    proc = run_cli("--models-dir", str(models), "sql",
                   "SELECT (SELECT count(*) FROM models) AS m, (SELECT count(*) FROM candles) > 0 AS c",
                   "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["m,c", "0,True"]
    warning = [line for line in proc.stderr.splitlines() if "model registry" in line]
    assert len(warning) == 1 and warning[0].startswith("Warning: ") and "registry.db" in warning[0], proc.stderr
    assert (models / "registry.db").read_bytes() == b"this is not a SQLite database" * 40

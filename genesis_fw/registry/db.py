"""The registry's catalog: ``<models_dir>/registry.db``, the source of truth of the model registry.

A SQLite file beside the model files it describes (not the store's ``genesis.db``: one registry serves
several stores and travels with its models folder). It is a :class:`genesis_fw.catalog.Catalog` with
its own :data:`MIGRATIONS`, so it shares the store catalog's connection rules: WAL mode (readers go on
while one writer commits), a busy timeout (concurrent writers queue), migrations tracked in
``PRAGMA user_version`` and applied under one ``BEGIN IMMEDIATE``, read-only folders read without
writing anything, and a read never creates the file.

Tables (docs/CHAMPION_SELECTION.md):

* ``meta`` -- ``registry_id``: a uuid4 hex made when the file is created (in the same transaction as the
  schema, so processes creating the registry at the same moment agree on it). Audit entries carry it,
  so several registries can share one JSON-lines log;
* ``models`` -- one row per registered model version; the partial unique index ``models_one_champion``
  allows at most one ``champion`` per (symbol, timeframe);
* ``champion_stack`` -- the promotions still in force per (symbol, timeframe), oldest first;
* ``model_events`` -- the audit log (``genesis_fw.registry.audit``). Triggers refuse every UPDATE and
  DELETE, and an INSERT that is not the next link of the chain (``seq`` = last + 1, ``prev_sha256`` =
  the last entry's ``sha256``, or 64 zeros for the first), so no SQL through this schema edits, removes,
  replaces or reorders an entry. (Whoever can write the file can drop the triggers: the hash chain and
  its copies are what detect that; see ``genesis_fw.registry.audit``.)

Times are ISO 8601 UTC strings with ms resolution.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from ..catalog import Catalog, arrow_tables
from ..errors import CatalogError
from .audit import GENESIS_HASH

#: File name of the registry's catalog inside the models folder.
DB_NAME = "registry.db"

#: The tables :func:`read_tables` returns (what the SQL console shows).
PUBLIC_TABLES = ("models", "model_events")

#: A uuid4 as 32 lowercase hex digits, made by SQLite (version nibble 4, variant 8..b).
_UUID4_HEX_SQL = (
    "lower(hex(randomblob(4)) || hex(randomblob(2)) || '4' || substr(hex(randomblob(2)), 2) || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || hex(randomblob(6)))"
)

#: Schema steps, applied in order; step ``i`` brings ``user_version`` from ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('registry_id', {_UUID4_HEX_SQL});
    CREATE TABLE models (
        name          TEXT PRIMARY KEY,   -- tBTCUSD_1h_v2
        symbol        TEXT NOT NULL,
        timeframe     TEXT NOT NULL,
        version       INTEGER NOT NULL,
        file          TEXT NOT NULL,      -- file name inside the models folder
        sha256        TEXT NOT NULL,      -- SHA-256 (hex) of the file's bytes when registered
        status        TEXT NOT NULL CHECK (status IN ('champion', 'challenger', 'retired')),
        model_type    TEXT NOT NULL,
        horizon       INTEGER NOT NULL,   -- bars
        baseline      INTEGER NOT NULL,   -- 1 = hand-set baseline
        metrics       TEXT NOT NULL,      -- JSON object: key test metrics (log_loss, brier, auc, ece, ...) or {{}}
        registered_at TEXT NOT NULL,      -- ISO 8601 UTC ms
        updated_at    TEXT NOT NULL       -- ISO 8601 UTC ms
    );
    CREATE UNIQUE INDEX models_one_champion ON models (symbol, timeframe) WHERE status = 'champion';
    CREATE TABLE champion_stack (         -- promotions still in force, oldest first; rollback pops the top
        symbol    TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        position  INTEGER NOT NULL,
        name      TEXT NOT NULL,
        PRIMARY KEY (symbol, timeframe, position)
    );
    CREATE TABLE model_events (           -- the audit log; append-only
        seq         INTEGER PRIMARY KEY,  -- 1, 2, ... no gaps
        at          TEXT NOT NULL,        -- ISO 8601 UTC ms
        user        TEXT NOT NULL,        -- OS user
        host        TEXT NOT NULL,
        action      TEXT NOT NULL,
        symbol      TEXT,
        timeframe   TEXT,
        from_model  TEXT,
        to_model    TEXT,
        reason      TEXT NOT NULL,
        evidence    TEXT NOT NULL,        -- JSON
        state_after TEXT NOT NULL,        -- JSON: the registry state after the change
        prev_sha256 TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        entry       TEXT NOT NULL         -- the exact canonical JSON line (without newline) of the JSONL mirror
    );
    CREATE TRIGGER model_events_no_update BEFORE UPDATE ON model_events
    BEGIN
        SELECT RAISE(ABORT, 'model_events is append-only: an audit entry is never updated');
    END;
    CREATE TRIGGER model_events_no_delete BEFORE DELETE ON model_events
    BEGIN
        SELECT RAISE(ABORT, 'model_events is append-only: an audit entry is never deleted');
    END;
    CREATE TRIGGER model_events_next_link BEFORE INSERT ON model_events
    WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM model_events)
      OR NEW.prev_sha256 IS NOT coalesce((SELECT sha256 FROM model_events ORDER BY seq DESC LIMIT 1),
                                         '{GENESIS_HASH}')
    BEGIN
        SELECT RAISE(ABORT, 'model_events is append-only: a new entry must be the next link of the chain');
    END;
    """,
]


def db_path(models_dir: str | Path) -> Path:
    """Where the registry's catalog of ``models_dir`` lives."""
    return Path(models_dir) / DB_NAME


@attrs.define
class RegistryDB(Catalog):
    """The registry's catalog at ``path`` (``<models_dir>/registry.db``), created on first write.

    Use :meth:`write` for a change (one ``BEGIN IMMEDIATE`` transaction, committed on success and rolled
    back on any error) and :meth:`read` for reads; SQLite errors become one-line :class:`CatalogError`.
    """

    migrations: list[str] | None = attrs.field(factory=lambda: MIGRATIONS, kw_only=True)
    place: str = attrs.field(default="models folder", kw_only=True)

    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction (``BEGIN IMMEDIATE``: other writers wait for it)."""
        with self.connect(write=True) as con:
            yield con

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading; :class:`CatalogError` when there is no registry.db (never creates it)."""
        with self.connect() as con:
            yield con


def open_db(models_dir: str | Path) -> RegistryDB:
    """The registry catalog of the models folder ``models_dir`` (nothing is opened or created yet)."""
    return RegistryDB(db_path(models_dir))


def registry_id(con: sqlite3.Connection) -> str:
    """The registry's id (uuid4 hex) stored in ``meta``."""
    row = con.execute("SELECT value FROM meta WHERE key = 'registry_id'").fetchone()
    if row is None:
        raise CatalogError("the registry catalog has no registry_id in its meta table")
    return str(row[0])


def empty_tables() -> dict[str, Any]:
    """:data:`PUBLIC_TABLES` with their columns and types but no rows (the schema built in memory)."""
    con = sqlite3.connect(":memory:", isolation_level=None)
    try:
        RegistryDB(Path(":memory:"))._migrate(con)
        return arrow_tables(con, list(PUBLIC_TABLES))
    finally:
        con.close()


def read_tables(models_dir: str | Path) -> dict[str, Any]:
    """``models`` and ``model_events`` of the registry in ``models_dir`` as ``pyarrow.Table`` objects,
    read without migrating or writing anything; empty tables with the same columns and types when it
    has no registry.db (which is not created) or lacks a table. :class:`CatalogError` when the file
    cannot be read."""
    rdb = open_db(models_dir)
    out = empty_tables()
    if not rdb.exists():
        return out
    with rdb.connect(migrate=False) as con:
        present = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        out.update(arrow_tables(con, [t for t in PUBLIC_TABLES if t in present]))
    return out

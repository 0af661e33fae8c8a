"""The catalog: one SQLite file (``<data_dir>/genesis.db``) that records datasets, runs, models and
audit events for every stage.

Why SQLite: several ``genesis-fw`` processes (two backtests and a registry change, say) write to it at
once. SQLite in WAL mode lets readers proceed while one writer commits, and a busy timeout makes
concurrent writers queue instead of failing. DuckDB holds an exclusive lock per writing process,
which would make the second process fail. The SQL console still queries the catalog with DuckDB: it
copies the (small) catalog tables into the console session as Arrow tables, read-only.

The schema is created and upgraded by :data:`MIGRATIONS` (tracked in ``PRAGMA user_version``); each
stage appends its tables there. The same connection logic serves other SQLite files with their own
migrations (``Catalog(path, migrations=..., place=...)``): the model registry's ``registry.db``
(``genesis_fw.registry.db``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from .errors import CatalogError

#: How long a writer waits for another process's transaction before giving up, in seconds.
BUSY_TIMEOUT_S = 60.0

#: Schema steps, applied in order; step ``i`` brings ``user_version`` from ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE datasets (
        symbol      TEXT NOT NULL,
        timeframe   TEXT NOT NULL,
        path        TEXT NOT NULL,
        num_candles INTEGER NOT NULL,
        first_ts    TEXT,             -- open time of the first candle, ISO 8601 UTC
        last_ts     TEXT,             -- open time of the last candle, ISO 8601 UTC
        source      TEXT NOT NULL,    -- 'import:<file>', 'resampled:<timeframe>', 'bitfinex', ...
        updated_at  TEXT NOT NULL,    -- ISO 8601 UTC
        PRIMARY KEY (symbol, timeframe)
    );
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,        -- ISO 8601 UTC
        kind    TEXT NOT NULL,        -- 'dataset.write', ...
        subject TEXT NOT NULL,
        detail  TEXT NOT NULL         -- JSON object
    );
    """,
    """
    CREATE TABLE runs (
        run_id         TEXT PRIMARY KEY,
        created_at     TEXT NOT NULL,    -- ISO 8601 UTC
        strategy       TEXT NOT NULL,
        params         TEXT NOT NULL,    -- JSON object of the strategy parameters
        symbol         TEXT NOT NULL,
        timeframe      TEXT NOT NULL,
        start          TEXT,             -- requested range (config), ISO 8601 UTC or NULL
        "end"          TEXT,
        first_bar      TEXT NOT NULL,    -- open time of the first / last bar used
        last_bar       TEXT NOT NULL,
        num_bars       INTEGER NOT NULL,
        data_origin    TEXT NOT NULL,    -- 'store' or 'sample'
        data_sha256    TEXT NOT NULL,    -- SHA-256 of the exact candles used
        engine_path    TEXT NOT NULL,    -- 'fast' or 'per_bar'
        engine_version TEXT NOT NULL,
        commission     REAL NOT NULL,    -- fraction of notional per side
        slippage_bps   REAL NOT NULL,
        total_return   REAL,             -- fraction
        sharpe         REAL,
        max_drawdown   REAL,             -- negative fraction
        num_trades     INTEGER,
        metrics        TEXT NOT NULL,    -- JSON object of every metric
        outputs        TEXT NOT NULL     -- JSON object: report / summary / trades / equity paths
    );
    """,
    """
    CREATE TABLE dataset_versions (
        symbol        TEXT NOT NULL,
        timeframe     TEXT NOT NULL,
        version       INTEGER NOT NULL,  -- 1, 2, ... increments whenever the content changes
        sha256        TEXT NOT NULL,     -- SHA-256 of the candles (see genesis_fw.data.hashing.content_sha256)
        num_candles   INTEGER NOT NULL,
        start_date    TEXT,              -- open time of the first / last candle, ISO 8601 UTC
        end_date      TEXT,
        gaps          INTEGER NOT NULL,  -- runs of missing candle times on the timeframe grid
        source        TEXT NOT NULL,     -- 'bitfinex', 'resampled:1h', 'import:<file>', ...
        created_at    TEXT NOT NULL,     -- ISO 8601 UTC
        path          TEXT NOT NULL,     -- where this version's Parquet file is kept
        pruned        INTEGER NOT NULL DEFAULT 0,  -- 1 once its file was removed by 'datasets prune'
        PRIMARY KEY (symbol, timeframe, version)
    );
    ALTER TABLE datasets ADD COLUMN version INTEGER;
    ALTER TABLE datasets ADD COLUMN sha256 TEXT;
    """,
    """
    CREATE TABLE quality (
        symbol        TEXT NOT NULL,
        timeframe     TEXT NOT NULL,
        checked_at    TEXT NOT NULL,     -- ISO 8601 UTC
        num_candles   INTEGER NOT NULL,
        quality_score REAL NOT NULL,     -- 0..1 (definition in docs/DATA_PIPELINE.md)
        gaps          INTEGER,           -- runs of missing grid slots (NULL: check not run)
        missing       INTEGER,           -- missing grid slots in total
        duplicates    INTEGER,           -- rows repeating an earlier row's timestamp
        ohlc          INTEGER,           -- rows with an OHLC violation or a non-finite value
        outliers      INTEGER,           -- price spikes
        zero_volume   INTEGER,           -- rows with volume 0
        report_path   TEXT NOT NULL,     -- the .quality.json report
        data_sha256   TEXT NOT NULL      -- content SHA-256 of the candles (genesis_fw.data.hashing)
    );
    CREATE INDEX quality_dataset ON quality (symbol, timeframe, checked_at);
    """,
    # Every config field of a run as a column (runs recorded before this step have NULL there).
    """
    ALTER TABLE runs ADD COLUMN initial_cash REAL;   -- quote currency
    ALTER TABLE runs ADD COLUMN size REAL;           -- position size, fraction of equity
    ALTER TABLE runs ADD COLUMN max_leverage REAL;   -- multiple of equity
    ALTER TABLE runs ADD COLUMN stop_loss REAL;      -- fraction of the entry price, NULL = no stop
    ALTER TABLE runs ADD COLUMN take_profit REAL;    -- fraction of the entry price, NULL = no target
    ALTER TABLE runs ADD COLUMN config TEXT;         -- JSON object: the whole resolved run config
    """,
    # A later run written to the same explicit --output names replaced some of a run's files: those are
    # dropped from its ``outputs`` and the later run is named here (NULL while its files are its own).
    """
    ALTER TABLE runs ADD COLUMN replaced_by TEXT;    -- run_id of the run whose files replaced this run's
    """,
]

_SQLITE_TO_ARROW = {"INTEGER": "int64", "REAL": "float64", "TEXT": "string", "BLOB": "binary"}


def _set_wal(con: sqlite3.Connection) -> None:
    """Switch the database to WAL mode, retrying while another process holds it.

    The switch needs an exclusive lock, and SQLite does not wait for it with the busy timeout: while
    other processes open the fresh catalog at the same moment it fails at once with "database is
    locked". So retry until :data:`BUSY_TIMEOUT_S` has passed.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def _writable(path: Path) -> bool:
    """Whether the catalog at ``path`` can be written: its folder (for the -wal and -shm files) and the
    file itself. False on a read-only mount, also for root."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _read_only_uri(path: Path) -> str:
    """SQLite URI that reads the catalog without writing anything, picked by what lies beside it.

    SQLite reads a WAL database through its index file (``-shm``), which it creates when missing. It
    can when the folder is writable (only the file is not): ``mode=ro``. In a read-only folder:

    * no ``-wal`` file, or an empty one: every commit is in the database file itself, so it is read as
      ``immutable=1`` (no index, no locks; right for a read-only mount, where nobody writes meanwhile);
    * ``-wal`` and ``-shm`` present (the store was copied or mounted while a writer had it open):
      ``mode=ro`` reads the log through the existing index, so its latest commits are seen;
    * a ``-wal`` with commits but no ``-shm``: SQLite can neither rebuild the index nor skip the log
      without hiding commits, so :class:`CatalogError`.
    """
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    if os.access(path.parent, os.W_OK):
        return uri
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if not wal.exists() or wal.stat().st_size == 0:
        return uri + "&immutable=1"
    if shm.exists():
        return uri
    raise CatalogError(
        f"cannot read the catalog {path} in a read-only folder: its write-ahead log {wal.name} holds commits "
        f"but its index {shm.name} is missing; run any genesis-fw command on the store once where it can be "
        "written, which folds the log into the catalog"
    )


def utcnow() -> str:
    """Current time as ISO 8601 UTC with ms resolution."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def statements(script: str) -> list[str]:
    """The SQL statements of ``script``, split at the semicolons that end a statement (not those inside a
    trigger body, a string or a comment)."""
    out, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\n;"):
                out.append(buf)
            buf = ""
    if buf.strip(" \t\n;"):
        out.append(buf)
    return out


def arrow_tables(con: sqlite3.Connection, names: list[str] | None = None) -> dict[str, Any]:
    """The tables ``names`` (default: every table) of ``con`` as ``pyarrow.Table`` objects, column types
    from the declared SQLite types."""
    import pyarrow as pa

    if names is None:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    out: dict[str, Any] = {}
    for name in names:
        info = con.execute(f'PRAGMA table_info("{name}")').fetchall()
        schema = pa.schema(
            [(col[1], _SQLITE_TO_ARROW.get((col[2] or "TEXT").upper(), "string")) for col in info]
        )
        rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in info]
        out[name] = pa.Table.from_arrays(
            [pa.array(list(c), type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
        )
    return out


@attrs.define
class Catalog:
    """The catalog database at ``path``; created (with its folder) on first write."""

    path: Path = attrs.field(converter=Path)
    #: Schema steps of this database; ``None``: the store catalog's :data:`MIGRATIONS` (looked up when used).
    migrations: list[str] | None = attrs.field(default=None, kw_only=True)
    #: What the folder holding the file is called in messages.
    place: str = attrs.field(default="store", kw_only=True)

    @contextmanager
    def connect(self, *, write: bool = False, migrate: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection; with ``write=True`` the body runs in one ``BEGIN IMMEDIATE`` transaction
        (committed on success, rolled back on error).

        A catalog that cannot be written (a read-only store) is read through a read-only connection
        (see :func:`_read_only_uri`) and not migrated; writing to it is a one-line :class:`CatalogError`.
        ``migrate=False`` reads the schema as it is (a reader that must not change the file).
        """
        if not write and not self.path.exists():
            raise CatalogError(f"no catalog at {self.path} yet (it is created by the first write)")
        folder = self.path.parent
        if write and folder.is_dir() and not self.path.is_dir() and not _writable(self.path):
            raise CatalogError(f"the {self.place} at {folder} is read-only: cannot write its catalog "
                               f"{self.path.name}")
        read_only = not write and not self.path.is_dir() and not _writable(self.path)
        try:
            if read_only:
                con = sqlite3.connect(_read_only_uri(self.path), uri=True, timeout=BUSY_TIMEOUT_S,
                                      isolation_level=None)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise CatalogError(f"cannot open the catalog {self.path}: {exc}") from None
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not read_only and (migrate or write):
                self._migrate(con)
            if write:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            else:
                yield con
        except sqlite3.Error as exc:
            raise CatalogError(f"catalog {self.path}: {exc}") from None
        finally:
            con.close()

    def _migrate(self, con: sqlite3.Connection) -> None:
        steps = MIGRATIONS if self.migrations is None else self.migrations
        if con.execute("PRAGMA user_version").fetchone()[0] >= len(steps):
            return
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _set_wal(con)
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            for step in range(version, len(steps)):
                for statement in statements(steps[step]):
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {len(steps)}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def record_dataset(self, *, symbol: str, timeframe: str, path: Path, num_candles: int,
                       first_ts: str | None, last_ts: str | None, source: str) -> None:
        """Upsert the ``datasets`` row of ``symbol``/``timeframe`` and log a ``dataset.write`` event."""
        now = utcnow()
        with self.connect(write=True) as con:
            self._upsert_dataset(con, (symbol, timeframe, str(path), num_candles, first_ts, last_ts, source, now,
                                       None, None))
            self._log(con, "dataset.write", f"{symbol}_{timeframe}",
                      {"num_candles": num_candles, "source": source})

    def record_version(self, row: dict[str, Any]) -> None:
        """Insert a ``dataset_versions`` row, make it the current one in ``datasets``, log an event."""
        with self.connect(write=True) as con:
            self._insert(con, "dataset_versions", row)
            self._upsert_dataset(con, (row["symbol"], row["timeframe"], row["current_path"], row["num_candles"],
                                       row["start_date"], row["end_date"], row["source"], row["created_at"],
                                       row["version"], row["sha256"]))
            self._log(con, "dataset.version", f"{row['symbol']}_{row['timeframe']}",
                      {"version": row["version"], "num_candles": row["num_candles"], "source": row["source"]})

    def mark_pruned(self, symbol: str, timeframe: str, version: int) -> None:
        with self.connect(write=True) as con:
            con.execute("UPDATE dataset_versions SET pruned = 1 WHERE symbol = ? AND timeframe = ? AND version = ?",
                        (symbol, timeframe, version))
            self._log(con, "dataset.pruned", f"{symbol}_{timeframe}", {"version": version})

    @staticmethod
    def _upsert_dataset(con: sqlite3.Connection, values: tuple) -> None:
        """Make ``values`` the ``datasets`` row of its symbol/timeframe (columns in declaration order)."""
        con.execute(
            "INSERT INTO datasets (symbol, timeframe, path, num_candles, first_ts, last_ts, source, updated_at, "
            "version, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, timeframe) DO UPDATE "
            "SET path=excluded.path, num_candles=excluded.num_candles, first_ts=excluded.first_ts, "
            "last_ts=excluded.last_ts, source=excluded.source, updated_at=excluded.updated_at, "
            "version=excluded.version, sha256=excluded.sha256",
            values,
        )

    @staticmethod
    def _insert(con: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        cols = [k for k in row if k != "current_path"]
        con.execute(f'INSERT INTO {table} ({", ".join(cols)}) VALUES ({", ".join("?" for _ in cols)})',
                    tuple(row[k] for k in cols))

    def record_run(self, row: dict[str, Any]) -> None:
        """Insert one ``runs`` row (keys = column names) and log a ``run.recorded`` event."""
        with self.connect(write=True) as con:
            self.insert_run(con, row)

    @classmethod
    def insert_run(cls, con: sqlite3.Connection, row: dict[str, Any]) -> None:
        """:meth:`record_run` inside the caller's write transaction ``con``."""
        columns = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join("?" for _ in row)
        con.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", tuple(row.values()))
        cls._log(con, "run.recorded", row["run_id"], {"strategy": row["strategy"]})

    @classmethod
    def mark_outputs_replaced(cls, con: sqlite3.Connection, run_id: str, outputs: dict[str, str],
                              replaced_by: str, replaced: list[str]) -> None:
        """Record in ``con``'s write transaction that run ``replaced_by`` replaced the files ``replaced``
        (keys of its ``outputs``) of run ``run_id``: they leave its ``outputs``; an event is logged."""
        kept = {k: v for k, v in outputs.items() if k not in replaced}
        con.execute("UPDATE runs SET outputs = ?, replaced_by = ? WHERE run_id = ?",
                    (json.dumps(kept, sort_keys=True), replaced_by, run_id))
        cls._log(con, "run.outputs_replaced", run_id,
                 {"replaced_by": replaced_by, "files": {k: outputs[k] for k in replaced}})

    def check_writable(self) -> None:
        """Raise :class:`CatalogError` unless the catalog can be written now: an existing catalog is
        opened, migrated and one empty write transaction ends; a missing one is not created, its
        folder (or the nearest existing folder above it) must be writable."""
        if self.path.exists():
            with self.connect(write=True):
                pass
            return
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise CatalogError(f"the {self.place} at {self.path.parent} is read-only: cannot write its catalog "
                               f"{self.path.name}")

    @staticmethod
    def _log(con: sqlite3.Connection, kind: str, subject: str, detail: dict[str, Any]) -> None:
        con.execute(
            "INSERT INTO events (at, kind, subject, detail) VALUES (?, ?, ?, ?)",
            (utcnow(), kind, subject, json.dumps(detail, sort_keys=True)),
        )

    def tables(self) -> list[str]:
        """Names of the catalog's tables (empty when the file does not exist yet)."""
        if not self.path.exists():
            return []
        with self.connect() as con:
            rows = con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()
        return [r[0] for r in rows]

    def read_tables(self) -> dict[str, Any]:
        """Every catalog table as a ``pyarrow.Table`` (column types from the declared SQLite types)."""
        if not self.path.exists():
            return {}
        with self.connect() as con:
            return arrow_tables(con)

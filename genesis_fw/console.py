"""The read-only SQL console: ad-hoc DuckDB SQL over the candle store and the catalog.

Views ready in every session:

* ``candles`` -- every dataset in the store, with ``symbol`` and ``timeframe`` columns added
  (the bundled sample when the store holds no candle files). A file that is not a readable Parquet
  file with the store's columns and types (truncated, empty, foreign) is left out of the view with a
  one-line warning in :attr:`Console.warnings`, so one bad file never breaks the other queries;
* ``features`` -- every feature file of the store (``genesis-fw features``): ``symbol``, ``timeframe``,
  ``timestamp`` and the feature columns (files with other feature sets are combined by column name, a
  column a file lacks being NULL). Bad files are skipped with a warning, as for ``candles``;
* every catalog table (``datasets``, ``events``, ...), copied in as read-only Arrow tables;
* ``models`` and ``model_events`` (the audit log) of the model registry of the models folder
  (``<models_dir>/registry.db``, read without migrating or writing it, never created), likewise
  copied in; empty tables with the same columns when the folder has no registry. A registry.db that
  cannot be read gives empty tables and a warning in :attr:`Console.warnings`.

Read-only by two locks: only ``SELECT``, ``EXPLAIN`` (and ``DESCRIBE``/``SHOW``/``SUMMARIZE``, which
DuckDB parses as selects) are accepted, and the session runs with external access disabled except
for the store's own folders, with its configuration locked. Writing, attaching, installing or
loading extensions, copying to files and reading arbitrary paths are all refused.

DuckDB may spill large intermediate results to its temp folder, and a locked session may read that
folder. It is ``<data_dir>/.tmp`` (created only when needed, removed on close), never DuckDB's default
``./.tmp`` in the working directory; when the store folder cannot be written (a read-only mount) or
does not exist, spilling is off and a query larger than memory fails instead.

Duplicate column names in a result (``SELECT 1 AS a, 2 AS a``, a self-join) are renamed the way
DuckDB names the columns of such a subquery (``a``, ``a_1``, ``a_2`` ..., compared case-insensitively),
so every output format keeps every column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from ._util import one_line
from .catalog import Catalog
from .data.store import CandleStore, Dataset
from .data.timeframes import TIMEFRAMES
from .errors import CatalogError, ConsoleError
from .ml.model_file import default_models_dir
from .registry import db as registry_db

_ALLOWED = {"SELECT", "EXPLAIN"}
#: ``EXPLAIN [ANALYZE] [(options)]`` before the explained statement (``EXPLAIN ANALYZE`` runs it).
_EXPLAIN_PREFIX = re.compile(r"\s*EXPLAIN(?:\s+ANALY[SZ]E)?(?:\s*\([^()]*\))?", re.IGNORECASE)
FORMATS = ("table", "csv", "json", "parquet")
#: Columns of the candles view and their DuckDB types in a store file (``genesis_fw.data.store.SCHEMA``).
_CANDLE_TYPES = {"timestamp": "TIMESTAMP WITH TIME ZONE", "open": "DOUBLE", "high": "DOUBLE", "low": "DOUBLE",
                 "close": "DOUBLE", "volume": "DOUBLE"}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@attrs.define
class Console:
    """A DuckDB session over ``store``, its catalog and the model registry of ``models_dir`` (default:
    :func:`genesis_fw.ml.model_file.default_models_dir`). ``note`` says when the sample stands in."""

    store: CandleStore
    catalog: Catalog | None = None
    models_dir: Path | None = None
    note: str | None = attrs.field(default=None, init=False)
    #: One line per candle file left out of the ``candles`` view, naming the file and why.
    warnings: list[str] = attrs.field(factory=list, init=False)
    _con: Any = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.catalog is None:
            self.catalog = Catalog(self.store.catalog_path)

    def _datasets(self) -> tuple[list[Dataset], list[Path]]:
        datasets = self.store.datasets()
        roots = [self.store.candles_dir]
        if not datasets:
            sample = CandleStore.sample()
            datasets = sample.datasets()
            roots = [sample.candles_dir]
            self.note = "the store has no candles; the candles view shows the bundled sample"
        return datasets, roots

    def _temp_directory(self) -> str:
        """Where DuckDB may spill: ``<data_dir>/.tmp``, or ``""`` (off) when the store cannot be written."""
        return str((self.store.root / ".tmp").resolve()) if self.store.writable else ""

    def connect(self) -> Any:
        """The locked DuckDB connection (created on first use)."""
        if self._con is not None:
            return self._con
        import duckdb

        datasets, roots = self._datasets()
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = {_quote(self._temp_directory())}")
        readable = []
        for d in datasets:
            problem = _unreadable(con, d.path)
            if problem is None:
                readable.append(d)
            else:
                self.warnings.append(f"skipping {d.path} in the candles view: {problem}")
        datasets = readable
        if datasets:
            parts = [
                f"SELECT {_quote(d.symbol)} AS symbol, {_quote(d.timeframe)} AS timeframe, "
                f"timestamp, open, high, low, close, volume FROM read_parquet({_quote(str(d.path))})"
                for d in datasets
            ]
            con.execute("CREATE VIEW candles AS " + " UNION ALL ".join(parts))
        else:
            con.execute(
                "CREATE VIEW candles AS SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS timeframe, "
                "NULL::TIMESTAMPTZ AS timestamp, NULL::DOUBLE AS open, NULL::DOUBLE AS high, "
                "NULL::DOUBLE AS low, NULL::DOUBLE AS close, NULL::DOUBLE AS volume WHERE false"
            )
        feature_dirs = self._features_view(con)
        tables = self.catalog.read_tables()
        tables.update(self._registry_tables())
        for name, table in tables.items():
            con.register(f"_catalog_{name}", table)
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_catalog_{name}"')
        allowed = ", ".join(_quote(str(Path(r).resolve()) + "/") for r in [*roots, *feature_dirs])
        con.execute(f"SET allowed_directories = [{allowed}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        self._con = con
        return con

    def _registry_tables(self) -> dict[str, pa.Table]:
        """``models`` and ``model_events`` of the registry in the models folder (empty when it has none)."""
        models_dir = self.models_dir if self.models_dir is not None else default_models_dir()
        try:
            return registry_db.read_tables(models_dir)
        except CatalogError as exc:
            self.warnings.append(f"the model registry's tables models and model_events are empty: {exc}")
            return registry_db.empty_tables()

    def _features_view(self, con: Any) -> list[Path]:
        """Create the ``features`` view; the folders it reads (for ``allowed_directories``)."""
        parts = []
        folder = self.store.features_dir
        for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
            symbol, sep, timeframe = path.stem.rpartition("_")
            if not sep or timeframe not in TIMEFRAMES:
                continue
            problem = _unreadable_features(con, path)
            if problem is not None:
                self.warnings.append(f"skipping {path} in the features view: {problem}")
                continue
            parts.append(f"SELECT {_quote(symbol)} AS symbol, {_quote(timeframe)} AS timeframe, * "
                         f"FROM read_parquet({_quote(str(path))})")
        if parts:
            con.execute("CREATE VIEW features AS " + " UNION ALL BY NAME ".join(parts))
            return [folder]
        con.execute("CREATE VIEW features AS SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS timeframe, "
                    "NULL::TIMESTAMPTZ AS timestamp WHERE false")
        return []

    def query(self, sql: str) -> pa.Table:
        """Run read-only ``sql``; the last statement's result as an Arrow table."""
        import duckdb

        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise ConsoleError(one_line(exc)) from None
        if not statements:
            raise ConsoleError("no SQL statement given")
        for st in statements:
            kind = st.type.name
            if kind == "EXPLAIN":
                kind = _explained_kind(st.query)
            if kind not in _ALLOWED:
                raise ConsoleError(
                    f"the SQL console is read-only: {kind} statements are refused "
                    f"(allowed: SELECT, WITH, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE)"
                )
        con = self.connect()
        try:
            for st in statements[:-1]:
                con.execute(st.query)
                con.complete()  # DuckDB 2.0: finish the result before the connection runs anything else
            table = con.sql(statements[-1].query).to_arrow_table()
        except duckdb.PermissionException as exc:
            raise ConsoleError(
                "the SQL console is read-only and reads only the store: " + one_line(exc)
            ) from None
        except duckdb.Error as exc:
            raise ConsoleError(one_line(exc)) from None
        return table.rename_columns(unique_names(table.column_names))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _unreadable(con: Any, path: Path) -> str | None:
    """Why the candle file at ``path`` cannot join the ``candles`` view, or ``None`` when it can.

    Reads the Parquet footer only (no data pages), so checking every file costs little.
    """
    import duckdb

    try:
        described = con.sql(f"DESCRIBE SELECT * FROM read_parquet({_quote(str(path))})").fetchall()
    except duckdb.Error as exc:
        return one_line(exc, max_lines=1)
    types = {row[0]: row[1] for row in described}
    missing = [c for c in _CANDLE_TYPES if c not in types]
    if missing:
        return f"missing column(s) {', '.join(missing)} (it has {', '.join(types) or 'none'})"
    wrong = [f"{c} is {types[c]}, expected {t}" for c, t in _CANDLE_TYPES.items() if types[c] != t]
    return "; ".join(wrong) if wrong else None


def _unreadable_features(con: Any, path: Path) -> str | None:
    """Why the feature file at ``path`` cannot join the ``features`` view (a UTC ``timestamp`` column and
    DOUBLE feature columns), or ``None`` when it can. Reads the Parquet footer only."""
    import duckdb

    try:
        described = con.sql(f"DESCRIBE SELECT * FROM read_parquet({_quote(str(path))})").fetchall()
    except duckdb.Error as exc:
        return one_line(exc, max_lines=1)
    types = {row[0]: row[1] for row in described}
    if types.get("timestamp") != _CANDLE_TYPES["timestamp"]:
        return f"no timestamp column of type {_CANDLE_TYPES['timestamp']}"
    wrong = [f"{c} is {t}" for c, t in types.items() if c != "timestamp" and t != "DOUBLE"]
    if {"symbol", "timeframe"} & set(types):
        wrong.append("it has a symbol or timeframe column")
    return f"feature columns must be DOUBLE: {', '.join(wrong)}" if wrong else None


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats renamed as DuckDB renames a subquery's columns: ``a, a, a`` becomes
    ``a, a_1, a_2``; names are compared case-insensitively and a new name never takes an existing one."""
    taken: set[str] = set()
    out = []
    for name in names:
        unique, n = name, 0
        while unique.lower() in taken:
            n += 1
            unique = f"{name}_{n}"
        taken.add(unique.lower())
        out.append(unique)
    return out


def _explained_kind(query: str) -> str:
    """``"SELECT"`` when ``query`` (an EXPLAIN statement) explains one SELECT, else what it explains.

    ``EXPLAIN ANALYZE`` executes the explained statement, so it must pass the same check.
    """
    import duckdb

    match = _EXPLAIN_PREFIX.match(query)
    try:
        inner = duckdb.extract_statements(query[match.end():]) if match else []
    except duckdb.Error:
        inner = []
    if len(inner) != 1:
        return "EXPLAIN (of a statement that cannot be checked)"
    kind = inner[0].type.name
    return kind if kind == "SELECT" else f"EXPLAIN {kind}"


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def render_table(table: pa.Table, *, max_rows: int = 100) -> str:
    """Aligned plain-text table (numbers right-aligned); at most ``max_rows`` rows (0 = all)."""
    names = table.column_names
    shown = table if max_rows <= 0 else table.slice(0, max_rows)
    rows = [[("" if v is None else str(_cell(v))) for v in row.values()] for row in shown.to_pylist()]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
               for f in table.schema]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out = [line(list(names)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    if shown.num_rows < table.num_rows:
        out.append(f"({shown.num_rows} of {table.num_rows} rows shown; --max-rows 0 shows all)")
    else:
        out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out)


def render_csv(table: pa.Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if v is None else _cell(v) for v in row.values()])
    return buf.getvalue()


def render_json(table: pa.Table) -> str:
    rows = [{k: _cell(v) for k, v in row.items()} for row in table.to_pylist()]
    return json.dumps(rows, indent=1, default=str) + "\n"

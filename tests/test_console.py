"""The read-only SQL console (genesis_fw.console) and the ``genesis-fw sql`` command, on real files."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, ETH_2D, run_cli

from genesis_fw.catalog import Catalog
from genesis_fw.console import Console
from genesis_fw.data.store import CandleStore, resample
from genesis_fw.errors import ConsoleError

FILES = {"tBTCUSD": BTC_2D, "tETHUSD": ETH_2D}
CANDLE_COLUMNS = ["symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume"]


def _console(store_dir: Path) -> Console:
    return Console(CandleStore.open(store_dir))


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _session_state(console: Console) -> dict:
    """What a refused statement must not change in the session."""
    return {
        "tables": sorted(r["name"] for r in console.query("SHOW TABLES").to_pylist()),
        "candles": console.query(
            "SELECT symbol, timeframe, count(*) AS n, sum(open) AS s FROM candles GROUP BY ALL ORDER BY ALL"
        ).to_pylist(),
        "settings": console.query(
            "SELECT current_setting('enable_external_access') AS ext, current_setting('lock_configuration') AS lock,"
            " current_setting('TimeZone') AS tz, current_setting('allowed_directories') AS dirs"
        ).to_pylist(),
    }


# --- (a) refused statements -------------------------------------------------------------------------------

WRITES = [
    "INSERT INTO candles VALUES ('tXXX', '1m', TIMESTAMPTZ '2019-04-01 00:00:00+00', 1, 1, 1, 1, 1)",
    "UPDATE candles SET open = 0",
    "DELETE FROM candles",
    "CREATE TABLE t AS SELECT * FROM candles",
    "CREATE TEMP TABLE t (x INTEGER)",
    "CREATE VIEW v AS SELECT 1 AS x",
    "CREATE OR REPLACE VIEW candles AS SELECT 1 AS x",
    "DROP VIEW candles",
    "ALTER VIEW candles RENAME TO c2",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET GLOBAL enable_external_access = true",
    "RESET enable_external_access",
    "PRAGMA enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "SET TimeZone = 'America/New_York'",
    "BEGIN TRANSACTION",
    "CHECKPOINT",
    "CALL enable_logging()",
    # EXPLAIN ANALYZE executes the explained statement: it must pass the same check.
    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1 AS x",
    "EXPLAIN ANALYZE DROP VIEW candles",
    "explain analyse\nINSERT INTO candles SELECT * FROM candles",
    "EXPLAIN (ANALYZE, FORMAT json) DELETE FROM candles",
    "EXPLAIN /* hidden */ ANALYZE DROP VIEW candles",
    "EXPLAIN CREATE TABLE t AS SELECT 1 AS x",
    # a later statement writes: nothing at all runs
    "SELECT 1; DROP VIEW candles",
    "SELECT count(*) FROM candles;\nCREATE TABLE t AS SELECT 1 AS x; SELECT 2",
    "SELECT 1; SET enable_external_access = true; SELECT 2",
]


@pytest.mark.parametrize("statement", WRITES)
def test_writing_statements_are_refused_and_change_nothing(btc_store: Path, statement: str):
    console = _console(btc_store)
    before_files = _snapshot(btc_store)
    before = _session_state(console)
    with pytest.raises(ConsoleError) as info:
        console.query(statement)
    message = str(info.value)
    assert "read-only" in message and "refused" in message
    assert "\n" not in message
    assert _session_state(console) == before
    assert _snapshot(btc_store) == before_files
    console.close()


@pytest.mark.parametrize("kind", ["INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ATTACH", "COPY", "SET"])
def test_refusal_names_the_statement_kind(btc_store: Path, kind: str):
    statement = {
        "INSERT": "INSERT INTO candles SELECT * FROM candles",
        "UPDATE": "UPDATE candles SET close = 1",
        "DELETE": "DELETE FROM candles",
        "CREATE": "CREATE TABLE t (x INTEGER)",
        "DROP": "DROP VIEW candles",
        "ATTACH": "ATTACH ':memory:' AS other",
        "COPY": "COPY candles TO 'x.csv'",
        "SET": "SET enable_external_access = true",
    }[kind]
    with pytest.raises(ConsoleError, match=rf"^the SQL console is read-only: {kind} statements are refused"):
        _console(btc_store).query(statement)


def test_refused_explain_analyze_reports_the_explained_kind(btc_store: Path):
    with pytest.raises(ConsoleError, match="EXPLAIN DROP statements are refused"):
        _console(btc_store).query("EXPLAIN ANALYZE DROP VIEW candles")


def test_attach_is_refused_and_creates_no_database(btc_store: Path, tmp_path: Path):
    target = tmp_path / "other.duckdb"
    console = _console(btc_store)
    with pytest.raises(ConsoleError, match="ATTACH statements are refused"):
        console.query(f"ATTACH '{target}' AS other")
    assert not target.exists()
    assert "other" not in {r["database_name"] for r in console.query("SHOW DATABASES").to_pylist()}


@pytest.mark.parametrize("template", [
    "COPY candles TO '{target}'",
    "COPY (SELECT * FROM candles) TO '{target}' (FORMAT parquet)",
    "EXPORT DATABASE '{folder}'",
    "EXPLAIN ANALYZE COPY (SELECT * FROM candles) TO '{target}'",
    "SELECT 1; COPY candles TO '{target}'",
])
@pytest.mark.parametrize("where", ["outside", "inside_store"])
def test_copy_to_a_file_is_refused_and_writes_nothing(btc_store: Path, tmp_path: Path, template: str, where: str):
    # inside_store: the candles folder is on DuckDB's allowed list, so only the statement check protects it
    folder = tmp_path / "exported" if where == "outside" else btc_store / "candles"
    target = folder / "out.parquet"
    before = _snapshot(btc_store)
    with pytest.raises(ConsoleError, match="read-only"):
        _console(btc_store).query(template.format(target=target, folder=tmp_path / "exported"))
    assert not target.exists()
    assert not (tmp_path / "exported").exists()
    assert _snapshot(btc_store) == before


@pytest.fixture
def outside_parquet(tmp_path: Path) -> Path:
    """A valid candle file next to the store, not in it."""
    path = tmp_path / "outside.parquet"
    shutil.copy(ETH_2D, path)
    return path


@pytest.mark.parametrize("template", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM glob('{tmp}/*')",
    "SELECT count(*) FROM read_parquet('{outside}')",
    "SELECT count(*) FROM '{outside}'",
    "SELECT * FROM parquet_metadata('{outside}')",
    "SELECT count(*) FROM read_parquet('{store}/candles/../../outside.parquet')",
    "SELECT count(*) FROM read_parquet(['{store}/candles/tBTCUSD_1m.parquet', '{outside}'])",
    "WITH x AS (SELECT * FROM read_text('{secret}')) SELECT * FROM x",
    "EXPLAIN ANALYZE SELECT * FROM read_text('{secret}')",
])
def test_reading_paths_outside_the_store_is_refused(btc_store: Path, tmp_path: Path, outside_parquet: Path,
                                                     template: str):
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-content\n", encoding="utf-8")
    sql = template.format(secret=secret, tmp=tmp_path, outside=outside_parquet, store=btc_store)
    with pytest.raises(ConsoleError) as info:
        _console(btc_store).query(sql)
    message = str(info.value)
    assert message.startswith("the SQL console is read-only and reads only the store:")
    assert "top-secret-content" not in message
    assert "\n" not in message


def test_the_store_own_files_stay_readable(btc_store: Path, outside_parquet: Path):
    """Positive control for the refusals above: the same functions work on the store's files."""
    console = _console(btc_store)
    n = console.query(f"SELECT count(*) AS n FROM read_parquet('{btc_store}/candles/tBTCUSD_1m.parquet')")
    assert n.column("n")[0].as_py() == pq.read_metadata(BTC_2D).num_rows
    files = console.query(f"SELECT file FROM glob('{btc_store}/candles/*.parquet') ORDER BY file")
    assert [Path(f).name for f in files.column("file").to_pylist()] == ["tBTCUSD_1m.parquet", "tETHUSD_1m.parquet"]
    # and the outside file really is a readable parquet file, so only the lock refuses it
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{outside_parquet}')").fetchall()
    assert rows == [(pq.read_metadata(ETH_2D).num_rows,)]


def test_empty_input_and_syntax_errors_are_console_errors(btc_store: Path):
    console = _console(btc_store)
    with pytest.raises(ConsoleError, match="no SQL statement"):
        console.query("  -- only a comment\n")
    with pytest.raises(ConsoleError, match="(?i)syntax error") as info:
        console.query("SELECT FROM WHERE")
    assert "\n" not in str(info.value)
    with pytest.raises(ConsoleError, match="no_such_table"):
        console.query("SELECT * FROM no_such_table")


# --- (b) allowed statements -------------------------------------------------------------------------------

def test_select_and_with(btc_store: Path):
    console = _console(btc_store)
    t = console.query("SELECT symbol, count(*) AS n FROM candles GROUP BY symbol ORDER BY symbol")
    assert t.to_pylist() == [{"symbol": s, "n": pq.read_metadata(f).num_rows} for s, f in FILES.items()]
    t = console.query(
        "WITH m AS (SELECT symbol, max(high) AS hi FROM candles GROUP BY symbol) SELECT hi FROM m ORDER BY symbol"
    )
    assert t.column("hi").to_pylist() == [pc.max(pq.read_table(f).column("high")).as_py() for f in FILES.values()]
    t = console.query("FROM candles SELECT count(*) AS n WHERE symbol = 'tETHUSD'")
    assert t.column("n")[0].as_py() == pq.read_metadata(ETH_2D).num_rows


def test_several_selects_return_the_last_result(btc_store: Path):
    t = _console(btc_store).query("SELECT 1 AS a; SELECT 2 AS b;")
    assert t.to_pylist() == [{"b": 2}]


def test_describe_candles(btc_store: Path):
    t = _console(btc_store).query("DESCRIBE candles")
    assert t.column("column_name").to_pylist() == CANDLE_COLUMNS
    types = dict(zip(t.column("column_name").to_pylist(), t.column("column_type").to_pylist(), strict=True))
    assert types["symbol"] == types["timeframe"] == "VARCHAR"
    assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert {types[c] for c in CANDLE_COLUMNS[3:]} == {"DOUBLE"}


def test_show_tables(btc_store: Path):
    names = _console(btc_store).query("SHOW TABLES").column("name").to_pylist()
    assert "candles" in names


def test_summarize(btc_store: Path):
    t = _console(btc_store).query("SUMMARIZE candles")
    rows = {r["column_name"]: r for r in t.to_pylist()}
    assert list(rows) == CANDLE_COLUMNS
    total = sum(pq.read_metadata(f).num_rows for f in FILES.values())
    assert {r["count"] for r in rows.values()} == {total}
    highs = pa.concat_arrays([pq.read_table(f).column("high").combine_chunks() for f in FILES.values()])
    assert float(rows["high"]["max"]) == pc.max(highs).as_py()


@pytest.mark.parametrize("statement", [
    "EXPLAIN SELECT * FROM candles",
    "EXPLAIN ANALYZE SELECT count(*) FROM candles",
    "EXPLAIN (FORMAT json) SELECT 1",
    "explain analyze (format json) WITH a AS (SELECT 1 AS x) SELECT * FROM a",
])
def test_explain_of_a_select(btc_store: Path, statement: str):
    t = _console(btc_store).query(statement)
    assert t.column_names == ["explain_key", "explain_value"]
    assert t.num_rows >= 1


# --- (c) the candles view and the catalog ------------------------------------------------------------------

def test_candles_view_covers_every_dataset(btc_store: Path):
    store = CandleStore.open(btc_store)
    hourly = resample(store.path("tBTCUSD", "1m"), "1h")
    store.write("tBTCUSD", "1h", hourly)
    console = _console(btc_store)
    assert console.note is None
    got = console.query(
        "SELECT symbol, timeframe, count(*) AS n, min(timestamp) AS first, max(timestamp) AS last, "
        "sum(volume) AS volume FROM candles GROUP BY ALL ORDER BY ALL"
    ).to_pylist()
    expected = []
    for symbol, timeframe, table in [("tBTCUSD", "1h", hourly), ("tBTCUSD", "1m", pq.read_table(BTC_2D)),
                                     ("tETHUSD", "1m", pq.read_table(ETH_2D))]:
        ts = table.column("timestamp")
        expected.append({"symbol": symbol, "timeframe": timeframe, "n": table.num_rows,
                         "first": pc.min(ts).as_py(), "last": pc.max(ts).as_py(),
                         "volume": pytest.approx(pc.sum(table.column("volume")).as_py(), rel=1e-12)})
    assert got == expected
    assert hourly.num_rows == 48


def test_candles_view_rows_match_the_files(btc_store: Path):
    console = _console(btc_store)
    for symbol, path in FILES.items():
        got = console.query(
            f"SELECT timestamp, open, high, low, close, volume FROM candles WHERE symbol = '{symbol}' "
            "AND timeframe = '1m' ORDER BY timestamp"
        )
        expected = pq.read_table(path)
        assert got.column_names == expected.column_names
        for name in expected.column_names:
            assert got.column(name).cast(expected.schema.field(name).type).equals(expected.column(name)), name


def test_empty_store_falls_back_to_the_sample_with_a_note(data_dir: Path):
    console = _console(data_dir)
    t = console.query("SELECT symbol, timeframe, count(*) AS n FROM candles GROUP BY ALL")
    sample = CandleStore.sample().path("tBTCUSD", "1m")
    assert t.to_pylist() == [{"symbol": "tBTCUSD", "timeframe": "1m", "n": pq.read_metadata(sample).num_rows}]
    assert console.note is not None and "sample" in console.note
    assert not (data_dir / "genesis.db").exists(), "the console must not create the catalog"


def test_store_with_candles_has_no_note(btc_store: Path):
    console = _console(btc_store)
    console.query("SELECT 1")
    assert console.note is None


def test_catalog_tables_are_visible(btc_store: Path):
    catalog = Catalog(btc_store / "genesis.db")
    store = CandleStore.open(btc_store)
    for symbol, path in FILES.items():
        ts = pq.read_table(path).column("timestamp")
        catalog.record_dataset(symbol=symbol, timeframe="1m", path=store.path(symbol, "1m"),
                               num_candles=pq.read_metadata(path).num_rows, first_ts=pc.min(ts).as_py().isoformat(),
                               last_ts=pc.max(ts).as_py().isoformat(), source=f"import:{path.name}")
    console = _console(btc_store)
    names = set(console.query("SHOW TABLES").column("name").to_pylist())
    assert {"candles", "datasets", "events"} <= names
    datasets = console.query("SELECT symbol, timeframe, num_candles, source FROM datasets ORDER BY symbol")
    assert datasets.to_pylist() == [
        {"symbol": s, "timeframe": "1m", "num_candles": pq.read_metadata(f).num_rows, "source": f"import:{f.name}"}
        for s, f in FILES.items()
    ]
    events = console.query("SELECT kind, subject FROM events ORDER BY id").to_pylist()
    assert events == [{"kind": "dataset.write", "subject": "tBTCUSD_1m"},
                      {"kind": "dataset.write", "subject": "tETHUSD_1m"}]
    # catalog and candles join: the recorded counts agree with the files
    joined = console.query(
        "SELECT d.symbol, d.num_candles = c.n AS same FROM datasets d "
        "JOIN (SELECT symbol, timeframe, count(*) AS n FROM candles GROUP BY ALL) c USING (symbol, timeframe) "
        "ORDER BY d.symbol"
    )
    assert joined.column("same").to_pylist() == [True, True]
    # and they are read-only: the SQLite file is untouched by a refused write
    before = hashlib.sha256((btc_store / "genesis.db").read_bytes()).hexdigest()
    for statement in ["DELETE FROM datasets", "DROP VIEW events", "UPDATE datasets SET num_candles = 0"]:
        with pytest.raises(ConsoleError, match="read-only"):
            console.query(statement)
    assert console.query("SELECT count(*) AS n FROM datasets").column("n")[0].as_py() == 2
    assert hashlib.sha256((btc_store / "genesis.db").read_bytes()).hexdigest() == before


def test_catalog_tables_absent_without_a_catalog(btc_store: Path):
    console = _console(btc_store)
    with pytest.raises(ConsoleError, match="datasets"):
        console.query("SELECT * FROM datasets")
    assert not (btc_store / "genesis.db").exists()


def test_session_is_utc(btc_store: Path):
    t = _console(btc_store).query("SELECT min(timestamp)::VARCHAR AS first FROM candles WHERE symbol = 'tBTCUSD'")
    assert t.column("first")[0].as_py() == "2019-04-01 00:00:00+00"


# --- (d) the CLI through a real process -------------------------------------------------------------------

SUMMARY_SQL = ("SELECT symbol, timeframe, count(*) AS n, min(timestamp) AS first, sum(volume) AS volume, "
               "max(high) AS high FROM candles GROUP BY ALL ORDER BY symbol")


def _expected_summary() -> list[dict]:
    """SUMMARY_SQL computed directly from the test files with pyarrow."""
    out = []
    for symbol, path in FILES.items():
        t = pq.read_table(path)
        out.append({"symbol": symbol, "timeframe": "1m", "n": t.num_rows,
                    "first": pc.min(t.column("timestamp")).as_py(),
                    "volume": pc.sum(t.column("volume")).as_py(), "high": pc.max(t.column("high")).as_py()})
    return out


def _assert_one_error_line(result, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cli_table_output_is_aligned(btc_store: Path):
    result = run_cli("sql", SUMMARY_SQL)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    header, rule, rows, footer = lines[0], lines[1], lines[2:-1], lines[-1]
    assert footer == "(2 rows)"
    assert set(rule) == {"-", " "}
    # column spans from the rule line: runs of dashes separated by two spaces
    spans, pos = [], 0
    for dashes in rule.split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    names = ["symbol", "timeframe", "n", "first", "volume", "high"]
    assert [header[a:b].strip() for a, b in spans] == names
    numeric = {"n", "volume", "high"}
    expected = _expected_summary()
    assert len(rows) == len(expected)
    for line, exp in zip(rows, expected, strict=True):
        for (a, b), name in zip(spans, names, strict=True):
            cell = line[a:b]
            assert line[b:b + 2].strip() == "", f"column {name} overflows in {line!r}"
            if name in numeric:
                assert cell == cell.strip().rjust(b - a), f"{name} not right-aligned: {line!r}"
            else:
                assert cell.rstrip() == cell.strip(), f"{name} not left-aligned: {line!r}"
        cells = {name: line[a:b].strip() for (a, b), name in zip(spans, names, strict=True)}
        assert cells["symbol"] == exp["symbol"] and cells["timeframe"] == "1m"
        assert int(cells["n"]) == exp["n"]
        assert cells["first"] == exp["first"].isoformat(sep=" ")
        assert float(cells["volume"]) == pytest.approx(exp["volume"], rel=1e-12)
        assert float(cells["high"]) == exp["high"]
    # text columns are padded to the widest cell, so the numeric columns end on the same position
    assert len({len(line) for line in [header, *rows]}) == 1


def test_cli_max_rows(btc_store: Path):
    result = run_cli("sql", "SELECT * FROM candles ORDER BY symbol, timestamp", "--max-rows", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    total = sum(pq.read_metadata(f).num_rows for f in FILES.values())
    assert lines[-1] == f"(3 of {total} rows shown; --max-rows 0 shows all)"
    assert len(lines) == 2 + 3 + 1


def test_cli_csv_output_file(btc_store: Path, tmp_path: Path):
    out = tmp_path / "out" / "summary.csv"
    result = run_cli("sql", SUMMARY_SQL, "--format", "csv", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"Wrote 2 rows to {out}"
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    expected = _expected_summary()
    assert [r["symbol"] for r in rows] == [e["symbol"] for e in expected]
    for row, exp in zip(rows, expected, strict=True):
        assert int(row["n"]) == exp["n"]
        assert datetime.fromisoformat(row["first"]) == exp["first"]
        assert float(row["volume"]) == pytest.approx(exp["volume"], rel=1e-12)
        assert float(row["high"]) == exp["high"]


def test_cli_csv_to_stdout(btc_store: Path):
    result = run_cli("sql", "SELECT symbol, count(*) AS n FROM candles GROUP BY symbol ORDER BY symbol",
                     "--format", "csv")
    assert result.returncode == 0, result.stderr
    expected = "symbol,n\n" + "".join(f"{s},{pq.read_metadata(f).num_rows}\n" for s, f in FILES.items())
    assert result.stdout == expected


def test_cli_json_output_file(btc_store: Path, tmp_path: Path):
    out = tmp_path / "summary.json"
    result = run_cli("sql", SUMMARY_SQL, "--format", "json", "--output", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))
    expected = _expected_summary()
    assert [set(r) for r in rows] == [set(e) for e in expected]
    for row, exp in zip(rows, expected, strict=True):
        assert (row["symbol"], row["timeframe"], row["n"]) == (exp["symbol"], "1m", exp["n"])
        assert datetime.fromisoformat(row["first"]) == exp["first"]
        assert row["volume"] == pytest.approx(exp["volume"], rel=1e-12)
        assert row["high"] == exp["high"]


def test_cli_parquet_output_file(btc_store: Path, tmp_path: Path):
    out = tmp_path / "daily.parquet"
    query = ("SELECT symbol, timestamp::DATE AS day, count(*) AS n, sum(volume) AS volume FROM candles "
             "GROUP BY ALL ORDER BY symbol, day")
    result = run_cli("sql", query, "--format", "parquet", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    got = pq.read_table(out)
    assert got.column_names == ["symbol", "day", "n", "volume"]
    # independent computation: DuckDB straight on the test files, outside the console
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    direct = con.sql(
        f"SELECT 'tBTCUSD' AS symbol, * FROM read_parquet('{BTC_2D}') UNION ALL "
        f"SELECT 'tETHUSD', * FROM read_parquet('{ETH_2D}')"
    ).to_arrow_table()
    days = pc.floor_temporal(direct.column("timestamp"), unit="day").cast(pa.timestamp("ms", tz="UTC"))
    direct = direct.append_column("d", days)
    agg = direct.group_by(["symbol", "d"]).aggregate([("volume", "count"), ("volume", "sum")]).sort_by(
        [("symbol", "ascending"), ("d", "ascending")])
    assert got.column("symbol").to_pylist() == agg.column("symbol").to_pylist()
    assert got.column("day").to_pylist() == [d.date() for d in agg.column("d").to_pylist()]
    assert got.column("n").to_pylist() == agg.column("volume_count").to_pylist()
    np.testing.assert_allclose(got.column("volume").to_numpy(), agg.column("volume_sum").to_numpy(), rtol=1e-12)
    assert sum(got.column("n").to_pylist()) == sum(pq.read_metadata(f).num_rows for f in FILES.values())
    con.close()


def test_cli_file_option(btc_store: Path, tmp_path: Path):
    sql_file = tmp_path / "q.sql"
    sql_file.write_text("-- per symbol\nSELECT symbol, count(*) AS n\nFROM candles\nGROUP BY symbol\n"
                        "ORDER BY symbol;\n", encoding="utf-8")
    result = run_cli("sql", "--file", str(sql_file), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"symbol": s, "n": pq.read_metadata(f).num_rows} for s, f in FILES.items()]


def test_cli_empty_store_notes_the_sample(data_dir: Path):
    result = run_cli("sql", "SELECT count(*) AS n FROM candles", "--format", "csv")
    assert result.returncode == 0, result.stderr
    sample = CandleStore.sample().path("tBTCUSD", "1m")
    assert result.stdout == f"n\n{pq.read_metadata(sample).num_rows}\n"
    assert result.stderr.startswith("Note: ") and "sample" in result.stderr


def test_cli_parquet_without_output_is_a_usage_error(btc_store: Path, tmp_path: Path):
    result = run_cli("sql", "SELECT 1", "--format", "parquet", cwd=tmp_path)
    line = _assert_one_error_line(result, 2)
    assert "--output" in line
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == [btc_store]


def test_cli_query_and_file_together_is_a_usage_error(btc_store: Path, tmp_path: Path):
    sql_file = tmp_path / "q.sql"
    sql_file.write_text("SELECT 1", encoding="utf-8")
    line = _assert_one_error_line(run_cli("sql", "SELECT 2", "--file", str(sql_file)), 2)
    assert "--file" in line


def test_cli_neither_query_nor_file_is_a_usage_error(btc_store: Path):
    _assert_one_error_line(run_cli("sql"), 2)


def test_cli_unreadable_file_is_a_usage_error(btc_store: Path, tmp_path: Path):
    line = _assert_one_error_line(run_cli("sql", "--file", str(tmp_path / "missing.sql")), 2)
    assert "missing.sql" in line


@pytest.mark.parametrize("statement", [
    "DROP VIEW candles",
    "SELECT 1; COPY candles TO '{out}'",
    "SELECT * FROM read_text('/etc/passwd')",
    "EXPLAIN ANALYZE COPY candles TO '{store}/candles/x.csv'",
])
def test_cli_refused_statement(btc_store: Path, tmp_path: Path, statement: str):
    out = tmp_path / "written.csv"
    before = _snapshot(btc_store)
    result = run_cli("sql", statement.format(out=out, store=btc_store), "--output", str(tmp_path / "result.csv"))
    line = _assert_one_error_line(result, 1)
    assert "read-only" in line
    assert result.stdout == ""
    assert not out.exists() and not (tmp_path / "result.csv").exists()
    assert _snapshot(btc_store) == before


def test_cli_syntax_error(btc_store: Path):
    result = run_cli("sql", "SELEC count(*) FROM candles")
    line = _assert_one_error_line(result, 1)
    assert "syntax error" in line.lower()
    assert result.stdout == ""


def test_cli_debug_shows_the_traceback(btc_store: Path):
    """Control for the one-line tests: the traceback exists and --debug shows it."""
    result = run_cli("--debug", "sql", "DROP VIEW candles")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConsoleError" in result.stderr


# --- (e) bad candle files, duplicate column names, DuckDB's temp folder ------------------------------------

def _write_bad_file(path: Path, kind: str) -> None:
    if kind == "truncated":  # a copy cut off halfway (an interrupted transfer): no footer
        data = BTC_2D.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong_columns":
        pq.write_table(pa.table({"ts": [1, 2], "price": [1.0, 2.0]}), path)
    elif kind == "wrong_types":
        t = pq.read_table(BTC_2D)
        pq.write_table(t.set_column(1, "open", pc.cast(t.column("open"), pa.string())), path)
    elif kind == "not_parquet":
        path.write_text("timestamp,open,high,low,close,volume\n1554076800000,1,1,1,1,1\n", encoding="utf-8")
    else:
        raise AssertionError(kind)


BAD_KINDS = ["truncated", "empty", "wrong_columns", "wrong_types", "not_parquet"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_cli_skips_a_bad_candle_file_with_a_one_line_warning(btc_store: Path, kind: str):
    bad = btc_store / "candles" / "tXRPUSD_1m.parquet"
    _write_bad_file(bad, kind)
    Catalog(btc_store / "genesis.db").record_dataset(
        symbol="tBTCUSD", timeframe="1m", path=btc_store / "candles" / "tBTCUSD_1m.parquet",
        num_candles=pq.read_metadata(BTC_2D).num_rows, first_ts=None, last_ts=None, source="test")

    catalog_only = run_cli("sql", "SELECT symbol, num_candles FROM datasets", "--format", "json")
    assert catalog_only.returncode == 0, catalog_only.stderr
    assert json.loads(catalog_only.stdout) == [{"symbol": "tBTCUSD", "num_candles": pq.read_metadata(BTC_2D).num_rows}]

    candles = run_cli("sql", "SELECT symbol, count(*) AS n FROM candles GROUP BY ALL ORDER BY ALL", "--format", "json")
    assert candles.returncode == 0, candles.stderr
    assert json.loads(candles.stdout) == [{"symbol": s, "n": pq.read_metadata(f).num_rows} for s, f in FILES.items()]
    for proc in (catalog_only, candles):
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"Warning: skipping {bad} in the candles view: "), line
    assert bad.read_bytes() != b"" or kind == "empty", "the bad file is left as it is"


def test_only_bad_files_give_an_empty_candles_view_not_the_sample(data_dir: Path):
    (data_dir / "candles").mkdir()
    _write_bad_file(data_dir / "candles" / "tBTCUSD_1m.parquet", "truncated")
    console = _console(data_dir)
    assert console.query("SELECT count(*) AS n FROM candles").to_pylist() == [{"n": 0}]
    assert console.note is None
    assert len(console.warnings) == 1 and "tBTCUSD_1m.parquet" in console.warnings[0]
    assert console.query("DESCRIBE candles").column("column_name").to_pylist() == CANDLE_COLUMNS


def _duckdb_names(console: Console, query: str) -> list[str]:
    """The names DuckDB itself gives the same columns when the query is a subquery (a, a_1, ...)."""
    return console.query(f"SELECT * FROM ({query})").column_names


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_cli_keeps_every_column_with_duplicate_names(btc_store: Path, tmp_path: Path, fmt: str):
    for symbol in FILES:
        Catalog(btc_store / "genesis.db").record_dataset(
            symbol=symbol, timeframe="1m", path=btc_store / "candles" / f"{symbol}_1m.parquet",
            num_candles=pq.read_metadata(FILES[symbol]).num_rows, first_ts=None, last_ts=None, source="test")
    literal = "SELECT 1 AS a, 2 AS a, 3 AS A, 4 AS a_1"
    self_join = ("SELECT * FROM datasets d1 JOIN datasets d2 ON d1.symbol < d2.symbol")
    console = _console(btc_store)
    for query in (literal, self_join):
        names = _duckdb_names(console, query)
        assert len(set(n.lower() for n in names)) == len(names)
        expected = console.query(f"SELECT * FROM ({query})").to_pylist()
        out = tmp_path / f"out.{fmt}"
        args = ["sql", query, "--format", fmt] + (["--output", str(out)] if fmt == "parquet" else [])
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        if fmt == "table":
            header, rule, *rows = proc.stdout.splitlines()
            assert header.split() == names
            assert len(rule.split()) == len(names)
            assert rows[-1] == "(1 row)"
            assert all(str(v) in rows[0] for v in expected[0].values() if v is not None)
        elif fmt == "csv":
            got = list(csv.reader(proc.stdout.splitlines()))
            assert got[0] == names
            assert got[1] == ["" if v is None else str(v) for v in expected[0].values()]
        elif fmt == "json":
            assert json.loads(proc.stdout) == expected
            assert list(json.loads(proc.stdout)[0]) == names
        else:
            table = pq.read_table(out)
            assert table.column_names == names
            assert table.to_pylist() == expected
    console.close()


def test_duplicate_names_through_the_api(btc_store: Path):
    t = _console(btc_store).query("SELECT 1 AS a, 2 AS a, 3 AS a")
    assert t.column_names == ["a", "a_1", "a_2"]
    assert t.to_pylist() == [{"a": 1, "a_1": 2, "a_2": 3}]


def test_duckdb_temp_files_stay_inside_the_store(btc_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cwd = tmp_path / "work"
    (cwd / ".tmp").mkdir(parents=True)  # DuckDB's default temp folder, relative to the working directory
    (cwd / ".tmp" / "secret.csv").write_text("secret,1\n", encoding="utf-8")
    monkeypatch.chdir(cwd)
    console = _console(btc_store)
    (row,) = console.query("SELECT current_setting('temp_directory') AS temp, "
                           "current_setting('allowed_directories') AS dirs").to_pylist()
    store = btc_store.resolve()
    assert Path(row["temp"]).is_absolute() and Path(row["temp"]).resolve().is_relative_to(store), row["temp"]
    assert row["dirs"] and all(Path(d).resolve().is_relative_to(store) for d in row["dirs"]), row["dirs"]
    assert not any(cwd.resolve().is_relative_to(Path(d).resolve()) for d in row["dirs"])
    for path in (".tmp/secret.csv", str(cwd / ".tmp" / "secret.csv")):
        with pytest.raises(ConsoleError, match="reads only the store"):
            console.query(f"SELECT * FROM read_csv('{path}')")
    console.close()
    assert not (store / ".tmp").exists() or not any((store / ".tmp").iterdir()), "no temp files are left behind"


def test_no_temp_folder_for_a_store_folder_that_does_not_exist(tmp_path: Path):
    console = _console(tmp_path / "absent")
    (row,) = console.query("SELECT current_setting('temp_directory') AS temp, "
                           "current_setting('allowed_directories') AS dirs").to_pylist()
    assert row["temp"] == ""
    sample = CandleStore.sample().candles_dir.resolve()
    assert [Path(d).resolve() for d in row["dirs"]] == [sample]
    assert not (tmp_path / "absent").exists()


def test_cli_self_join_of_runs_keeps_every_column(btc_store: Path, tmp_path: Path):
    backtest = run_cli("backtest", "strategy=ema_rsi", "timeframe=1h", "--no-report", cwd=tmp_path)
    assert backtest.returncode == 0, backtest.stderr
    runs = Catalog(btc_store / "genesis.db").read_tables()["runs"]
    query = "SELECT * FROM runs r1 JOIN runs r2 USING (created_at)"  # USING keeps one created_at
    per_side = [n for n in runs.column_names if n != "created_at"]
    expected = ["created_at", *[n for n in runs.column_names if n != "created_at"],
                *[f"{n}_1" for n in per_side]]
    proc = run_cli("sql", query, "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    header, row = list(csv.reader(proc.stdout.splitlines()))
    assert sorted(header) == sorted(expected) and len(header) == 2 * runs.num_columns - 1
    values = dict(zip(header, row, strict=True))
    assert all(values[n] == values[f"{n}_1"] for n in per_side)
    out = tmp_path / "self_join.parquet"
    assert run_cli("sql", query, "--format", "parquet", "--output", str(out)).returncode == 0
    assert pq.read_table(out).column_names == header
    table = run_cli("sql", query, "--format", "table")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == header

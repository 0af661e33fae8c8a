"""Where commands write: never into the store's own files, sibling names from the full stem, unique
default names, every config field in the ``runs`` table, one-line errors for unwritable outputs and for
strategy plugins that raise. Real processes, real files, a real SQLite catalog."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, run_cli

from genesis_fw._util import staged_files
from genesis_fw.backtest import engine, runs
from genesis_fw.backtest.runs import output_paths
from genesis_fw.catalog import MIGRATIONS, Catalog
from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore
from genesis_fw.data.timeframes import from_ms
from genesis_fw.errors import ConfigError, OutputError

#: Schema version of catalogs written before run configs had their own columns.
OLD_SCHEMA_VERSION = 4


def _one_error(proc, code: int = 1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def _runs(store: Path) -> list[tuple]:
    with sqlite3.connect(store / "genesis.db") as con:
        return con.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- the store's own files ----------------------------------------------------------------------


def test_managed_paths_rule(tmp_path: Path):
    store = CandleStore.open(tmp_path / "data")
    (tmp_path / "data" / "candles").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data")
    for inside in ("data/genesis.db", "data/genesis.db-wal", "data/genesis.db-shm", "data/genesis.db-journal",
                   "data/candles", "data/candles/tBTCUSD_1h.parquet", "data/candles/versions/x.parquet",
                   "data/metadata/tBTCUSD_1m.json", "data/features/f.parquet", "link/genesis.db",
                   "link/candles/../metadata/x.json", "elsewhere/../data/candles/x.csv", "data/.fetch_window"):
        with pytest.raises(OutputError, match="inside the store's own files"):
            store.check_output(tmp_path / inside)
    for outside in ("data/report.csv", "data/genesis.db.html", "data/candles.csv", "results/bt.html",
                    "datax/candles/x.csv"):
        store.check_output(tmp_path / outside)  # no error


@pytest.fixture
def store_in_cwd(tmp_path: Path) -> Path:
    """``<tmp>/data`` holding the two-day BTC file and a catalog with one run; commands run in ``<tmp>``."""
    data = tmp_path / "data"
    (data / "candles").mkdir(parents=True)
    shutil.copy(BTC_2D, data / "candles" / "tBTCUSD_1m.parquet")
    proc = run_cli("--data-dir", "data", "backtest", "--no-report", "--output", "results/first.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return data


@pytest.mark.parametrize("args", [
    ["backtest", "--output", "data/genesis.db"],
    ["backtest", "--output", "data/genesis.db-wal"],
    ["backtest", "--no-report", "--output", "data/candles/bt.html"],
    ["backtest", "--output", "./results/../data/metadata/bt.html"],
    ["backtest", "--output", "link/genesis.db"],
    ["backtest", "output=data/genesis.db"],
    ["sql", "SELECT * FROM candles WHERE timestamp < '2019-04-01 01:00'", "--format", "parquet", "--output",
     "data/candles/tBTCUSD_1h.parquet"],
    ["sql", "SELECT 1 AS a", "--format", "csv", "--output", "data/genesis.db"],
    ["sql", "SELECT 1 AS a", "--format", "json", "--output", "link/candles/tBTCUSD_1m.parquet"],
    ["validate", "--symbol", "tBTCUSD", "--timeframe", "1m", "--report-dir", "data/candles"],
    ["validate", "--symbol", "tBTCUSD", "--timeframe", "1m", "--report-dir", "link/metadata/versions"],
])
def test_outputs_into_the_store_are_refused(store_in_cwd: Path, tmp_path: Path, args):
    (tmp_path / "link").symlink_to(store_in_cwd)
    before = _snapshot(store_in_cwd)
    line = _one_error(run_cli("--data-dir", "data", *args, cwd=tmp_path))
    assert "inside the store's own files" in line and "choose another path" in line, line
    assert _snapshot(store_in_cwd) == before  # catalog, candles, metadata untouched
    assert len(_runs(store_in_cwd)) == 1


def test_outputs_next_to_the_store_are_allowed(store_in_cwd: Path, tmp_path: Path):
    proc = run_cli("--data-dir", "data", "sql", "SELECT count(*) AS n FROM runs", "--format", "csv",
                   "--output", "data/runs.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (store_in_cwd / "runs.csv").read_text().splitlines() == ["n", "1"]
    proc = run_cli("--data-dir", "data", "validate", "--symbol", "tBTCUSD", "--timeframe", "1m", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # the default report folder is the store's metadata/
    assert (store_in_cwd / "metadata" / "tBTCUSD_1m.quality.json").is_file()


# --- names of a run's files ----------------------------------------------------------------------


def test_sibling_names_keep_the_full_stem():
    assert output_paths(Path("results/ema_sl0.02.html")) == {
        "report": Path("results/ema_sl0.02.html"),
        "summary": Path("results/ema_sl0.02.json"),
        "trades": Path("results/ema_sl0.02.trades.csv"),
        "equity": Path("results/ema_sl0.02.equity.csv"),
    }
    assert output_paths(Path("r/v1.5"))["summary"] == Path("r/v1.5.json")  # no .html: the whole name is the stem
    assert output_paths(Path("r/A.HTML"))["trades"] == Path("r/A.trades.csv")


def test_outputs_with_dots_in_the_name_do_not_overwrite_each_other(btc_store: Path, tmp_path: Path):
    for sl in ("0.02", "0.03"):
        proc = run_cli("backtest", f"stop_loss={sl}", "--no-report", "--output", str(tmp_path / f"ema_sl{sl}.html"))
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "ema_sl0.02.equity.csv", "ema_sl0.02.json", "ema_sl0.02.trades.csv",
        "ema_sl0.03.equity.csv", "ema_sl0.03.json", "ema_sl0.03.trades.csv",
    ]
    for sl in ("0.02", "0.03"):
        assert json.loads((tmp_path / f"ema_sl{sl}.json").read_text())["config"]["stop_loss"] == float(sl)


def test_default_output_names_are_unique_per_run(btc_store: Path, tmp_path: Path):
    for _ in range(2):
        proc = run_cli("backtest", "--no-report", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    summaries = sorted((tmp_path / "results").glob("*.json"))
    assert len(summaries) == 2
    with sqlite3.connect(btc_store / "genesis.db") as con:
        rows = con.execute("SELECT run_id, outputs FROM runs").fetchall()
    assert len(rows) == 2
    for run_id, outputs in rows:
        paths = json.loads(outputs)
        assert run_id in Path(paths["summary"]).name
        saved = json.loads((tmp_path / paths["summary"]).read_text())
        assert saved["run_id"] == run_id  # each catalog row still points at its own files
        assert (tmp_path / paths["equity"]).is_file() and (tmp_path / paths["trades"]).is_file()


# --- every config field in the runs table ------------------------------------------------------------

CONFIG_COLUMNS = ("symbol", "timeframe", "start", "end", "initial_cash", "commission", "slippage_bps", "size",
                  "max_leverage", "stop_loss", "take_profit", "params", "config")


def test_runs_record_every_config_field_as_columns(btc_store: Path, tmp_path: Path):
    args = ["strategy.fast=10", "size=0.5", "max_leverage=2", "stop_loss=0.02", "take_profit=0.04",
            "initial_cash=5000", "commission=0.001", "slippage=3", "--start", "2019-04-01T06:00", "--end",
            "2019-04-02"]
    assert run_cli("backtest", *args, "--no-report", "--output", str(tmp_path / "a.html")).returncode == 0
    assert run_cli("backtest", "size=0.25", "--no-report", "--output", str(tmp_path / "b.html")).returncode == 0
    cols = ", ".join(f'"{c}"' for c in CONFIG_COLUMNS)
    proc = run_cli("sql", f"SELECT {cols} FROM runs ORDER BY size DESC", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    a, b = json.loads(proc.stdout)
    assert {k: a[k] for k in CONFIG_COLUMNS[:-2]} == {
        "symbol": "tBTCUSD", "timeframe": "1m", "start": "2019-04-01T06:00", "end": "2019-04-02",
        "initial_cash": 5000.0, "commission": 0.001, "slippage_bps": 3.0, "size": 0.5, "max_leverage": 2.0,
        "stop_loss": 0.02, "take_profit": 0.04}
    assert json.loads(a["params"])["fast"] == 10
    saved = json.loads((tmp_path / "a.json").read_text())["config"]
    assert json.loads(a["config"]) == saved
    assert (b["size"], b["stop_loss"], b["take_profit"], b["initial_cash"]) == (0.25, None, None, 10_000.0)


def _old_catalog(path: Path) -> None:
    """A catalog exactly as the schema before this change created it, holding one run."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    for step in MIGRATIONS[:OLD_SCHEMA_VERSION]:
        con.executescript(step)
    con.execute(f"PRAGMA user_version = {OLD_SCHEMA_VERSION}")
    con.execute(
        "INSERT INTO runs VALUES ('old-run', '2026-01-01T00:00:00.000+00:00', 'ema_rsi', '{}', 'tBTCUSD', '1m', "
        "NULL, NULL, '2019-04-01T00:00:00+00:00', '2019-04-02T23:59:00+00:00', 2880, 'store', 'abc', 'fast', "
        "'0.1.0', 0.002, 0.0, 0.01, 1.0, -0.02, 3, '{}', '{}')")
    con.close()


def test_an_old_catalog_is_upgraded_in_place_and_keeps_its_runs(btc_store: Path, tmp_path: Path):
    _old_catalog(btc_store / "genesis.db")
    with sqlite3.connect(btc_store / "genesis.db") as con:
        assert "size" not in [r[1] for r in con.execute("PRAGMA table_info(runs)")]
    proc = run_cli("backtest", "size=0.5", "--no-report", "--output", str(tmp_path / "bt.html"))
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(btc_store / "genesis.db") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        rows = con.execute("SELECT run_id, size, total_return FROM runs ORDER BY created_at").fetchall()
    assert rows[0] == ("old-run", None, 0.01)
    assert rows[1][0] != "old-run" and rows[1][1] == 0.5
    out = run_cli("sql", "SELECT run_id, size FROM runs ORDER BY created_at", "--format", "json")
    assert json.loads(out.stdout)[0] == {"run_id": "old-run", "size": None}
    assert Catalog(btc_store / "genesis.db").tables()  # still readable through the normal path


# --- unwritable outputs ------------------------------------------------------------------------------


@pytest.fixture
def locked_dir(tmp_path: Path):
    """A folder nobody can create files in: mode 0555, and for root (who ignores modes) immutable."""
    d = tmp_path / "locked"
    d.mkdir()
    with _unwritable(d, 0o555, 0o755):
        yield d


@contextlib.contextmanager
def _unwritable(path: Path, mode: int, restore: int):
    """``path`` made unwritable for the test: ``mode``, and for root (who ignores modes) ``chattr +i``;
    the test is skipped where neither works. Restored to ``restore`` afterwards."""
    path.chmod(mode)
    immutable = False
    if os.access(path, os.W_OK):  # root
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            path.chmod(restore)
            pytest.skip(f"cannot make {path.name} unwritable here")
        immutable = True
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(restore)


@pytest.mark.parametrize("command", [["backtest", "--no-report"], ["sql", "SELECT 1 AS a", "--format", "csv"],
                                     ["backtest"]])
def test_unwritable_outputs_are_one_line_errors(btc_store: Path, tmp_path: Path, locked_dir: Path, command):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir.html").mkdir()
    (tmp_path / "a_dir.json").mkdir()  # what backtest --no-report writes first
    cases = [
        (locked_dir / "bt.html", str(locked_dir / "bt."), "not writable"),
        (tmp_path / "a_file" / "bt.html", str(tmp_path / "a_file" / "bt."), "is not a folder"),
        (tmp_path / "a_dir.html", str(tmp_path / "a_dir."), "is a folder"),
    ]
    for target, named, reason in cases:
        line = _one_error(run_cli(*command, "--output", str(target)))
        assert f"cannot write {named}" in line and reason in line, line
    assert list(locked_dir.iterdir()) == []
    assert not (btc_store / "genesis.db").exists() or _runs(btc_store) == []  # no run recorded without its files


# --- strategy plugins that raise ---------------------------------------------------------------------

_RAISING = '''
import attrs
import numpy as np

from genesis_fw.strategy import Strategy


def _method(_inst, _attr, value):
    if value == "params":
        raise LookupError("params")  # a buggy validator: not the ValueError attrs validators use


def _at(_inst, _attr, value):
    if value < 0:
        raise ValueError(f"at must be >= 0, got {value}")


@attrs.frozen
class Params:
    method: str = attrs.field(default="next", validator=_method)
    at: int = attrs.field(default=7, validator=_at)


class Raising(Strategy):
    """Raises inside the method its parameters name."""

    Params = Params

    def __init__(self, params=None):
        super().__init__(params)
        if self.params.method == "constructor":
            raise RuntimeError("no licence key")

    def init(self, bars):
        if self.params.method == "init":
            raise ValueError("indicator window longer than the data")

    def next(self, i):
        if self.params.method == "next" and i == self.params.at:
            return 1 / 0
        return None

    def targets(self, bars):
        if self.params.method == "targets":
            raise KeyError("rsi")
        return np.full(len(bars), np.nan)
'''


@pytest.fixture
def raising_plugin(tmp_path: Path) -> dict[str, str]:
    """An installed-looking distribution (dist-info with an entry point) whose strategy raises."""
    site = tmp_path / "site"
    info = site / "genesis_fw_raising-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genesis-fw-raising\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[genesis_fw.strategies]\nraising = genesis_fw_raising:Raising\n")
    (site / "genesis_fw_raising.py").write_text(textwrap.dedent(_RAISING))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("command", ["backtest", "config"])
@pytest.mark.parametrize(("override", "expected"), [
    ("strategy.method=constructor", "strategy 'raising' (genesis-fw-raising 0.0.1) raised in __init__(): "
                                    "RuntimeError: no licence key"),
    ("strategy.method=params", "strategy 'raising' (genesis-fw-raising 0.0.1) raised in Params(): "
                               "LookupError: params"),
    ("strategy.at=-1", "strategy 'raising' (genesis-fw-raising 0.0.1): at must be >= 0, got -1"),
])
def test_a_strategy_that_cannot_be_built_is_a_one_line_error(btc_store, raising_plugin, command, override, expected):
    args = [command, "strategy=raising", override] + (["--no-report"] if command == "backtest" else [])
    proc = subprocess.run([sys.executable, "-m", "genesis_fw", *args], capture_output=True, text=True,
                          env=raising_plugin, timeout=300)
    assert _one_error(proc) == f"Error: {expected}"


@pytest.mark.parametrize(("method", "engine", "expected"), [
    ("init", "auto", "strategy 'raising' (genesis-fw-raising 0.0.1) raised in init(): ValueError: indicator window "
                     "longer than the data"),
    ("targets", "auto", "strategy 'raising' (genesis-fw-raising 0.0.1) raised in targets(): KeyError: 'rsi'"),
    ("next", "per-bar", "strategy 'raising' (genesis-fw-raising 0.0.1) raised in next() at bar 7 ({time}): "
                        "ZeroDivisionError: division by zero"),
])
def test_a_strategy_that_raises_is_a_one_line_error(btc_store, tmp_path, raising_plugin, method, engine, expected):
    ts = pq.read_table(BTC_2D, columns=["timestamp"]).column("timestamp").cast(pa.int64())
    expected = expected.format(time=from_ms(ts[7].as_py()).isoformat())
    args = ("backtest", "strategy=raising", f"strategy.method={method}", "--engine", engine, "--no-report",
            "--output", str(tmp_path / "bt.html"))
    line = _one_error(subprocess.run([sys.executable, "-m", "genesis_fw", *args], capture_output=True, text=True,
                                     env=raising_plugin, timeout=300))
    assert line == f"Error: {expected}"
    debug = subprocess.run([sys.executable, "-m", "genesis_fw", "--debug", *args], capture_output=True, text=True,
                           env=raising_plugin, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "genesis_fw_raising.py" in debug.stderr  # the plugin's own frame is shown
    assert not (tmp_path / "bt.json").exists()


# --- saving a run is all or nothing ------------------------------------------------------------------

PREVIOUS = {"x.json": "previous summary\n", "x.trades.csv": "previous trades\n", "x.equity.csv": "previous equity\n",
            "x.html": "previous report\n"}


def _put_previous(folder: Path) -> None:
    for name, text in PREVIOUS.items():
        (folder / name).write_text(text)


def _is_previous(folder: Path) -> bool:
    """Exactly the previous files, untouched, and no temp file left beside them."""
    return sorted(p.name for p in folder.iterdir()) == sorted(PREVIOUS) and all(
        (folder / name).read_text() == text for name, text in PREVIOUS.items())


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 64 KiB tmpfs: too small for a run's files (needs root to mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("previous", [False, True])
def test_a_full_disk_leaves_no_half_written_run(btc_store: Path, tiny_fs: Path, previous: bool):
    if previous:
        _put_previous(tiny_fs)
    line = _one_error(run_cli("backtest", "--output", str(tiny_fs / "x.html")))
    assert "No space left on device" in line, line
    if previous:
        assert _is_previous(tiny_fs)
    else:
        assert list(tiny_fs.iterdir()) == []
    assert not (btc_store / "genesis.db").exists() or _runs(btc_store) == []


@pytest.fixture
def frozen_catalog(btc_store: Path, tmp_path: Path):
    """The store's catalog (holding one run) alone made unwritable: 0444, and for root immutable."""
    assert run_cli("backtest", "--no-report", "--output", str(tmp_path / "first.html")).returncode == 0
    db = btc_store / "genesis.db"
    with _unwritable(db, 0o444, 0o644):
        yield db


@pytest.mark.parametrize("previous", [False, True])
def test_an_unwritable_catalog_is_refused_before_any_file_is_written(frozen_catalog: Path, tmp_path: Path,
                                                                     previous: bool):
    out = tmp_path / "out"
    out.mkdir()
    if previous:
        _put_previous(out)
    before = frozen_catalog.read_bytes()
    line = _one_error(run_cli("backtest", "--output", str(out / "x.html")))
    assert "cannot write its catalog" in line, line
    assert _is_previous(out) if previous else list(out.iterdir()) == []
    assert frozen_catalog.read_bytes() == before


def test_a_failing_catalog_insert_removes_the_new_files_and_keeps_the_old(btc_store: Path, tmp_path: Path):
    """The catalog refuses the row only once every file is written (a real SQLite trigger): nothing of the
    run stays, and the files the run would have replaced are back as they were."""
    first = tmp_path / "first.html"
    assert run_cli("backtest", "--no-report", "--output", str(first)).returncode == 0
    with sqlite3.connect(btc_store / "genesis.db") as con:
        con.execute("CREATE TRIGGER no_more_runs BEFORE INSERT ON runs BEGIN "
                    "SELECT RAISE(ABORT, 'the catalog refuses this run'); END")
    out = tmp_path / "out"
    out.mkdir()
    _put_previous(out)
    line = _one_error(run_cli("backtest", "--output", str(out / "x.html")))
    assert "the catalog refuses this run" in line, line
    assert _is_previous(out)
    assert len(_runs(btc_store)) == 1


def test_an_initial_cash_beyond_float_range_is_refused_up_front(btc_store: Path, tmp_path: Path):
    out = tmp_path / "out"
    line = _one_error(run_cli("backtest", "initial_cash=1e308", "--output", str(out / "x.html")))
    assert "initial_cash must be <= " in line, line
    assert not out.exists()
    assert not (btc_store / "genesis.db").exists() or _runs(btc_store) == []


def test_non_finite_results_are_refused_before_anything_is_written(btc_store: Path, tmp_path: Path):
    """A run whose equity overflowed (prices or leverage beyond float range) is never written or recorded."""
    store = CandleStore.open(btc_store)
    result = engine.run(RuntimeConfig.load(None, {}), store)
    equity = result.equity.copy()
    equity[100:] = np.inf
    out = tmp_path / "out"
    out.mkdir()
    _put_previous(out)
    with pytest.raises(ConfigError, match=r"equity is not finite \(inf or NaN\) from bar 100 .*nothing was written"):
        runs.save(attrs.evolve(result, equity=equity), out / "x.html", store=store)
    assert _is_previous(out)
    assert not (btc_store / "genesis.db").exists() or _runs(btc_store) == []
    runs.save(result, out / "x.html", store=store)  # the same run, finite, is saved
    assert json.loads((out / "x.json").read_text())["run_id"] == result.run_id


# --- an explicit --output that an earlier run's files have --------------------------------------------


def _run_rows(store: Path) -> list[dict]:
    with sqlite3.connect(store / "genesis.db") as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT run_id, outputs, replaced_by FROM runs ORDER BY created_at")]


def test_replacing_the_files_of_an_earlier_run_is_noted_and_recorded(btc_store: Path, tmp_path: Path):
    (tmp_path / "results").mkdir()
    first = run_cli("backtest", "--output", "results/bt.html", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli("backtest", "stop_loss=0.02", "--no-report", "--output", str(tmp_path / "results" / "bt.html"))
    assert second.returncode == 0, second.stderr
    old, new = _run_rows(btc_store)
    notes = [ln for ln in second.stderr.splitlines() if old["run_id"] in ln]
    assert len(notes) == 1 and notes[0].startswith("Note: ") and new["run_id"] in notes[0], second.stderr
    assert old["replaced_by"] == new["run_id"] and new["replaced_by"] is None
    # the older row keeps only its report, which the second run (--no-report) did not replace
    assert list(json.loads(old["outputs"])) == ["report"]
    assert (tmp_path / json.loads(old["outputs"])["report"]).is_file()
    for kind, path in json.loads(new["outputs"]).items():
        if kind == "summary":
            assert json.loads(Path(path).read_text())["run_id"] == new["run_id"]
        assert Path(path).is_file()
    third = run_cli("backtest", "--no-report", "--output", str(tmp_path / "results" / "other.html"))
    assert third.returncode == 0 and "Note: " not in third.stderr.replace("Note: no", ""), third.stderr
    assert [r["replaced_by"] for r in _run_rows(btc_store)] == [new["run_id"], None, None]


#: Schema version of catalogs written before runs recorded which run replaced their files.
NO_REPLACED_BY_VERSION = 5


def test_a_catalog_without_replaced_by_is_upgraded_and_its_runs_can_be_replaced(btc_store: Path, tmp_path: Path):
    db = btc_store / "genesis.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    for step in MIGRATIONS[:NO_REPLACED_BY_VERSION]:
        con.executescript(step)
    con.execute(f"PRAGMA user_version = {NO_REPLACED_BY_VERSION}")
    old_outputs = {k: str(v) for k, v in output_paths(tmp_path / "bt.html").items()}
    con.execute(
        "INSERT INTO runs (run_id, created_at, strategy, params, symbol, timeframe, first_bar, last_bar, num_bars, "
        "data_origin, data_sha256, engine_path, engine_version, commission, slippage_bps, metrics, outputs) "
        "VALUES ('old-run', '2026-01-01T00:00:00.000+00:00', 'ema_rsi', '{}', 'tBTCUSD', '1m', "
        "'2019-04-01T00:00:00+00:00', '2019-04-02T23:59:00+00:00', 2880, 'store', 'abc', 'fast', '0.1.0', "
        "0.002, 0.0, '{}', ?)", (json.dumps(old_outputs),))
    con.close()
    proc = run_cli("backtest", "--output", str(tmp_path / "bt.html"))
    assert proc.returncode == 0, proc.stderr
    assert "old-run" in proc.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    old, new = _run_rows(btc_store)
    assert (old["run_id"], old["replaced_by"], json.loads(old["outputs"])) == ("old-run", new["run_id"], {})


# --- the bundled sample is protected like the store ----------------------------------------------------


def test_the_bundled_sample_is_a_managed_path(tmp_path: Path):
    sample = CandleStore.sample().root
    store = CandleStore.open(tmp_path / "data")
    for inside in (sample / "tBTCUSD_1m.parquet", sample / "README.md", sample / "new.csv", sample):
        assert store.is_managed(inside)
        with pytest.raises(OutputError, match="bundled sample"):
            store.check_output(inside)
    store.check_output(sample.parent / "sample.csv")  # next to it is fine


def test_sql_output_onto_the_bundled_sample_is_refused(tmp_path: Path):
    """Against a copy of the package (first on PYTHONPATH), so even a regression cannot touch the real sample."""
    pkg = Path(CandleStore.sample().root).parent
    site = tmp_path / "site"
    shutil.copytree(pkg, site / pkg.name, ignore=shutil.ignore_patterns("__pycache__"))
    copied_sample = site / pkg.name / "sample"
    (tmp_path / "data").mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               GENESIS_DATA_DIR=str(tmp_path / "data"))
    probe = subprocess.run([sys.executable, "-c", "from genesis_fw.data.store import CandleStore as C; "
                            "print(C.sample().root)"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert Path(probe.stdout.strip()) == copied_sample, probe  # the subprocesses use the copy
    target = copied_sample / "tBTCUSD_1m.parquet"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in copied_sample.iterdir()}
    for args in (["sql", "SELECT 1 AS a", "--format", "csv", "--output", str(target)],
                 ["sql", "SELECT 1 AS a", "--format", "parquet", "--output", str(copied_sample / "x.parquet")],
                 ["backtest", "--no-report", "--output", str(copied_sample / "bt.html")]):
        proc = subprocess.run([sys.executable, "-m", "genesis_fw", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)
        line = _one_error(proc)
        assert "bundled sample" in line and "choose another path" in line, line
        after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in copied_sample.iterdir()}
        assert after == before  # byte-identical, never rewritten, nothing added


def test_staged_files_put_the_previous_files_back_when_a_later_step_fails(tmp_path: Path):
    """What save() relies on when the catalog commit fails after the renames."""
    _put_previous(tmp_path)
    with pytest.raises(RuntimeError, match="commit failed"), staged_files() as staged:
        for name in ("x.json", "x.trades.csv", "y.csv"):
            staged.temp(tmp_path / name).write_text("new\n")
        staged.place()
        assert (tmp_path / "x.json").read_text() == "new\n" and (tmp_path / "y.csv").is_file()
        raise RuntimeError("commit failed")
    assert _is_previous(tmp_path)  # previous files back, y.csv (new) gone, no temp or backup left
    with staged_files() as staged:
        staged.temp(tmp_path / "x.json").write_text("new\n")
        staged.place()
    assert (tmp_path / "x.json").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PREVIOUS)

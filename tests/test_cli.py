"""CLI conventions: exit codes, one-line errors, --debug, the data-dir option and its environment variable."""

from __future__ import annotations

import json

import pytest
from bitfinex_server import BitfinexServer
from conftest import BTC_2D, run_cli


def test_usage_errors_exit_2_with_one_line(data_dir):
    proc = run_cli("sql")  # neither QUERY nor --file
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["Error: give either a QUERY argument or --file FILE (one of them)"]
    proc = run_cli("sql", "SELECT 1", "--format", "xml")  # click's own usage error
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_failures_exit_1_and_debug_shows_the_traceback(data_dir):
    plain = run_cli("backtest", "strategy=nope", "--no-report")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    (line,) = plain.stderr.strip().splitlines()
    assert line.startswith("Error: unknown strategy 'nope'; available: ") and "ema_rsi" in line
    debug = run_cli("--debug", "backtest", "strategy=nope", "--no-report")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "PluginError: unknown strategy 'nope'" in debug.stderr


def test_data_dir_option_beats_the_environment_variable(btc_store, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    via_env = run_cli("sql", "SELECT count(DISTINCT symbol) AS n FROM candles", "--format", "json")
    assert json.loads(via_env.stdout) == [{"n": 2}]  # GENESIS_DATA_DIR = btc_store (two symbols)
    via_flag = run_cli("--data-dir", str(other), "sql", "SELECT count(DISTINCT symbol) AS n FROM candles",
                       "--format", "json")
    assert json.loads(via_flag.stdout) == [{"n": 1}]  # empty store: the bundled sample (tBTCUSD only)
    assert "bundled sample" in via_flag.stderr


def test_version(data_dir):
    """One version everywhere: the package metadata, ``genesis_fw.__version__`` (recorded with every run
    as its engine version) and ``--version``."""
    from importlib.metadata import version

    import genesis_fw

    proc = run_cli("--version")
    assert version("genesis-fw") == genesis_fw.__version__
    assert proc.returncode == 0 and genesis_fw.__version__ in proc.stdout


READERS = {
    "sql": ["sql", "SELECT count(*) AS n FROM candles"],
    "backtest": ["backtest", "strategy=ema_rsi", "--no-report"],
    "validate": ["validate", "--symbol", "tBTCUSD", "--timeframe", "1m"],
    "datasets list": ["datasets", "list"],
    "datasets prune": ["datasets", "prune"],
    "resample": ["resample", "--symbol", "tBTCUSD", "--to", "1h"],
}


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("command", list(READERS))
def test_a_data_dir_that_does_not_exist_is_an_error_for_commands_that_need_a_store(tmp_path, monkeypatch,
                                                                                   command, how):
    missing = tmp_path / "mistyped"
    monkeypatch.setenv("GENESIS_DATA_DIR", str(missing))
    args = (["--data-dir", str(missing)] if how == "option" else []) + READERS[command]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: the data folder {missing} does not exist"
                                                " (check --data-dir or $GENESIS_DATA_DIR; fetch and import create it)"]
    assert proc.stdout == ""
    assert not missing.exists()
    assert not (tmp_path / "results").exists()


def test_import_creates_a_data_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "new" / "store"
    proc = run_cli("--data-dir", str(missing), "import", str(BTC_2D), "--symbol", "tBTCUSD", "--timeframe", "1m")
    assert proc.returncode == 0, proc.stderr
    assert (missing / "candles" / "tBTCUSD_1m.parquet").is_file()


def test_fetch_creates_a_data_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "new" / "store"
    with BitfinexServer() as server:
        proc = run_cli("--data-dir", str(missing), "fetch", "--symbol", "tBTCUSD", "--timeframe", "1h",
                       "--start", "2019-04-01", "--end", "2019-04-02", "--base-url", server.url, "--quiet",
                       "--rate-limit", "6000")
    assert proc.returncode == 0, proc.stderr
    assert (missing / "candles" / "tBTCUSD_1h.parquet").is_file()


def test_a_missing_default_data_folder_still_falls_back_to_the_sample(tmp_path, monkeypatch):
    """No --data-dir and no $GENESIS_DATA_DIR: ./data is optional, the bundled sample stands in."""
    monkeypatch.delenv("GENESIS_DATA_DIR", raising=False)
    proc = run_cli("sql", "SELECT count(DISTINCT symbol) AS n FROM candles", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 1}] and "bundled sample" in proc.stderr
    assert not (tmp_path / "data").exists(), "reading must not create the default store"
    backtest = run_cli("backtest", "strategy=ema_rsi", "--no-report", cwd=tmp_path)
    assert backtest.returncode == 0, backtest.stderr
    assert "bundled sample" in backtest.stderr


@pytest.mark.parametrize("override", ["features.rsi_period=7", "model=lgbm", "model.C=0.1", "train.horizon=5"])
def test_backtest_refuses_settings_it_does_not_use(tmp_path, override):
    """A backtest neither computes features from the config nor trains: such overrides would be recorded in
    the run as if they had mattered."""
    out = tmp_path / "res" / "bt.html"
    proc = run_cli("backtest", override, "--no-report", "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "has no effect here" in errors[0] and "Traceback" not in proc.stderr
    assert not out.parent.exists()

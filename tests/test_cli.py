"""CLI conventions: exit codes, one-line errors, --debug, the data-dir option and its environment variable."""

from __future__ import annotations

import json

from conftest import run_cli


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
    proc = run_cli("--version")
    assert proc.returncode == 0 and "0.1.0" in proc.stdout

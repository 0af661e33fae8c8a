"""Shared fixtures: small real candle files and a throw-away store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
#: Two days (2019-04-01 .. 2019-04-02 UTC) of real Bitfinex 1m candles; minutes without trades are absent.
BTC_2D = DATA / "tBTCUSD_1m_2019-04-01_2d.parquet"
ETH_2D = DATA / "tETHUSD_1m_2019-04-01_2d.parquet"


@pytest.fixture(autouse=True)
def _audit_log_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and its subprocesses) mirrors the registry's audit log into its own temp folder, never
    into the working directory's ``logs/``."""
    monkeypatch.setenv("GENESIS_AUDIT_LOG", str(tmp_path / "logs" / "champion_selection.jsonl"))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store folder; ``GENESIS_DATA_DIR`` points at it for the test and its subprocesses."""
    d = tmp_path / "store"
    d.mkdir()
    monkeypatch.setenv("GENESIS_DATA_DIR", str(d))
    return d


@pytest.fixture
def btc_store(data_dir: Path) -> Path:
    """A store holding the two-day tBTCUSD and tETHUSD 1m files."""
    (data_dir / "candles").mkdir()
    shutil.copy(BTC_2D, data_dir / "candles" / "tBTCUSD_1m.parquet")
    shutil.copy(ETH_2D, data_dir / "candles" / "tETHUSD_1m.parquet")
    return data_dir


@pytest.fixture
def local_zone_new_york(monkeypatch):
    """Make the process's local time zone America/New_York, so local-time mistakes show."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``genesis-fw`` as a real process (``python -m genesis_fw``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "genesis_fw", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def cli_env(tmp: Path, store: Path | None = None) -> dict[str, str]:
    """The environment of a CLI process: the store ``store`` (default ``tmp/store``), models in ``tmp/models``."""
    env = dict(os.environ)
    env["GENESIS_DATA_DIR"] = str(store or tmp / "store")
    env["GENESIS_MODELS_DIR"] = str(tmp / "models")
    return env


def cli_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``proc`` after checking it exited 0 without a traceback."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess, *expected: str, notes_only: bool = True) -> str:
    """The one ``Error: ...`` line of a CLI process that exited 1 without a traceback, after checking it holds
    each of ``expected``; with ``notes_only`` every other line of stderr must be a ``Note: ...``."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    if notes_only:
        others = [line for line in proc.stderr.splitlines() if not line.startswith(("Error: ", "Note: "))]
        assert not others, proc.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def chromium(tmp_path: Path):
    """Headless Chromium for one test (tests/browser.py), closed afterwards."""
    from browser import Chromium

    browser = Chromium(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        yield browser
    finally:
        browser.close()

"""The backtest engine end to end: data resolution, strategy paths, outputs, the CLI and bad input."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from genesis_fw.backtest.engine import check_targets, run
from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore
from genesis_fw.errors import DataError, PluginError
from genesis_fw.strategy import Strategy
from genesis_fw.testing import check_strategy, sample_bars
from genesis_fw_strategies.ema_rsi import EmaRsi


def cfg(**values) -> RuntimeConfig:
    return RuntimeConfig.load(None, {k: str(v) for k, v in values.items()})


def test_ema_rsi_honours_the_strategy_contract():
    check_strategy(EmaRsi, sample_bars(8000))


def test_ema_rsi_signals_follow_the_rules_exactly():
    bars = sample_bars(6000)
    s = EmaRsi()
    s.init(bars)
    t = s.targets(bars)
    f, sl, r = s.fast, s.slow, s.rsi
    for i in np.flatnonzero(~np.isnan(t)):
        assert i >= 26
        if t[i] == 1:
            assert f[i] > sl[i] and f[i - 1] <= sl[i - 1] and r[i] < 70
        else:
            assert f[i] < sl[i] and f[i - 1] >= sl[i - 1] and r[i] > 30
    # And every qualifying cross is a signal.
    cross_up = (f[1:] > sl[1:]) & (f[:-1] <= sl[:-1]) & (r[1:] < 70)
    cross_up[:25] = False
    assert np.array_equal(np.flatnonzero(cross_up) + 1, np.flatnonzero(t == 1))


def test_store_data_is_preferred_and_range_is_half_open(btc_store):
    result = run(cfg(start="2019-04-01T06:00", end="2019-04-01T18:00"), CandleStore.open(btc_store))
    assert result.dataset["origin"] == "store" and result.notes == ()
    assert result.dataset["first_bar"] == "2019-04-01T06:00:00+00:00"
    assert result.dataset["last_bar"] < "2019-04-01T18:00:00+00:00"


def test_sample_fallback_and_on_the_fly_resampling_are_reported(data_dir):
    result = run(cfg(timeframe="1h"), CandleStore.open(data_dir))
    assert result.dataset["origin"] == "sample" and result.dataset["resampled_from"] == "1m"
    assert any("bundled sample" in n for n in result.notes)
    assert any("resampling tBTCUSD 1m to 1h" in n for n in result.notes)
    # Independent count of the hours that hold at least one 1m candle (empty hours are absent).
    ts = sample_bars(10**7).timestamp
    assert result.dataset["num_bars"] == np.unique(ts // 3_600_000).size < 91 * 24


def test_weekly_backtest_bars_are_monday_weeks_from_the_first_day_of_data(data_dir):
    """The bundled sample starts on Monday 2019-04-01 00:00 UTC: the first weekly bar opens there, not on the
    Thursday before, and every bar opens on a Monday."""
    from datetime import UTC, datetime

    result = run(cfg(timeframe="1W"), CandleStore.open(data_dir))
    assert result.dataset["resampled_from"] == "1m" and result.dataset["origin"] == "sample"
    first_candle = sample_bars(10**7).timestamp[0]
    assert result.dataset["first_bar"] == datetime.fromtimestamp(first_candle / 1000, UTC).isoformat() \
        == "2019-04-01T00:00:00+00:00"
    opens = [datetime.fromisoformat(t) for t in (result.dataset["first_bar"], result.dataset["last_bar"])]
    assert [d.weekday() for d in opens] == [0, 0] and result.dataset["num_bars"] == 13
    later = run(cfg(timeframe="1W", start="2019-04-03"), CandleStore.open(data_dir))  # a Wednesday
    assert later.dataset["first_bar"] == "2019-04-08T00:00:00+00:00"  # the first week opening in the range


def test_run_is_reproducible_and_identifies_its_data(btc_store):
    a = run(cfg(), CandleStore.open(btc_store))
    b = run(cfg(), CandleStore.open(btc_store))
    assert a.dataset["sha256"] == b.dataset["sha256"] and a.metrics == b.metrics
    c = run(cfg(end="2019-04-02"), CandleStore.open(btc_store))
    assert c.dataset["sha256"] != a.dataset["sha256"]


def test_bad_targets_are_reported_precisely():
    with pytest.raises(PluginError, match="returned 0.5 at bar 2"):
        check_targets([np.nan, 1, 0.5], 3, where="X.targets")
    with pytest.raises(PluginError, match=r"shape \(2,\); expected \(3,\)"):
        check_targets([1, 1], 3, where="X.targets")


class _Bad(Strategy):
    def next(self, i):
        return "buy" if i == 3 else None


def test_per_bar_path_rejects_a_bad_decision():
    from genesis_fw.backtest.engine import decide_per_bar

    with pytest.raises(PluginError, match=r"_Bad.next\(3\) returned 'buy'"):
        decide_per_bar(_Bad(), 10)


class _Peeks(Strategy):
    def init(self, bars):
        self.close = bars.close

    def next(self, i):
        if i + 1 < len(self.close):
            return 1.0 if self.close[i + 1] > self.close[i] else -1.0
        return None


def test_check_strategy_catches_lookahead():
    with pytest.raises(AssertionError, match="looks ahead"):
        check_strategy(_Peeks, sample_bars(2000))


def test_empty_range_and_start_after_end(data_dir):
    store = CandleStore.open(data_dir)
    with pytest.raises(DataError, match="no tBTCUSD 1m .*candles in"):
        run(cfg(start="2024-04-01", end="2024-10-01"), store)
    with pytest.raises(DataError, match="is not before end"):
        run(cfg(start="2019-05-02", end="2019-05-01"), store)
    with pytest.raises(DataError, match="no tETHUSD candles"):
        run(cfg(symbol="tETHUSD"), store)


def test_cli_backtest_writes_outputs_and_records_the_run(btc_store, tmp_path):
    out = tmp_path / "res" / "bt.html"
    proc = run_cli("backtest", "strategy=ema_rsi", "strategy.fast=10", "commission=0", "--output", str(out),
                   "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "Total return" in proc.stdout and "Sharpe" in proc.stdout
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["params"]["fast"] == 10 and summary["config"]["commission"] == 0.0
    assert summary["dataset"]["origin"] == "store" and len(summary["dataset"]["sha256"]) == 64
    trades = list(csv.DictReader(open(out.with_suffix(".trades.csv"))))
    assert len(trades) == summary["metrics"]["num_trades"] > 0
    equity = list(csv.DictReader(open(Path(str(out.with_suffix("")) + ".equity.csv"))))
    assert len(equity) == summary["dataset"]["num_bars"]
    assert float(equity[-1]["equity"]) == pytest.approx(summary["metrics"]["final_equity"])
    assert not out.exists()  # --no-report
    with sqlite3.connect(btc_store / "genesis.db") as con:
        row = con.execute("SELECT strategy, num_trades, data_sha256 FROM runs WHERE run_id = ?",
                          (summary["run_id"],)).fetchone()
    assert row == ("ema_rsi", summary["metrics"]["num_trades"], summary["dataset"]["sha256"])
    # The run is visible from the SQL console too.
    proc = run_cli("sql", "SELECT count(*) AS n FROM runs", "--format", "json")
    assert json.loads(proc.stdout) == [{"n": 1}]


def test_cli_rerun_from_saved_summary_reproduces_the_numbers(btc_store, tmp_path):
    out = tmp_path / "a.html"
    assert run_cli("backtest", "strategy.slow=30", "--output", str(out), "--no-report").returncode == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(saved["config"]))
    out2 = tmp_path / "b.html"
    assert run_cli("backtest", "--config", str(cfg_file), "--output", str(out2), "--no-report").returncode == 0
    again = json.loads(out2.with_suffix(".json").read_text())
    assert again["metrics"] == saved["metrics"] and again["dataset"]["sha256"] == saved["dataset"]["sha256"]


@pytest.mark.parametrize("args,message", [
    (["strategy=nope"], "unknown strategy 'nope'"),
    (["strategy.fast=abc"], "parameter 'strategy.fast': expected integer"),
    (["strategy.fast=40"], "fast (40) must be smaller than slow (26)"),
    (["size=0"], "size must be > 0"),
    (["size=3", "max_leverage=2"], "size 3.0 exceeds max_leverage 2.0"),
    (["--start", "2019-05-02", "--end", "2019-05-01"], "is not before end"),
    (["--start", "yesterday"], "invalid start 'yesterday'"),
    (["--symbol", "../../etc"], "invalid symbol '../../etc'"),
    (["--timeframe", "2m"], "unknown timeframe '2m'"),
    (["--start", "2030-01-01"], "no tBTCUSD 1m"),
    (["fast=10"], "unknown config key 'fast'"),
])
def test_cli_bad_input_is_one_line(data_dir, args, message):
    proc = run_cli("backtest", *args, "--no-report", "--output", str(data_dir / "x.html"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_per_bar_progress_bar_on_a_terminal_and_silence_otherwise():
    """Real pseudo-terminal: the per-bar path shows a tqdm bar on a TTY, nothing when stderr is a pipe."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    code = ("import time\nfrom genesis_fw.backtest.engine import decide_per_bar\n"
            "from genesis_fw.strategy import Strategy\n"
            "class Slow(Strategy):\n    def next(self, i):\n        if i % 1000 == 0: time.sleep(0.001)\n"
            "decide_per_bar(Slow(), 300_000, progress=True)\n")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0 and "backtest:" in text and "300k" in text and "bar/s" in text
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == ""


def test_a_liquidation_is_reported_in_the_result_the_json_the_report_and_the_cli(data_dir, tmp_path):
    # ema_rsi at 20x on real 4h candles (the bundled sample, resampled): a 5 % move wipes the account.
    from genesis_fw.backtest import report

    res = run(cfg(timeframe="4h", size=20, max_leverage=20), CandleStore.open(data_dir))
    liq = [t for t in res.trade_records() if t["exit_reason"] == "liquidation"]
    assert len(liq) == 1 and res.trade_records()[-1] == liq[0]  # nothing traded after it
    info = res.liquidation()
    assert info == {"time": liq[0]["exit_time"], "price": liq[0]["exit_price"], "side": liq[0]["side"],
                    "bar": liq[0]["exit_bar"]}
    assert res.summary()["liquidation"] == info
    assert np.all(res.position[info["bar"]:] == 0) and res.metrics["final_equity"] >= 0
    text = res.liquidation_text()
    assert text.startswith(f"liquidated at {info['time'][:16].replace('T', ' ')} UTC at ")
    assert f"{info['price']:,.8g}" in text
    assert text in " ".join(report.render_html(res).split())
    out = tmp_path / "liq.html"
    proc = run_cli("backtest", "--timeframe", "4h", "size=20", "max_leverage=20", "--no-report", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert text in proc.stdout
    assert json.loads(out.with_suffix(".json").read_text())["liquidation"] == info
    # A run that never gets there says nothing about it.
    calm = run(cfg(timeframe="4h"), CandleStore.open(data_dir))
    assert calm.liquidation() is None and calm.liquidation_text() is None
    assert calm.summary()["liquidation"] is None
    assert "liquidated" not in report.render_html(calm)


class _HoldLong(Strategy):
    """Long from the first bar's close to the end: the equity follows the price on every timeframe."""

    def next(self, i):
        return 1.0 if i == 0 else None


@pytest.mark.parametrize("timeframe", ["1h", "1D", "1W", "1M"])
def test_cagr_annualises_the_elapsed_calendar_time_on_every_timeframe(data_dir, timeframe, monkeypatch):
    # The bundled real sample (2019-04..06) resampled to each timeframe; the strategy is given directly.
    from datetime import UTC, datetime, timedelta

    from genesis_fw.backtest import engine

    monkeypatch.setattr(engine, "make_strategy", lambda _cfg: _HoldLong())
    res = run(cfg(timeframe=timeframe), CandleStore.open(data_dir))
    ts = res.bars.timestamp
    first = datetime.fromtimestamp(int(ts[0]) / 1000, UTC)
    last = datetime.fromtimestamp(int(ts[-1]) / 1000, UTC)
    if timeframe == "1M":
        end = datetime(last.year + last.month // 12, last.month % 12 + 1, 1, tzinfo=UTC)
    else:
        end = last + {"1h": timedelta(hours=1), "1D": timedelta(days=1), "1W": timedelta(weeks=1)}[timeframe]
    m = res.metrics
    ratio = m["final_equity"] / res.config.initial_cash
    assert m["num_trades"] == 1 and ratio > 1.5  # BTC more than doubled in the sample's quarter
    assert m["cagr"] == pytest.approx(ratio ** (timedelta(days=365.25) / (end - first)) - 1, rel=1e-12)
    assert 5 < m["cagr"] < 100  # sane: hundreds of percent a year, not 4,571,194 % or 1e27 %
    assert m["num_days"] == (end - timedelta(milliseconds=1)).date().toordinal() - first.date().toordinal() + 1

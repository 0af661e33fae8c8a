"""History bars: a strategy that asks for bars before ``start`` sees them, but only [start, end) is traded.

Real candles throughout: the bundled sample (tBTCUSD 1m, 2019-04..06) and the two-day test store.
"""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
from conftest import run_cli

from genesis_fw.backtest import engine, metrics
from genesis_fw.backtest.engine import run
from genesis_fw.backtest.positions import track
from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore
from genesis_fw.data.timeframes import from_ms, parse_time, to_ms
from genesis_fw.strategy import LONG, SHORT, Bars, Strategy
from genesis_fw.testing import check_strategy, sample_bars


@attrs.frozen
class _MomentumParams:
    lookback: int = 50


class Momentum(Strategy):
    """Long when close is above the close ``lookback`` bars earlier, short when below; undecided (keep)
    until ``lookback`` bars exist. Causal, decides on every bar after its warm-up, and asks for
    ``lookback`` history bars."""

    Params = _MomentumParams
    seen: Bars | None = None

    def history_bars(self) -> int:
        return self.params.lookback

    def init(self, bars: Bars) -> None:
        self.seen = bars
        self.close = bars.close

    def next(self, i: int) -> float | None:
        k = self.params.lookback
        if i < k:
            return None
        return LONG if self.close[i] > self.close[i - k] else SHORT

    def targets(self, bars: Bars) -> np.ndarray:
        k = self.params.lookback
        out = np.full(len(bars), np.nan)
        out[k:] = np.where(bars.close[k:] > bars.close[:-k], LONG, SHORT)
        return out


def cfg(**values) -> RuntimeConfig:
    return RuntimeConfig.load(None, {k: str(v) for k, v in values.items()})


def _run(monkeypatch, strategy: Strategy, path: str = "auto", **values):
    monkeypatch.setattr(engine, "make_strategy", lambda _cfg: strategy)
    return run(cfg(**values), CandleStore.sample(), path=path)


def test_momentum_honours_the_strategy_contract():
    check_strategy(Momentum, sample_bars(3000))


def test_the_default_asks_for_no_history():
    assert Strategy().history_bars() == 0


@pytest.mark.parametrize("path", ["fast", "per_bar"])
def test_a_run_with_history_decides_like_the_tail_of_the_whole_range(monkeypatch, path):
    k = 50
    start, end = "2019-04-03T12:00", "2019-04-05"
    strategy = Momentum(_MomentumParams(k))
    with_history = _run(monkeypatch, strategy, path, start=start, end=end)
    whole = _run(monkeypatch, Momentum(_MomentumParams(k)), path, start="2019-04-01", end=end)
    ts = whole.bars.timestamp
    first = int(np.searchsorted(ts, to_ms(parse_time(start))))
    # The strategy saw exactly the k bars before start, then the period.
    seen = with_history.history_bars
    assert seen == k
    assert np.array_equal(strategy.seen.timestamp, ts[first - k:])
    # Decisions over [start, end) are the whole run's, from its first bar on: no undecided warm-up.
    assert with_history.targets.shape == (len(ts) - first,)
    assert np.array_equal(with_history.targets, whole.targets[first:], equal_nan=True)
    assert not np.isnan(with_history.targets).any()
    # The traded period is [start, end): its bars, dataset identity and outputs.
    d = with_history.dataset
    assert np.array_equal(with_history.bars.timestamp, ts[first:])
    assert d["first_bar"] == from_ms(int(ts[first])).isoformat() == "2019-04-03T12:00:00+00:00"
    assert d["num_bars"] == len(ts) - first == len(with_history.equity) == len(with_history.position)
    assert d["history"]["bars"] == k and d["history"]["first_bar"] == from_ms(int(ts[first - k])).isoformat()
    assert with_history.summary()["history_bars"] == k
    # The metrics are those of trading these decisions on the period's bars alone, from a flat start.
    b = with_history.bars
    c = with_history.config
    equity, position, trades = track(b.open, b.high, b.low, b.close, with_history.targets, c.initial_cash,
                                     c.commission, c.slippage / 10_000.0, c.size, 0.0, 0.0)
    assert np.array_equal(equity, with_history.equity) and np.array_equal(trades, with_history.trades)
    assert metrics.compute(b.timestamp, equity, position, trades, c.initial_cash, timeframe="1m") \
        == with_history.metrics
    assert with_history.position[0] == 0 and with_history.trades[0, 0] >= 1  # flat at start, first fill after it


def test_fast_and_per_bar_paths_agree_with_history(monkeypatch):
    values = {"start": "2019-04-10", "end": "2019-04-12", "slippage": "2"}
    fast = _run(monkeypatch, Momentum(_MomentumParams(120)), "fast", **values)
    slow = _run(monkeypatch, Momentum(_MomentumParams(120)), "per_bar", **values)
    assert fast.path == "fast" and slow.path == "per_bar" and fast.trades.shape[0] > 20
    for name in ("targets", "equity", "position", "trades"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name), equal_nan=True), name
    assert fast.metrics == slow.metrics and fast.dataset == slow.dataset


def test_resampled_history_is_the_bars_before_start(monkeypatch):
    res = _run(monkeypatch, Momentum(_MomentumParams(30)), start="2019-05-01", end="2019-05-10", timeframe="1h")
    seen = engine.make_strategy(None).seen.timestamp
    assert res.history_bars == 30 and len(seen) == 30 + res.dataset["num_bars"]
    assert seen[30] == to_ms(parse_time("2019-05-01")) and np.all(np.diff(seen) > 0)
    assert seen[29] < seen[30] and res.dataset["history"]["first_bar"] == from_ms(int(seen[0])).isoformat()


def test_fewer_history_bars_than_asked_uses_what_exists_and_says_so(monkeypatch):
    res = _run(monkeypatch, Momentum(_MomentumParams(100)), start="2019-04-01T00:30", end="2019-04-01T06:00")
    ts = sample_bars(200).timestamp
    available = int(np.searchsorted(ts, to_ms(parse_time("2019-04-01T00:30"))))
    assert 0 < available < 100 and res.history_bars == available
    assert any(f"{available} of the 100 history bars" in n for n in res.notes), res.notes


def test_no_start_means_no_history_and_no_start_means_the_whole_range(monkeypatch):
    res = _run(monkeypatch, Momentum(_MomentumParams(100)), end="2019-04-02")
    assert res.history_bars == 0 and res.dataset["history"] is None
    assert np.isnan(res.targets[:100]).all() and not np.isnan(res.targets[100:]).any()


def test_the_cli_records_the_history_in_the_json(btc_store, tmp_path):
    """ema_rsi asks for no history: its run is what it always was, with history_bars 0 recorded."""
    out = tmp_path / "bt.html"
    proc = run_cli("backtest", "--start", "2019-04-01T12:00", "--no-report", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["history_bars"] == 0 and summary["dataset"]["history"] is None
    assert summary["dataset"]["first_bar"] == "2019-04-01T12:00:00+00:00"


class _BadHistory(Momentum):
    def history_bars(self):
        return -3


def test_a_bad_history_answer_is_a_plugin_error(monkeypatch):
    from genesis_fw.errors import PluginError

    with pytest.raises(PluginError, match=r"history_bars\(\) returned -3; expected a whole number >= 0"):
        _run(monkeypatch, _BadHistory(), start="2019-04-02", end="2019-04-03")
    with pytest.raises(AssertionError, match="history_bars"):
        check_strategy(_BadHistory, sample_bars(500))


def test_the_report_says_which_bars_were_history(monkeypatch):
    from genesis_fw.backtest.report import render_html

    res = _run(monkeypatch, Momentum(_MomentumParams(40)), start="2019-04-02", end="2019-04-02T06:00")
    text = " ".join(render_html(res).split())
    h = res.dataset["history"]
    assert f"40 bars before the first bar (40 asked), from {h['first_bar'][:16].replace('T', ' ')}" in text
    assert h["sha256"] in text
    plain = _run(monkeypatch, _HoldFirst(), start="2019-04-02", end="2019-04-02T06:00")
    assert "not traded)</th><td>none</td>" in " ".join(render_html(plain).split())


class _HoldFirst(Strategy):
    def next(self, i):
        return 1.0 if i == 0 else None


def test_in_sample_notes_turn_a_broken_periods_hook_into_a_one_line_plugin_error():
    from genesis_fw.backtest.engine import in_sample_notes
    from genesis_fw.errors import ModelFileError, PluginError
    from genesis_fw.strategy import Strategy
    from genesis_fw.testing import sample_bars

    class Broken(Strategy):
        def periods(self):
            raise ValueError("boom")

    class NoTraining(Strategy):
        def periods(self):
            raise ModelFileError("no training data")

    class Fitted(Strategy):
        def periods(self):
            return {"train": ("2019-04-01T00:00:00+00:00", "2019-04-01T01:00:00+00:00"),
                    "test": ("2019-04-02T00:00:00+00:00", "2019-04-03T00:00:00+00:00")}

    bars = sample_bars(120)  # 2019-04-01 00:00 .. 01:59, 1m
    with pytest.raises(PluginError, match="periods"):
        in_sample_notes(Broken(), bars, "1m")
    assert in_sample_notes(NoTraining(), bars, "1m") == []
    assert in_sample_notes(Strategy(), bars, "1m") == []
    (note,) = in_sample_notes(Fitted(), bars, "1m")
    assert "train part" in note and "in-sample" in note
    assert in_sample_notes(Fitted(), bars.tail(61), "1m") == []  # from 01:00: after the train part's end

"""Hand-computed cases for the position tracker (fills, reversals, costs, shorts, stops, the last bar)."""

from __future__ import annotations

import numpy as np
import pytest

from genesis_fw.backtest.positions import EXIT_REASONS, track

NAN = np.nan


def run(open_, targets, *, high=None, low=None, close=None, cash=1000.0, commission=0.0, slip=0.0, size=1.0,
        stop_loss=0.0, take_profit=0.0):
    o = np.asarray(open_, dtype=float)
    h = np.asarray(high if high is not None else o, dtype=float)
    lo = np.asarray(low if low is not None else o, dtype=float)
    c = np.asarray(close if close is not None else o, dtype=float)
    t = np.asarray(targets, dtype=float)
    return track(o, h, lo, c, t, cash, commission, slip, size, stop_loss, take_profit)


def reasons(trades):
    return [EXIT_REASONS[int(r)] for r in trades[:, 8]]


def test_decision_at_close_fills_at_next_open():
    # Decision LONG at the close of bar 0 -> bought at open of bar 1 (11), not at bar 0's close (10.5).
    eq, pos, trades = run([10, 11, 12, 13], [1, NAN, NAN, NAN], close=[10.5, 11.5, 12.5, 13.5])
    assert pos[0] == 0
    assert pos[1] == pytest.approx(1000 / 11)
    assert trades.shape[0] == 1
    entry_bar, exit_bar, side, qty, entry, exit_, pnl = trades[0, :7]
    assert (entry_bar, exit_bar, side) == (1, 3, 1)
    assert entry == 11 and exit_ == 13.5  # closed at the last close
    assert pnl == pytest.approx(1000 / 11 * 2.5)
    assert eq[-1] == pytest.approx(1000 + 1000 / 11 * 2.5)
    assert reasons(trades) == ["end"]


def test_decision_on_last_bar_is_not_executed():
    eq, pos, trades = run([10, 11, 12], [NAN, NAN, 1])
    assert trades.shape[0] == 0
    assert np.all(pos == 0) and np.all(eq == 1000)


def test_reversal_closes_and_opens_at_the_same_open():
    # Long from bar 1 at 10, reverse at bar 3 open (12): long pnl +2/unit; short 1200/12 = 100 units.
    eq, pos, trades = run([9, 10, 11, 12, 11, 10], [1, NAN, -1, NAN, NAN, NAN])
    assert reasons(trades) == ["reverse", "end"]
    long_, short = trades
    assert long_[:3].tolist() == [1, 3, 1] and long_[4] == 10 and long_[5] == 12
    assert long_[6] == pytest.approx(100 * 2)
    assert short[:3].tolist() == [3, 5, -1] and short[3] == pytest.approx(-100)
    assert short[6] == pytest.approx(100 * 2)  # 12 -> 10
    assert pos[3] == pytest.approx(-100) and pos[4] == pytest.approx(-100)
    assert eq[4] == pytest.approx(1200 + 100 * 1)  # short marked at 11
    assert eq[-1] == pytest.approx(1400)


def test_same_side_target_does_nothing_and_flat_exits():
    eq, pos, trades = run([10, 10, 20, 20, 30], [1, 1, 0, NAN, NAN])
    assert reasons(trades) == ["signal"]
    assert trades[0, :2].tolist() == [1, 3]
    assert trades[0, 6] == pytest.approx(100 * 10)
    assert pos[3] == 0 and pos[4] == 0 and eq[-1] == pytest.approx(2000)


def test_commission_on_each_side_and_sizing_includes_entry_fee():
    c = 0.002
    eq, pos, trades = run([100, 100, 110, 110], [1, NAN, 0, NAN], commission=c)
    units = 1000 / (100 * (1 + c))
    assert pos[1] == pytest.approx(units)
    entry_fee = c * units * 100
    exit_fee = c * units * 110
    assert units * 100 + entry_fee == pytest.approx(1000)  # fully invested, nothing borrowed
    assert trades[0, 7] == pytest.approx(entry_fee + exit_fee)
    assert trades[0, 6] == pytest.approx(units * 10 - entry_fee - exit_fee)
    assert eq[-1] == pytest.approx(1000 + units * 10 - entry_fee - exit_fee)


def test_slippage_is_against_the_trader_for_longs_and_shorts():
    slip = 0.001  # 10 bps
    _, _, t_long = run([100, 100, 100], [1, NAN, NAN], slip=slip)
    assert t_long[0, 4] == pytest.approx(100.1) and t_long[0, 5] == pytest.approx(99.9)
    _, _, t_short = run([100, 100, 100], [-1, NAN, NAN], slip=slip)
    assert t_short[0, 4] == pytest.approx(99.9) and t_short[0, 5] == pytest.approx(100.1)
    assert t_long[0, 6] < 0 and t_short[0, 6] < 0


def test_short_profits_when_price_falls():
    eq, pos, trades = run([100, 100, 80, 80], [-1, NAN, NAN, NAN])
    assert pos[1] == pytest.approx(-10)
    assert eq[2] == pytest.approx(1200)
    assert trades[0, 6] == pytest.approx(200)


def test_size_fraction_of_equity():
    _, pos, _ = run([100, 100, 100], [1, NAN, NAN], size=0.25)
    assert pos[1] == pytest.approx(2.5)


def test_stop_loss_hit_inside_bar():
    # Entry 100 at bar 1; stop 5% = 95; bar 2 low 94 -> exit at 95.
    eq, pos, trades = run([100, 100, 99, 99], [1, NAN, NAN, NAN], high=[100, 101, 100, 99], low=[100, 99, 94, 99],
                          stop_loss=0.05)
    assert reasons(trades) == ["stop_loss"]
    assert trades[0, 1] == 2 and trades[0, 5] == pytest.approx(95)
    assert pos[2] == 0 and eq[-1] == pytest.approx(1000 - 10 * 5)


def test_stop_gap_fills_at_open_not_at_stop():
    # Bar 2 opens at 90, beyond the 95 stop: filled at 90 (worse), not 95.
    _, _, trades = run([100, 100, 90, 90], [1, NAN, NAN, NAN], high=[100, 100, 91, 90], low=[100, 100, 89, 90],
                       stop_loss=0.05)
    assert trades[0, 5] == pytest.approx(90)


def test_both_stop_and_target_in_one_bar_assumes_the_stop():
    _, _, trades = run([100, 100, 100, 100], [1, NAN, NAN, NAN], high=[100, 100, 120, 100], low=[100, 100, 80, 100],
                       stop_loss=0.05, take_profit=0.1)
    assert reasons(trades) == ["stop_loss"] and trades[0, 5] == pytest.approx(95)


def test_take_profit_fills_at_its_price_for_a_short():
    _, _, trades = run([100, 100, 100, 100], [-1, NAN, NAN, NAN], high=[100, 100, 101, 100], low=[100, 100, 85, 100],
                       take_profit=0.1)
    assert reasons(trades) == ["take_profit"] and trades[0, 5] == pytest.approx(90)
    assert trades[0, 6] == pytest.approx(10 * 10)


def test_short_stop_uses_high():
    _, _, trades = run([100, 100, 100, 100], [-1, NAN, NAN, NAN], high=[100, 100, 104, 100], low=[100, 100, 99, 100],
                       stop_loss=0.03)
    assert reasons(trades) == ["stop_loss"] and trades[0, 5] == pytest.approx(103)


def test_stop_checked_on_the_entry_bar_itself():
    _, _, trades = run([100, 100, 100], [1, NAN, NAN], high=[100, 100, 100], low=[100, 90, 100], stop_loss=0.05)
    assert trades[0, 0] == 1 and trades[0, 1] == 1 and reasons(trades) == ["stop_loss"]


def test_after_stop_out_keep_means_stay_flat_and_new_signal_reenters():
    o = [100, 100, 100, 100, 100, 100]
    low = [100, 100, 90, 100, 100, 100]
    eq, pos, trades = run(o, [1, NAN, NAN, 1, NAN, NAN], low=low, stop_loss=0.05)
    assert reasons(trades) == ["stop_loss", "end"]
    assert pos[3] == 0 and trades[1, 0] == 4


def test_no_trading_once_equity_is_gone():
    # 2x leveraged short; price triples -> equity < 0 at bar 2's close: liquidated and halted.
    eq, pos, trades = run([100, 100, 300, 100, 100], [-1, NAN, NAN, 1, NAN], size=2.0)
    assert reasons(trades) == ["liquidation"]
    assert trades[0, 1] == 2
    assert np.all(pos[2:] == 0)
    assert eq[2] < 0 and np.all(eq[3:] == eq[2])


def test_equity_identity_holds_at_every_bar():
    rng = np.random.default_rng(7)
    n = 2000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.r_[close[0], close[:-1]]
    t = rng.choice([1.0, -1.0, 0.0, NAN], size=n, p=[0.02, 0.02, 0.01, 0.95])
    eq, pos, trades = track(o, np.maximum(o, close), np.minimum(o, close), close, t, 1000.0, 0.001, 0.0005,
                            1.0, 0.0, 0.0)
    # Final equity = initial cash + sum of trade pnl (all positions are closed at the end).
    assert eq[-1] == pytest.approx(1000 + trades[:, 6].sum())
    # Trades never overlap and are in time order.
    assert np.all(trades[1:, 0] >= trades[:-1, 1])

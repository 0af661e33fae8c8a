"""Backtest metrics: hand-computed cases, every undefined case, the tracker's real output, and a
comparison with an independent implementation (empyrical-reloaded, pandas for daily sampling)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesis_fw.backtest.metrics import KEYS, compute, daily_returns
from genesis_fw.backtest.positions import track

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_554_076_800_000  # 2019-04-01 00:00 UTC
YEAR_DAYS = 365.25  # a year, in days, for every annualised figure
ANN = math.sqrt(YEAR_DAYS)
NO_TRADES = np.empty((0, 9))


def trade(entry_bar, exit_bar, qty, entry_price, pnl, commission=0.0, exit_price=0.0, reason=0):
    return [entry_bar, exit_bar, 1.0 if qty > 0 else -1.0, qty, entry_price, exit_price, pnl, commission, reason]


def daily_ts(n_days, start=T0):
    return start + np.arange(n_days, dtype=np.int64) * DAY


def metrics(ts, equity, position=None, trades=NO_TRADES, cash=100.0, timeframe="1D"):
    equity = np.asarray(equity, dtype=float)
    position = np.zeros_like(equity) if position is None else np.asarray(position, dtype=float)
    return compute(np.asarray(ts, dtype=np.int64), equity, position, np.asarray(trades, dtype=float), cash,
                   timeframe=timeframe)


def utc(ms):
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(ms))


def ms(dt):
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def cagr_by_hand(final, initial, first_open, end):
    """``(final / initial) ** (365.25 days / elapsed) - 1``; ``first_open``/``end`` as datetimes."""
    return (final / initial) ** (timedelta(days=YEAR_DAYS) / (end - first_open)) - 1


def assert_plain(m):
    """Exactly the documented keys; plain Python numbers or None; strict JSON (no NaN/inf)."""
    assert tuple(m) == KEYS
    for key, value in m.items():
        assert value is None or type(value) in (int, float), (key, type(value))
    json.dumps(m, allow_nan=False)


# --------------------------------------------------------------------------- hand-computed cases


def test_return_metrics_by_hand():
    # One bar per day. Daily returns +10 %, -10 %, +10 %, +10 %.
    eq = [110.0, 99.0, 108.9, 119.79]
    m = metrics(daily_ts(4), eq)
    assert_plain(m)
    assert m["total_return"] == pytest.approx(0.1979)
    assert m["final_equity"] == pytest.approx(119.79)
    assert m["num_bars"] == 4 and m["num_days"] == 4
    # mean 0.05; deviations .05 -.15 .05 .05 -> var = 0.03 / 3 = 0.01 -> std 0.1
    assert m["annual_volatility"] == pytest.approx(0.1 * ANN)
    assert m["sharpe"] == pytest.approx(0.05 / 0.1 * ANN)
    # downside deviation over all 4 days: sqrt(0.1^2 / 4) = 0.05
    assert m["sortino"] == pytest.approx(0.05 / 0.05 * ANN)
    assert m["cagr"] == pytest.approx(1.1979 ** (YEAR_DAYS / 4) - 1)  # 4 daily bars: 4 days elapsed
    assert m["max_drawdown"] == pytest.approx(-0.1)  # 110 -> 99
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)


def test_daily_returns_sample_the_last_close_of_each_utc_day_and_carry_empty_days():
    # 1h bars. Day 0: 00:00, 12:00, 23:00 (closes at 24:00, still day 0); day 1 has no bars;
    # day 2: 06:00, 23:00; day 3: 00:00. Day 1's equity is day 0's, carried: a 0 return.
    ts = [T0, T0 + 12 * HOUR, T0 + 23 * HOUR, T0 + 2 * DAY + 6 * HOUR, T0 + 2 * DAY + 23 * HOUR, T0 + 3 * DAY]
    eq = [150.0, 50.0, 120.0, 90.0, 96.0, 80.0]
    days, r = daily_returns(np.array(ts, dtype=np.int64), np.array(eq), 100.0, timeframe="1h")
    assert days.dtype == np.int64
    assert days.tolist() == [T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]
    assert r == pytest.approx([0.2, 0.0, 96 / 120 - 1, 80 / 96 - 1])
    m = metrics(ts, eq, timeframe="1h")
    assert m["num_days"] == 4 and m["num_bars"] == 6
    # The drawdown is bar level: the intraday low 50 after the peak 150, not visible in daily closes.
    assert m["max_drawdown"] == pytest.approx(50 / 150 - 1)
    # Elapsed: day 0 00:00 to the last bar's close, day 3 01:00 = 3 days + 1 hour.
    assert m["cagr"] == pytest.approx(0.8 ** (YEAR_DAYS / (3 + 1 / 24)) - 1)


def test_days_before_1970_use_floor_division():
    ts = np.array([-DAY - 60_000, -DAY, 0], dtype=np.int64)  # 1m bars: 1969-12-30 23:59, 1969-12-31 00:00, 1970-01-01
    days, r = daily_returns(ts, np.array([110.0, 121.0, 121.0]), 100.0, timeframe="1m")
    assert days.tolist() == [-2 * DAY, -DAY, 0]
    assert r == pytest.approx([0.1, 0.1, 0.0])


def test_drawdown_running_peak_starts_at_initial_cash():
    # Equity never exceeds the initial cash: the drawdown is measured from it, not from the first bar.
    m = metrics(daily_ts(3), [90.0, 80.0, 85.0])
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["total_return"] == pytest.approx(-0.15)
    assert m["calmar"] == pytest.approx((0.85 ** (YEAR_DAYS / 3) - 1) / 0.2)


def year_2019_with_missing_days(seed=3, missing=40, total_return=0.9489):
    """1D bars over 2019 with ``missing`` days absent (not Jan 1 or Dec 31), equity ending at +94.89 %."""
    rng = np.random.default_rng(seed)
    days = np.arange(365)
    gone = rng.choice(days[1:-1], size=missing, replace=False)
    kept = np.setdiff1d(days, gone)
    ts = ms(datetime(2019, 1, 1, tzinfo=UTC)) + kept.astype(np.int64) * DAY
    steps = np.cumprod(1.0 + rng.normal(0.002, 0.02, kept.size))
    equity = 10_000.0 * steps * ((1 + total_return) / steps[-1]) ** (np.arange(1, kept.size + 1) / kept.size)
    return ts, equity


def test_cagr_of_a_calendar_year_with_missing_days_is_the_years_return():
    # +94.89 % from 2019-01-01 00:00 to 2020-01-01 00:00 with 40 days without bars: 365 days elapsed,
    # so the CAGR is ~94.9 % (not 1.9489 ** (365 / 325) - 1 = 112 %, counting only days with bars).
    ts, equity = year_2019_with_missing_days()
    assert ts.size == 325 and equity[-1] == pytest.approx(19_489.0)
    m = metrics(ts, equity, cash=10_000.0, timeframe="1D")
    expected = cagr_by_hand(equity[-1], 10_000.0, datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC))
    assert m["cagr"] == pytest.approx(expected, rel=1e-12)
    assert 0.94 < m["cagr"] < 0.95
    assert m["num_days"] == 365 and m["num_bars"] == 325
    assert m["calmar"] == pytest.approx(m["cagr"] / abs(m["max_drawdown"]))
    assert m["trades_per_day"] == 0.0


def weekly_and_monthly_runs():
    """(timeframe, bar open times, equity, end of the last bar) for a 1W and a 1M run."""
    rng = np.random.default_rng(5)
    mondays = ms(datetime(2019, 1, 7, tzinfo=UTC)) + np.arange(52, dtype=np.int64) * 7 * DAY
    weekly = 1_000.0 * np.cumprod(1.0 + rng.normal(0.015, 0.05, 52))
    months = [datetime(2019 + (10 + k) // 12, (10 + k) % 12 + 1, 1, tzinfo=UTC) for k in range(14)]  # 2019-11..2020-12
    monthly = 1_000.0 * np.cumprod(1.0 + rng.normal(0.05, 0.15, 14))
    return [
        ("1W", mondays, weekly, datetime(2020, 1, 6, tzinfo=UTC)),
        ("1M", np.array([ms(d) for d in months], dtype=np.int64), monthly, datetime(2021, 1, 1, tzinfo=UTC)),
    ]


@pytest.mark.parametrize("case", weekly_and_monthly_runs(), ids=lambda c: c[0])
def test_weekly_and_monthly_bars_annualise_over_elapsed_time(case):
    # Above 1D a bar is not a day: 52 weekly bars span 364 days, 14 monthly bars (a leap February
    # included) 2019-11-01 .. 2021-01-01 = 427 days.
    timeframe, ts, equity, end = case
    m = metrics(ts, equity, cash=1_000.0, timeframe=timeframe)
    assert_plain(m)
    expected = cagr_by_hand(equity[-1], 1_000.0, utc(ts[0]), end)
    assert m["cagr"] == pytest.approx(expected, rel=1e-12)
    assert -0.9 < m["cagr"] < 10  # sane: not 4,571,194 % or 1e27 %
    assert m["num_days"] == (end - utc(ts[0])).days
    assert m["trades_per_day"] == 0.0
    days, r = daily_returns(ts, equity, 1_000.0, timeframe=timeframe)
    assert days[0] == ts[0] and days[-1] == ms(end) - DAY and r.size == m["num_days"]
    # Each bar's return lands on the last day it covers; the days inside a bar carry its equity.
    closes = np.flatnonzero(r)
    assert closes.size == ts.size
    assert np.prod(1 + r) == pytest.approx(equity[-1] / 1_000.0, rel=1e-12)


def test_trade_metrics_by_hand():
    ts = T0 + np.arange(10, dtype=np.int64) * HOUR  # 10 hourly bars: 10 h elapsed (first open to last close)
    trades = [
        trade(0, 2, 2.0, 100.0, 18.0, commission=2.0),   # return 18 / 200 = +0.09, held 2 h
        trade(3, 4, -1.0, 50.0, -6.0, commission=1.0),   # short, return -6 / 50 = -0.12, held 1 h
        trade(5, 8, 4.0, 25.0, 3.0, commission=1.0),     # return 3 / 100 = +0.03, held 3 h
        trade(8, 8, 1.0, 10.0, 0.0, commission=0.5),     # pnl 0: neither a win nor a loss, held 0 h
    ]
    position = [2, 2, 0, -1, 0, 4, 4, 4, 0, 0]  # 6 of 10 bars with a position
    m = metrics(ts, np.full(10, 100.0), position, trades, timeframe="1h")
    assert_plain(m)
    assert m["num_trades"] == 4
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["avg_win"] == pytest.approx(0.06)
    assert m["avg_loss"] == pytest.approx(-0.12)
    assert m["avg_win_loss_ratio"] == pytest.approx(0.5)
    assert m["profit_factor"] == pytest.approx(21 / 6)
    assert m["total_commission"] == pytest.approx(4.5)
    assert m["avg_holding_hours"] == pytest.approx(6 / 4)
    assert m["trades_per_day"] == pytest.approx(4 / (10 / 24))
    assert m["exposure"] == pytest.approx(0.6)


def test_metrics_of_the_real_tracker_output():
    # Long at 10 (open of bar 1), closed at the last close 12.5; commission 1 % per fill, no slippage.
    open_ = np.array([10.0, 10.0, 11.0, 12.0])
    close = np.array([10.0, 9.0, 11.5, 12.5])
    targets = np.array([1.0, np.nan, np.nan, np.nan])
    eq, pos, trades = track(open_, open_, np.minimum(open_, close), close, targets, 1000.0, 0.01, 0.0, 1.0, 0.0, 0.0)
    ts = T0 + np.arange(4, dtype=np.int64) * 6 * HOUR  # all in one UTC day
    m = compute(ts, eq, pos, trades, 1000.0, timeframe="6h")
    assert_plain(m)
    units = 1000 / (10 * 1.01)
    exit_fee = 0.01 * units * 12.5
    final = units * 12.5 - exit_fee
    assert m["final_equity"] == pytest.approx(final)
    assert m["total_return"] == pytest.approx(final / 1000 - 1)
    assert m["num_trades"] == 1 and m["win_rate"] == 1.0
    assert m["total_commission"] == pytest.approx(0.01 * units * 10 + exit_fee)
    assert m["avg_win"] == pytest.approx((final - 1000) / (units * 10))
    assert m["avg_holding_hours"] == pytest.approx(12.0)  # entry bar 1 (06:00) .. exit bar 3 (18:00)
    assert m["exposure"] == pytest.approx(2 / 4)  # bars 1, 2 hold; bar 3 is closed at its close
    assert m["max_drawdown"] == pytest.approx(units * 9 / 1000 - 1)  # marked at 9 on bar 1
    assert m["trades_per_day"] == pytest.approx(1 / 1.0)  # 4 bars of 6 h: one day elapsed
    assert m["num_days"] == 1


# --------------------------------------------------------------------------- undefined metrics


def test_no_trades_flat_equity():
    m = metrics(daily_ts(5), np.full(5, 100.0))
    assert_plain(m)
    assert m["num_trades"] == 0 and m["total_commission"] == 0.0 and m["trades_per_day"] == 0.0
    for key in ("win_rate", "avg_win", "avg_loss", "avg_win_loss_ratio", "profit_factor", "avg_holding_hours"):
        assert m[key] is None, key
    assert m["sharpe"] is None  # std 0
    assert m["sortino"] is None  # no negative day
    assert m["calmar"] is None  # no drawdown
    assert m["max_drawdown"] == 0.0 and m["total_return"] == 0.0 and m["cagr"] == 0.0
    assert m["annual_volatility"] == 0.0 and m["exposure"] == 0.0


def test_constant_nonzero_daily_returns_have_zero_volatility_not_a_huge_sharpe():
    eq = 100.0 * 1.01 ** np.arange(1, 31)  # ratios differ from 1.01 only by rounding
    m = metrics(daily_ts(30), eq)
    assert m["sharpe"] is None
    assert m["annual_volatility"] == 0.0
    assert m["sortino"] is None and m["calmar"] is None
    assert m["cagr"] == pytest.approx(1.01 ** YEAR_DAYS - 1)


def test_no_losing_trades():
    ts = T0 + np.arange(4, dtype=np.int64) * HOUR
    m = metrics(ts, [100, 101, 102, 103], [1, 1, 1, 0], [trade(0, 3, 1.0, 100.0, 3.0)], timeframe="1h")
    assert m["win_rate"] == 1.0 and m["avg_win"] == pytest.approx(0.03)
    assert m["avg_loss"] is None and m["profit_factor"] is None and m["avg_win_loss_ratio"] is None


def test_only_losing_trades():
    ts = T0 + np.arange(4, dtype=np.int64) * HOUR
    m = metrics(ts, [100, 99, 98, 97], [-2, -2, -2, 0], [trade(0, 3, -2.0, 50.0, -3.0)], timeframe="1h")
    assert m["win_rate"] == 0.0 and m["avg_win"] is None and m["avg_win_loss_ratio"] is None
    assert m["avg_loss"] == pytest.approx(-0.03)
    assert m["profit_factor"] == 0.0


def test_no_negative_day_means_no_sortino():
    m = metrics(daily_ts(3), [110.0, 110.0, 121.0])
    assert m["sortino"] is None
    assert m["sharpe"] is not None and m["sharpe"] > 0
    assert m["calmar"] is None and m["max_drawdown"] == 0.0


def test_fewer_than_two_days():
    ts = T0 + np.arange(24, dtype=np.int64) * HOUR  # one UTC day
    eq = 100.0 + np.sin(np.arange(24))
    m = metrics(ts, eq, timeframe="1h")
    assert m["num_days"] == 1
    assert m["sharpe"] is None and m["sortino"] is None and m["annual_volatility"] is None
    assert m["cagr"] == pytest.approx((eq[-1] / 100) ** YEAR_DAYS - 1)  # 24 h elapsed
    assert m["max_drawdown"] < 0


def test_single_bar():
    m = metrics([T0], [100.0])
    assert_plain(m)
    assert m["num_bars"] == 1 and m["num_days"] == 1
    assert m["trades_per_day"] == 0.0  # one 1D bar still spans a day
    assert m["sharpe"] is None and m["annual_volatility"] is None and m["calmar"] is None


def test_overflowing_cagr_is_none_not_inf():
    m = metrics([T0], [1e4])  # 100x in one day: 100 ** 365.25 overflows a float
    assert_plain(m)
    assert m["cagr"] is None and m["calmar"] is None
    assert m["total_return"] == pytest.approx(99.0)


def test_liquidated_equity():
    # Equity hits 0 on day 2 and stays there: later daily returns are undefined (0 / 0).
    m = metrics(daily_ts(4), [100.0, 0.0, 0.0, 0.0])
    assert_plain(m)
    assert m["cagr"] == -1.0 and m["max_drawdown"] == -1.0 and m["calmar"] == -1.0
    assert m["sharpe"] is None and m["sortino"] is None and m["annual_volatility"] is None
    # Negative final equity: (negative) ** (365 / n) is not a real number.
    m = metrics(daily_ts(2), [100.0, -10.0])
    assert_plain(m)
    assert m["cagr"] is None and m["calmar"] is None
    assert m["max_drawdown"] == pytest.approx(-1.1)
    assert m["sharpe"] is not None  # returns 0 and -1.1 are both defined


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ts": [], "equity": []}, "no bars"),
        ({"ts": [T0, T0 + 1], "equity": [1.0]}, "same length"),
        ({"ts": [T0 + 1, T0], "equity": [1.0, 1.0]}, "strictly increasing"),
        ({"ts": [T0, T0], "equity": [1.0, 1.0]}, "strictly increasing"),
        ({"ts": [T0], "equity": [1.0], "position": [0.0, 0.0]}, "position"),
        ({"ts": [T0], "equity": [1.0], "trades": np.zeros((1, 8))}, "trades"),
        ({"ts": [T0], "equity": [1.0], "cash": 0.0}, "initial_cash"),
        ({"ts": [T0], "equity": [1.0], "cash": float("nan")}, "initial_cash"),
        ({"ts": [T0], "equity": [1.0], "timeframe": "1d"}, "timeframe"),
    ],
)
def test_bad_input_raises(kwargs, match):
    ts, eq = kwargs.pop("ts"), kwargs.pop("equity")
    with pytest.raises(ValueError, match=match):
        metrics(ts, eq, **kwargs)


# --------------------------------------------------------------------------- independent implementation


@pytest.fixture
def empyrical():
    """empyrical-reloaded (dev-only test dependency); these tests are skipped without it."""
    return pytest.importorskip("empyrical")


def pandas_bar_ends(ts, timeframe):
    """Independent bar close times (pandas offsets): open + the timeframe, a calendar month for 1M."""
    pd = pytest.importorskip("pandas")
    opens = pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ms", utc=True)
    if timeframe == "1M":
        return opens + pd.offsets.MonthBegin(1)
    unit = {"m": "minutes", "h": "hours", "D": "days", "W": "weeks"}[timeframe[-1]]
    return opens + timedelta(**{unit: int(timeframe[:-1])})


def pandas_daily_returns(ts, equity, cash, timeframe):
    """Independent calendar-day sampling: the equity of each bar belongs to the UTC date of its close
    (the last instant it covers); each calendar day from the first open's date to the last close's
    takes its last close, days without one keep the previous day's equity (``cash`` before the first)."""
    pd = pytest.importorskip("pandas")
    ends = pandas_bar_ends(ts, timeframe)
    s = pd.Series(np.asarray(equity, dtype=float), index=ends - pd.Timedelta(1, "ms"))
    closes = s.groupby(s.index.floor("D")).last()
    first = pd.to_datetime(int(ts[0]), unit="ms", utc=True).floor("D")
    days = pd.date_range(first, closes.index[-1], freq="D")
    filled = closes.reindex(days).ffill().fillna(cash)
    prev = filled.shift(1)
    prev.iloc[0] = cash
    return days, (filled / prev - 1.0).to_numpy()


def assert_matches_empyrical(empyrical, ts, equity, position, trades, cash, timeframe):
    m = compute(ts, equity, position, trades, cash, timeframe=timeframe)
    assert_plain(m)
    index, r = pandas_daily_returns(ts, equity, cash, timeframe)
    days, mine = daily_returns(ts, equity, cash, timeframe=timeframe)
    assert days.tolist() == [int(t.value // 1_000_000) for t in index]
    np.testing.assert_allclose(mine, r, rtol=1e-12, atol=1e-15)
    assert m["num_days"] == len(r)
    assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=YEAR_DAYS), rel=1e-9)
    assert m["sortino"] == pytest.approx(empyrical.sortino_ratio(r, annualization=YEAR_DAYS), rel=1e-9)
    assert m["annual_volatility"] == pytest.approx(empyrical.annual_volatility(r, annualization=YEAR_DAYS),
                                                   rel=1e-9)
    start, end = utc(ts[0]), pandas_bar_ends([ts[-1]], timeframe)[0].to_pydatetime()
    assert m["cagr"] == pytest.approx(cagr_by_hand(equity[-1], cash, start, end), rel=1e-9)
    if (end - start) % timedelta(days=1) == timedelta(0):  # whole days: the calendar-day series spans them
        assert m["cagr"] == pytest.approx(empyrical.cagr(r, annualization=YEAR_DAYS), rel=1e-9)
    # Bar-level drawdown = empyrical's drawdown of the bar-to-bar returns (its anchor is the start value).
    bar_r = np.diff(np.concatenate([[cash], equity])) / np.concatenate([[cash], equity[:-1]])
    assert m["max_drawdown"] == pytest.approx(empyrical.max_drawdown(bar_r), rel=1e-9)
    # ... and at least as deep as the drawdown seen on daily closes only.
    assert m["max_drawdown"] <= empyrical.max_drawdown(r) + 1e-12
    assert m["total_return"] == pytest.approx(empyrical.cum_returns_final(r), rel=1e-9)
    return m, r


def test_random_walk_hourly_matches_empyrical(empyrical):
    rng = np.random.default_rng(20240601)
    n = 200 * 24
    ts = T0 + np.arange(n, dtype=np.int64) * HOUR
    equity = 10_000.0 * np.cumprod(1.0 + rng.normal(0.0002, 0.01, n))
    position = np.where(rng.random(n) < 0.3, 0.0, 1.0)
    m, r = assert_matches_empyrical(empyrical, ts, equity, position, NO_TRADES, 10_000.0, "1h")
    assert m["num_days"] == 200 and m["max_drawdown"] < 0 and m["sharpe"] is not None
    assert m["exposure"] == pytest.approx(np.mean(position != 0))


def test_daily_only_equity_matches_empyrical_drawdown_and_calmar(empyrical):
    rng = np.random.default_rng(7)
    n = 400
    ts = daily_ts(n) + 23 * HOUR  # one 1h bar per day, opening at 23:00 UTC (23 hours a day missing)
    equity = 1_000.0 * np.cumprod(1.0 + rng.normal(0.001, 0.03, n))
    m = compute(ts, equity, np.ones(n), NO_TRADES, 1_000.0, timeframe="1h")
    _, r = daily_returns(ts, equity, 1_000.0, timeframe="1h")
    assert r.shape == (n,)
    assert m["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r), rel=1e-12)
    assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=YEAR_DAYS), rel=1e-9)
    # Elapsed time is from the first open (day 0 23:00) to the last close (day n 00:00): n - 1 days + 1 h.
    elapsed_days = n - 1 + 1 / 24
    assert m["cagr"] == pytest.approx((equity[-1] / 1_000.0) ** (YEAR_DAYS / elapsed_days) - 1, rel=1e-9)
    # The same series as 1D bars opening at 00:00 spans n whole days: empyrical's Calmar over them.
    d = compute(daily_ts(n), equity, np.ones(n), NO_TRADES, 1_000.0, timeframe="1D")
    assert d["calmar"] == pytest.approx(empyrical.calmar_ratio(r, annualization=YEAR_DAYS), rel=1e-9)


def test_real_candles_with_tracker_match_empyrical(empyrical):
    # Real Bitfinex 1m candles (3 months, minutes without trades absent) with a whole UTC day removed,
    # an EMA crossover through the real position tracker, with costs.
    from genesis_fw.indicators import ema
    from genesis_fw.testing import sample_bars

    bars = sample_bars(200_000)
    ts = np.asarray(bars.timestamp, dtype=np.int64)
    keep = (ts // DAY) != (ts[0] // DAY + 10)
    ts = ts[keep]
    o, h, lo, c = (np.asarray(x, dtype=float)[keep] for x in (bars.open, bars.high, bars.low, bars.close))
    fast, slow = ema(c, 60), ema(c, 600)
    targets = np.where(np.isnan(slow), np.nan, np.sign(fast - slow))
    cash = 10_000.0
    equity, position, trades = track(o, h, lo, c, targets, cash, 0.001, 0.0005, 1.0, 0.03, 0.0)
    assert trades.shape[0] > 20
    m, r = assert_matches_empyrical(empyrical, ts, equity, position, trades, cash, "1m")
    expected_days = int((ts[-1] + 60_000 - 1) // DAY - ts[0] // DAY + 1)  # every calendar day, the removed one too
    assert m["num_days"] == expected_days == len(np.unique(ts // DAY)) + 1 and m["num_days"] == len(r)
    assert m["total_commission"] == pytest.approx(trades[:, 7].sum())
    pnl = trades[:, 6]
    assert m["win_rate"] == pytest.approx(np.mean(pnl > 0))
    # Trade pnl adds up to the equity change (every position is closed by the end).
    assert pnl.sum() == pytest.approx(equity[-1] - cash, rel=1e-9, abs=1e-6)
    assert m["profit_factor"] == pytest.approx(pnl[pnl > 0].sum() / -pnl[pnl < 0].sum())


def test_calendar_year_with_missing_days_matches_empyrical_over_calendar_days(empyrical):
    ts, equity = year_2019_with_missing_days()
    m, r = assert_matches_empyrical(empyrical, ts, equity, np.ones(ts.size), NO_TRADES, 10_000.0, "1D")
    assert r.size == 365 and np.count_nonzero(r == 0) >= 40  # the 40 missing days are 0 returns


@pytest.mark.parametrize("case", weekly_and_monthly_runs(), ids=lambda c: c[0])
def test_weekly_and_monthly_bars_match_empyrical_over_calendar_days(empyrical, case):
    timeframe, ts, equity, end = case
    m, r = assert_matches_empyrical(empyrical, ts, equity, np.ones(ts.size), NO_TRADES, 1_000.0, timeframe)
    assert m["sharpe"] is not None and m["annual_volatility"] > 0


# --------------------------------------------------------------------------- properties

RATIO_KEYS = ("total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
              "num_trades", "win_rate", "avg_win", "avg_loss", "avg_win_loss_ratio", "profit_factor",
              "trades_per_day", "exposure", "avg_holding_hours", "num_bars", "num_days")


@st.composite
def runs(draw):
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))  # in hours: some days have no bars
    ts = T0 + np.cumsum(np.array(gaps, dtype=np.int64)) * HOUR
    bps = draw(st.lists(st.integers(-4_000, 4_000), min_size=n, max_size=n))
    cash = draw(st.floats(1.0, 1e6))
    equity = cash * np.cumprod(1.0 + np.array(bps) / 10_000)
    position = np.array(draw(st.lists(st.sampled_from([0.0, 1.5, -2.0]), min_size=n, max_size=n)))
    k = draw(st.integers(0, 8))
    rows = []
    for _ in range(k):
        a, b = sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2)))
        qty = draw(st.sampled_from([-3.0, -0.5, 0.25, 2.0]))
        price = draw(st.floats(1.0, 1e5))
        pnl = draw(st.sampled_from([0.0, 1.0, -1.0])) * draw(st.floats(0.01, 0.5)) * abs(qty) * price
        rows.append(trade(a, b, qty, price, pnl, commission=draw(st.floats(0.0, 5.0))))
    trades = np.array(rows, dtype=float).reshape(k, 9)
    return ts, equity, position, trades, cash


@settings(deadline=None, max_examples=150)
@given(runs(), st.floats(1e-3, 1e3))
def test_scaling_money_leaves_ratios_unchanged(run, scale):
    ts, equity, position, trades, cash = run
    m = compute(ts, equity, position, trades, cash, timeframe="1h")
    scaled_trades = trades.copy()
    scaled_trades[:, [3, 6, 7]] *= scale  # quantity, pnl and commission scale with the money
    s = compute(ts, equity * scale, position, scaled_trades, cash * scale, timeframe="1h")
    assert_plain(m)
    assert_plain(s)
    for key in RATIO_KEYS:
        if m[key] is None:
            assert s[key] is None, key
        else:
            assert s[key] == pytest.approx(m[key], rel=1e-7, abs=1e-12), key
    assert s["final_equity"] == pytest.approx(m["final_equity"] * scale, rel=1e-12)
    assert s["total_commission"] == pytest.approx(m["total_commission"] * scale, rel=1e-12)


@settings(deadline=None, max_examples=150)
@given(runs())
def test_bounds(run):
    ts, equity, position, trades, cash = run
    m = compute(ts, equity, position, trades, cash, timeframe="1h")
    assert_plain(m)
    assert m["win_rate"] is None or 0.0 <= m["win_rate"] <= 1.0
    assert 0.0 <= m["exposure"] <= 1.0
    assert -1.0 <= m["max_drawdown"] <= 0.0  # equity stays positive here
    assert m["annual_volatility"] is None or m["annual_volatility"] >= 0
    assert m["profit_factor"] is None or m["profit_factor"] >= 0
    assert m["avg_win"] is None or m["avg_win"] > 0
    assert m["avg_loss"] is None or m["avg_loss"] < 0
    assert m["num_days"] == (ts[-1] + HOUR - 1) // DAY - ts[0] // DAY + 1  # calendar days spanned
    assert m["num_trades"] == trades.shape[0]

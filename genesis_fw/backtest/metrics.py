"""Performance metrics of a backtest: returns, risk, drawdown and trade statistics.

:func:`compute` summarises the output of :func:`genesis_fw.backtest.positions.track` as a flat dict of plain
Python numbers (JSON-serialisable). Every return, drawdown, rate and exposure is a **fraction**
(0.05 = 5 %), never a percentage; money is in the quote currency; times are UTC.

Time is calendar time. The run lasts from the first bar's open to the last bar's close (its open
plus the timeframe; a calendar month for ``1M``), whatever the timeframe and however many bars are
missing; every annualised figure uses that elapsed time with a year of :data:`YEAR_DAYS` days.
Daily returns (see :func:`daily_returns`) are taken on every UTC calendar day of the run: a bar's
equity belongs to the day its close falls in, and a day in which no bar closes (missing data, or
the inside of a 1W/1M bar) keeps the previous day's equity, a 0 return. The return-based ratios
follow empyrical's conventions on that calendar-day series with :data:`YEAR_DAYS` periods a year
and a risk-free rate / required return of 0.

A metric that is undefined for the run (no trades, no losing trade, zero dispersion, too few days,
no drawdown, ...) is ``None``: never NaN, infinity or a made-up number. The full definitions are in
``docs/BACKTEST_GUIDE.md`` ("Metrics").
"""

from __future__ import annotations

import math

import numpy as np

from ..data.timeframes import TIMEFRAMES

#: Days in a year (the mean calendar year) for every annualised figure: CAGR's exponent is
#: ``YEAR_DAYS`` days / elapsed time, and daily figures are annualised with ``YEAR_DAYS`` periods.
YEAR_DAYS = 365.25
#: Periods per year of the calendar-day return series (one return per calendar day).
PERIODS_PER_YEAR = YEAR_DAYS
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: Daily returns whose spread (max - min) is at most this are treated as constant (standard deviation 0):
#: a spread this small is floating-point rounding of the equity ratios, not dispersion.
CONSTANT_RETURNS_TOL = 1e-12

#: Keys of :func:`compute`'s result, in display order.
KEYS = (
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
    "num_trades", "win_rate", "avg_win", "avg_loss", "avg_win_loss_ratio", "profit_factor", "trades_per_day",
    "exposure", "avg_holding_hours", "total_commission", "final_equity", "num_bars", "num_days",
)


def _num(x) -> float | None:
    """A finite value as a plain ``float``; ``None`` for None, NaN or infinity."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _check_cash(initial_cash) -> float:
    cash = float(initial_cash)
    if not (math.isfinite(cash) and cash > 0):
        raise ValueError(f"initial_cash must be a positive finite number, got {initial_cash!r}")
    return cash


def _check_series(timestamp_ms, equity) -> tuple[np.ndarray, np.ndarray]:
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    eq = np.asarray(equity, dtype=np.float64)
    if ts.ndim != 1 or eq.shape != ts.shape:
        raise ValueError(f"timestamp_ms and equity must be 1-d arrays of the same length, got shapes "
                         f"{ts.shape} and {eq.shape}")
    if ts.shape[0] > 1 and np.any(ts[1:] <= ts[:-1]):
        raise ValueError("timestamp_ms must be strictly increasing")
    return ts, eq


def _check_timeframe(timeframe) -> str:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {' '.join(TIMEFRAMES)}")
    return timeframe


def bar_ends_ms(timestamp_ms, timeframe: str) -> np.ndarray:
    """Close times (UTC ms, exclusive) of bars opening at ``timestamp_ms``: the open plus the
    timeframe's width; for ``1M`` the first instant of the next calendar month."""
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    width = TIMEFRAMES[_check_timeframe(timeframe)]
    if width:
        return ts + width
    month = ts.astype("datetime64[ms]").astype("datetime64[M]")
    return (month + 1).astype("datetime64[ms]").astype(np.int64)


def _daily(ts: np.ndarray, ends: np.ndarray, eq: np.ndarray, cash: float) -> tuple[np.ndarray, np.ndarray]:
    if ts.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    # Floor division: correct for times before 1970 too. A close at 00:00 belongs to the day before.
    close_day = (ends - 1) // DAY_MS
    first = int(ts[0] // DAY_MS)
    n_days = int(close_day[-1]) - first + 1
    last_of_day = np.append(np.flatnonzero(close_day[1:] != close_day[:-1]), ts.shape[0] - 1)
    day_index = close_day[last_of_day] - first
    closes = np.empty(n_days)
    closes[day_index] = eq[last_of_day]
    # Days in which no bar closes keep the previous day's equity (initial_cash before the first close).
    source = np.full(n_days, -1, dtype=np.int64)
    source[day_index] = day_index
    np.maximum.accumulate(source, out=source)
    daily = np.where(source >= 0, closes[np.maximum(source, 0)], cash)
    prev = np.empty_like(daily)
    prev[0] = cash
    prev[1:] = daily[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(prev > 0, daily / prev - 1.0, np.nan)
    return (first + np.arange(n_days, dtype=np.int64)) * DAY_MS, returns


def daily_returns(timestamp_ms, equity, initial_cash, *, timeframe: str) -> tuple[np.ndarray, np.ndarray]:
    """Calendar-day returns of an equity curve: ``(day start ms, returns as fractions)``.

    ``timestamp_ms`` are the bars' open times (UTC ms, strictly increasing), ``equity`` the equity at
    each bar's close and ``timeframe`` the bars' timeframe (``1h``, ``1D``, ``1W``, ``1M``, ...). A
    bar's equity belongs to the UTC day its close falls in (the day of the last instant it covers:
    a bar closing at 00:00 belongs to the day before). Every calendar day from the first bar's open
    to the last bar's close has a return: day ``d``'s equity ``E_d`` is the equity at the last close
    in that day, or ``E_{d-1}`` when no bar closes in it (``initial_cash`` before the first close).
    ``r_1 = E_1 / initial_cash - 1`` and ``r_d = E_d / E_{d-1} - 1``. A return whose previous equity
    is <= 0 (after a liquidation) is undefined and NaN.
    """
    ts, eq = _check_series(timestamp_ms, equity)
    return _daily(ts, bar_ends_ms(ts, timeframe), eq, _check_cash(initial_cash))


def compute(timestamp_ms: np.ndarray, equity: np.ndarray, position: np.ndarray, trades: np.ndarray,
            initial_cash: float, *, timeframe: str) -> dict[str, float | int | None]:
    """Summarise a run; see the module docstring and ``docs/BACKTEST_GUIDE.md`` for the definitions.

    ``timestamp_ms``: bar open times (int64 UTC ms, strictly increasing); ``equity``: equity at each
    bar's close; ``position``: signed position (base units) at each close; ``trades``: the (k, 9)
    array of :func:`genesis_fw.backtest.positions.track` (``entry_bar, exit_bar, side, qty, entry_price,
    exit_price, pnl, commission, reason``); ``timeframe``: the bars' timeframe, which fixes each bar's
    close and so the run's elapsed time. Returns a dict with the keys :data:`KEYS`, each a plain
    ``float``/``int`` or ``None`` when undefined. Raises ``ValueError`` for no bars, mismatched
    lengths, unsorted times, a bad trades array, an unknown timeframe or a non-positive ``initial_cash``.
    """
    ts, eq = _check_series(timestamp_ms, equity)
    _check_timeframe(timeframe)
    cash = _check_cash(initial_cash)
    pos = np.asarray(position, dtype=np.float64)
    tr = np.asarray(trades, dtype=np.float64)
    n = eq.shape[0]
    if n == 0:
        raise ValueError("no bars: metrics need at least one bar")
    if pos.shape != eq.shape:
        raise ValueError(f"position must have the same length as equity ({n}), got shape {pos.shape}")
    if tr.ndim != 2 or tr.shape[1] != 9:
        raise ValueError(f"trades must be a (k, 9) array, got shape {tr.shape}")

    out: dict[str, float | int | None] = dict.fromkeys(KEYS)
    final = float(eq[-1])
    ratio = final / cash
    out["total_return"] = _num(ratio - 1.0)
    out["final_equity"] = _num(final)
    out["num_bars"] = int(n)

    # --- elapsed calendar time: first bar's open to last bar's close ---
    ends = bar_ends_ms(ts, timeframe)
    elapsed_days = (int(ends[-1]) - int(ts[0])) / DAY_MS
    if ratio >= 0:
        with np.errstate(over="ignore"):
            out["cagr"] = _num(np.float64(ratio) ** (YEAR_DAYS / elapsed_days) - 1.0)

    # --- calendar-day returns: volatility, Sharpe, Sortino ---
    _, r = _daily(ts, ends, eq, cash)
    nd = int(r.shape[0])
    out["num_days"] = nd
    if nd >= 2 and np.isfinite(r).all():
        ann = math.sqrt(PERIODS_PER_YEAR)
        mean = float(r.mean())
        std = 0.0 if float(r.max() - r.min()) <= CONSTANT_RETURNS_TOL else float(r.std(ddof=1))
        out["annual_volatility"] = _num(std * ann)
        if std > 0:
            out["sharpe"] = _num(mean / std * ann)
        downside = math.sqrt(float(np.mean(np.square(np.minimum(r, 0.0)))))
        if downside > 0:
            out["sortino"] = _num(mean / downside * ann)

    # --- drawdown (bar level; the running peak starts at initial_cash) ---
    peak = np.maximum(np.maximum.accumulate(eq), cash)
    mdd = min(float(np.min(eq / peak)) - 1.0, 0.0)
    out["max_drawdown"] = _num(mdd)
    if mdd < 0 and out["cagr"] is not None:
        out["calmar"] = _num(out["cagr"] / abs(mdd))

    # --- exposure and trades ---
    out["exposure"] = _num(np.count_nonzero(pos) / n)
    k = int(tr.shape[0])
    out["num_trades"] = k
    out["total_commission"] = _num(tr[:, 7].sum()) if k else 0.0
    out["trades_per_day"] = _num(k / elapsed_days)
    if k:
        pnl = tr[:, 6]
        win = pnl > 0
        loss = pnl < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ret = pnl / (np.abs(tr[:, 3]) * tr[:, 4])
        out["win_rate"] = _num(np.count_nonzero(win) / k)
        if win.any():
            out["avg_win"] = _num(ret[win].mean())
        if loss.any():
            out["avg_loss"] = _num(ret[loss].mean())
            out["profit_factor"] = _num(pnl[win].sum() / abs(pnl[loss].sum()))
        if out["avg_win"] is not None and out["avg_loss"]:
            out["avg_win_loss_ratio"] = _num(out["avg_win"] / abs(out["avg_loss"]))
        held = ts[tr[:, 1].astype(np.int64)] - ts[tr[:, 0].astype(np.int64)]
        out["avg_holding_hours"] = _num(held.mean() / HOUR_MS)
    return out

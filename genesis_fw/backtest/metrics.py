"""Performance metrics of a backtest: returns, risk, drawdown and trade statistics.

:func:`compute` summarises the output of :func:`genesis_fw.backtest.positions.track` as a flat dict of plain
Python numbers (JSON-serialisable). Every return, drawdown, rate and exposure is a **fraction**
(0.05 = 5 %), never a percentage; money is in the quote currency; times are UTC.

Daily returns (see :func:`daily_returns`) sample the equity at each UTC calendar day's close, i.e.
the last bar whose open time falls on that day; days without bars are absent (not filled). The
return-based ratios follow empyrical's conventions with 365 periods a year (crypto trades every
day) and a risk-free rate / required return of 0.

A metric that is undefined for the run (no trades, no losing trade, zero dispersion, too few days,
no drawdown, ...) is ``None``: never NaN, infinity or a made-up number. The full definitions are in
``docs/BACKTEST_GUIDE.md`` ("Metrics").
"""

from __future__ import annotations

import math

import numpy as np

#: Periods per year used to annualise daily figures (crypto markets trade 365 days a year).
PERIODS_PER_YEAR = 365
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


def _day_ends(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(UTC day number of each bar, index of the last bar of each day that has bars)."""
    day = ts // DAY_MS  # floor division: correct for times before 1970 too
    ends = np.flatnonzero(day[1:] != day[:-1])
    return day, np.append(ends, ts.shape[0] - 1) if ts.shape[0] else ends


def _daily(ts: np.ndarray, eq: np.ndarray, cash: float) -> tuple[np.ndarray, np.ndarray]:
    if ts.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    day, ends = _day_ends(ts)
    closes = eq[ends]
    prev = np.empty_like(closes)
    prev[0] = cash
    prev[1:] = closes[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(prev > 0, closes / prev - 1.0, np.nan)
    return day[ends] * DAY_MS, returns


def daily_returns(timestamp_ms, equity, initial_cash) -> tuple[np.ndarray, np.ndarray]:
    """Daily returns of an equity curve: ``(day start ms, returns as fractions)``.

    ``timestamp_ms`` are the bars' open times (UTC ms, strictly increasing) and ``equity`` the
    equity at each bar's close. A bar belongs to the UTC day its open time falls on; day ``d``'s
    equity ``E_d`` is the equity at the close of that day's last bar. ``r_1 = E_1 / initial_cash - 1``
    and ``r_d = E_d / E_{d-1} - 1``. Days without bars are absent. A return whose previous equity is
    <= 0 (after a liquidation) is undefined and NaN.
    """
    ts, eq = _check_series(timestamp_ms, equity)
    return _daily(ts, eq, _check_cash(initial_cash))


def compute(timestamp_ms: np.ndarray, equity: np.ndarray, position: np.ndarray, trades: np.ndarray,
            initial_cash: float) -> dict[str, float | int | None]:
    """Summarise a run; see the module docstring and ``docs/BACKTEST_GUIDE.md`` for the definitions.

    ``timestamp_ms``: bar open times (int64 UTC ms, strictly increasing); ``equity``: equity at each
    bar's close; ``position``: signed position (base units) at each close; ``trades``: the (k, 9)
    array of :func:`genesis_fw.backtest.positions.track` (``entry_bar, exit_bar, side, qty, entry_price,
    exit_price, pnl, commission, reason``). Returns a dict with the keys :data:`KEYS`, each a plain
    ``float``/``int`` or ``None`` when undefined. Raises ``ValueError`` for no bars, mismatched
    lengths, unsorted times, a bad trades array or a non-positive ``initial_cash``.
    """
    ts, eq = _check_series(timestamp_ms, equity)
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

    # --- daily returns: CAGR, volatility, Sharpe, Sortino ---
    _, r = _daily(ts, eq, cash)
    nd = int(r.shape[0])
    out["num_days"] = nd
    if ratio >= 0:
        with np.errstate(over="ignore"):
            out["cagr"] = _num(np.float64(ratio) ** (PERIODS_PER_YEAR / nd) - 1.0)
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
    span_days = (int(ts[-1]) - int(ts[0])) / DAY_MS
    if span_days > 0:
        out["trades_per_day"] = _num(k / span_days)
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

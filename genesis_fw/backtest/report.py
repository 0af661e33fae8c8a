"""The HTML report of a backtest: one self-contained file, readable offline in any browser.

:func:`render_html` returns the page and :func:`write_html` writes it atomically. The page needs no
JavaScript and fetches nothing: the CSS is inline, the charts are PNG images drawn with matplotlib's
Agg backend and embedded as ``data:`` URIs, and the monthly returns heatmap is an HTML table with
inline background colours. Every string that comes from the run (strategy name, parameters, paths,
notes) goes through jinja2's autoescaping (template ``genesis_fw/templates/report.html.j2``).

Sections: header (strategy, symbol/timeframe, range, run id, engine version, data origin and
SHA-256), metrics, parameters and costs, dataset identity, equity curve, drawdown (underwater),
distribution of trade returns, monthly returns, trades (the first and last :data:`TRADES_SHOWN` when
there are more than twice as many).

Shared pieces (number formats, figures as PNG, the jinja2 environment) are in :mod:`genesis_fw.pages`.
Metrics are rendered whatever keys are present: known keys get a label and a format
(:data:`METRIC_FORMATS`; fractions as percent with 2 decimals), others a generic one; ``None``
(undefined) is shown as "n/a". Matplotlib is imported only when a report is rendered.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from .._util import atomic_path
from ..data.timeframes import from_ms
from ..pages import BLUE, GREEN, GREY, INK, RED, decimals, finite, format_value, new_figure, png, style_axes, template

#: Plotted series are downsampled to at most this many points (min and max of each bucket are kept).
MAX_PLOT_POINTS = 4000
#: With more than twice this many trades the table shows the first and the last this many.
TRADES_SHOWN = 500

#: Label and format of the known metrics. Formats: ``pct`` (a fraction shown as percent, 2 decimals),
#: ``ratio`` (2 decimals), ``int``, ``money`` (quote currency, 2 decimals), ``hours``.
METRIC_FORMATS: dict[str, tuple[str, str]] = {
    "total_return": ("Total return", "pct"),
    "cagr": ("CAGR", "pct"),
    "final_equity": ("Final equity", "money"),
    "annual_volatility": ("Annual volatility", "pct"),
    "sharpe": ("Sharpe ratio", "ratio"),
    "sortino": ("Sortino ratio", "ratio"),
    "max_drawdown": ("Max drawdown", "pct"),
    "calmar": ("Calmar ratio", "ratio"),
    "num_trades": ("Trades", "int"),
    "win_rate": ("Win rate", "pct"),
    "avg_win": ("Average win", "pct"),
    "avg_loss": ("Average loss", "pct"),
    "avg_win_loss_ratio": ("Avg win / avg loss", "ratio"),
    "profit_factor": ("Profit factor", "ratio"),
    "trades_per_day": ("Trades per day", "ratio"),
    "avg_holding_hours": ("Avg holding time", "hours"),
    "total_commission": ("Total commission", "money"),
    "exposure": ("Exposure", "pct"),
    "num_bars": ("Bars", "int"),
    "num_days": ("Days", "int"),
}

#: How the metrics tables are grouped; keys not listed here go to "Other".
METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Returns", ("total_return", "cagr", "final_equity")),
    ("Risk", ("annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar")),
    ("Trades", ("num_trades", "win_rate", "avg_win", "avg_loss", "avg_win_loss_ratio", "profit_factor")),
    ("Activity", ("trades_per_day", "avg_holding_hours", "exposure", "total_commission", "num_bars", "num_days")),
)

#: Headline figures shown as large numbers under the title (those present in the metrics).
KPI_KEYS = ("total_return", "cagr", "max_drawdown", "sharpe", "num_trades", "win_rate")

#: Metrics whose sign is good or bad news (coloured green / red).
_SIGNED = {"total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "avg_win", "avg_loss"}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------- formatting


def _sign_class(value: Any) -> str:
    x = finite(value)
    if x is None:
        return "na"
    return "pos" if x > 0 else "neg" if x < 0 else ""


def _label(key: str) -> str:
    return METRIC_FORMATS[key][0] if key in METRIC_FORMATS else key.replace("_", " ").capitalize()


def _metric_row(key: str, value: Any) -> dict[str, str]:
    kind = METRIC_FORMATS.get(key, ("", "auto"))[1]
    cls = _sign_class(value) if key in _SIGNED else ("na" if finite(value) is None else "")
    return {"key": key, "label": _label(key), "value": format_value(value, kind), "cls": cls}


def _when(ms: int) -> str:
    return from_ms(ms).strftime("%Y-%m-%d %H:%M")


def _iso_text(value: Any) -> str:
    """An ISO 8601 time from the dataset identity as ``YYYY-MM-DD HH:MM``; other values as they are."""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return format_value(value)


def _duration(ms: int) -> str:
    minutes = int(ms) // 60_000
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _pct_text(x: float | None, digits: int = 4) -> str:
    return "off" if x is None else f"{x * 100:.{digits}g}%"


# --------------------------------------------------------------------------- series helpers


def downsample_indices(values: np.ndarray, max_points: int = MAX_PLOT_POINTS) -> np.ndarray:
    """Sorted indices of at most ``max_points`` points of ``values`` that keep its shape.

    The series is cut into ``(max_points - 2) // 2`` equal buckets and the minimum and maximum of
    each are kept (so no drawdown or spike disappears), plus the first and the last point.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n <= max_points:
        return np.arange(n)
    buckets = max((max_points - 2) // 2, 1)
    width = -(-n // buckets)  # ceil
    padded = np.pad(values, (0, buckets * width - n), mode="edge").reshape(buckets, width)
    base = np.arange(buckets) * width
    keep = np.concatenate([base + np.argmin(padded, axis=1), base + np.argmax(padded, axis=1), [0, n - 1]])
    return np.unique(np.minimum(keep, n - 1))


def drawdown(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Drawdown at each bar as a fraction (<= 0) below the running peak, which starts at ``initial_cash``."""
    peak = np.maximum(np.maximum.accumulate(equity), initial_cash)
    return equity / peak - 1.0


def trade_returns(trades: np.ndarray) -> np.ndarray:
    """Net return of each trade: ``pnl / (|qty| * entry_price)`` (as in ``BacktestResult.trade_records``)."""
    if len(trades) == 0:
        return np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return trades[:, 6] / (np.abs(trades[:, 3]) * trades[:, 4])


def monthly_returns(timestamp_ms: np.ndarray, equity: np.ndarray, initial_cash: float
                    ) -> dict[int, dict[int, float | None]]:
    """``{year: {month (1-12): return}}`` from the equity at each UTC month's last bar.

    The first month is measured from ``initial_cash``; months without bars are absent; a return after
    equity <= 0 is ``None``. Key ``13`` of each year is the whole year (from the previous year's last
    month-end equity, or ``initial_cash``).
    """
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    if ts.shape[0] == 0:
        return {}
    months = ts.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    ends = np.append(np.flatnonzero(months[1:] != months[:-1]), ts.shape[0] - 1)
    closes = np.asarray(equity, dtype=np.float64)[ends]
    prev = np.concatenate([[initial_cash], closes[:-1]])
    out: dict[int, dict[int, float | None]] = {}
    year_start: dict[int, float] = {}
    for m, close, before in zip(months[ends].tolist(), closes.tolist(), prev.tolist(), strict=True):
        year, month = 1970 + m // 12, m % 12 + 1
        out.setdefault(year, {})[month] = finite(close / before - 1.0) if before > 0 else None
        year_start.setdefault(year, before)
        out[year][13] = finite(close / year_start[year] - 1.0) if year_start[year] > 0 else None
    return out


def _heat_style(value: float | None, scale: float) -> str:
    """Inline CSS of a heatmap cell: green for gains, red for losses, stronger for larger moves."""
    if value is None:
        return ""
    if value == 0 or scale <= 0:
        return "background-color:#f3f4f6;color:#111827"
    strength = min(abs(value) / scale, 1.0)
    alpha = 0.12 + 0.78 * strength
    base = (22, 163, 74) if value > 0 else (220, 38, 38)
    r, g, b = (round(255 + (c - 255) * alpha) for c in base)
    return f"background-color:rgb({r},{g},{b});color:{'#ffffff' if alpha > 0.6 else '#111827'}"


def _monthly_table(result: Any) -> dict[str, Any]:
    table = monthly_returns(result.bars.timestamp, result.equity, result.config.initial_cash)
    defined = [abs(v) for months in table.values() for m, v in months.items() if m <= 12 and v is not None]
    scale = max(defined, default=0.0)
    rows = []
    for year in sorted(table):
        cells = []
        for month in range(1, 14):
            if month in table[year]:
                value = table[year][month]
                cells.append({"text": format_value(value, "pct"), "style": _heat_style(value, scale)})
            else:
                cells.append({"text": "", "style": ""})
        rows.append({"year": year, "cells": cells})
    return {"months": _MONTHS, "rows": rows}


# --------------------------------------------------------------------------- charts


def _equity_chart(x: np.ndarray, equity: np.ndarray, close: np.ndarray, cash: float) -> dict[str, Any]:
    from matplotlib.ticker import StrMethodFormatter

    fig = new_figure(3.8, aligned=True)
    ax = fig.add_subplot()
    style_axes(ax)
    if close.shape[0] and math.isfinite(close[0]) and close[0] > 0:
        hold = cash * close / close[0]
        idx = downsample_indices(hold)
        ax.plot(x[idx], hold[idx], color=GREY, linewidth=1.0, label="Buy & hold (no costs)")
    idx = downsample_indices(equity)
    ax.plot(x[idx], equity[idx], color=BLUE, linewidth=1.3, label="Strategy equity")
    ax.axhline(cash, color=INK, linewidth=0.7, linestyle=":", label="Initial cash")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylabel("Equity (quote currency)", fontsize=9, color=INK)
    ax.legend(loc="best", frameon=False, fontsize=9)
    ax.margins(x=0.01)
    return png(fig)


def _drawdown_chart(x: np.ndarray, dd: np.ndarray) -> dict[str, Any]:
    from matplotlib.ticker import PercentFormatter

    fig = new_figure(2.9, aligned=True)
    ax = fig.add_subplot()
    style_axes(ax)
    idx = downsample_indices(dd)
    ax.fill_between(x[idx], dd[idx], 0.0, color=RED, alpha=0.25, linewidth=0)
    ax.plot(x[idx], dd[idx], color=RED, linewidth=0.9)
    worst = int(np.argmin(dd))
    if dd[worst] < 0:
        ax.plot([x[worst]], [dd[worst]], "o", color=RED, markersize=5,
                label=f"max drawdown {dd[worst] * 100:.2f}% ({_when(int(x[worst].astype(np.int64)))} UTC)")
        ax.legend(loc="lower left", frameon=False, fontsize=9)
        ax.set_ylim(dd[worst] * 1.12, 0.0)
    else:
        ax.set_ylim(-0.01, 0.001)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("Below running peak", fontsize=9, color=INK)
    ax.margins(x=0.01)
    return png(fig)


def _returns_histogram(returns: np.ndarray) -> dict[str, Any]:
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig = new_figure(3.2)
    ax = fig.add_subplot()
    style_axes(ax, dates=False)
    # Bin edges on multiples of the bin width, so 0 is an edge and no bin mixes gains with losses.
    count = int(np.clip(round(2 * math.sqrt(returns.shape[0])), 10, 60))
    lo, hi = float(returns.min()), float(returns.max())
    width = (hi - lo) / count if hi > lo else max(abs(lo), 1e-4) / 10
    bins = np.arange(math.floor(lo / width), math.floor(hi / width) + 2) * width
    _, edges, patches = ax.hist(returns, bins=bins, edgecolor="white", linewidth=0.5)
    for patch, lo, hi in zip(patches, edges[:-1], edges[1:], strict=True):
        patch.set_facecolor(GREEN if (lo + hi) / 2 > 0 else RED)
    ax.axvline(0.0, color=INK, linewidth=0.8)
    mean = float(returns.mean())
    ax.axvline(mean, color=BLUE, linewidth=1.2, linestyle="--", label=f"mean {mean * 100:.2f}%")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Return per trade (net of commission)", fontsize=9, color=INK)
    ax.set_ylabel("Trades", fontsize=9, color=INK)
    ax.legend(loc="upper right", frameon=False, fontsize=9)
    return png(fig)


# --------------------------------------------------------------------------- tables


def _trade_rows(result: Any) -> tuple[list[dict[str, Any]], int]:
    """Rows of the trades table (a ``{"gap": n}`` row where ``n`` trades are left out) and ``n``."""
    from .positions import EXIT_REASONS

    trades, ts = result.trades, result.bars.timestamp
    k = len(trades)
    if k > 2 * TRADES_SHOWN:
        chosen = list(range(TRADES_SHOWN)) + list(range(k - TRADES_SHOWN, k))
        hidden = k - 2 * TRADES_SHOWN
    else:
        chosen, hidden = list(range(k)), 0
    returns = trade_returns(trades)
    rows: list[dict[str, Any]] = []
    for j in chosen:
        if hidden and j == k - TRADES_SHOWN:
            rows.append({"gap": hidden})
        entry_bar, exit_bar, side, qty, entry, exit_, pnl, fee, reason = trades[j].tolist()
        t0, t1 = int(ts[int(entry_bar)]), int(ts[int(exit_bar)])
        code = int(reason)
        rows.append({
            "n": f"{j + 1:,}",
            "side": "long" if side > 0 else "short",
            "entry_time": _when(t0),
            "exit_time": _when(t1),
            "held": _duration(t1 - t0),
            "entry_price": decimals(entry, 6, 2),
            "exit_price": decimals(exit_, 6, 2),
            "qty": decimals(abs(qty), 6, 0),
            "ret": format_value(returns[j], "pct"),
            "ret_cls": _sign_class(returns[j]),
            "pnl": format_value(pnl, "money"),
            "pnl_cls": _sign_class(pnl),
            "commission": format_value(fee, "money"),
            "reason": EXIT_REASONS[code] if 0 <= code < len(EXIT_REASONS) else str(code),
        })
    return rows, hidden


def _config_rows(result: Any) -> list[tuple[str, str]]:
    cfg = result.config.to_dict()
    known: dict[str, tuple[str, Any]] = {
        "initial_cash": ("Initial cash", lambda v: format_value(v, "money")),
        "commission": ("Commission per fill", lambda v: f"{_pct_text(v)} of notional"),
        "slippage": ("Slippage per market fill", lambda v: f"{format_value(v)} bps"),
        "size": ("Position size", lambda v: f"{format_value(v)} x equity"),
        "max_leverage": ("Max leverage", lambda v: f"{format_value(v)} x"),
        "stop_loss": ("Stop-loss", lambda v: f"{_pct_text(v)} from entry" if v is not None else "off"),
        "take_profit": ("Take-profit", lambda v: f"{_pct_text(v)} from entry" if v is not None else "off"),
        "start": ("Requested start", lambda v: format_value(v) if v is not None else "first candle"),
        "end": ("Requested end (exclusive)", lambda v: format_value(v) if v is not None else "after last candle"),
    }
    rows = [(label, fmt(cfg[key])) for key, (label, fmt) in known.items() if key in cfg]
    # The exchange section is how candles were fetched, the features section what ML features are
    # computed from them, the model and train sections how `train` fits a model, and the registry and champion
    # sections where the model registry logs and how `champion select` decides: none is a backtest parameter.
    skip = set(known) | {"strategy", "output", "symbol", "timeframe", "exchange", "features", "model", "train",
                         "registry", "champion"}
    rows += [(_label(key), format_value(value)) for key, value in cfg.items() if key not in skip]
    rows.append(("Engine path", format_value(result.path)))
    return rows


_DATASET_LABELS = {
    "symbol": "Symbol", "timeframe": "Timeframe", "origin": "Origin", "resampled_from": "Resampled from",
    "file": "File", "first_bar": "First bar (UTC open time)", "last_bar": "Last bar (UTC open time)",
    "num_bars": "Bars", "sha256": "SHA-256 of the candles used",
    "history": "History (seen by the strategy before start, not traded)",
}


def _dataset_rows(dataset: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, value in dataset.items():
        if key == "resampled_from" and value is None:
            text = "no (stored at this timeframe)"
        elif key in ("first_bar", "last_bar"):
            text = format_value(value)
        elif key == "history":
            text = "none" if value is None else (
                f"{value['bars']:,} bars before the first bar ({value['requested']:,} asked), from "
                f"{_iso_text(value['first_bar'])}; SHA-256 {value['sha256']}")
        else:
            text = format_value(value, "int" if key == "num_bars" else "auto")
        rows.append({"label": _DATASET_LABELS.get(key, _label(key)), "value": text,
                     "mono": key in ("file", "sha256")})
    return rows


def _metric_groups(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    groups, seen = [], set()
    for title, keys in METRIC_GROUPS:
        rows = [_metric_row(k, metrics[k]) for k in keys if k in metrics]
        seen.update(keys)
        if rows:
            groups.append({"title": title, "rows": rows})
    other = [_metric_row(k, v) for k, v in metrics.items() if k not in seen]
    if other:
        groups.append({"title": "Other", "rows": other})
    return groups


# --------------------------------------------------------------------------- rendering


def _context(result: Any) -> dict[str, Any]:
    bars, d, m = result.bars, result.dataset, result.metrics
    cash = float(result.config.initial_cash)
    equity = np.asarray(result.equity, dtype=np.float64)
    x = np.asarray(bars.timestamp, dtype=np.int64).astype("datetime64[ms]")
    returns = trade_returns(result.trades)
    returns = returns[np.isfinite(returns)]
    rows, hidden = _trade_rows(result)
    first, last = d.get("first_bar"), d.get("last_bar")
    if first is None and len(bars):
        first, last = from_ms(int(bars.timestamp[0])).isoformat(), from_ms(int(bars.timestamp[-1])).isoformat()
    return {
        "title": f"Backtest {result.strategy} on {d.get('symbol', '?')} {d.get('timeframe', '?')}",
        "strategy": result.strategy,
        "symbol": d.get("symbol", "n/a"),
        "timeframe": d.get("timeframe", "n/a"),
        "range": f"{_iso_text(first)} .. {_iso_text(last)} UTC" if first is not None else "n/a",
        "run_id": result.run_id,
        "engine_version": result.engine_version,
        "engine_path": result.path,
        "origin": format_value(d.get("origin")),
        "resampled_from": d.get("resampled_from"),
        "sha256": format_value(d.get("sha256")),
        "notes": list(result.notes),
        "liquidation": result.liquidation_text(),
        "kpis": [_metric_row(k, m[k]) for k in KPI_KEYS if k in m],
        "metric_groups": _metric_groups(m),
        "params": [(str(k), format_value(v)) for k, v in result.params.items()],
        "config_rows": _config_rows(result),
        "dataset_rows": _dataset_rows(d),
        "equity_chart": _equity_chart(x, equity, np.asarray(bars.close, dtype=np.float64), cash) if len(x) else None,
        "drawdown_chart": _drawdown_chart(x, drawdown(equity, cash)) if len(x) else None,
        "returns_chart": _returns_histogram(returns) if returns.shape[0] else None,
        "monthly": _monthly_table(result),
        "num_trades": len(result.trades),
        "trade_rows": rows,
        "trades_hidden": hidden,
        "trades_shown": TRADES_SHOWN,
    }


def render_html(result: Any) -> str:
    """The self-contained HTML report of a :class:`genesis_fw.backtest.BacktestResult`."""
    return template("report.html.j2").render(**_context(result))


def write_html(result: Any, path: Any) -> None:
    """Write :func:`render_html` of ``result`` to ``path`` (UTF-8) through a temp file and a rename."""
    text = render_html(result)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

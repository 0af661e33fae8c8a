"""Saving a backtest run: JSON summary, CSV trades and equity, HTML report, and a catalog row.

Files go next to the HTML report and are named after its whole name without ``.html``: for
``results/ema_sl0.02.html`` they are ``results/ema_sl0.02.json``, ``results/ema_sl0.02.trades.csv``
and ``results/ema_sl0.02.equity.csv``. The default name holds the run id, so no run replaces the files
of another. Each file is written to a temp file and renamed; paths inside the store's own files or
that cannot be written are refused (:class:`~genesis_fw.errors.OutputError`) before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._util import atomic_path, check_writable, output_error, write_text_atomic
from ..catalog import Catalog, utcnow
from ..data.store import CandleStore
from .engine import BacktestResult


def default_output(result: BacktestResult) -> Path:
    """``results/backtest_{strategy}_{symbol}_{timeframe}_{run_id}.html`` (unique per run)."""
    d = result.dataset
    return Path("results") / f"backtest_{result.strategy}_{d['symbol']}_{d['timeframe']}_{result.run_id}.html"


def output_paths(html: Path) -> dict[str, Path]:
    """The files of one run, named after its HTML report: the report's whole name minus a final
    ``.html``/``.htm`` (any case) is the stem, so dots inside the name (``ema_sl0.02``) are kept."""
    html = Path(html)
    name = html.name
    base, dot, ext = name.rpartition(".")
    stem = html.with_name(base) if dot and base and ext.lower() in ("html", "htm") else html
    return {
        "report": html,
        "summary": Path(f"{stem}.json"),
        "trades": Path(f"{stem}.trades.csv"),
        "equity": Path(f"{stem}.equity.csv"),
    }


def check_outputs(html: Path, store: CandleStore, *, report: bool = True) -> dict[str, Path]:
    """The run's files for ``html`` (the report only with ``report``), each checked: not inside the
    store's own files (:meth:`CandleStore.check_output`) and writable; :class:`OutputError` if not."""
    paths = {k: v for k, v in output_paths(html).items() if report or k != "report"}
    for path in paths.values():
        store.check_output(path)
        check_writable(path)
    return paths


def trades_table(result: BacktestResult):
    """Trades as an Arrow table: UTC times, side, size (base units), prices (quote), pnl (quote, net of
    commission), return (fraction of entry notional), commission (quote), exit reason, bar indices."""
    import pyarrow as pa

    from .positions import EXIT_REASONS

    t = result.trades
    entry_bar, exit_bar = t[:, 0].astype(np.int64), t[:, 1].astype(np.int64)
    ts = result.bars.timestamp
    qty = np.abs(t[:, 3])
    return pa.table({
        "entry_time_utc": pa.array(ts[entry_bar], pa.timestamp("ms")),
        "exit_time_utc": pa.array(ts[exit_bar], pa.timestamp("ms")),
        "side": pa.array(np.where(t[:, 2] > 0, "long", "short")),
        "qty": qty,
        "entry_price": t[:, 4],
        "exit_price": t[:, 5],
        "pnl": t[:, 6],
        "return": t[:, 6] / (qty * t[:, 4]) if len(t) else t[:, 6],
        "commission": t[:, 7],
        "exit_reason": pa.array([EXIT_REASONS[int(r)] for r in t[:, 8]], pa.string()),
        "entry_bar": entry_bar,
        "exit_bar": exit_bar,
    })


def equity_table(result: BacktestResult):
    """One row per bar: open time (UTC), position (signed base units) and equity (quote) at its close."""
    import pyarrow as pa

    return pa.table({
        "timestamp_utc": pa.array(result.bars.timestamp, pa.timestamp("ms")),
        "position": result.position,
        "equity": result.equity,
    })


def _write_csv(table, path: Path) -> None:
    import pyarrow.csv as pacsv

    with atomic_path(path) as tmp:
        pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="none"))


def save(result: BacktestResult, html: Path | None = None, *, store: CandleStore | None = None,
         report: bool = True) -> dict[str, Path]:
    """Write the run's files (the HTML report only when ``report``) and record it in the catalog.

    The catalog row is written last, so it never points at files that were not written."""
    html = Path(html) if html is not None else default_output(result)
    store = store if store is not None else CandleStore.open()
    paths = check_outputs(html, store, report=report)
    summary = result.summary()
    summary["outputs"] = {k: str(v) for k, v in paths.items()}
    current = paths["summary"]
    try:
        write_text_atomic(current, json.dumps(summary, indent=2, allow_nan=False) + "\n")
        current = paths["trades"]
        _write_csv(trades_table(result), current)
        current = paths["equity"]
        _write_csv(equity_table(result), current)
        if report:
            from .report import write_html

            current = paths["report"]
            write_html(result, current)
    except OSError as exc:
        raise output_error(current, exc) from None
    m, d, cfg = result.metrics, result.dataset, result.config
    Catalog(store.catalog_path).record_run({
        "run_id": result.run_id,
        "created_at": utcnow(),
        "strategy": result.strategy,
        "params": json.dumps(result.params, sort_keys=True),
        "symbol": d["symbol"],
        "timeframe": d["timeframe"],
        "start": cfg.start,
        "end": cfg.end,
        "first_bar": d["first_bar"],
        "last_bar": d["last_bar"],
        "num_bars": d["num_bars"],
        "data_origin": d["origin"],
        "data_sha256": d["sha256"],
        "engine_path": result.path,
        "engine_version": result.engine_version,
        "commission": cfg.commission,
        "slippage_bps": cfg.slippage,
        "initial_cash": cfg.initial_cash,
        "size": cfg.size,
        "max_leverage": cfg.max_leverage,
        "stop_loss": cfg.stop_loss,
        "take_profit": cfg.take_profit,
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "total_return": m.get("total_return"),
        "sharpe": m.get("sharpe"),
        "max_drawdown": m.get("max_drawdown"),
        "num_trades": m.get("num_trades"),
        "metrics": json.dumps(m, sort_keys=True),
        "outputs": json.dumps(summary["outputs"], sort_keys=True),
    })
    return paths

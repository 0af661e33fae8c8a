"""Saving a backtest run: JSON summary, CSV trades and equity, HTML report, and a catalog row.

Files go next to the HTML report and are named after its whole name without ``.html``: for
``results/ema_sl0.02.html`` they are ``results/ema_sl0.02.json``, ``results/ema_sl0.02.trades.csv``
and ``results/ema_sl0.02.equity.csv``. The default name holds the run id, so no run replaces the files
of another. Paths inside the store's own files or the bundled sample, or that cannot be written, are
refused (:class:`~genesis_fw.errors.OutputError`) before anything is written. Saving is all or nothing
(:func:`save`): the files are written to temp names and renamed into place in the catalog transaction
that records the run. An explicit output name that an earlier run's files have is replaced, and that
run's catalog row is updated so it no longer lists them (``replaced_by``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._util import check_writable, output_error, staged_files
from ..catalog import Catalog, utcnow
from ..data.store import CandleStore
from ..data.timeframes import from_ms
from ..errors import ConfigError
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
    store's own files or the bundled sample (:meth:`CandleStore.check_output`) and writable
    (:class:`OutputError` if not); and the store's catalog can be written (:class:`CatalogError`)."""
    paths = {k: v for k, v in output_paths(html).items() if report or k != "report"}
    for path in paths.values():
        store.check_output(path)
        check_writable(path)
    Catalog(store.catalog_path).check_writable()
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

    pacsv.write_csv(table, str(path), pacsv.WriteOptions(quoting_style="none"))


def check_finite(result: BacktestResult) -> None:
    """Raise :class:`ConfigError` when the run's equity, position or trades hold inf or NaN (amounts
    beyond 64-bit floats, e.g. ``initial_cash=1e308``): such a run is never written or recorded."""
    arrays = {"equity": result.equity, "position": result.position, "trades": result.trades}
    for name, values in arrays.items():
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
        if not bad.any():
            continue
        cfg = result.config
        where = ""
        if name != "trades":
            first = int(np.argmax(bad))
            where = f" from bar {first} ({from_ms(int(result.bars.timestamp[first])).isoformat()})"
        raise ConfigError(
            f"the run's {name} is not finite (inf or NaN){where}: initial_cash={cfg.initial_cash:g} with "
            f"size={cfg.size:g} and max_leverage={cfg.max_leverage:g} overflows 64-bit floats; nothing was "
            "written; use a smaller initial_cash")


def _replaced_runs(con, run_id: str, paths: dict[str, Path]) -> list[tuple[str, dict[str, str], list[str]]]:
    """Earlier runs in the catalog whose recorded files are among ``paths``: (run id, its outputs, the
    keys of its outputs that ``paths`` replace). Relative paths recorded by older versions are taken
    relative to the current working directory."""
    targets = {os.path.realpath(p) for p in paths.values()}  # resolved once, not per recorded run
    found = []
    for other, outputs in con.execute("SELECT run_id, outputs FROM runs WHERE run_id != ?", (run_id,)):
        try:
            recorded = json.loads(outputs)
        except (TypeError, ValueError):
            continue
        if not isinstance(recorded, dict):
            continue
        hit = [k for k, v in recorded.items() if isinstance(v, str) and os.path.realpath(v) in targets]
        if hit:
            found.append((other, recorded, hit))
    return found


def save(result: BacktestResult, html: Path | None = None, *, store: CandleStore | None = None,
         report: bool = True, notes: list[str] | None = None) -> dict[str, Path]:
    """Write the run's files (the HTML report only when ``report``) and record it in the catalog, all
    or nothing.

    Order: the output paths and the catalog are checked (:func:`check_outputs`) and the results must
    be finite (:func:`check_finite`); every file is written to a temp name beside its target; then, in
    one catalog transaction, earlier runs whose files these replace are marked (``replaced_by``, a line
    appended to ``notes``), the ``runs`` row is inserted, the temps are renamed over their targets, and
    the transaction commits. If anything fails (disk full, the catalog refuses the row or the commit)
    the temps are removed, files renamed already are put back as they were, and the row is rolled
    back: neither a catalog row without its files nor files of a run the catalog does not know.
    Output paths are recorded absolute.
    """
    html = Path(html) if html is not None else default_output(result)
    store = store if store is not None else CandleStore.open()
    paths = check_outputs(html, store, report=report)
    check_finite(result)
    catalog = Catalog(store.catalog_path)
    summary = result.summary()
    summary["outputs"] = {k: os.path.abspath(v) for k, v in paths.items()}
    row = _catalog_row(result, summary)
    current = paths["summary"]
    replaced: list[tuple[str, dict[str, str], list[str]]] = []
    with staged_files() as staged:
        try:
            staged.temp(current).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n",
                                            encoding="utf-8")
            current = paths["trades"]
            _write_csv(trades_table(result), staged.temp(current))
            current = paths["equity"]
            _write_csv(equity_table(result), staged.temp(current))
            if report:
                from .report import render_html

                current = paths["report"]
                text = render_html(result)
                staged.temp(current).write_text(text, encoding="utf-8")
            current = html
            with catalog.connect(write=True) as con:
                replaced = _replaced_runs(con, result.run_id, paths)
                for other, outputs, keys in replaced:
                    Catalog.mark_outputs_replaced(con, other, outputs, result.run_id, keys)
                Catalog.insert_run(con, row)
                staged.place()
        except OSError as exc:
            raise output_error(current, exc) from None
    for other, outputs, keys in replaced:
        if notes is not None:
            names = ", ".join(Path(outputs[k]).name for k in keys)
            notes.append(f"replaced the files of run {other} ({names}); the catalog now lists them for run "
                         f"{result.run_id} only (runs.replaced_by)")
    return paths


def _catalog_row(result: BacktestResult, summary: dict) -> dict:
    """The ``runs`` row of ``result`` (column name -> value)."""
    m, d, cfg = result.metrics, result.dataset, result.config
    return {
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
    }

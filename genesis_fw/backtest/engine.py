"""The backtest engine: load candles, run a strategy bar by bar, track positions, measure.

:func:`run` is the whole job behind ``genesis-fw backtest``:

1. resolve the data -- the store's file, a finer stored timeframe resampled on the fly, or the
   bundled sample (each fallback is reported in ``BacktestResult.notes``);
2. ``strategy.init(bars)``, then the decisions: per bar through ``strategy.next(i)`` (the
   reference path), or all at once through ``strategy.targets(bars)`` (the fast path). A strategy that
   asks for history (``history_bars()``) gets up to that many candles before ``start`` in front of the
   period; their decisions are dropped, and everything below covers the period only;
3. :func:`genesis_fw.backtest.positions.track` turns the decisions into fills, trades and equity: a
   decision at the close of bar ``i`` fills at the open of bar ``i + 1``;
4. :func:`genesis_fw.backtest.metrics.compute` summarises the run.

Everything needed to reproduce the numbers (resolved config, strategy parameters, dataset identity
and the SHA-256 of the exact candles used, engine version) is in the result.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import numpy as np

from .. import __version__
from ..config import RuntimeConfig
from ..data.datasets import version_of
from ..data.hashing import bars_sha256
from ..data.store import UNUSABLE, CandleStore, Dataset, candle_problems, locate, read, time_span
from ..data.timeframes import from_ms, parse_time, timeframe_ms, to_ms
from ..errors import ConfigError, DataError, GenesisError, PluginError
from ..strategy import Bars, Strategy

PATHS = ("auto", "fast", "per_bar")

#: The per-bar path shows a progress bar (on a terminal) above this many bars.
PROGRESS_MIN_BARS = 200_000


@attrs.frozen
class BacktestResult:
    """Everything a run produced. Prices and cash are in the quote currency; times are UTC ms."""

    run_id: str
    config: RuntimeConfig
    strategy: str
    params: dict[str, Any]
    dataset: dict[str, Any]
    bars: Bars
    equity: np.ndarray
    position: np.ndarray
    trades: np.ndarray
    metrics: dict[str, Any]
    path: str
    notes: tuple[str, ...] = ()
    engine_version: str = __version__
    #: The decisions over the traded bars (1 long, -1 short, 0 flat, NaN keep), one per bar of ``bars``.
    targets: np.ndarray | None = None
    #: Bars before ``start`` the strategy saw but that were not traded (see ``dataset["history"]``).
    history_bars: int = 0

    def trade_records(self) -> list[dict[str, Any]]:
        """Trades as dicts (times ISO 8601 UTC, prices in quote currency, return as a fraction)."""
        from .positions import EXIT_REASONS

        ts = self.bars.timestamp
        out = []
        for row in self.trades:
            entry_bar, exit_bar = int(row[0]), int(row[1])
            qty, entry_price = float(row[3]), float(row[4])
            out.append({
                "entry_bar": entry_bar,
                "exit_bar": exit_bar,
                "entry_time": from_ms(int(ts[entry_bar])).isoformat(),
                "exit_time": from_ms(int(ts[exit_bar])).isoformat(),
                "side": "long" if row[2] > 0 else "short",
                "qty": abs(qty),
                "entry_price": entry_price,
                "exit_price": float(row[5]),
                "pnl": float(row[6]),
                "return": float(row[6]) / (abs(qty) * entry_price),
                "commission": float(row[7]),
                "exit_reason": EXIT_REASONS[int(row[8])],
            })
        return out

    def liquidation(self) -> dict[str, Any] | None:
        """The run's liquidation, ``None`` if it had none: ``time`` (ISO 8601 UTC open time of the bar it
        happened in), ``price`` (fill, quote currency), ``side`` of the position and ``bar`` index."""
        from .positions import EXIT_REASONS

        code = EXIT_REASONS.index("liquidation")
        rows = np.flatnonzero(self.trades[:, 8] == code) if len(self.trades) else ()
        if not len(rows):
            return None
        row = self.trades[int(rows[-1])]
        bar = int(row[1])
        return {"time": from_ms(int(self.bars.timestamp[bar])).isoformat(), "price": float(row[5]),
                "side": "long" if row[2] > 0 else "short", "bar": bar}

    def liquidation_text(self) -> str | None:
        """One line for the report and the CLI: ``liquidated at <bar time> UTC at <price> ...``."""
        liq = self.liquidation()
        if liq is None:
            return None
        return (f"liquidated at {liq['time'][:16].replace('T', ' ')} UTC at {liq['price']:,.8g} "
                f"({liq['side']}, inside the bar opening then); flat for the rest of the run")

    def summary(self) -> dict[str, Any]:
        """The JSON-ready record of the run (no per-bar arrays)."""
        return {
            "run_id": self.run_id,
            "engine_version": self.engine_version,
            "strategy": self.strategy,
            "params": self.params,
            "config": self.config.to_dict(),
            "dataset": self.dataset,
            "path": self.path,
            "history_bars": self.history_bars,
            "metrics": self.metrics,
            "liquidation": self.liquidation(),
            "notes": list(self.notes),
        }


def load_bars(cfg: RuntimeConfig, store: CandleStore, *, strict_data: bool = False,
              history: int = 0) -> tuple[Bars, dict[str, Any], list[str]]:
    """Candles of the configured range as :class:`Bars`, the dataset identity, and notes.

    With ``history`` > 0 and a ``start``, up to ``history`` candles right before ``start`` come first
    in the returned bars; ``identity["history"]`` says how many (``bars``; fewer than asked is a note),
    the first one's open time and their SHA-256, and is ``None`` when there are none. The rest of the
    identity (``first_bar``, ``num_bars``, ``sha256``, ...) describes the period ``[start, end)`` only.

    The loaded candles, history included, are checked (:func:`check_bars`): candles that cannot be
    traded are refused, inconsistent ones are a note, or refused with ``strict_data``.
    """
    start = parse_time(cfg.start, what="start")
    end = parse_time(cfg.end, what="end")
    if start is not None and end is not None and start >= end:
        raise DataError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    dataset, notes = locate(store, cfg.symbol, cfg.timeframe)
    table = read(dataset, start, end)
    if table.num_rows == 0:
        whole = read(dataset)
        span = "it holds no candles" if whole.num_rows == 0 else (
            f"it covers {whole.column('timestamp')[0].as_py().isoformat()} .. "
            f"{whole.column('timestamp')[-1].as_py().isoformat()}")
        raise DataError(f"no {dataset.describe()} candles in [{cfg.start or '-inf'}, {cfg.end or '+inf'}); {span}")
    period = Bars.from_table(table)
    before = _history(dataset, start, history) if history > 0 and start is not None else None
    if history > 0 and start is None:
        notes.append(f"the strategy asks for {history:,} history bars but the run has no start: its first bars "
                     "are its warm-up inside the traded range (give --start to load history before it)")
    elif before is not None and len(before) < history:
        notes.append(f"only {len(before):,} of the {history:,} history bars the strategy asks for exist before "
                     f"{start.isoformat()} in {dataset.describe()}; its first decisions may differ from a run with "
                     "the full history")
    bars = period if before is None or not len(before) else Bars(
        *(np.concatenate((getattr(before, f.name), getattr(period, f.name))) for f in attrs.fields(Bars)))
    if dataset.resampled_from is None:
        notes.extend(check_bars(bars, dataset, strict_data=strict_data))
    else:  # resampling keeps clean candles clean, and can hide a defect: check what they were built from
        notes.extend(_check_source(bars, dataset, strict_data=strict_data))
    identity = {
        "symbol": dataset.symbol,
        "timeframe": dataset.timeframe,
        "origin": dataset.origin,
        "resampled_from": dataset.resampled_from,
        "file": str(dataset.path),
        "first_bar": from_ms(int(period.timestamp[0])).isoformat(),
        "last_bar": from_ms(int(period.timestamp[-1])).isoformat(),
        "num_bars": len(period),
        "sha256": bars_sha256(period),
        "version": version_of(store, dataset),
        "history": None if before is None or not len(before) else {
            "bars": len(before),
            "requested": history,
            "first_bar": from_ms(int(before.timestamp[0])).isoformat(),
            "sha256": bars_sha256(before),
        },
    }
    return bars, identity, notes


def _history(dataset: Dataset, start: datetime, count: int) -> Bars:
    """Up to ``count`` candles of ``dataset`` with open time before ``start``, the latest ones.

    Reads a window of ``count`` bar widths before ``start`` and doubles it while it holds fewer than
    ``count`` candles and the file has older ones (missing candles are absent rows), so a long file is
    never read from its beginning for a short history."""
    span = time_span(dataset.path)
    start_ms = to_ms(start)
    if span is None or span[0] >= start_ms:
        return Bars.from_table(read(dataset, start, start))
    width = timeframe_ms(dataset.timeframe) or 31 * 86_400_000  # 1M: a month is at most 31 days
    lookback = count * width
    while True:
        lo = start_ms - lookback
        table = read(dataset, from_ms(lo), start)
        if table.num_rows >= count or lo <= span[0]:
            return Bars.from_table(table.slice(max(table.num_rows - count, 0)))
        lookback *= 2


def check_bars(bars: Bars, dataset: Dataset, *, strict_data: bool = False) -> list[str]:
    """Check the loaded candles with :func:`genesis_fw.data.store.candle_problems` (vectorised, cheap).

    A NaN/infinite value or a price <= 0 cannot be traded or measured: always a :class:`DataError`,
    so no NaN reaches the equity curve, the outputs or the catalog. Negative volume and high/low not
    bracketing open/close (high below low included) do not stop the engine (fills use open, stops
    the high/low as given): a one-line note, or a :class:`DataError` with ``strict_data``.
    """
    found = candle_problems(bars)
    if not (found.unusable or found.inconsistent):
        return []
    stored = dataset.resampled_from or dataset.timeframe
    inspect = f"inspect them with: genesis-fw validate --symbol {dataset.symbol} --timeframe {stored}"
    where = f"{dataset.describe()} [{from_ms(int(bars.timestamp[0])).isoformat()} .. " \
            f"{from_ms(int(bars.timestamp[-1])).isoformat()}]"
    if found.unusable:
        raise DataError(f"{found.unusable} candle(s) that cannot be traded in {where} "
                        f"({found.describe(UNUSABLE)}), first at {from_ms(found.first_unusable).isoformat()}; "
                        f"{inspect}")
    text = (f"{found.inconsistent} inconsistent candle(s) in {where} ({found.describe()}), first at "
            f"{from_ms(found.first_inconsistent).isoformat()}; {inspect}")
    if strict_data:
        raise DataError(f"{text} (refused by --strict-data)")
    return [f"{text} (--strict-data makes this an error)"]


def _check_source(bars: Bars, dataset: Dataset, *, strict_data: bool) -> list[str]:
    """:func:`check_bars` on the stored candles that ``bars`` were resampled from on the fly.

    Aggregating hides defects (a negative volume vanishes in a positive sum, a bad close inside a
    bucket is never the bucket's close) and never creates one from clean candles, so the source rows
    of the loaded buckets -- the first bar's open to the last bar's end -- are the ones to check."""
    from .metrics import bar_ends_ms

    source = Dataset(dataset.symbol, dataset.resampled_from, dataset.path, dataset.origin)
    last_end = int(bar_ends_ms(bars.timestamp[-1:], dataset.timeframe)[0])
    rows = read(source, from_ms(int(bars.timestamp[0])), from_ms(last_end))
    return check_bars(Bars.from_table(rows), source, strict_data=strict_data) if rows.num_rows else []


def make_strategy(cfg: RuntimeConfig) -> Strategy:
    """The configured strategy plugin, its parameters checked."""
    from ..plugins import instantiate

    return instantiate("strategy", cfg.strategy.name, cfg.strategy.params)


def with_period(cfg: RuntimeConfig, period: str) -> RuntimeConfig:
    """``cfg`` with ``start`` / ``end`` set to the strategy's named period (``backtest --period``), e.g. the
    ``test`` part of the model an ``ml_model`` strategy uses (:meth:`Strategy.periods`). A strategy that
    names no such period is a :class:`ConfigError`; the strategy's own reasons (a baseline model without
    training data) are its :class:`GenesisError`."""
    strategy = make_strategy(cfg)
    name = cfg.strategy.name
    periods = _call(name, "periods", strategy.periods) or {}
    if period not in periods:
        known = f"it knows {', '.join(sorted(periods))}" if periods else "it names no periods (only strategies " \
            "that use a trained model, like ml_model, do)"
        raise ConfigError(f"strategy {name!r} has no period {period!r}: {known}; give --start and --end instead")
    start, end = periods[period]
    return attrs.evolve(cfg, start=start, end=end)


def check_targets(targets: Any, n: int, *, where: str) -> np.ndarray:
    """Validate a strategy's decisions: ``n`` floats, each LONG (1), SHORT (-1), FLAT (0) or NaN (keep)."""
    try:
        arr = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError):
        raise PluginError(f"{where} must return numbers (1 long, -1 short, 0 flat, None/NaN keep)") from None
    if arr.shape != (n,):
        raise PluginError(f"{where} returned shape {arr.shape}; expected ({n},), one decision per bar")
    bad = ~(np.isnan(arr) | np.isin(arr, (-1.0, 0.0, 1.0)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PluginError(f"{where} returned {float(arr[i])!r} at bar {i}; allowed: 1 (long), -1 (short), 0 (flat), "
                          "None/NaN (keep)")
    return arr


def _call(name: str, method: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``; an exception other than a :class:`GenesisError` becomes
    :func:`genesis_fw.plugins.plugin_failure`."""
    from ..plugins import plugin_failure

    try:
        return fn(*args)
    except GenesisError:
        raise
    except Exception as exc:
        raise plugin_failure(name, method, exc) from exc


def decide_per_bar(strategy: Strategy, n: int, *, progress: bool = False, plugin: str | None = None,
                   timestamp: np.ndarray | None = None) -> np.ndarray:
    """Call ``strategy.next(i)`` for every bar in order; the decisions as a float array.

    An exception inside ``next`` becomes a :class:`PluginError` naming the plugin (its entry-point name
    ``plugin``, default the class name), the bar
    index and (with ``timestamp``, UTC ms) its open time."""
    nxt = strategy.next
    out: list[Any] = [None] * n
    name = type(strategy).__name__
    bar = None
    if progress and n >= PROGRESS_MIN_BARS and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=n, unit="bar", unit_scale=True, desc="backtest", file=sys.stderr, leave=False)
    step = 65_536
    i = 0
    try:
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            for i in range(lo, hi):
                out[i] = nxt(i)
            if bar is not None:
                bar.update(hi - lo)
    except GenesisError:
        raise
    except Exception as exc:
        at = f" at bar {i}" + (f" ({from_ms(int(timestamp[i])).isoformat()})" if timestamp is not None else "")
        from ..plugins import plugin_failure

        raise plugin_failure(plugin or name, "next", exc, at) from exc
    finally:
        if bar is not None:
            bar.close()
    try:
        arr = np.array(out, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(i for i, v in enumerate(out) if v is not None and not isinstance(v, int | float))
        raise PluginError(f"{name}.next({bad}) returned {out[bad]!r}; allowed: 1 (long), -1 (short), 0 (flat), "
                          "None (keep)") from None
    return check_targets(arr, n, where=f"{name}.next")


#: Period names (:meth:`Strategy.periods`) whose bars the strategy was fitted on: "train" (a model's
#: training part) and "validation" (where its calibration was fitted). A run that trades on them is in-sample.
IN_SAMPLE_PERIODS = {"train": "fitted", "validation": "calibrated"}


def in_sample_notes(strategy: Strategy, bars: Bars, timeframe: str) -> list[str]:
    """A note for each :data:`IN_SAMPLE_PERIODS` part of the strategy's periods that the traded bars overlap:
    figures there are optimistic. Strategies without periods (or whose periods cannot be read) give none."""
    from ..ml.labels import add_bars
    from ..plugins import plugin_failure

    if not len(bars) or type(strategy).periods is Strategy.periods:
        return []
    try:
        periods = strategy.periods() or {}
    except GenesisError:
        return []  # e.g. a hand-set model without training data: nothing was fitted on any bars
    except Exception as exc:  # a bug in the plugin's hook: one line, like its other methods
        raise plugin_failure(type(strategy).__name__, "periods", exc) from exc
    first = int(bars.timestamp[0])
    end = int(add_bars(int(bars.timestamp[-1]), 1, timeframe))  # the last bar's end, exclusive
    out = []
    for part, verb in IN_SAMPLE_PERIODS.items():
        if part not in periods:
            continue
        lo, hi = (to_ms(parse_time(t, what=f"{part} period")) for t in periods[part])
        if first < hi and lo < end:
            out.append(f"the traded bars overlap the model's {part} part ({periods[part][0][:16]} .. "
                       f"{periods[part][1][:16]} UTC), on which it was {verb}: these figures are in-sample and "
                       "optimistic (--period test trades only the test part)")
    return out


def run(cfg: RuntimeConfig, store: CandleStore | None = None, *, path: str = "auto",
        progress: bool = False, strict_data: bool = False) -> BacktestResult:
    """Run the backtest ``cfg`` describes. ``path``: ``auto`` (fast path when the strategy has one),
    ``fast`` or ``per_bar``. ``strict_data``: refuse inconsistent candles instead of noting them
    (:func:`check_bars`). An exception inside the strategy's ``init``/``next``/``targets`` is a
    one-line :class:`PluginError`."""
    from . import metrics
    from .positions import track

    if path not in PATHS:
        raise ConfigError(f"unknown engine path {path!r}; allowed: {', '.join(PATHS)}")
    store = store if store is not None else CandleStore.open()
    strategy = make_strategy(cfg)
    name = cfg.strategy.name
    _call(name, "bind", strategy.bind, cfg.symbol, cfg.timeframe)
    want = _call(name, "history_bars", strategy.history_bars)
    if isinstance(want, bool) or not isinstance(want, int | np.integer) or want < 0:
        raise PluginError(f"{type(strategy).__name__}.history_bars() returned {want!r}; expected a whole number >= 0")
    seen, identity, notes = load_bars(cfg, store, strict_data=strict_data, history=int(want))
    h = identity["history"]["bars"] if identity["history"] else 0
    n = len(seen)
    _call(name, "init", strategy.init, seen)
    use_fast = path == "fast" or (path == "auto" and strategy.has_fast_path())
    if use_fast:
        if not strategy.has_fast_path():
            raise PluginError(f"strategy {cfg.strategy.name!r} has no fast path (targets); use the per-bar path")
        decisions = check_targets(_call(name, "targets", strategy.targets, seen), n,
                                  where=f"{type(strategy).__name__}.targets")
    else:
        decisions = decide_per_bar(strategy, n, progress=progress, plugin=name, timestamp=seen.timestamp)
    bars = seen.tail(h) if h else seen
    targets = decisions[h:]  # history decisions are not traded: the run starts flat at start
    notes.extend(in_sample_notes(strategy, bars, cfg.timeframe))
    equity, position, trades = track(
        bars.open, bars.high, bars.low, bars.close, targets,
        cfg.initial_cash, cfg.commission, cfg.slippage / 10_000.0, cfg.size,
        cfg.stop_loss or 0.0, cfg.take_profit or 0.0,
    )
    summary = metrics.compute(bars.timestamp, equity, position, trades, cfg.initial_cash, timeframe=cfg.timeframe)
    params = attrs.asdict(strategy.params)
    return BacktestResult(
        run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8],
        config=attrs.evolve(cfg, strategy=attrs.evolve(cfg.strategy, params=params)),
        strategy=cfg.strategy.name,
        params=params,
        dataset=identity,
        bars=bars,
        equity=equity,
        position=position,
        trades=trades,
        metrics=summary,
        path="fast" if use_fast else "per_bar",
        notes=tuple(notes),
        targets=targets,
        history_bars=h,
    )

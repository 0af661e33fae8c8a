"""The ``genesis-fw`` command line: a thin layer over the Python API.

Heavy libraries (duckdb, pyarrow, scikit-learn, matplotlib) are imported inside the commands that
need them, so ``genesis-fw --help`` stays fast. A :class:`~genesis_fw.errors.GenesisError` prints
one line and exits 1 (usage errors 2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .errors import GenesisError, UsageError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GenesisError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _obj(ctx: click.Context) -> dict:
    return ctx.find_root().obj


#: Commands that create a missing store folder; every other command needs an existing one when the
#: folder is named by --data-dir or $GENESIS_DATA_DIR (the default ./data may be missing: the sample stands in).
_CREATE_STORE = {"import", "fetch", "e2e"}
#: Commands that write into the store (files or catalog), with what they write: refused on a read-only store.
_WRITE_STORE = {
    "import": "import writes candles into it",
    "fetch": "fetch writes candles into it",
    "resample": "resample writes candles into it",
    "validate": "validate writes reports into it and records the score in its catalog",
    "prune": "prune removes version files from it",
    "features": "features writes feature files into it",
    "backtest": "backtest records every run in its catalog; to backtest these candles, import them "
                "into a writable store (--data-dir)",
    "e2e": "e2e writes features, quality scores and backtest runs into it; import the candles into a writable "
           "store (--data-dir)",
}


def _store(ctx: click.Context):
    """The store of ``--data-dir``, checked for what the running command does with it."""
    from .data.store import CandleStore
    from .errors import DataError

    data_dir = _obj(ctx)["data_dir"]
    command = ctx.command.name
    if data_dir is not None and not data_dir.is_dir() and command not in _CREATE_STORE:
        raise DataError(f"the data folder {data_dir} does not exist (check --data-dir or $GENESIS_DATA_DIR; "
                        "fetch and import create it)")
    store = CandleStore.open(data_dir)
    if command in _WRITE_STORE and store.root.is_dir() and not store.writable:
        raise DataError(f"the store at {store.root} is read-only: {_WRITE_STORE[command]}")
    return store


def _note(message: str) -> None:
    click.echo(message, err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="GENESIS_DATA_DIR",
              default=None, help="Store folder (candles, metadata, catalog). Default: $GENESIS_DATA_DIR or ./data.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), envvar="GENESIS_MODELS_DIR",
              default=None, help="Models folder (model JSON files). Default: $GENESIS_MODELS_DIR or ./config/models.")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), envvar="GENESIS_AUDIT_LOG",
              default=None, help="The model registry's audit log mirror (JSON lines). Default: $GENESIS_AUDIT_LOG, "
                                 "else the run config's registry.audit_log (logs/champion_selection.jsonl).")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="genesis-fw")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, models_dir: Path | None, audit_log: Path | None,
        debug: bool) -> None:
    """Crypto trading research: candles, SQL checks, backtests, models.

    \b
    Examples:
      genesis-fw plugins
      genesis-fw sql "SELECT symbol, timeframe, count(*) FROM candles GROUP BY ALL"
      genesis-fw --data-dir /tmp/store import candles.parquet --symbol tBTCUSD --timeframe 1m
    """
    ctx.obj = {"data_dir": data_dir, "models_dir": models_dir, "audit_log": audit_log, "debug": debug}
    if models_dir is not None:  # so plugins (the ml_model strategy) resolve model names in the same folder
        os.environ["GENESIS_MODELS_DIR"] = str(models_dir)
    if audit_log is not None:  # so every registry change of this process mirrors its entries there
        os.environ["GENESIS_AUDIT_LOG"] = str(audit_log)


@cli.command()
@click.option("--kind", type=click.Choice(["strategy", "model", "all"]), default="all", show_default=True,
              help="Which plugins to list.")
def plugins(kind: str) -> None:
    """List strategies and model types with their parameters.

    A plugin that fails to import is listed as BROKEN with the reason; the others still work.

    \b
    Example:
      genesis-fw plugins --kind strategy
    """
    from . import plugins as registry

    kinds = ["strategy", "model"] if kind == "all" else [kind]
    for k in kinds:
        infos = registry.describe(k)
        click.echo(f"{'Strategies' if k == 'strategy' else 'Model types'} ({len(infos)}):")
        if not infos:
            click.echo("  (none installed)")
        for info in infos:
            ref = info.ref
            if info.error:
                click.echo(f"  {ref.name}  [BROKEN]  {ref.provider}")
                click.echo(f"      {info.error}")
                continue
            click.echo(f"  {ref.name}  {ref.provider}  {info.description}")
            for p in info.params:
                click.echo(f"      {p.name}: {p.type} = {p.default!r}")
        click.echo("")


@cli.command()
@click.argument("query", required=False)
@click.option("--file", "sql_file", type=click.Path(dir_okay=False, path_type=Path), help="Read the SQL from a file.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="Output format (parquet needs --output).")
@click.option("--output", type=click.Path(path_type=Path), metavar="FILE", help="Write the result to this file.")
@click.option("--max-rows", type=click.IntRange(min=0), default=100, show_default=True,
              help="Rows shown in table format (0 = all).")
@click.pass_context
def sql(ctx: click.Context, query: str | None, sql_file: Path | None, fmt: str, output: Path | None,
        max_rows: int) -> None:
    """Run read-only DuckDB SQL over the candles and the catalog.

    Views: `candles` (symbol, timeframe, timestamp, open, high, low, close, volume: every dataset in
    the store), the catalog tables (`datasets`, `events`, ...) and the model registry of the models
    folder: `models` and `model_events` (its audit log; empty without a registry). Statements that
    write, attach, load extensions, copy to files or read other paths are refused.

    \b
    Examples:
      genesis-fw sql "SELECT symbol, timeframe, count(*) AS n FROM candles GROUP BY ALL"
      genesis-fw sql --file sql/examples/daily_summary.sql --format csv --output daily.csv
      genesis-fw sql 'SELECT seq, "at", user, action, from_model, to_model FROM model_events'
    """
    from ._util import atomic_path
    from .console import Console, render_csv, render_json, render_table

    if (query is None) == (sql_file is None):
        raise UsageError("give either a QUERY argument or --file FILE (one of them)")
    if sql_file is not None:
        try:
            query = sql_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {sql_file}: {exc.strerror or exc}") from None
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output FILE")
    store = _store(ctx)
    if output is not None:
        from ._util import check_writable

        store.check_output(output)
        check_writable(output)
    console = Console(store, models_dir=ctx.obj["models_dir"])
    try:
        table = console.query(query)
    finally:
        for warning in console.warnings:
            _note(f"Warning: {warning}")
        if console.note:
            _note(f"Note: {console.note}")
        console.close()
    from ._util import output_error

    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            with atomic_path(output) as tmp:
                pq.write_table(table, tmp)
        except OSError as exc:
            raise output_error(output, exc) from None
        _note(f"Wrote {table.num_rows} rows to {output}")
        return
    text = {"table": lambda t: render_table(t, max_rows=max_rows) + "\n", "csv": render_csv,
            "json": render_json}[fmt](table)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            with atomic_path(output) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise output_error(output, exc) from None
        _note(f"Wrote {table.num_rows} rows to {output}")


@cli.command("config")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON config file (default: config/runtime.seed.json when present).")
@click.argument("overrides", nargs=-1)
def config_cmd(config_file: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved run configuration as JSON, strategy and model parameters checked and filled in.

    Precedence: built-in defaults < config file < key=value overrides.

    \b
    Example:
      genesis-fw config strategy=ema_rsi strategy.fast=10 commission=0
      genesis-fw config model=logreg model.C=0.01,0.1 train.horizon=10
    """
    import json

    import attrs

    from .config import RuntimeConfig, parse_overrides
    from .plugins import instantiate, load, model_grid

    cfg = RuntimeConfig.load(config_file, parse_overrides(overrides))
    strategy = instantiate("strategy", cfg.strategy.name, cfg.strategy.params)
    resolved = cfg.to_dict()
    resolved["strategy"]["params"] = attrs.asdict(strategy.params)
    # The model's parameters as train searches them: a list per tuned one, a single value for the others.
    grid = model_grid(cfg.model)
    defaults = attrs.asdict(load("model", cfg.model.name).Params())
    resolved["model"]["params"] = defaults | {k: v if len(v) > 1 else v[0] for k, v in grid.items()}
    click.echo(json.dumps(resolved, indent=2))


@cli.command("import")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--symbol", required=True, help="Symbol the candles belong to, e.g. tBTCUSD.")
@click.option("--timeframe", required=True, help="Timeframe of the candles, e.g. 1m.")
@click.pass_context
def import_cmd(ctx: click.Context, source: Path, symbol: str, timeframe: str) -> None:
    """Import candles from a Parquet or CSV file into the store (replacing that dataset).

    The file needs columns timestamp (UTC open time; timestamp or ms integers), open, high, low,
    close, volume. Rows are sorted; duplicates or misaligned timestamps are refused.

    \b
    Example:
      genesis-fw import btc_2019.parquet --symbol tBTCUSD --timeframe 1m
    """
    from .data import ingest

    result = ingest.import_file(_store(ctx), source, symbol, timeframe)
    what = f"version {result.version}" if result.new_version else f"unchanged, still version {result.version}"
    click.echo(f"Imported {result.num_candles} candles of {symbol} {timeframe} into {result.path} ({what})")


@cli.command()
@click.option("--symbol", required=True, help="Symbol to resample, e.g. tBTCUSD.")
@click.option("--from", "source_tf", default=None, help="Finer timeframe to read (default: the finest stored).")
@click.option("--to", "target_tf", required=True, help="Coarser timeframe to write, e.g. 1h.")
@click.pass_context
def resample(ctx: click.Context, symbol: str, source_tf: str | None, target_tf: str) -> None:
    """Resample stored candles to a coarser timeframe and store the result (sql/resample.sql).

    \b
    Example:
      genesis-fw resample --symbol tBTCUSD --from 1m --to 1h
    """
    from .data import ingest

    result = ingest.resample_into_store(_store(ctx), symbol, target_tf, source_tf)
    what = f"version {result.version}" if result.new_version else f"unchanged, still version {result.version}"
    click.echo(f"Wrote {result.num_candles} candles of {symbol} {target_tf} to {result.path} ({what})")


_SUMMARY = [
    ("total_return", "Total return", "pct"), ("cagr", "CAGR", "pct"), ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"), ("max_drawdown", "Max drawdown", "pct"), ("calmar", "Calmar", "num"),
    ("num_trades", "Trades", "int"), ("win_rate", "Win rate", "pct"), ("profit_factor", "Profit factor", "num"),
    ("exposure", "Exposure", "pct"), ("final_equity", "Final equity", "num"),
]


def _fmt(value, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value * 100:.2f} %"
    if kind == "int":
        return str(int(value))
    return f"{value:,.3f}"


def _run_options(func):
    """The key=value overrides and the flags of a command that reads one dataset's range under the run
    configuration (``backtest``, ``features``); :func:`_run_config` resolves them."""
    options = [
        click.argument("overrides", nargs=-1),
        click.option("--symbol", help="Symbol, e.g. tBTCUSD (same as symbol=...)."),
        click.option("--timeframe", help="Timeframe, e.g. 1m or 1h; a coarser one than stored is resampled on the "
                                         "fly (same as timeframe=...)."),
        click.option("--start", help="First bar open time included, UTC date or ISO time (same as start=...)."),
        click.option("--end", help="End of the range, exclusive, UTC (same as end=...)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="JSON config file (default: config/runtime.seed.json when present)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_config(overrides: tuple[str, ...], config_file: Path | None, flags: dict[str, str | None],
                prefix: str | None = None, unused: dict[str, str] | None = None):
    """The :class:`~genesis_fw.config.RuntimeConfig` of ``config_file`` (or the default file), the
    ``overrides`` and the ``flags`` that were given, in that order of precedence (flags win). With
    ``prefix``, every override must start with it (e.g. ``features.``). ``unused`` maps config sections
    the command does not read to why: an override of one is refused rather than recorded as if it mattered."""
    from .config import RuntimeConfig, parse_overrides
    from .errors import ConfigError

    values = parse_overrides(overrides)
    if prefix is not None:
        for key in values:
            if not key.startswith(prefix):
                raise ConfigError(f"{prefix.rstrip('.')} takes {prefix}PARAM=VALUE overrides, got {key!r}")
    for key in values:
        section = key.split(".", 1)[0]
        if unused and section in unused:
            raise ConfigError(f"{key!r} has no effect here: {unused[section]}")
    values.update({key: flag for key, flag in flags.items() if flag is not None})
    return RuntimeConfig.load(config_file, values)


@cli.command(context_settings={"ignore_unknown_options": False})
@_run_options
@click.option("--output", type=click.Path(path_type=Path), metavar="FILE",
              help="HTML report path; JSON and CSV files go next to it, named after its full name. "
                   "Default: results/backtest_<strategy>_<symbol>_<timeframe>_<run id>.html")
@click.option("--no-report", is_flag=True, help="Skip the HTML report (still writes JSON and CSV).")
@click.option("--engine", type=click.Choice(["auto", "fast", "per-bar"]), default="auto", show_default=True,
              help="Decision path: the strategy's vectorised targets (fast) or next() per bar.")
@click.option("--strict-data", is_flag=True,
              help="Refuse inconsistent candles (negative volume, high/low not bracketing open/close) "
                   "instead of noting them.")
@click.option("--period", type=click.Choice(["train", "validation", "test"]),
              help="Run over this part of the strategy's model's split (ml_model with a trained model): from "
                   "the part's first bar to the end of its last bar. Replaces --start/--end.")
@click.pass_context
def backtest(ctx: click.Context, overrides: tuple[str, ...], symbol, timeframe, start, end, config_file,
             output, no_report: bool, engine: str, strict_data: bool, period: str | None) -> None:
    """Backtest a strategy bar by bar and write a report.

    Decisions taken at a bar's close fill at the next bar's open. Overrides are key=value:
    strategy=NAME, strategy.PARAM=VALUE, commission=0.001 (fraction per side), slippage=5 (bps),
    size=0.5 (fraction of equity), stop_loss=0.02, take_profit=0.04 (fractions of entry price).

    \b
    Examples:
      genesis-fw backtest strategy=ema_rsi
      genesis-fw backtest strategy=ema_rsi strategy.fast=10 commission=0 slippage=0
      genesis-fw backtest --symbol tBTCUSD --timeframe 1h --start 2019-05-01 --end 2019-06-01 \\
          --output results/backtest_btc_1h.html
      genesis-fw backtest --timeframe 1h strategy=ml_model strategy.model=tBTCUSD_1h_v2 --period test
    """
    from .backtest import engine as engine_mod
    from .backtest import runs

    if period and (start or end or any(o.partition("=")[0] in ("start", "end") for o in overrides)):
        raise UsageError("--period sets start and end: give --period or --start/--end, not both")
    from_model = ("a backtest does not train; strategy=ml_model takes the model's features, horizon and "
                  "settings from its file (strategy.model=NAME)")
    cfg = _run_config(overrides, config_file, {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end,
                                               "output": str(output) if output else None},
                      unused={"features": from_model, "model": from_model, "train": from_model,
                              "champion": "a backtest selects no champion (genesis-fw champion select does)"})
    if period:
        cfg = engine_mod.with_period(cfg, period)
    store = _store(ctx)
    if cfg.output:
        written = [p for k, p in runs.output_paths(Path(cfg.output)).items() if k != "report" or not no_report]
        check_not_registry(written, cfg.registry.audit_log)
        runs.check_outputs(Path(cfg.output), store, report=not no_report)
    result = engine_mod.run(cfg, store, path=engine.replace("-", "_"), progress=True, strict_data=strict_data)
    for note in result.notes:
        _note(f"Note: {note}")
    replaced: list[str] = []
    paths = runs.save(result, Path(cfg.output) if cfg.output else None, store=store, report=not no_report,
                      notes=replaced)
    for note in replaced:
        _note(f"Note: {note}")
    d = result.dataset
    history = f"; {result.history_bars:,} history bars before it" if result.history_bars else ""
    click.echo(f"{result.strategy} on {d['symbol']} {d['timeframe']}: {d['num_bars']:,} bars "
               f"{d['first_bar'][:16]} .. {d['last_bar'][:16]} UTC ({result.path} path{history})")
    for key, label, kind in _SUMMARY:
        if key in result.metrics:
            click.echo(f"  {label:<14} {_fmt(result.metrics[key], kind):>14}")
    if result.liquidation_text():
        click.echo(f"  Account {result.liquidation_text()}")
    click.echo(f"Run {result.run_id}; wrote " + ", ".join(str(p) for p in paths.values()))


@cli.command()
@_run_options
@click.pass_context
def features(ctx: click.Context, overrides: tuple[str, ...], symbol, timeframe, start, end, config_file) -> None:
    """Compute the ML features of a dataset into <data_dir>/features/ (cached by content).

    Writes {symbol}_{timeframe}.parquet (timestamp + one column per feature, warm-up rows dropped) and a
    JSON beside it (candles' SHA-256, dataset version, definitions' hash, rows, warm-up). When neither
    the candles nor the definitions changed it prints "cached" and writes nothing. Overrides are
    features.PARAM=VALUE (see 'genesis-fw config'); lists are comma-separated.

    \b
    Example:
      genesis-fw features --symbol tBTCUSD --timeframe 1h features.ema_spans=10,20,50 features.rsi_period=7
    """
    from .ml import feature_files

    cfg = _run_config(overrides, config_file, {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end},
                      prefix="features.")
    store = _store(ctx)
    run = feature_files.make(store, cfg.symbol, cfg.timeframe, cfg.features, start=cfg.start, end=cfg.end)
    for note in run.notes:
        _note(f"Note: {note}")
    m = run.meta
    if run.cached:
        click.echo(f"cached: {run.path} is up to date ({m['rows']:,} rows, {len(m['features'])} features, "
                   f"candles sha256 {m['sha256'][:12]})")
        return
    click.echo(f"Wrote {m['rows']:,} rows x {len(m['features'])} features of {m['dataset']} to {run.path} "
               f"({m['first_timestamp'][:16]} .. {m['last_timestamp'][:16]} UTC; "
               f"{m['warmup_dropped']:,} warm-up rows dropped)")


_METRICS = ("log_loss", "brier", "roc_auc", "pr_auc", "accuracy", "precision", "recall", "ece")


def _num(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@cli.command()
@_run_options
@click.option("--horizon", help="Label horizon in bars, a whole number >= 1 (same as train.horizon=...; default 20).")
@click.pass_context
def train(ctx: click.Context, overrides: tuple[str, ...], symbol, timeframe, start, end, config_file, horizon) -> None:
    """Train a model: features + labels, a purged chronological split, a grid search, calibration.

    Splits the labelled bars 60/20/20 in time order (train.fractions) with a purge of the label horizon
    and train.embargo bars between parts; tunes the model type's grid with GridSearchCV over purged,
    time-ordered folds of the training part, scored by log loss; chooses the calibration (none, Platt,
    isotonic) by cross-validated log loss within the validation part; scores every part against the
    base rates; and writes {symbol}_{timeframe}_v{N}.json into the models folder. Overrides:
    model=NAME, model.PARAM=a,b,c (a grid) or model.PARAM=VALUE, train.KEY=VALUE, features.PARAM=VALUE.

    \b
    Examples:
      genesis-fw train --symbol tBTCUSD --timeframe 1h --horizon 20
      genesis-fw train --symbol tBTCUSD --timeframe 1h --horizon 10 model=logreg model.C=0.0001,0.001,0.01
      genesis-fw train --symbol tBTCUSD --timeframe 1h model=lgbm train.embargo=5 train.folds=4
    """
    from .config import parse_overrides
    from .errors import ConfigError
    from .ml import training

    for key in parse_overrides(overrides):
        if key.split(".")[0] not in ("model", "train", "features", "registry", "symbol", "timeframe", "start", "end"):
            raise ConfigError(f"train takes model=NAME, model.PARAM=, train.KEY= and features.PARAM= overrides, "
                              f"got {key!r}")
    cfg = _run_config(overrides, config_file, {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end,
                                               "train.horizon": horizon})
    result = training.train(cfg, _store(ctx))
    for note in result.examples.notes:
        _note(f"Note: {note}")
    ex, doc, split = result.examples, result.doc, result.split
    ident = ex.identity
    version = "n/a" if ident["dataset_version"] is None else f"v{ident['dataset_version']}"
    cached = {True: "features cached", False: "features computed", None: "features computed in memory"}
    click.echo(f"Data: {ident['dataset']}, version {version}, {ident['candles']:,} candles {ident['start'][:16]} .. "
               f"{ident['end'][:16]} UTC, sha256 {ident['sha256'][:12]} ({cached[ex.features_cached]})")
    bars = max(ex.labels.n_bars, 1)
    drops = ", ".join(f"{cause} {count:,} ({100 * count / bars:.2f} %)" for cause, count in ex.drop_report().items())
    tc = cfg.train
    click.echo(f"Labels: horizon {tc.horizon} x {cfg.timeframe}, rule {tc.label_rule}: {ex.labels.n_bars:,} bars, "
               f"{len(ex.y):,} examples (up-rate {ex.y.mean():.4f}); bars dropped: {drops}")
    b = split.boundaries
    click.echo(f"Split {'/'.join(f'{f:g}' for f in split.fractions)}, purge {tc.horizon} bars, "
               f"embargo {split.embargo} bars:")
    for part, rows in split.parts().items():
        click.echo(f"  {part:<10} {rows.size:>8,} rows  {b[part + '_start'][:16]} .. {b[part + '_end'][:16]} UTC"
                   f"  (labels end {b[part + '_label_end'][:16]}; {split.purged[part]:,} purged)")
    gs = doc["grid_search"]
    names = list(result.grid)
    click.echo(f"Grid search: {cfg.model.name}, {len(gs['results'])} candidates x {gs['folds']} purged folds of the "
               f"training part, mean log loss (lower is better):")
    click.echo("  " + "  ".join(["rank"] + [f"{n:>10}" for n in names] + ["  log loss", "     std"]))
    for r in sorted(gs["results"], key=lambda r: r["rank"]):
        cells = [f"{r['rank']:>4}"] + [f"{r['params'][n]!s:>10}" for n in names]
        click.echo("  " + "  ".join(cells + [f"{r['mean_log_loss']:>10.5f}", f"{r['std_log_loss']:>8.5f}"]))
    click.echo("Best: " + (", ".join(f"{k}={v}" for k, v in gs["best_params"].items()) or "(no parameters)"))
    for warning in result.edge_warnings:
        _note(f"Warning: {warning}")
    cal = doc["calibration"]
    click.echo(f"Calibration, chosen within the validation part: {cal['method']}; {cal['chosen_because']}")
    test = result.evaluation["test"]
    bases = list(test["baselines"])
    click.echo(f"Test part ({split.test.size:,} rows, up-rate {test['model']['up_rate']:.4f}):")
    click.echo("  " + f"{'metric':<10}" + "".join(f"{h:>16}" for h in ["model", "raw model", *bases]))
    for key in _METRICS:
        if key in test["model"]:
            row = [test["model"][key], test["raw"][key], *(test["baselines"][n][key] for n in bases)]
            click.echo("  " + f"{key:<10}" + "".join(f"{_num(v):>16}" for v in row))
    for name in bases:
        sk = test["skill"][name]
        pct = {k: "n/a" if v is None else f"{v * 100:.2f} %" for k, v in sk.items()}
        click.echo(f"  skill vs {name}: log loss {pct['log_loss_skill']}, Brier {pct['brier_skill']}")
    click.echo(f"Verdict: {result.verdict}")
    click.echo(f"Wrote {result.path}")
    from .errors import RegistryError
    from .registry.registry import Registry, audit_log_path

    try:
        registry = Registry.open(result.path.parent, audit_log_path(cfg.registry.audit_log))
        change = registry.register(result.path, reason="trained with genesis-fw train",
                                   evidence={"test_metrics": test["model"], "verdict": result.verdict,
                                             "significance": test.get("test")})
    except GenesisError as exc:
        raise RegistryError(f"{result.path} was written but not registered ({exc}); register it with: genesis-fw "
                            f"--models-dir {result.path.parent} models register {result.path.name}") from exc
    for note in change.notes:
        _note(note)
    click.echo(f"Registered {change.to_model} as a challenger of {change.symbol} {change.timeframe} "
               f"(audit entry {change.seq})")


@cli.command()
@click.option("--symbol", "symbols", help="Comma-separated symbols, e.g. tBTCUSD,tETHUSD.")
@click.option("--timeframe", "timeframes", help="Comma-separated timeframes, e.g. 1m,5m,1h (4h is resampled from 1h).")
@click.option("--start", help="Start, UTC date or ISO time (inclusive).")
@click.option("--end", help="End, UTC date or ISO time (exclusive). Default: now.")
@click.option("--preset", help="A named collection instead of --symbol/--timeframe/--start/--end (phase3).")
@click.option("--base-url", help="Exchange REST base URL (default from config or $GENESIS_BITFINEX_URL).")
@click.option("--rate-limit", type=click.IntRange(min=1), help="Most requests per rolling minute (default 10).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON config file (its 'exchange' section).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def fetch(ctx: click.Context, symbols, timeframes, start, end, preset, base_url, rate_limit, config_file,
          quiet: bool) -> None:
    """Fetch candles from Bitfinex into the store: resumable, incremental, versioned.

    Only what the store lacks is requested; an interrupted fetch resumes where it stopped. A dataset
    that fails does not stop the others: each failure is reported on its own line, and the exit
    status is 1.

    \b
    Examples:
      genesis-fw fetch --symbol tBTCUSD,tETHUSD --timeframe 1m,5m,1h --start 2024-04-01 --end 2024-10-01
      genesis-fw fetch --preset phase3
      genesis-fw fetch --symbol tBTCUSD --timeframe 1h --start 2024-01-01 --base-url http://127.0.0.1:8080
    """
    import os
    from datetime import UTC, datetime

    from .config import RuntimeConfig
    from .data import fetch as fetch_mod
    from .data.timeframes import parse_time

    values: dict[str, str] = {}
    env_vars = (("exchange.base_url", "GENESIS_BITFINEX_URL"), ("exchange.rate_limit", "GENESIS_BITFINEX_RATE_LIMIT"))
    for key, env in env_vars:
        if os.environ.get(env):
            values[key] = os.environ[env]
    if base_url:
        values["exchange.base_url"] = base_url
    if rate_limit:
        values["exchange.rate_limit"] = str(rate_limit)
    cfg = RuntimeConfig.load(config_file, values)
    if preset:
        if symbols or timeframes or start or end:
            raise UsageError("--preset replaces --symbol/--timeframe/--start/--end; give one or the other")
        datasets, start_dt, end_dt = fetch_mod.preset_range(preset)
    else:
        if not (symbols and timeframes and start):
            raise UsageError("give --symbol, --timeframe and --start (or --preset NAME)")
        tfs = [t.strip() for t in timeframes.split(",") if t.strip()]
        datasets = {s.strip(): tfs for s in symbols.split(",") if s.strip()}
        start_dt = parse_time(start, what="start")
        end_dt = parse_time(end, what="end") or datetime.now(UTC).replace(second=0, microsecond=0)
    store = _store(ctx)

    def report(res) -> None:
        what = f"version {res.version}" if res.new_version else f"unchanged (version {res.version})"
        how = f"{res.candles_fetched:,} new candles, {res.requests} requests, {res.retries} retries" \
            if res.source == "bitfinex" else f"from {res.source}"
        click.echo(f"{res.symbol} {res.timeframe}: {res.num_candles:,} candles, {what}; {how}")

    try:
        fetch_mod.run(store, datasets, start_dt, end_dt, exchange=cfg.exchange, progress=not quiet, on_result=report)
    except fetch_mod.FetchFailed as exc:  # the other datasets are done: one line per failure
        if _obj(ctx)["debug"]:
            raise
        for line in exc.lines():
            click.echo(f"Error: {line}", err=True)
        ctx.exit(1)


@cli.group()
def datasets() -> None:
    """List dataset versions and prune old ones.

    \b
    Examples:
      genesis-fw datasets list
      genesis-fw datasets prune --keep 2
    """


@datasets.command("list")
@click.option("--symbol", help="Only this symbol.")
@click.option("--timeframe", help="Only this timeframe.")
@click.pass_context
def datasets_list(ctx: click.Context, symbol: str | None, timeframe: str | None) -> None:
    """Show every dataset's versions (current marked with *).

    \b
    Example:
      genesis-fw datasets list --symbol tBTCUSD
    """
    from .data import datasets as ds

    store = _store(ctx)
    found = [d for d in store.datasets() if (not symbol or d.symbol == symbol) and
             (not timeframe or d.timeframe == timeframe)]
    if not found:
        click.echo("(no datasets in the store)")
    for d in found:
        cur = ds.current(store, d.symbol, d.timeframe)
        for v in ds.versions(store, d.symbol, d.timeframe) or ([cur] if cur else []):
            kept = ds.version_path(store, d.symbol, d.timeframe, v.version).is_file()
            mark = "*" if cur and v.version == cur.version else " "
            q = "n/a" if v.quality_score is None else f"{v.quality_score:.4f}"
            click.echo(f"{mark} {v.symbol} {v.timeframe} v{v.version}  {v.num_candles:>9,} candles  "
                       f"{(v.start_date or '')[:16]} .. {(v.end_date or '')[:16]}  gaps {v.gaps}  quality {q}  "
                       f"{v.source}  sha256 {v.sha256[:12]}{'' if kept else '  (pruned)'}")


@datasets.command("prune")
@click.option("--keep", type=click.IntRange(min=1), default=1, show_default=True,
              help="Versions to keep per dataset (the current one is always kept).")
@click.option("--symbol", help="Only this symbol.")
@click.option("--timeframe", help="Only this timeframe.")
@click.pass_context
def datasets_prune(ctx: click.Context, keep: int, symbol: str | None, timeframe: str | None) -> None:
    """Remove the files of old dataset versions (their metadata stays).

    \b
    Example:
      genesis-fw datasets prune --keep 2 --symbol tBTCUSD
    """
    from .data import datasets as ds

    removed = ds.prune(_store(ctx), keep=keep, symbol=symbol, timeframe=timeframe)
    for sym, tf, num in removed:
        click.echo(f"removed {sym} {tf} v{num}")
    click.echo(f"{len(removed)} version file(s) removed")


_EVAL_ROWS = (("log_loss", "log loss", "p4"), ("brier", "Brier", "p4"), ("roc_auc", "ROC-AUC", "p4"),
              ("pr_auc", "PR-AUC", "p4"), ("precision", "precision", "p4"), ("recall", "recall", "p4"),
              ("ece", "ECE", "p4"), ("n", "n", "int"))


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _evaluation_text(result: dict) -> list[str]:
    """The terminal table of an evaluation: the model (calibrated and raw) and each baseline per score,
    the skill against each baseline, the confusion matrix and the verdict."""
    m, s = result["model"], result["scores"]
    cal = result["calibration"].get("method", "none")
    columns = [(f"model ({cal})", s), ("raw model", result["raw_scores"]), *result["baselines"].items()]
    width = max(16, *(len(name) + 2 for name, _ in columns))
    period = result["period"]
    lines = [f"{m['name']} ({m['model_type']}, {m['symbol']} {m['timeframe']}, horizon {m['horizon']} bars), "
             f"{result['split']}: {s['n']:,} labelled bars {period['start'][:16]} .. {period['end'][:16]} UTC, "
             f"up-rate {s['up_rate']:.4f}",
             "  " + f"{'':<10}" + "".join(f"{name:>{width}}" for name, _ in columns)]
    for key, label, kind in _EVAL_ROWS:
        cells = [_num(sc.get(key)) if kind == "p4" else f"{sc.get(key):,}" for _, sc in columns]
        lines.append("  " + f"{label:<10}" + "".join(f"{c:>{width}}" for c in cells))
    rates = result.get("baseline_rates", {})
    lines.append("Baselines: " + ", ".join(f"{name} = constant {rate:.4f}" for name, rate in rates.items()))
    lines.append("Skill of the model (1 - model / baseline, in %; above 0 is better than the baseline):")
    for name, sk in result["skill"].items():
        lines.append(f"  vs {name:<16} log loss {_pct(sk['log_loss_skill'])}, Brier {_pct(sk['brier_skill'])}")
    (tn, fp), (fn, tp) = s["confusion"]
    lines += [f"Confusion matrix (up when p >= {result.get('threshold', 0.5):g}; rows: actual, columns: predicted):",
              f"  {'':<12}{'down':>10}{'up':>10}", f"  {'actual down':<12}{tn:>10,}{fp:>10,}",
              f"  {'actual up':<12}{fn:>10,}{tp:>10,}",
              f"Verdict: {result['verdict']}"]
    test = result.get("test")
    if test:
        lines.insert(-1, f"Significance against {test['baseline']} (Diebold-Mariano on the per-row log-loss "
                         f"differences, HAC lag {test['lag']} rows): mean difference {test['mean_difference']:.6f} "
                         f"nats, p {test['p_value']:.4g}"
                         + (f" ({test['kernel']} kernel, Harvey-Leybourne-Newbold t test)" if "kernel" in test else ""))
        if test.get("fallback"):
            lines.insert(-1, f"  Note: {test['fallback']}")
    return lines


#: Names of the model registry's files (and the models folder's version bookkeeping), never written as outputs.
_REGISTRY_FILES = ("registry.json", ".registry.lock", ".versions.json", ".lock")


def _is_model_file(path: Path) -> bool:
    """Whether ``path`` is an existing model file (a JSON document with a model's keys)."""
    import json

    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and {"model_type", "horizon", "features", "calibration"} <= set(doc)


def check_not_registry(paths, audit_log: str | None = None) -> None:
    """Refuse (one-line :class:`OutputError`) output files that would overwrite models or the registry:
    anything inside the models folder (--models-dir / $GENESIS_MODELS_DIR / config/models), a model file
    anywhere, a file named like the registry's own (registry.json, registry.db*, .registry.lock,
    .versions.json, .lock) and the audit log mirror (--audit-log / $GENESIS_AUDIT_LOG / ``audit_log``, the
    run config's registry.audit_log / logs/champion_selection.jsonl)."""
    from .errors import OutputError
    from .ml.model_file import default_models_dir
    from .registry.registry import audit_log_path

    if audit_log is None and not os.environ.get("GENESIS_AUDIT_LOG"):
        from .config import RuntimeConfig

        audit_log = RuntimeConfig.load(None, {}).registry.audit_log
    models = Path(os.path.realpath(default_models_dir()))
    audit = Path(os.path.realpath(audit_log_path(audit_log)))
    for path in paths:
        real = Path(os.path.realpath(path))
        if real == models or models in real.parents:
            raise OutputError(f"{path} is inside the models folder {models} (model files and the model registry); "
                              "choose another path")
        if real.name in _REGISTRY_FILES or real.name.startswith("registry.db"):
            raise OutputError(f"{path} would overwrite a model registry file ({real.name}); choose another path")
        if real == audit:
            raise OutputError(f"{path} is the model registry's audit log mirror; choose another path")
        if _is_model_file(real):
            raise OutputError(f"{path} is a model file; choose another path")


def _page_targets(store, html: Path, *, report: bool, audit_log: str | None = None) -> dict[str, Path]:
    """The JSON (``summary``) and, with ``report``, the HTML page (``report``) named after ``html``, each
    checked: outside the store's own files, the models folder and the registry (:func:`check_not_registry`,
    ``audit_log`` the run config's registry.audit_log), and writable."""
    from ._util import check_writable
    from .backtest.runs import output_paths

    paths = {k: v for k, v in output_paths(html).items() if k == "summary" or (report and k == "report")}
    check_not_registry(paths.values(), audit_log)
    for path in paths.values():
        store.check_output(path)
        check_writable(path)
    return paths


def _write_page(paths: dict[str, Path], result: dict, render) -> str:
    """Write ``result`` as JSON and, when ``paths`` has a report, its page ``render(result)``, rendered
    before anything is written; returns the JSON text."""
    import json

    from ._util import write_text_atomic

    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    page = render(result) if "report" in paths else None
    write_text_atomic(paths["summary"], text)
    if page is not None:
        write_text_atomic(paths["report"], page)
    return text


@cli.command()
@click.argument("model")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default=None,
              help="Part of the model's recorded split to score.  [default: test]")
@click.option("--start", help="Score the labelled bars from this UTC date or ISO time instead of a split.")
@click.option("--end", help="End of that period, exclusive, UTC.")
@click.option("--output", type=click.Path(path_type=Path), metavar="FILE",
              help="HTML page path; the JSON goes next to it, named after its full name. "
                   "Default: results/evaluate_<model>_<split>.html")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print: the table, or the JSON result.")
@click.option("--no-report", is_flag=True, help="Skip the HTML page (still writes the JSON).")
@click.option("--require-skill", is_flag=True,
              help="Exit 1 when the model has no skill against its baselines (the files are still written).")
@click.pass_context
def evaluate(ctx: click.Context, model: str, split: str | None, start: str | None, end: str | None,
             output: Path | None, fmt: str, no_report: bool, require_skill: bool) -> None:
    """Score a model file against the base rate: log loss, Brier, ROC-AUC, PR-AUC, precision/recall,
    confusion matrix, calibration error, raw and calibrated, with a reliability diagram.

    MODEL is a model file path or a name {symbol}_{timeframe}_v{N} in the models folder. A trained
    model is scored on the test part of its recorded split (--split, dates as recorded) or on
    --start/--end, against constants at its training and validation parts' up-rates. A model
    without training data (a hand-set baseline) is scored on --start/--end (default: all candles)
    against 0.5 and the period's own up-rate. "No skill" is a finding: exit 0 unless --require-skill.

    \b
    Examples:
      genesis-fw evaluate tBTCUSD_1h_v2
      genesis-fw evaluate tBTCUSD_1h_v2 --split validation --format json
      genesis-fw evaluate config/models/tBTCUSD_1h_v1.json --start 2019-06-01 --output results/v1.html
    """
    from .errors import NoSkillError
    from .ml import model_evaluation, model_file
    from .ml.evaluation_report import render_evaluation_page

    store = _store(ctx)
    if output is not None:
        _page_targets(store, output, report=not no_report)  # refused before any work
    from .registry.registry import check_registered

    loaded = model_file.load(model)
    check_registered(loaded)  # a registered file replaced since registration is refused, as by backtest/compare
    result = model_evaluation.evaluate(loaded, store, split=split, start=start, end=end)
    for note in result["notes"]:
        _note(f"Note: {note}")
    if output is None:
        part = result["split"]
        if part == "period":
            part = "_".join(result["period"][k][:10].replace("-", "") for k in ("start", "end"))
        output = Path("results") / f"evaluate_{loaded.name}_{part}.html"
    paths = _page_targets(store, output, report=not no_report)
    text = _write_page(paths, result, render_evaluation_page)
    if fmt == "json":
        click.echo(text, nl=False)
    else:
        for line in _evaluation_text(result):
            click.echo(line)
        click.echo("Wrote " + ", ".join(str(p) for p in paths.values()))
    if require_skill and not result["verdict"].startswith("skill"):  # "no skill" or "no significant skill"
        raise NoSkillError(f"{loaded.name} has no skill on {result['split']} (--require-skill): {result['verdict']}")


#: The run-config keys ``compare`` takes (the backtests' costs and thresholds, the walk-forward share).
_COMPARE_KEYS = ("strategy.threshold_long", "strategy.threshold_short", "commission", "slippage", "initial_cash",
                 "size", "max_leverage", "stop_loss", "take_profit", "train.fractions")


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="NAME NAME [NAME...] [KEY=VALUE...]")
@click.option("--start", help="Compare on the labelled bars from this UTC date or ISO time (default: the intersection "
                              "of the trained models' test parts).")
@click.option("--end", help="End of that period, exclusive, UTC.")
@click.option("--walk-forward", "walk_forward", type=click.IntRange(min=0), default=0, show_default=True, metavar="K",
              help="Also compare over K consecutive windows, refitting the trained models on the past of each.")
@click.option("--output", type=click.Path(path_type=Path), metavar="FILE",
              help="HTML page path; the JSON goes next to it, named after its full name. "
                   "Default: results/compare_<baseline>_<candidate>..._<start>_<end>.html")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="What to print: the side-by-side table, or the JSON result.")
@click.option("--no-report", is_flag=True, help="Skip the HTML page (still writes the JSON).")
@click.option("--no-backtest", is_flag=True, help="Skip the ml_model backtests (scores and tests of the labels only).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON config file (default: config/runtime.seed.json when present).")
@click.pass_context
def compare(ctx: click.Context, args: tuple[str, ...], start: str | None, end: str | None, walk_forward: int,
            output: Path | None, fmt: str, no_report: bool, no_backtest: bool, config_file: Path | None) -> None:
    """Compare models on the same period and labels: scores, significance, backtests, walk-forward.

    The first NAME is the baseline; each other model is tested against it: Diebold-Mariano (uniform-kernel
    HAC over horizon - 1 lags, Harvey-Leybourne-Newbold t test) and a block-bootstrap interval of the
    mean per-bar log-loss difference, and for the
    ml_model backtests (same candles, same costs) a bootstrap of the Sharpe difference and each one's
    probabilistic Sharpe ratio. NAME is a model file path or a name {symbol}_{timeframe}_v{N} in the
    models folder; symbol, timeframe, horizon and labels come from the files and must agree.
    Overrides are key=value: strategy.threshold_long=0.55, strategy.threshold_short=0.45,
    commission=0.002 (fraction per side), slippage=5 (bps), initial_cash, size, stop_loss, take_profit,
    train.fractions=0.6,0.2,0.2 (the walk-forward windows follow the first share).

    \b
    Examples:
      genesis-fw compare tBTCUSD_1h_v1 tBTCUSD_1h_v2
      genesis-fw compare tBTCUSD_1h_v1 tBTCUSD_1h_v2 --walk-forward 5 commission=0.001
      genesis-fw compare tBTCUSD_1h_v1 tBTCUSD_1h_v2 --start 2019-06-01 --end 2019-07-01 --format json
    """
    from .errors import ConfigError
    from .ml import model_file
    from .selection import comparison, comparison_report

    names = [a for a in args if "=" not in a]
    overrides = tuple(a for a in args if "=" in a)
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key not in _COMPARE_KEYS:
            raise ConfigError(f"compare does not take {key!r}: the models, their symbol, timeframe, features and "
                              f"labels come from the model files; it takes {', '.join(_COMPARE_KEYS)}")
    cfg = _run_config(overrides + ("strategy=ml_model",), config_file, {})
    store = _store(ctx)
    if output is not None:
        _page_targets(store, output, report=not no_report, audit_log=cfg.registry.audit_log)  # before any work
    loaded = [model_file.load(name) for name in names]
    comparison.check_comparable(loaded)
    result = comparison.compare(loaded, store, cfg, start=start, end=end, walk_forward=walk_forward,
                                backtest=not no_backtest,
                                progress=(lambda text: _note(f"... {text}")) if sys.stderr.isatty() else None)
    for note in result["notes"]:
        _note(f"Note: {note}")
    if output is None:
        span = "_".join(result["period"][k][:10].replace("-", "") for k in ("start", "end"))
        output = Path("results") / f"compare_{'_'.join(m['name'] for m in result['models'])}_{span}.html"
    paths = _page_targets(store, output, report=not no_report, audit_log=cfg.registry.audit_log)
    text = _write_page(paths, result, comparison_report.render_comparison_page)
    if fmt == "json":
        click.echo(text, nl=False)
    else:
        for line in comparison_report.comparison_text(result):
            click.echo(line)
        click.echo("Wrote " + ", ".join(str(p) for p in paths.values()))


@cli.command()
@click.option("--symbol", required=True, help="Symbol to check, e.g. tBTCUSD.")
@click.option("--timeframe", required=True, help="Timeframe of the stored file, e.g. 1m.")
@click.option("--min-quality", type=click.FloatRange(0, 1), default=None,
              help="Exit 1 when the quality score is below this (0..1).")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the .quality.json/.md reports go. Default: <data_dir>/metadata.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print: a summary or the whole JSON report.")
@click.pass_context
def validate(ctx: click.Context, symbol: str, timeframe: str, min_quality: float | None, report_dir: Path | None,
             fmt: str) -> None:
    """Check a stored candle file: gaps, duplicates, grid, order, OHLC, spikes, zero volume.

    Writes {symbol}_{timeframe}.quality.json and .quality.md, records the score in the catalog's
    `quality` table and prints a summary. Uses the bundled sample when the store lacks the dataset.
    Timeframes the store only resamples on the fly are refused: validate the stored file.
    Checks and the quality score are defined in docs/DATA_PIPELINE.md.

    \b
    Examples:
      genesis-fw validate --symbol tBTCUSD --timeframe 1m
      genesis-fw validate --symbol tBTCUSD --timeframe 1m --min-quality 0.99 --format json
    """
    from .data import validate as checks
    from .errors import DataError

    store = _store(ctx)
    if report_dir is not None and Path(report_dir).resolve() != store.metadata_dir.resolve():
        store.check_output(report_dir)  # the metadata folder itself is where the reports go by default
    dataset, notes = checks.locate(store, symbol, timeframe)
    for note in notes:
        _note(f"Note: {note}")
    report = checks.validate(dataset.path, symbol, timeframe)
    json_path, md_path = checks.save(report, report_dir if report_dir is not None else store.metadata_dir)
    checks.record(store.catalog_path, report, json_path)
    if dataset.origin == "store":
        from .data import datasets as ds

        ds.update_quality(store, symbol, timeframe, report.quality_score, report.counts["gaps"])
    if fmt == "json":
        click.echo(report.to_json(), nl=False)
    else:
        click.echo(report.summary())
        click.echo(f"Wrote {json_path} and {md_path}")
    if min_quality is not None and report.quality_score < min_quality:
        raise DataError(f"{symbol} {timeframe} quality score {report.quality_score:.6f} is below "
                        f"--min-quality {min_quality:g} (report: {md_path})")


@cli.group()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON run config whose registry.audit_log names the audit log mirror "
                   "(default: config/runtime.seed.json when present).")
@click.pass_context
def models(ctx: click.Context, config_file: Path | None) -> None:
    """The model registry of the models folder: champion, challengers, retired versions, audit log.

    The registry is the models folder (--models-dir): registry.db (the catalog), registry.json (the
    state a trading bot reads, rewritten after every change) and the audit log, mirrored to
    --audit-log / $GENESIS_AUDIT_LOG / the run config's registry.audit_log. See
    docs/CHAMPION_SELECTION.md.

    \b
    Examples:
      genesis-fw models list
      genesis-fw models promote tBTCUSD_1h_v2 --reason "beats v1 on the 2019 test part"
      genesis-fw models rollback tBTCUSD 1h --reason "v2 misbehaves live"
      genesis-fw models audit --verify
    """
    _obj(ctx)["models_config"] = config_file


def _registry(ctx: click.Context):
    """The registry of --models-dir with the audit log of --audit-log > $GENESIS_AUDIT_LOG > run config."""
    from .registry.registry import Registry, audit_log_path

    cfg_value = None
    if _obj(ctx).get("audit_log") is None and not os.environ.get("GENESIS_AUDIT_LOG"):
        from .config import RuntimeConfig

        cfg_value = RuntimeConfig.load(_obj(ctx).get("models_config"), {}).registry.audit_log
    return Registry.open(_obj(ctx)["models_dir"], audit_log_path(cfg_value))


def _registry_notes(notes: list[str]) -> None:
    for note in notes:
        _note(note)


def _change(registry, method: str, *args, **kwargs):
    """Apply a registry change and print its notes; when it fails, print the notes of what was adopted or
    repaired before it first (the error follows)."""
    try:
        change = getattr(registry, method)(*args, **kwargs)
    except GenesisError:
        _registry_notes(registry.notes)
        raise
    _registry_notes(change.notes)
    return change


def _metric(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "n/a" if value is None else (f"{value:,}" if key == "n" else f"{value:.4f}")


@models.command("list")
@click.option("--symbol", help="Only this symbol.")
@click.option("--timeframe", help="Only this timeframe.")
@click.option("--all", "show_all", is_flag=True, help="Also list retired versions.")
@click.pass_context
def models_list(ctx: click.Context, symbol: str | None, timeframe: str | None, show_all: bool) -> None:
    """List the registered models: champion and challengers per symbol and timeframe (test metrics of
    the model file: log loss in nats, AUC, ECE; n/a for a hand-set baseline)."""
    registry = _registry(ctx)
    entries = registry.entries(symbol, timeframe, include_retired=show_all)
    _registry_notes(registry.notes)
    if not entries:
        click.echo(f"No models registered in {registry.dir}" + (" (retired ones: --all)" if not show_all else ""))
        return
    import hashlib

    def file_state(e) -> str:
        try:
            return "ok" if hashlib.sha256(e.file.read_bytes()).hexdigest() == e.sha256 else "CHANGED"
        except OSError:
            return "MISSING"

    states = {e.name: file_state(e) for e in entries}
    head = (f"{'name':<22} {'status':<10} {'type':<8} {'horizon':>7} {'log loss':>9} {'AUC':>7} {'ECE':>7}  "
            f"{'file':<7}  sha256")
    click.echo(head)
    for e in entries:
        click.echo(f"{e.name:<22} {e.status:<10} {e.model_type:<8} {e.horizon:>7} {_metric(e.metrics, 'log_loss'):>9} "
                   f"{_metric(e.metrics, 'auc'):>7} {_metric(e.metrics, 'ece'):>7}  {states[e.name]:<7}  "
                   f"{e.sha256[:12]}")
    bad = [f"{name} {state}" for name, state in states.items() if state != "ok"]
    if bad:
        _note(f"Warning: {len(bad)} registered file(s) no longer as registered ({', '.join(bad)}): promotion, "
              "backtests and evaluation refuse them; restore the registered files (`genesis-fw models show NAME`)")


@models.command("show")
@click.argument("name")
@click.pass_context
def models_show(ctx: click.Context, name: str) -> None:
    """Show one registered model: status, file, SHA-256 (and whether the file still has it), metrics."""
    import hashlib

    from .registry.registry import short_pair

    registry = _registry(ctx)
    try:
        e = registry.get(name)
    finally:  # what a read repaired is said, also before an unknown name's error
        _registry_notes(registry.notes)
    try:
        now = hashlib.sha256(e.file.read_bytes()).hexdigest()
        state = "matches the registry" if now == e.sha256 else \
            f"DIFFERS: {short_pair(now, e.sha256)[0]} now (tampered or replaced)"
    except OSError:
        state = "MISSING"
    rows = [("name", e.name), ("status", e.status), ("market", f"{e.symbol} {e.timeframe}"),
            ("version", str(e.version)), ("model type", e.model_type), ("horizon", f"{e.horizon} bars"),
            ("baseline", "yes (hand-set)" if e.baseline else "no (trained)"), ("file", f"{e.file} ({state})"),
            ("sha256", e.sha256), ("registered", e.registered_at)]
    if e.status == "champion":
        rows.append(("rollback to", registry.rollback_target(e.symbol, e.timeframe) or "(none: first champion)"))
    for label, value in rows:
        click.echo(f"{label + ':':<13}{value}")
    click.echo("metrics:     " + (", ".join(f"{k} {_metric(e.metrics, k) if k != 'verdict' else e.metrics[k]}"
                                            for k in e.metrics) or "(none)"))


@models.command("register")
@click.argument("file")
@click.option("--reason", default="registered with genesis-fw models register", show_default=True,
              help="Why, for the audit log.")
@click.pass_context
def models_register(ctx: click.Context, file: str, reason: str) -> None:
    """Register a model file of the models folder (a path or a name) as a challenger.

    The file is validated against the model schema and its SHA-256 recorded. A retired model
    becomes a challenger again. Logged with the file's metrics as evidence.
    """
    change = _change(_registry(ctx), "register", file, reason=reason)
    click.echo(f"Registered {change.to_model} as a challenger of {change.symbol} {change.timeframe} "
               f"(audit entry {change.seq})")


@models.command("promote")
@click.argument("name")
@click.option("--reason", required=True, help="Why, for the audit log.")
@click.pass_context
def models_promote(ctx: click.Context, name: str, reason: str) -> None:
    """Make a challenger the champion of its symbol and timeframe; the old champion is retired (its file
    untouched) and `models rollback` restores it. Refused for a tampered or missing file."""
    change = _change(_registry(ctx), "promote", name, reason=reason)
    old = f" (was {change.from_model}, now retired)" if change.from_model else ""
    click.echo(f"Promoted {change.to_model} to champion of {change.symbol} {change.timeframe}{old} "
               f"(audit entry {change.seq})")


@models.command("rollback")
@click.argument("symbol")
@click.argument("timeframe")
@click.option("--reason", required=True, help="Why, for the audit log.")
@click.pass_context
def models_rollback(ctx: click.Context, symbol: str, timeframe: str, reason: str) -> None:
    """Retire the champion of SYMBOL TIMEFRAME and restore the champion it replaced. Rolling back again
    goes further back, never forward."""
    change = _change(_registry(ctx), "rollback", symbol, timeframe, reason=reason)
    click.echo(f"Rolled back {symbol} {timeframe}: {change.to_model} is the champion again, {change.from_model} "
               f"retired (audit entry {change.seq})")


@models.command("retire")
@click.argument("name")
@click.option("--reason", required=True, help="Why, for the audit log.")
@click.pass_context
def models_retire(ctx: click.Context, name: str, reason: str) -> None:
    """Retire a challenger (its file stays; `models register NAME` makes it a challenger again)."""
    change = _change(_registry(ctx), "retire", name, reason=reason)
    click.echo(f"Retired {name} (audit entry {change.seq})")


@models.command("history")
@click.argument("symbol", required=False)
@click.argument("timeframe", required=False)
@click.pass_context
def models_history(ctx: click.Context, symbol: str | None, timeframe: str | None) -> None:
    """The audit log, oldest first: time (UTC), user@host, action, from -> to, reason."""
    if (symbol is None) != (timeframe is None):
        raise UsageError("give both SYMBOL and TIMEFRAME, or neither")
    registry = _registry(ctx)
    entries = registry.history(symbol, timeframe)
    _registry_notes(registry.notes)
    if not entries:
        click.echo("No audit entries" + (f" for {symbol} {timeframe}" if symbol else ""))
    for e in entries:
        market = f" {e['symbol']} {e['timeframe']}" if e["symbol"] else ""
        moved = f" {e['from'] or '-'} -> {e['to'] or '-'}" if (e["from"] or e["to"]) else ""
        click.echo(f"{e['seq']:>4}  {e['at']}  {e['user']}@{e['host']}  {e['action']}{market}{moved}: {e['reason']}")


@models.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def models_validate(files: tuple[Path, ...]) -> None:
    """Check model files against the model schema (and a registered file's SHA-256 against its folder's
    registry); a file named registry.json is checked against the registry schema, against the catalog
    registry.db beside it (it must show the current state) and each model file it lists must exist
    with the SHA-256 it lists. Exit 1 at the first bad file with "FILE: reason" (for a pre-commit hook).

    \b
    Example:
      genesis-fw models validate config/models/*.json
    """
    from .errors import ModelFileError
    from .ml import model_file
    from .registry import registry_file
    from .registry.registry import check_registered, validate_state_file

    for path in files:
        try:
            if path.name == registry_file.FILE_NAME:
                doc = validate_state_file(path)
                click.echo(f"OK {path} (registry state, {len(doc['markets'])} markets)")
                continue
            loaded = model_file.load(path)
            check_registered(loaded)
        except GenesisError as exc:
            message = str(exc)
            raise ModelFileError(message if message.startswith(str(path)) else f"{path}: {message}") from exc
        click.echo(f"OK {path} ({loaded.name}, {loaded.doc['model_type']})")


@models.command("audit")
@click.option("--verify", "check", is_flag=True, required=True,
              help="Check the hash chain of the catalog's audit log and the mirror against it.")
@click.pass_context
def models_audit(ctx: click.Context, check: bool) -> None:
    """Verify the audit log: every entry's SHA-256, the links between entries, no gap or reordering,
    and the JSON-lines mirror line by line against the catalog. Exit 1 at a broken link."""
    from .errors import RegistryError

    registry = _registry(ctx)
    report = registry.verify()
    for problem in report.problems + report.mirror_problems:
        click.echo(f"  {problem}")
    if not report.ok:
        first = (report.problems or report.mirror_problems or ["the audit log does not verify"])[0]
        raise RegistryError(f"audit log broken: {first}")
    click.echo(f"Audit log OK: {report.entries} entries, hash chain intact; the mirror {registry.audit_log} "
               "matches the catalog")


@models.command("repair")
@click.pass_context
def models_repair(ctx: click.Context) -> None:
    """Rewrite registry.json from the catalog and append the entries the audit log mirror lacks (never
    changes or removes an entry). Says what it did; exit 1 when the mirror disagrees with the catalog
    (an edited mirror is never rewritten: `models audit --verify` shows where)."""
    from .errors import RegistryError

    notes = _registry(ctx).repair()
    disagree = [n for n in notes if "disagrees" in n]
    for note in notes:
        if note not in disagree:
            click.echo(note)
    if disagree:
        done = " (registry.json and the rest were repaired as said above)" if len(notes) > len(disagree) else ""
        raise RegistryError(disagree[0].removeprefix("warning: ") + done)


@cli.group()
def champion() -> None:
    """Choose the champion model of a market from its challengers, by documented gates.

    \b
    Examples:
      genesis-fw champion select tBTCUSD 1h --dry-run
      genesis-fw champion select tBTCUSD 1h champion.alpha=0.01 champion.walk_forward=0
    """


@champion.command("select")
@click.argument("symbol")
@click.argument("timeframe")
@click.argument("overrides", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show the decision; change nothing (registry, registry.json, audit log).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON config file with a champion section (default: config/runtime.seed.json when present).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="What to print: the table of challengers x gates, or the JSON result.")
@click.pass_context
def champion_select(ctx: click.Context, symbol: str, timeframe: str, overrides: tuple[str, ...], dry_run: bool,
                    config_file: Path | None, fmt: str) -> None:
    """Promote the challenger with the lowest test log loss among those that pass every gate, or keep the
    champion and say which gates each challenger failed; the decision and its evidence go to the audit log.

    Gates (champion.KEY=VALUE or the config file's champion section): significantly better than the
    champion by a one-sided Diebold-Mariano test (alpha), calibration error at most max_ece, better in at
    least min_walk_forward_share of walk_forward windows (0 = off), backtest Sharpe at least the champion's
    minus sharpe_tolerance. Backtests use the config's costs. See docs/CHAMPION_SELECTION.md.

    \b
    Examples:
      genesis-fw champion select tBTCUSD 1h
      genesis-fw champion select tBTCUSD 1h --dry-run --format json
      genesis-fw champion select tBTCUSD 1h --config my.json champion.max_ece=0.03
    """
    import json

    from .registry.registry import Registry, audit_log_path
    from .selection import champion as selection

    cfg = _run_config(overrides, config_file, {"symbol": symbol, "timeframe": timeframe}, prefix="champion.")
    registry = Registry.open(_obj(ctx)["models_dir"], audit_log_path(cfg.registry.audit_log))
    result = selection.select(registry, cfg.symbol, cfg.timeframe, _store(ctx), cfg, dry_run=dry_run,
                              progress=None if fmt == "json" else _note)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        for line in selection.text_lines(result):
            click.echo(line)


@cli.command()
@_run_options
@click.option("--horizon", help="Label horizon in bars, a whole number >= 1 (same as train.horizon=...; default 20).")
@click.option("--offline", is_flag=True, help="No fetch: run on what the store (or the bundled sample) holds.")
@click.option("--base-url", help="Exchange REST base URL (default from config or $GENESIS_BITFINEX_URL).")
@click.option("--min-quality", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Stop when the data quality score (0..1) is below this.")
@click.option("--require-skill", is_flag=True,
              help="Stop unless the model is significantly better than the base rate on its test part.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Run folder: step cache, summary.json/.html, step reports. "
                   "Default: results/e2e_<symbol>_<timeframe>")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="What to print at the end: the summary table, or the summary JSON.")
@click.pass_context
def e2e(ctx: click.Context, overrides: tuple[str, ...], symbol, timeframe, start, end, config_file, horizon,
        offline: bool, base_url: str | None, min_quality: float, require_skill: bool, output: Path | None,
        fmt: str) -> None:
    """From candles to a champion: fetch, validate, features, labels, train, calibrate, evaluate, compare,
    backtest, select.

    Each step is cached by the content hashes of its inputs: a rerun with nothing changed runs nothing
    and says "cached" per step; a changed input reruns exactly the steps after it. Stops at the first
    failing gate (data quality below --min-quality, a model that fails validation, no skill with
    --require-skill) with one line and exit 1; the registry changes only in the last step. Overrides as in
    train (model=, model.PARAM=, train.KEY=, features.PARAM=), champion.KEY= and the backtests' costs
    (commission=, slippage=). --start/--end bound the fetch and the training data. See docs/WORKFLOW.md.

    \b
    Examples:
      genesis-fw e2e --symbol tBTCUSD --timeframe 1h --offline
      genesis-fw e2e --symbol tBTCUSD --timeframe 1h --start 2024-01-01 --end 2024-07-01 --horizon 20
      genesis-fw e2e --symbol tBTCUSD --timeframe 1h --offline model=logreg model.C=0.01,0.1 --require-skill
    """
    import json

    from .config import parse_overrides
    from .errors import ConfigError
    from .registry.registry import Registry, audit_log_path
    from .workflow import pipeline, summary_report

    for key in parse_overrides(overrides):
        if key.split(".")[0] not in ("model", "train", "features", "champion", "registry", "exchange", "commission",
                                     "slippage", "initial_cash", "size", "max_leverage", "stop_loss",
                                     "take_profit", "symbol", "timeframe", "start", "end") \
                and key not in ("strategy.threshold_long", "strategy.threshold_short"):
            raise ConfigError(f"e2e does not take {key!r}: it takes model=, model.PARAM=, train.KEY=, "
                             "features.PARAM=, champion.KEY=, the backtests' costs (commission=, slippage=, ...) "
                             "and strategy.threshold_long=/strategy.threshold_short= (its backtests use ml_model)")
    flags = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end, "train.horizon": horizon}
    if base_url:
        flags["exchange.base_url"] = base_url
    elif os.environ.get("GENESIS_BITFINEX_URL"):
        flags["exchange.base_url"] = os.environ["GENESIS_BITFINEX_URL"]
    cfg = _run_config(overrides + ("strategy=ml_model",), config_file, flags)
    store = _store(ctx)
    folder = output or Path("results") / f"e2e_{cfg.symbol}_{cfg.timeframe}"
    check_not_registry([folder, folder / "summary.json"], cfg.registry.audit_log)
    store.check_output(folder / "summary.json")
    registry = Registry.open(_obj(ctx)["models_dir"], audit_log_path(cfg.registry.audit_log))
    opts = pipeline.Options(cfg=cfg, output=folder, offline=offline, min_quality=min_quality,
                            require_skill=require_skill, fetch_start=start or cfg.start, fetch_end=end or cfg.end)
    pipeline.check_request(cfg)  # a bad timeframe, model type or date before any step runs
    run = pipeline.Pipeline(opts, store, registry, progress=_note)
    try:
        run.run()
    finally:
        if run.summary:  # also when a gate stopped the run: what was done, and why it stopped
            for note in run.summary["notes"]:
                _note(f"Note: {note}")
            if fmt == "json":
                click.echo(json.dumps(run.summary, indent=2, allow_nan=False))
            else:
                for line in summary_report.text_lines(run.summary):
                    click.echo(line)
                click.echo(f"Wrote {folder / 'summary.json'}, {folder / 'summary.html'}")


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="genesis-fw")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)

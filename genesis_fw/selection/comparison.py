"""``genesis-fw compare``: several models on the same period and the same labels, with significance tests.

What :func:`compare` does (docs/CHAMPION_SELECTION.md, "Comparing models"):

1. Refuses models that cannot be compared on one set of labels: other symbols or timeframes, other
   horizons or label definitions (rule, dead zone, ties), fewer than two, one model twice; and a model
   file registered in its folder's registry that was replaced since
   (:func:`genesis_fw.registry.registry.check_registered`).
2. Rebuilds the labelled examples of the common symbol / timeframe / label definition from the candles,
   as ``genesis-fw evaluate`` does (:func:`genesis_fw.ml.dataset.build`, features from the dataset's
   first candle), once per feature definition; only bars every model has features for are used.
3. Picks the period. Default: the intersection of the test parts of the trained models (a part is the
   labelled bars opened in ``[test_start, test_end]`` whose horizon ends by ``test_label_end``, as
   :func:`genesis_fw.ml.model_evaluation.part_rows`); hand-set baselines (no training data) have no
   test part and are scored on that period. No trained model: all labelled bars. ``start`` / ``end``
   (UTC) override it: the labelled bars opened at or after ``start`` whose horizon ends before ``end``.
   A period overlapping a model's training or validation part gets an in-sample note for that model.
4. Scores every model's calibrated probabilities on those rows (:func:`genesis_fw.ml.evaluation.scores`,
   equal to ``sklearn.metrics``), and tests each candidate (``models[1:]``) against ``models[0]`` on the
   per-row log-loss differences ``d = loss_candidate - loss_baseline`` (nats, below 0 where the candidate
   does better): Diebold-Mariano with a HAC variance, lag = horizon (one-sided, candidate better;
   :func:`genesis_fw.ml.evaluation.loss_difference_test`) and a block-bootstrap confidence interval of
   the mean of ``d`` (:func:`genesis_fw.selection.stats.block_bootstrap_ci`). The constant predictors of
   :func:`base_rates` are scored on the same rows, and every model is tested the same way against the
   best of them (``vs_base_rate``), so "no skill over the base rate" shows whatever the baseline.
5. Backtests each model through the ``ml_model`` strategy on the same candles with the same costs
   (:func:`genesis_fw.backtest.engine.run`; start = the period's first bar, end = the end of its last
   bar, so ``genesis-fw backtest strategy=ml_model strategy.model=NAME --start START --end END`` gives
   the same figures), and compares the calendar-day returns the backtest's Sharpe ratio is computed
   from (:func:`genesis_fw.backtest.metrics.daily_returns`, annualised with sqrt(365.25)): a paired
   block bootstrap of the Sharpe difference and each model's probabilistic Sharpe ratio.
6. With ``walk_forward=K``: the labelled bars after the first ``train.fractions[0]`` share of all of
   them (up to ``end``) are cut into K consecutive windows of equal row counts; for each window every
   trained model is refitted on the past only, its calibration method chosen again on that past
   (:func:`refit`), hand-set baselines are used as they are,
   and each model's log loss on the window is reported with the number of windows in which each
   candidate's log loss is below the baseline's.

Units: probabilities are fractions, log loss in nats, returns fractions, times UTC ISO strings, timings s.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from ..backtest import engine, metrics
from ..config import RuntimeConfig, StrategyConfig, make_params
from ..data.store import CandleStore
from ..data.timeframes import from_ms, parse_time, to_ms
from ..errors import ConfigError, DataError, GenesisError, ModelFileError
from ..ml import calibration, dataset, evaluation
from ..ml.labels import add_bars
from ..ml.model_evaluation import label_config
from ..ml.model_file import LoadedModel
from ..ml.splits import purge
from ..model import Model
from ..registry.registry import check_registered

#: The scores of the comparison table (keys of :func:`genesis_fw.ml.evaluation.scores`, plus ``auc``).
SCORE_KEYS = ("n", "log_loss", "brier", "auc", "pr_auc", "ece", "accuracy", "up_rate")
#: The backtest figures of each model (keys of :func:`genesis_fw.backtest.metrics.compute`).
BACKTEST_KEYS = ("sharpe", "total_return", "max_drawdown", "num_trades", "sortino", "exposure", "final_equity")
#: Strategy parameters of the backtests that the run config may set (the model is the compared file).
STRATEGY_PARAMS = ("threshold_long", "threshold_short")


def _iso(ms: Any) -> str:
    return from_ms(int(ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(text: str, what: str) -> int:
    return to_ms(parse_time(text, what=what))


def _label(loaded: LoadedModel) -> dict[str, Any]:
    tc = label_config(loaded)
    return {"rule": tc.label_rule, "dead_zone_bps": tc.dead_zone_bps, "keep_ties": tc.keep_ties}


def check_comparable(models: list[LoadedModel]) -> None:
    """Refuse (one-line :class:`ConfigError`) fewer than two models, a model given twice, and models of
    other symbols / timeframes, horizons or label definitions than ``models[0]``."""
    if len(models) < 2:
        given = models[0].name if models else "none"
        raise ConfigError(f"compare needs at least two models (a baseline and a candidate), got {len(models)}: {given}")
    seen: dict[str, LoadedModel] = {}
    for m in models:
        if m.name in seen:
            same = m.path.resolve() == seen[m.name].path.resolve()
            raise ConfigError(f"{m.name} is given twice" + ("" if same else f" ({seen[m.name].path} and {m.path})")
                              + ": compare models of different names, each is reported under its name")
        seen[m.name] = m
    base = models[0]
    for m in models[1:]:
        if (m.symbol, m.timeframe) != (base.symbol, base.timeframe):
            raise ConfigError(f"{base.name} is a {base.symbol} {base.timeframe} model, {m.name} a {m.symbol} "
                              f"{m.timeframe} one: models are compared on the same candles, so give models of one "
                              "symbol and timeframe")
        if m.horizon != base.horizon:
            raise ConfigError(f"{base.name} predicts {base.horizon} bars ahead, {m.name} {m.horizon} bars: models "
                              "are compared on the same labels, so give models of one horizon")
        if _label(m) != _label(base):
            raise ConfigError(f"{base.name} and {m.name} have other label definitions ({_label(base)} vs "
                              f"{_label(m)}): models are compared on the same labels")


@attrs.frozen(eq=False)
class Shared:
    """The labelled bars every model has features for, in time order: bar open times and label horizon
    ends (ms UTC), labels ``y`` (0/1) and each model's feature matrix ``X[i]`` (rows = these bars)."""

    start_ms: np.ndarray
    end_ms: np.ndarray
    y: np.ndarray
    X: list[np.ndarray]
    identity: dict[str, Any]
    #: Notes on the candles read (e.g. resampled on the fly).
    notes: list[str]


def shared_examples(models: list[LoadedModel], store: CandleStore, *, end: str | None = None) -> Shared:
    """The examples of ``models`` (comparable ones, :func:`check_comparable`) over the candles before
    ``end`` (UTC; ``None``: all), built once per feature definition, on the bars all of them have."""
    built: dict[str, dataset.Examples] = {}
    keys = []
    for m in models:
        key = repr(sorted(m.doc["features"]["params"].items()))
        keys.append(key)
        if key not in built:
            built[key] = dataset.build(store, m.symbol, m.timeframe, m.features_config(), label_config(m), end=end)
    common = None
    for ex in built.values():
        ts = ex.labels.timestamp_ms
        common = ts if common is None else np.intersect1d(common, ts, assume_unique=True)
    assert common is not None
    first = next(iter(built.values()))
    pos = {k: np.searchsorted(ex.labels.timestamp_ms, common) for k, ex in built.items()}
    ref = pos[keys[0]]
    ex0 = built[keys[0]]
    ident = ex0.identity
    return Shared(start_ms=ex0.labels.timestamp_ms[ref], end_ms=ex0.labels.end_ms[ref],
                  y=ex0.y[ref].astype(np.int64), X=[built[k].X[pos[k]] for k in keys],
                  identity={k: ident[k] for k in ("dataset", "dataset_version", "sha256", "start", "end", "candles")}
                  | {"origin": first.identity["origin"]},
                  notes=list(dict.fromkeys(n for ex in built.values() for n in ex.notes)))


def _boundaries(m: LoadedModel) -> dict[str, str] | None:
    td = m.doc["training_data"]
    return None if td is None else td["split"]["boundaries"]


def _period(models: list[LoadedModel], sh: Shared, start: str | None, end: str | None) -> tuple[np.ndarray, dict]:
    """The scored rows and the period record (``start``/``end`` of the backtests, end exclusive)."""
    tf = models[0].timeframe
    if start is not None or end is not None:
        lo = _ms(start, "start") if start is not None else None
        rows = np.arange(sh.y.size) if lo is None else np.flatnonzero(sh.start_ms >= lo)
        how = f"given: labelled bars in [{start or 'first candle'}, {end or 'last candle'})"
    else:
        trained = [(m.name, b) for m in models if (b := _boundaries(m)) is not None]
        if not trained:
            rows = np.arange(sh.y.size)
            how = "all labelled bars (no model has a test part: all are hand-set baselines)"
        else:
            lo = max(_ms(b["test_start"], "test_start") for _, b in trained)
            hi = min(_ms(b["test_end"], "test_end") for _, b in trained)
            label_end = min(_ms(b["test_label_end"], "test_label_end") for _, b in trained)
            if lo > hi:
                raise ConfigError("the test parts of " + ", ".join(n for n, _ in trained) + " do not overlap; give "
                                  "--start and --end to compare them on a period of your choice")
            rows = np.flatnonzero((sh.start_ms >= lo) & (sh.start_ms <= hi) & (sh.end_ms <= label_end))
            names = ", ".join(n for n, _ in trained)
            how = f"the test part of {names}" if len(trained) == 1 else f"the intersection of the test parts of {names}"
            start, end = _iso(lo), _iso(add_bars(hi, 1, tf))
    if rows.size == 0:
        raise DataError(f"no labelled {models[0].symbol} {tf} bars in the period ({how})")
    y = sh.y[rows]
    if y.min() == y.max():
        raise DataError(f"the period has labels of one class only ({y.size} bars, all {int(y[0])}): no comparison "
                        "of probabilities is possible there; give a longer --start/--end")
    first, last = int(sh.start_ms[rows[0]]), int(sh.start_ms[rows[-1]])
    period = {"start": start or _iso(first), "end": end or _iso(add_bars(last, 1, tf)), "rows": int(rows.size),
              "how": how, "first_bar": _iso(first), "last_bar": _iso(last),
              "last_label_end": _iso(sh.end_ms[rows].max())}
    return rows, period


def _in_sample(m: LoadedModel, sh: Shared, rows: np.ndarray) -> str | None:
    b = _boundaries(m)
    if b is None:
        return None
    fitted_lo, fitted_hi = _ms(b["train_start"], "train_start"), _ms(b["validation_label_end"], "validation_label_end")
    if int(sh.start_ms[rows[0]]) <= fitted_hi and int(sh.end_ms[rows].max()) >= fitted_lo:
        return (f"the period overlaps the training and validation parts of {m.name} ({b['train_start'][:16]} .. "
                f"{b['validation_label_end'][:16]} UTC): its scores are in-sample (the model or its calibration was "
                "fitted on part of this period): not an out-of-sample estimate")
    return None


def _plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and non-finite floats as ``None`` (JSON-ready, no NaN)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    s = evaluation.scores(y, p)
    return s | {"auc": s["roc_auc"]}


def base_rates(models: list[LoadedModel], sh: Shared, rows: np.ndarray) -> list[dict[str, Any]]:
    """The constant predictors every model is also judged against, as ``genesis-fw train`` and
    ``evaluate`` do: 0.5, and each trained model's train-part and validation-part up-rates (known before its
    test part; the verdicts of ``train`` and ``evaluate`` use those two);
    with no trained model, the period's own up-rate (in-sample: known only afterwards, so optimistic for
    the constant). ``[{"name", "rate", "source"}]``, rates as fractions, one entry per distinct rate."""
    out = [{"name": "constant 0.5", "rate": 0.5, "source": "a coin flip"}]
    for m in models:
        b = _boundaries(m)
        if b is None:
            continue
        for part in ("train", "validation"):
            sel = np.flatnonzero((sh.start_ms >= _ms(b[f"{part}_start"], f"{part}_start"))
                                 & (sh.start_ms <= _ms(b[f"{part}_end"], f"{part}_end"))
                                 & (sh.end_ms <= _ms(b[f"{part}_label_end"], f"{part}_label_end")))
            if sel.size:
                out.append({"name": f"{part} rate of {m.name}", "rate": float(sh.y[sel].mean()),
                            "source": f"the up-rate of {m.name}'s {part} part ({sel.size:,} bars)"})
    if len(out) == 1:
        out.append({"name": "period rate", "rate": float(sh.y[rows].mean()),
                    "source": "the period's own up-rate (in-sample, known only afterwards)"})
    seen: set[float] = set()
    return [c for c in out if not (c["rate"] in seen or seen.add(c["rate"]))]


# -- walk-forward --------------------------------------------------------------------------------------


def walk_forward_windows(n: int, k: int, first_share: float) -> list[np.ndarray]:
    """Row positions of ``k`` consecutive test windows over ``n`` labelled rows in time order: the rows after
    the first ``int(n * first_share)`` cut into ``k`` windows of equal size (the first ones one row longer
    when it does not divide). :class:`DataError` when a window would be empty."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"invalid number of walk-forward windows {k!r}: expected a whole number >= 1")
    cut = int(n * first_share)
    if n - cut < k:
        raise DataError(f"too few labelled bars for {k} walk-forward windows: {n - cut} after the first "
                        f"{first_share:g} share of {n}")
    return [w.astype(np.int64) for w in np.array_split(np.arange(cut, n), k)]


@attrs.frozen(eq=False)
class Refit:
    """A trained model refitted on the past of a test window: the rows it was fitted on (``fit_rows``) and
    its calibration fitted on (``calibration_rows``), positions into the shared rows, and the result."""

    model: Model
    calibration: dict[str, Any]
    fit_rows: np.ndarray
    calibration_rows: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.model.predict_proba(X), dtype=float)
        return calibration.apply(self.calibration, raw)


def refit_methods(loaded: LoadedModel) -> list[str]:
    """The calibration methods a refit of ``loaded`` chooses among: those its training chose among (the
    keys of its calibration's ``cv_log_loss``), else its stored method alone."""
    cal = loaded.doc["calibration"]
    return list(cal.get("cv_log_loss") or {}) or [cal["method"]]


def refit(loaded: LoadedModel, X: np.ndarray, y: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray,
          first_test_ms: int, *, calibration_folds: int = 5) -> Refit:
    """Refit ``loaded`` (its recorded model type and parameters, no new grid search) on the rows whose label
    horizon ends before ``first_test_ms`` minus the file's embargo (bars): the past of a window opening then.

    The calibration is chosen again on the past only: among the methods the file's training chose among
    (:func:`refit_methods`), by :func:`genesis_fw.ml.calibration.choose` (``calibration_folds`` purged
    folds, the file's embargo) on the last share ``f_val / (f_train + f_val)`` of those rows (the file's
    split fractions), as training does on its validation part; the model is fitted on the rows before
    it, purged of labels reaching that share's first bar (minus the embargo), as
    :func:`genesis_fw.ml.splits.chronological_split` does. (The file's own method was chosen on its
    validation part, which may lie inside or after the window: reusing it would look ahead.) When the only
    method is ``none`` the model is fitted on all of the past. :class:`DataError` when a part has one
    class only or too few rows for the folds."""
    from .. import plugins

    doc = loaded.doc
    tf, split = loaded.timeframe, doc["training_data"]["split"]
    emb, (f_tr, f_va) = int(split["embargo"]), split["fractions"][:2]
    past = purge(end_ms, np.arange(end_ms.size), first_test_ms, emb, tf)
    methods = refit_methods(loaded)
    calibrate = methods != ["none"]
    if not calibrate:
        fit_rows, cal_rows = past, past[:0]
    else:
        n_cal = int(round(past.size * f_va / (f_tr + f_va)))
        cal_rows = past[past.size - n_cal:] if n_cal else past[:0]
        fit_rows = purge(end_ms, past[:past.size - n_cal], int(start_ms[cal_rows[0]]), emb, tf) if n_cal else past[:0]
    at = _iso(first_test_ms)
    for rows, what in ((fit_rows, "fit"), *(((cal_rows, "calibration"),) if calibrate else ())):
        if rows.size == 0 or np.unique(y[rows]).size < 2:
            raise DataError(f"{loaded.name}: the past of the walk-forward window opening {at} has "
                            f"{'no' if rows.size == 0 else 'one class of'} {what} rows; use fewer windows or more data")
    cls = plugins.load("model", doc["model_type"])
    params = make_params(cls.Params, doc["params"], owner=f"model {doc['model_type']}")
    try:
        model = cls(params).fit(X[fit_rows], y[fit_rows])
    except GenesisError:
        raise
    except Exception as exc:
        raise plugins.plugin_failure(doc["model_type"], "fit", exc, f" refitting {loaded.name}", kind="model") from exc
    cal: dict[str, Any] = {"method": "none"}
    if calibrate:
        raw = np.asarray(model.predict_proba(X[cal_rows]), dtype=float)
        try:
            cal = calibration.choose(raw, y[cal_rows], start_ms[cal_rows], end_ms[cal_rows], tf, methods=methods,
                                     n_splits=calibration_folds, embargo=emb,
                                     eps=doc["calibration"].get("eps", calibration.EPS))
        except DataError as exc:
            raise DataError(f"{loaded.name}: choosing the calibration on the past of the walk-forward window opening "
                            f"{at}: {exc}; use fewer windows or more data") from exc
    return Refit(model, cal, fit_rows, cal_rows)


def run_walk_forward(models: list[LoadedModel], sh: Shared, k: int, first_share: float,
                     progress: Callable[[str], Any] | None = None, *, calibration_folds: int = 5) -> dict[str, Any]:
    """The walk-forward part of :func:`compare` (module docstring, step 6) over the shared rows ``sh``."""
    windows = walk_forward_windows(sh.y.size, k, first_share)
    retrain_s = test_s = 0.0
    out = []
    for i, rows in enumerate(windows, start=1):
        if progress is not None:
            progress(f"walk-forward window {i} of {k}")
        first = int(sh.start_ms[rows[0]])
        losses: dict[str, float] = {}
        fitted: dict[str, int | None] = {}
        methods: dict[str, str | None] = {}
        for m, X in zip(models, sh.X, strict=True):
            t0 = time.perf_counter()
            predictor: Any = m
            if m.doc["training_data"] is not None:
                predictor = refit(m, X, sh.y, sh.start_ms, sh.end_ms, first, calibration_folds=calibration_folds)
                fitted[m.name] = int(predictor.fit_rows.size)
                methods[m.name] = predictor.calibration["method"]
            else:
                fitted[m.name] = None
                methods[m.name] = None
            t1 = time.perf_counter()
            losses[m.name] = float(evaluation.per_row_log_loss(sh.y[rows], predictor.predict_proba(X[rows])).mean())
            t2 = time.perf_counter()
            retrain_s += t1 - t0
            test_s += t2 - t1
        out.append({"start": _iso(first), "end": _iso(sh.start_ms[rows[-1]]), "rows": int(rows.size),
                    "last_label_end": _iso(sh.end_ms[rows].max()), "log_loss": losses, "fit_rows": fitted,
                    "calibration": methods})
    base = models[0].name
    wins = {m.name: sum(w["log_loss"][m.name] < w["log_loss"][base] for w in out) for m in models[1:]}
    return {"k": k, "rule": f"the labelled bars after the first {first_share:g} share, cut into {k} windows of "
                            "equal row counts; trained models refitted on the past of each window (purged, with "
                            "their embargo, the calibration method chosen again on that past), hand-set baselines "
                            "used as they are",
            "windows": out, "wins": wins, "timing": {"retrain_s": retrain_s, "test_s": test_s}}


# -- backtests ---------------------------------------------------------------------------------------------


def backtest_config(cfg: RuntimeConfig, loaded: LoadedModel, period: dict[str, Any]) -> RuntimeConfig:
    """``cfg`` (costs, cash, size, stops) with the ``ml_model`` strategy on ``loaded``'s file over the period;
    the thresholds are ``cfg``'s when its strategy is ``ml_model``, else the strategy's defaults."""
    params = {k: v for k, v in cfg.strategy.params.items() if k in STRATEGY_PARAMS} \
        if cfg.strategy.name == "ml_model" else {}
    return attrs.evolve(cfg, symbol=loaded.symbol, timeframe=loaded.timeframe, start=period["start"],
                        end=period["end"], output=None,
                        strategy=StrategyConfig("ml_model", {**params, "model": str(loaded.path)}))


def _daily_equity(days: np.ndarray, r: np.ndarray, cash: float) -> list[list[Any]]:
    eq = cash * np.cumprod(1.0 + np.nan_to_num(r))
    return [[from_ms(int(d)).strftime("%Y-%m-%d"), float(e)] for d, e in zip(days, eq, strict=True)]


# -- the comparison ------------------------------------------------------------------------------------------


def compare(models: list[LoadedModel], store: CandleStore, cfg: RuntimeConfig, *, start: str | None = None,
            end: str | None = None, walk_forward: int = 0, backtest: bool = True, seed: int = 0,
            progress: Callable[[str], Any] | None = None, data_end: str | None = None) -> dict[str, Any]:
    """Compare ``models`` (``models[0]`` the baseline) as the module docstring says; the JSON-ready result
    is laid out in docs/CHAMPION_SELECTION.md ("Comparing models"). ``cfg`` gives the backtests' costs
    (``commission`` fraction per side, ``slippage`` bps), cash, size, stops and ``ml_model`` thresholds,
    and ``train.fractions[0]`` for the walk-forward rule; ``seed`` seeds the bootstraps; ``progress(text)``
    is called before each slow step. ``data_end`` (UTC) bounds the candles read (labels, walk-forward refits)
    without choosing the period as ``end`` does: nothing at or after it is used. Raises :class:`ConfigError`
    for models that cannot be compared and :class:`DataError` for a period without labelled bars of both
    classes or missing candles."""
    from . import stats

    def step(text: str) -> None:
        if progress is not None:
            progress(text)

    t_all = time.perf_counter()
    check_comparable(models)
    for m in models:
        check_registered(m)  # a registered file replaced since is refused, as in the ml_model backtests
        m.check_features()
    base = models[0]
    tf = base.timeframe
    step("reading candles, features and labels")
    t0 = time.perf_counter()
    sh = shared_examples(models, store, end=end or data_end)
    rows, period = _period(models, sh, start, end)
    examples_s = time.perf_counter() - t0
    notes: list[str] = list(sh.notes)
    t0 = time.perf_counter()
    y = sh.y[rows]
    probs = [m.predict_proba(X[rows]) for m, X in zip(models, sh.X, strict=True)]
    entries = []
    for m, p in zip(models, probs, strict=True):
        in_sample = _in_sample(m, sh, rows)
        if in_sample:
            notes.append(in_sample)
        is_baseline = m.doc["training_data"] is None
        if is_baseline:
            notes.append(f"{m.name} is a hand-set baseline without training data: scored as it is on the period")
        entries.append({"name": m.name, "path": str(m.path), "sha256": m.sha256, "model_type": m.doc["model_type"],
                        "calibration": m.doc["calibration"]["method"], "baseline": is_baseline,
                        "scores": _scores(y, p), "reliability": evaluation.reliability(y, p),
                        "in_sample": in_sample, "backtest": None})
    lag = min(base.horizon, y.size - 1)
    constants = base_rates(models, sh, rows)
    for c, sc in zip(constants, evaluation.baselines(y, {c["name"]: c["rate"] for c in constants}).values(),
                     strict=True):
        c["scores"] = sc | {"auc": sc["roc_auc"]}
    best = min(constants, key=lambda c: c["scores"]["log_loss"])
    for entry, p in zip(entries, probs, strict=True):
        test = evaluation.loss_difference_test(y, p, np.full(y.size, best["rate"]), lag)
        entry["vs_base_rate"] = {"constant": best["name"], "rate": best["rate"], "dm": test,
                                 "log_loss_difference": float(test["mean_difference"])}
    loss = [evaluation.per_row_log_loss(y, p) for p in probs]
    pairs = []
    for m, p, ls in zip(models[1:], probs[1:], loss[1:], strict=True):
        d = ls - loss[0]
        pairs.append({"baseline": base.name, "candidate": m.name, "log_loss_difference": float(d.mean()),
                      "dm": evaluation.loss_difference_test(y, p, probs[0], lag),
                      "bootstrap": _plain(stats.block_bootstrap_ci(d, seed=seed)), "sharpe": None})
    scoring_s = time.perf_counter() - t0

    backtest_s = 0.0
    if backtest:
        t0 = time.perf_counter()
        returns = []
        for m, entry in zip(models, entries, strict=True):
            step(f"backtest of {m.name}")
            res = engine.run(backtest_config(cfg, m, period), store)
            if hashlib.sha256(m.path.read_bytes()).hexdigest() != m.sha256:
                raise ModelFileError(f"{m.path} changed during the comparison (sha256 {m.sha256[:12]} when loaded): "
                                     "run it again")
            days, r = metrics.daily_returns(res.bars.timestamp, res.equity, cfg.initial_cash, timeframe=tf)
            # the backtest's own Sharpe ratio is undefined without dispersion (e.g. never in the market)
            usable = bool(r.size >= 2 and np.isfinite(r).all() and res.metrics.get("sharpe") is not None)
            bt = {k: res.metrics.get(k) for k in BACKTEST_KEYS}
            bt |= {"psr": None, "psr_detail": None, "days": int(r.size), "num_bars": len(res.bars),
                   "daily_equity": _daily_equity(days, r, cfg.initial_cash), "strategy_params": res.params}
            if not usable:
                notes.append(f"the backtest of {m.name} has no Sharpe ratio (fewer than 2 days, returns without "
                             "dispersion such as never being in the market, or a liquidation): no Sharpe statistics "
                             "for it")
            else:
                try:
                    bt["psr_detail"] = _plain(stats.probabilistic_sharpe_ratio(r))
                    bt["psr"] = bt["psr_detail"]["psr"]
                except DataError as exc:  # e.g. fewer days than the statistics need
                    usable = False
                    notes.append(f"no Sharpe statistics for the backtest of {m.name}: {exc}")
            returns.append(r if usable else None)
            # the data notes are already there; the in-sample overlap is said per model above
            notes.extend(f"backtest of {m.name}: {n}" for n in res.notes if n not in notes and "in-sample" not in n)
            entry["backtest"] = bt
        for pair, r_b in zip(pairs, returns[1:], strict=True):
            if returns[0] is not None and r_b is not None:
                try:
                    pair["sharpe"] = _plain(stats.sharpe_difference_bootstrap(
                        returns[0], r_b, periods_per_year=metrics.PERIODS_PER_YEAR, seed=seed))
                except DataError as exc:
                    notes.append(f"no Sharpe difference of {pair['candidate']} and {pair['baseline']}: {exc}")
        backtest_s = time.perf_counter() - t0

    wf = None
    if walk_forward:
        baselines = [m.name for m in models if m.doc["training_data"] is None]
        if baselines:
            notes.append(f"walk-forward: {', '.join(baselines)} (hand-set, no training data) used as "
                         f"{'it is' if len(baselines) == 1 else 'they are'} in every window, not refitted")
        wf = run_walk_forward(models, sh, walk_forward, float(cfg.train.fractions[0]), step,
                              calibration_folds=int(cfg.train.calibration_folds))
    return {
        "symbol": base.symbol, "timeframe": tf, "horizon": base.horizon, "label": _label(base),
        "period": period, "data": sh.identity,
        "models": entries, "constants": _plain(constants), "pairs": pairs, "walk_forward": wf, "notes": notes,
        "costs": {"commission": cfg.commission, "slippage_bps": cfg.slippage, "initial_cash": cfg.initial_cash,
                  "size": cfg.size} if backtest else None,
        "seed": seed,
        "timing": {"examples_s": examples_s, "scoring_s": scoring_s, "backtest_s": backtest_s,
                   "walk_forward_s": (wf["timing"]["retrain_s"] + wf["timing"]["test_s"]) if wf else 0.0,
                   "total_s": time.perf_counter() - t_all},
    }

"""``genesis-fw train``: from stored candles to a tuned, calibrated, evaluated model file.

The procedure (docs/ML_TRAINING.md, "Training"), with ``h`` the label horizon in bars:

1. Examples: the features of each bar joined with its label (:func:`genesis_fw.ml.dataset.build`).
2. A chronological train / validation / test split of the labelled rows (``train.fractions``), each
   earlier part purged of the labels whose horizon reaches the next part, plus ``train.embargo`` bars
   (:func:`genesis_fw.ml.splits.split_labels`). The boundaries are dates and go into the model file.
3. ``GridSearchCV`` over the model type's grid (``model.PARAM=a,b,c`` replaces one parameter's
   candidates) on the training part only, with ``train.folds`` time-ordered, purged folds
   (:class:`~genesis_fw.ml.splits.PurgedKFold`, never shuffled), scored by log loss. The best
   parameters (lowest mean log loss over the folds) are refitted on the whole training part.
4. The calibration (none / Platt / isotonic) chosen by cross-validated log loss within the validation
   part and fitted on it (:func:`genesis_fw.ml.calibration.choose`).
5. Scores of the calibrated model on every part, against the constant predictors at the training and
   validation parts' up-rates, and a verdict on the test part.
6. The model file (JSON, :func:`genesis_fw.ml.model_file.write_new`), named ``{symbol}_{timeframe}_v{N}``.
7. Only then, features computed for the full range go into the store's features cache
   (:meth:`genesis_fw.ml.dataset.Examples.save_features`): a run that fails, or asks for a range, leaves
   the cache as it was.

The grid edge rule: when a numeric parameter had three or more candidates and the best is the smallest or
the largest of them, the optimum may lie outside the grid; :func:`train` says so (``edge_warnings``) and
records the parameter in ``grid_search.on_edge``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..config import RuntimeConfig
from ..data.store import CandleStore
from ..errors import DataError, GenesisError, OutputError
from . import calibration, evaluation, features, model_file
from .dataset import Examples
from .splits import PurgedKFold, Split, split_labels

SCORING = "neg_log_loss"
#: Libraries whose versions go into the model file (when installed).
LIBRARIES = ("genesis-fw", "numpy", "scipy", "scikit-learn", "pyarrow", "duckdb", "numba", "lightgbm")


@attrs.frozen(eq=False)
class TrainResult:
    """Everything :func:`train` did; ``doc`` is the model file's document, ``path`` where it was written."""

    doc: dict[str, Any]
    path: Path | None
    examples: Examples
    split: Split
    grid: dict[str, list[Any]]
    edge_warnings: list[str]
    #: Per part: ``model`` (calibrated), ``raw``, and each baseline's scores; ``skill`` vs each baseline.
    evaluation: dict[str, dict[str, Any]]
    verdict: str


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def edge_warnings(grid: dict[str, list[Any]], best: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The parameters whose best value is the smallest or largest of three or more numeric candidates,
    and one warning per parameter with a suggested extended grid (``model.C=0.0001,0.001,0.01``)."""
    on_edge: list[str] = []
    warnings: list[str] = []
    for name, values in grid.items():
        if len(values) < 3 or not all(_number(v) for v in values) or name not in best:
            continue
        ordered = sorted(values)
        value = best[name]
        if value not in (ordered[0], ordered[-1]):
            continue
        low = value == ordered[0]
        edge, inner = (ordered[0], ordered[1]) if low else (ordered[-1], ordered[-2])
        if edge > 0 and inner > 0:  # a log-spaced grid steps by a factor
            beyond = edge * edge / inner
        else:
            beyond = edge - (inner - edge)
        if all(isinstance(v, int | np.integer) for v in values):
            beyond = int(round(beyond))
        else:
            beyond = float(f"{beyond:.6g}")
        suggestion = sorted({beyond, edge, inner})
        on_edge.append(name)
        warnings.append(
            f"best {name}={_fmt(value)} is the {'smallest' if low else 'largest'} value tried; the optimum may lie "
            f"beyond: try model.{name}={','.join(_fmt(v) for v in suggestion)}"
        )
    return on_edge, warnings


def _libraries() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _check_folds(cv: PurgedKFold, y: np.ndarray) -> None:
    for k, (tr, te) in enumerate(cv.split(y), start=1):
        if tr.size == 0 or np.unique(y[tr]).size < 2:
            raise DataError(
                f"fold {k} of {cv.n_splits} of the training part has {'no' if tr.size == 0 else 'one class of'} "
                f"training rows after purging ({y.size} rows, horizon and embargo too long for the folds); "
                "use more data, fewer folds (train.folds=) or a shorter horizon"
            )
        if np.unique(y[te]).size < 2:
            raise DataError(f"fold {k} of {cv.n_splits} of the training part has labels of one class only; "
                            "use more data or fewer folds (train.folds=)")


def grid_search(model_class: type, grid: dict[str, list[Any]], X: np.ndarray, y: np.ndarray, cv: PurgedKFold, *,
                n_jobs: int = 1, name: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``GridSearchCV(PluginEstimator(model_class), grid, scoring="neg_log_loss", cv=cv, refit=False)``.

    Returns one result per candidate in scikit-learn's order (``params``, ``mean_log_loss``,
    ``std_log_loss`` over the folds, ``rank``, 1 = best) and the best candidate's parameters.
    """
    from sklearn.model_selection import GridSearchCV

    from .estimator import PluginEstimator

    _check_folds(cv, y)
    search = GridSearchCV(PluginEstimator(model_class), {k: list(v) for k, v in grid.items()} or [{}],
                          scoring=SCORING, cv=cv, refit=False, n_jobs=n_jobs, error_score="raise")
    try:
        search.fit(X, y)
    except GenesisError:
        raise
    except Exception as exc:
        from ..plugins import plugin_failure

        raise plugin_failure(name or model_class.__name__, "fit", exc, " in the grid search", kind="model") from exc
    res = search.cv_results_
    results = [
        {"params": {k: _plain(v) for k, v in params.items()},
         "mean_log_loss": float(-res["mean_test_score"][i]),
         "std_log_loss": float(res["std_test_score"][i]),
         "rank": int(res["rank_test_score"][i])}
        for i, params in enumerate(res["params"])
    ]
    return results, {k: _plain(v) for k, v in search.best_params_.items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@attrs.frozen(eq=False)
class Fitted:
    """Step 3's result: the model fitted with the best parameters on the training part, and the search."""

    model: Any
    params: Any
    grid: dict[str, list[Any]]
    results: list[dict[str, Any]]
    best: dict[str, Any]
    on_edge: list[str]
    warnings: list[str]


def prepare(cfg: RuntimeConfig, store: CandleStore) -> tuple[Examples, Split]:
    """Steps 1 and 2: the examples of ``cfg`` and their purged chronological split (the model type and its
    grid are checked first, before any data is read)."""
    from ..plugins import load, model_grid
    from . import dataset

    load("model", cfg.model.name)
    model_grid(cfg.model)
    tc = cfg.train
    ex = dataset.build(store, cfg.symbol, cfg.timeframe, cfg.features, tc, start=cfg.start, end=cfg.end)
    return ex, split_labels(ex.labels, fractions=tc.fractions, embargo=tc.embargo)


def fit(cfg: RuntimeConfig, ex: Examples, split: Split, *, on_step: Any = None) -> Fitted:
    """Step 3: the grid search over purged folds of the training part and the refit of the best parameters
    on the whole training part."""
    from ..config import make_params
    from ..plugins import load, model_grid, plugin_failure

    tc = cfg.train
    model_class = load("model", cfg.model.name)
    grid = model_grid(cfg.model)
    tr = split.train
    cv = PurgedKFold.from_labels(ex.labels, rows=tr, n_splits=tc.folds, embargo=tc.embargo)
    if on_step is not None:
        on_step(f"grid search: {math.prod(len(v) for v in grid.values())} candidates x {tc.folds} folds")
    results, best = grid_search(model_class, grid, ex.X[tr], ex.y[tr], cv, n_jobs=tc.n_jobs, name=cfg.model.name)
    on_edge, warnings = edge_warnings(grid, best)
    params = make_params(model_class.Params, best, owner="model")
    try:
        model = model_class(params).fit(ex.X[tr], ex.y[tr])
    except GenesisError:
        raise
    except Exception as exc:
        raise plugin_failure(cfg.model.name, "fit", exc, kind="model") from exc
    return Fitted(model, params, grid, results, best, on_edge, warnings)


def fitted_state(cfg: RuntimeConfig, fitted: Fitted) -> dict[str, Any]:
    """``fitted`` as JSON-ready data (the model type's state, never pickle); :func:`fitted_from_state` reads it
    back into a model that predicts bit for bit what ``fitted.model`` does."""
    from ..plugins import plugin_failure

    try:
        state = fitted.model.to_state()
    except GenesisError:
        raise
    except Exception as exc:
        raise plugin_failure(cfg.model.name, "to_state", exc, kind="model") from exc
    return {"model_type": cfg.model.name,
            "params": attrs.asdict(fitted.params) if attrs.has(type(fitted.params)) else {},
            "state": state, "grid": fitted.grid, "results": fitted.results, "best": fitted.best,
            "on_edge": fitted.on_edge, "warnings": fitted.warnings}


def fitted_from_state(cfg: RuntimeConfig, data: dict[str, Any]) -> Fitted:
    """The :class:`Fitted` that :func:`fitted_state` wrote, for ``cfg``'s model type."""
    from ..config import make_params
    from ..plugins import load, plugin_failure

    if data.get("model_type") != cfg.model.name:
        raise DataError(f"the fitted state is a {data.get('model_type')!r} model, not {cfg.model.name!r}")
    model_class = load("model", cfg.model.name)
    params = make_params(model_class.Params, data["params"], owner="model")
    try:
        model = model_class.from_state(params, data["state"])
    except GenesisError:
        raise
    except Exception as exc:
        raise plugin_failure(cfg.model.name, "from_state", exc, kind="model") from exc
    return Fitted(model, params, data["grid"], data["results"], data["best"], data["on_edge"], data["warnings"])


def calibrate(cfg: RuntimeConfig, ex: Examples, split: Split, fitted: Fitted) -> TrainResult:
    """Steps 4 and 5 and the model file's document (not written: :func:`write_model`): the calibration chosen
    within the validation part, the scores of every part against the base rates, the verdict."""
    tc = cfg.train
    model = fitted.model
    va = split.validation
    tr = split.train
    raw = {part: np.asarray(model.predict_proba(ex.X[rows]), dtype=float) for part, rows in split.parts().items()}
    cal = calibration.choose(raw["validation"], ex.y[va], ex.labels.timestamp_ms[va], ex.labels.end_ms[va],
                             cfg.timeframe, methods=tc.calibration, n_splits=tc.calibration_folds, embargo=tc.embargo)
    stored_cal = dict(cal)
    rates = {"train_rate": float(ex.y[tr].mean()), "validation_rate": float(ex.y[va].mean())}
    report: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for part, rows in split.parts().items():
        y = ex.y[rows]
        p = calibration.apply(stored_cal, raw[part])
        model_scores = evaluation.scores(y, p)
        bases = evaluation.baselines(y, rates)
        best_base = min(bases, key=lambda name: bases[name]["log_loss"])
        test = evaluation.loss_difference_test(y, p, np.full(y.size, rates[best_base]), tc.horizon)
        report[part] = {"model": model_scores, "raw": evaluation.scores(y, raw[part]), "baselines": bases,
                        "skill": {name: evaluation.skill(model_scores, b) for name, b in bases.items()},
                        "test": {"baseline": best_base, **test}}
        metrics[part] = model_scores
    verdict = evaluation.verdict(report["test"]["model"], report["test"]["baselines"], test=report["test"]["test"])
    state = fitted_state(cfg, fitted)
    from . import dataset

    doc = {
        "schema_version": 1,
        "name": None,
        "version": None,
        "model_type": cfg.model.name,
        "model_type_version": int(type(model).state_version),
        "params": state["params"],
        "state": state["state"],
        "symbol": cfg.symbol,
        "timeframe": cfg.timeframe,
        "horizon": tc.horizon,
        "label": {"rule": tc.label_rule, "dead_zone_bps": tc.dead_zone_bps, "keep_ties": tc.keep_ties},
        "features": {"names": ex.feature_names, "definitions_hash": features.definitions_hash(cfg.features),
                     "params": attrs.asdict(cfg.features)},
        "calibration": stored_cal,
        "training_data": {
            "dataset": ex.identity["dataset"], "dataset_version": dataset.version_text(ex.identity),
            "sha256": ex.identity["sha256"], "start": ex.identity["start"], "end": ex.identity["end"],
            "split": {"fractions": list(split.fractions), "embargo": split.embargo, "boundaries": split.boundaries,
                      "purged": split.purged, "rows": {part: int(rows.size) for part, rows in split.parts().items()}},
            "label_drops": ex.drop_report(),
        },
        "grid_search": {"scoring": SCORING, "folds": tc.folds, "embargo": tc.embargo, "grid": fitted.grid,
                        "results": fitted.results, "best_params": fitted.best, "on_edge": fitted.on_edge},
        "metrics": metrics,
        "libraries": _libraries(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "description": f"{cfg.model.name} on {ex.identity['dataset']}, horizon {tc.horizon} bars; {verdict}",
        "baseline": False,
    }
    return TrainResult(doc, None, ex, split, fitted.grid, list(fitted.warnings), report, verdict)


def write_model(result: TrainResult, models_dir: Path | None = None) -> TrainResult:
    """Step 6 and 7: write the model file as the next version, then the features into the store's cache."""
    path = model_file.write_new(result.doc, models_dir)
    warnings = list(result.edge_warnings)
    try:
        result.examples.save_features()
    except OutputError as exc:  # the model is written; the cache only saves time next run
        warnings.append(f"features not cached: {exc}")
    return attrs.evolve(result, path=path, edge_warnings=warnings)


def train(cfg: RuntimeConfig, store: CandleStore, *, models_dir: Path | None = None, write: bool = True,
          on_step: Any = None) -> TrainResult:
    """Run the whole procedure of the module docstring for ``cfg`` (symbol, timeframe, start, end,
    ``features``, ``model``, ``train``) and write the model file (unless ``write=False``).

    ``on_step(text)`` is called before each slow step (progress). Raises :class:`DataError` for too
    little data (split, horizon, folds), :class:`~genesis_fw.errors.ConfigError` /
    :class:`~genesis_fw.errors.PluginError` for a bad model type or parameter; nothing is written then
    (neither a model file nor features). With ``write=False`` nothing is written at all.
    """
    def step(text: str) -> None:
        if on_step is not None:
            on_step(text)

    step("reading candles, features and labels")
    ex, split = prepare(cfg, store)
    fitted = fit(cfg, ex, split, on_step=on_step)
    step("calibration")
    result = calibrate(cfg, ex, split, fitted)
    return write_model(result, models_dir) if write else result

"""``genesis-fw evaluate MODEL``: score a model file on the rows it was tested on (or a chosen period).

What :func:`evaluate` does for a trained model (``training_data`` in the file):

1. Checks that today's feature definitions of the file's feature parameters hash to the file's
   ``features.definitions_hash`` (else the features this framework computes are not the ones the model
   was trained on: :class:`~genesis_fw.errors.ModelFileError`).
2. Rebuilds the examples exactly as ``genesis-fw train`` did (:func:`genesis_fw.ml.dataset.build`): the
   file's symbol, timeframe, feature parameters, horizon and label rule, over the recorded training data
   range (first to last candle, UTC). When the candles of that range are no longer those trained on (their
   content SHA-256 differs) or the dataset has a new version, a note says so; the evaluation still uses the
   recorded split dates. Nothing is written into the store: the features come from the cache when it holds
   these candles' features, else they are computed in memory.
3. Picks the rows of each part by the recorded boundaries, which are dates, not row counts: a part is the
   labelled bars opened in ``[{part}_start, {part}_end]`` whose horizon ends by ``{part}_label_end``.
4. Scores the raw (:meth:`~genesis_fw.ml.model_file.LoadedModel.predict_raw`) and calibrated
   (:meth:`~genesis_fw.ml.model_file.LoadedModel.predict_proba`) probabilities on the asked part, and the
   constant predictors at the training part's and validation part's up-rates, recomputed from those
   parts' rows (so on unchanged data they equal what training used); skill, verdict and reliability as
   :func:`genesis_fw.ml.evaluation.summary` lays them out.

With ``start`` / ``end`` a trained model is scored on the labelled bars of that period instead of a
part (same baselines); a note says when the period overlaps the training or validation part, whose
scores are in-sample, not an out-of-sample estimate (usually better than out of sample, but a
calibration fitted on a period with another up-rate can make them worse).

A hand-set baseline (``training_data`` null, e.g. the shipped ``tBTCUSD_1h_v1``) has no parts: it is
scored on the labelled bars of ``[start, end)`` (default: all the candles there are), and a note says
so. Its yardsticks are the constant 0.5 (``rate_0.5``: knows nothing) and the evaluated period's own
up-rate (``in_sample_rate``): a rate nobody could have known beforehand, so an optimistic yardstick,
which a model must still beat to claim skill. For any period, the features are computed from the
dataset's first candle, so the period loses no bars to the features' warm-up.

Units: probabilities and rates are fractions, log loss in nats, times UTC ISO strings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data.store import CandleStore
from ..data.timeframes import from_ms, parse_time, to_ms
from ..errors import ConfigError, DataError, ModelFileError
from . import dataset, evaluation
from .calibration import apply
from .labels import add_bars
from .model_file import LoadedModel
from .splits import PARTS

#: The constant baselines of a model without training data (see the module docstring).
HALF, IN_SAMPLE = "rate_0.5", "in_sample_rate"


def _iso(ms: Any) -> str:
    return from_ms(int(ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(iso: str, what: str) -> int:
    return to_ms(parse_time(iso, what=what))


def label_config(loaded: LoadedModel) -> TrainConfig:
    """The label options of the model file (horizon in bars, rule, dead zone in basis points, ties)."""
    label = loaded.doc["label"]
    try:
        return TrainConfig(horizon=loaded.horizon, label_rule=label["rule"],
                           dead_zone_bps=float(label["dead_zone_bps"]), keep_ties=bool(label["keep_ties"]))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{loaded.path}: label options this genesis-fw cannot use: {exc}") from exc


def part_rows(ex: dataset.Examples, boundaries: dict[str, str], part: str) -> np.ndarray:
    """Row positions of ``part`` in ``ex`` by the recorded boundary dates (UTC): bars opened in
    ``[{part}_start, {part}_end]`` whose label horizon ends at or before ``{part}_label_end``."""
    lo = _ms(boundaries[f"{part}_start"], f"{part}_start")
    hi = _ms(boundaries[f"{part}_end"], f"{part}_end")
    label_end = _ms(boundaries[f"{part}_label_end"], f"{part}_label_end")
    ts, end = ex.labels.timestamp_ms, ex.labels.end_ms
    return np.flatnonzero((ts >= lo) & (ts <= hi) & (end <= label_end))


def _model_info(loaded: LoadedModel) -> dict[str, Any]:
    d = loaded.doc
    return {"name": loaded.name, "model_type": d["model_type"], "symbol": loaded.symbol,
            "timeframe": loaded.timeframe, "horizon": loaded.horizon}


#: Parts of the split whose rows fitted something: the model itself (train) or its calibration (validation).
IN_SAMPLE_PARTS = {"train": "the model", "validation": "the model's calibration"}


def _version(v: Any) -> str:
    """A dataset version for a message: ``v3``, or the text training recorded for data without one."""
    return "n/a" if v is None else f"v{v}" if isinstance(v, int) else str(v)


def _training_examples(loaded: LoadedModel, store: CandleStore, notes: list[str]) -> dataset.Examples:
    """The examples of the recorded training range, with notes on how today's candles compare."""
    td = loaded.doc["training_data"]
    end = _iso(add_bars(_ms(td["end"], "training_data.end"), 1, loaded.timeframe))  # the last candle included
    ex = dataset.build(store, loaded.symbol, loaded.timeframe, loaded.features_config(), label_config(loaded),
                       start=td["start"], end=end)
    ident = ex.identity
    if ident["sha256"] != td["sha256"]:
        notes.append(f"the candles of the training range {td['start'][:16]} .. {td['end'][:16]} UTC changed since "
                     f"training (sha256 {td['sha256'][:12]} then, {ident['sha256'][:12]} now; dataset "
                     f"{_version(td['dataset_version'])} then, {_version(ident['dataset_version'])} now): scored on "
                     "today's candles at the recorded split dates, so the figures may differ from those recorded")
    elif dataset.version_text(ident) != td["dataset_version"]:
        now, then = _version(dataset.version_text(ident)), _version(td["dataset_version"])
        notes.append(f"the dataset is at {now} now ({then} at training), but the candles of the training range are "
                     "unchanged (same sha256)")
    return ex


def _rows_or_fail(ex: dataset.Examples, boundaries: dict[str, str], part: str, loaded: LoadedModel) -> np.ndarray:
    rows = part_rows(ex, boundaries, part)
    if rows.size == 0:
        raise DataError(f"{loaded.name}: the {part} part ({boundaries[f'{part}_start'][:16]} .. "
                        f"{boundaries[f'{part}_end'][:16]} UTC) has no labelled bars in today's "
                        f"{ex.identity['dataset']} candles")
    return rows


def _both_classes(y: np.ndarray, what: str) -> None:
    """A baseline rate of 0 or 1 would be a certain prediction; say so rather than score infinities."""
    if y.size and y.min() == y.max():
        raise DataError(f"the {what} has labels of one class only ({y.size} rows, all {int(y[0])}); "
                        "its up-rate is no usable baseline")


def _period_examples(loaded: LoadedModel, store: CandleStore, start: str | None,
                     end: str | None) -> tuple[dataset.Examples, np.ndarray]:
    """The examples up to ``end`` and the positions of those opened at or after ``start`` (UTC).

    The features are computed from the dataset's first candle, not from ``start``, so the first bars
    of the period have their features (no warm-up lost) and they equal those of the whole data."""
    t_start, t_end = parse_time(start, what="start"), parse_time(end, what="end")
    if t_start is not None and t_end is not None and t_start >= t_end:
        raise DataError(f"start {t_start.isoformat()} is not before end {t_end.isoformat()}")
    ex = dataset.build(store, loaded.symbol, loaded.timeframe, loaded.features_config(), label_config(loaded),
                       end=end)
    rows = np.arange(ex.y.size) if t_start is None else np.flatnonzero(ex.labels.timestamp_ms >= to_ms(t_start))
    if rows.size == 0:
        raise DataError(f"no labelled {loaded.symbol} {loaded.timeframe} bars in [{start or '-inf'}, {end or '+inf'}) "
                        f"({ex.identity['dataset']}: candles {ex.identity['start'][:16]} .. "
                        f"{ex.identity['end'][:16]} UTC, horizon {loaded.horizon} bars)")
    return ex, rows


def evaluate(loaded: LoadedModel, store: CandleStore, *, split: str | None = None, start: str | None = None,
             end: str | None = None, threshold: float = 0.5, bins: int = 10) -> dict[str, Any]:
    """Score ``loaded`` on ``split`` (``train`` / ``validation`` / ``test``; ``None`` means ``test``) or on
    ``[start, end)`` (UTC; see the module docstring), reading candles from ``store``.

    Returns :func:`genesis_fw.ml.evaluation.summary`'s result (the layout
    :func:`genesis_fw.ml.evaluation_report.render_evaluation_html` documents) plus ``notes`` (one-line
    strings), ``data`` (the dataset identity rows of the page), ``rows`` (labelled bars scored),
    ``training_data_unchanged`` (bool, or ``None`` without training data), ``recorded_scores`` (the
    file's metrics of that part, or ``None``) and ``model_file`` (path and SHA-256). Raises
    :class:`ModelFileError` for features this framework cannot compute as the model had them,
    :class:`DataError` for missing candles or a part/period without labelled bars, and
    :class:`ConfigError` for a split with a period given too or an unknown split.
    """
    if split is not None and split not in PARTS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(PARTS)}")
    loaded.check_features()
    doc, notes = loaded.doc, []
    td = doc["training_data"]
    period_given = start is not None or end is not None
    recorded = None
    unchanged: bool | None = None
    if td is None:
        if split is not None:
            notes.append(f"{loaded.name} has no training data, so no {split} part: --split is ignored")
        ex, rows = _period_examples(loaded, store, start, end)
        y = ex.y[rows].astype(np.int64)
        _both_classes(y, "evaluated period")
        rates = {HALF: 0.5, IN_SAMPLE: float(y.mean())}
        part = "period"
        notes.append(f"{loaded.name} is a hand-set baseline without training data: scored on all "
                     f"{rows.size:,} labelled bars of {ex.identity['dataset']} "
                     f"{'in the given range' if period_given else '(no --start/--end: all the candles there are)'}; "
                     f"yardsticks: the constant 0.5 and the period's own up-rate {rates[IN_SAMPLE]:.4f} "
                     "(in-sample rate, known only afterwards, so optimistic)")
    else:
        if period_given and split is not None:
            raise ConfigError("give --split or --start/--end, not both: a split is a recorded period of its own")
        train_ex = _training_examples(loaded, store, notes)
        unchanged = train_ex.identity["sha256"] == td["sha256"]
        boundaries = td["split"]["boundaries"]
        tr = _rows_or_fail(train_ex, boundaries, "train", loaded)
        va = _rows_or_fail(train_ex, boundaries, "validation", loaded)
        y_tr, y_va = train_ex.y[tr].astype(np.int64), train_ex.y[va].astype(np.int64)
        _both_classes(y_tr, "training part")
        _both_classes(y_va, "validation part")
        rates = {"train_rate": float(y_tr.mean()), "validation_rate": float(y_va.mean())}
        if period_given:
            ex, rows = _period_examples(loaded, store, start, end)
            part = "period"
            first, last = ex.labels.timestamp_ms[rows[0]], ex.labels.end_ms[rows[-1]]
            fitted = _ms(boundaries["train_start"], "train_start"), _ms(boundaries["validation_label_end"], "end")
            if first <= fitted[1] and last >= fitted[0]:
                notes.append(f"the period overlaps the training and validation parts ({boundaries['train_start'][:16]}"
                             f" .. {boundaries['validation_label_end'][:16]} UTC), on which the model and its "
                             "calibration were fitted: those scores are in-sample, not an out-of-sample estimate")
        else:
            part = split or "test"
            ex = train_ex
            rows = _rows_or_fail(ex, boundaries, part, loaded)
            if part in IN_SAMPLE_PARTS:
                notes.append(f"the {part} part is where {IN_SAMPLE_PARTS[part]} was fitted: its scores "
                             "are in-sample, not an out-of-sample estimate; only the test part is out of sample")
            recorded = doc.get("metrics", {}).get(part)
            expected = td["split"].get("rows", {}).get(part)
            if unchanged and expected is not None and expected != rows.size:
                notes.append(f"the {part} part has {rows.size:,} rows now, {expected:,} at training")
    y = ex.y[rows].astype(np.int64)
    X = ex.X[rows]
    p_raw = loaded.predict_raw(X)
    period = {"start": _iso(ex.labels.timestamp_ms[rows[0]]), "end": _iso(ex.labels.timestamp_ms[rows[-1]])}
    result = evaluation.summary(y, p_raw, doc["calibration"], rates, model=_model_info(loaded), split=part,
                                period=period, threshold=threshold, bins=bins)
    # The stored calibration applied by the loaded model itself: the same numbers as summary's.
    if not np.array_equal(loaded.predict_proba(X), apply(doc["calibration"], p_raw)):
        raise ModelFileError(f"{loaded.path}: the loaded model's calibrated probabilities differ from its stored "
                             "calibration applied to its raw ones")
    if recorded and unchanged:
        if any(recorded.get(k) != result["scores"].get(k) for k in ("n", "log_loss", "brier")):
            notes.append(f"the {part} scores differ from those recorded at training (log loss "
                         f"{result['scores']['log_loss']:.6f} now, {recorded.get('log_loss')} then)")
    ident = ex.identity
    data = {"Dataset": ident["dataset"], "Dataset version": _version(ident["dataset_version"]),
            "Candles sha256": ident["sha256"], "Candles read": f"{ident['start']} .. {ident['end']}",
            "Labelled bars scored": f"{rows.size:,}", "Model file": str(loaded.path),
            "Model file sha256": loaded.sha256}
    if td is not None:
        data["Trained on sha256"] = td["sha256"]
        data["Training data unchanged"] = "yes" if unchanged else "no"
    for k, note in enumerate(notes, start=1):
        data[f"Note {k}"] = note
    return result | {
        "notes": notes,
        "data": data,
        "rows": int(rows.size),
        "training_data_unchanged": unchanged,
        "recorded_scores": recorded,
        "model_file": {"path": str(loaded.path), "sha256": loaded.sha256},
        "dataset": {k: ident[k] for k in ("dataset", "dataset_version", "sha256", "start", "end", "candles")},
    }


"""Labelled examples for training: the features of each bar joined with its forward-return label.

:func:`build` reads one dataset's candles in ``[start, end)`` (UTC) exactly as ``genesis-fw features``
does (:func:`genesis_fw.data.store.locate` / :func:`~genesis_fw.data.store.read`: the store's file, a
finer one resampled on the fly, or the bundled sample), takes the features from the cached feature
file (:func:`genesis_fw.ml.feature_files.make`; computed in memory when the store is read-only) and
the labels from :func:`genesis_fw.ml.labels.labels_for_table` over the same candles, and joins them
by bar open time. A bar is an example only if it has both: bars in the features' warm-up, bars with
a non-finite feature and bars without a label are dropped (counted by cause), never filled.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from ..config import FeaturesConfig, TrainConfig
from ..data.store import CandleStore, locate, read
from ..data.timeframes import from_ms, parse_time
from ..errors import DataError
from . import feature_files, features
from .labels import Labels, labels_for_table


@attrs.frozen(eq=False)
class Examples:
    """``X`` (float64, rows = labelled bars in time order, columns = ``feature_names``), ``y`` (int8 0/1).

    ``labels`` are the labels of exactly these rows (their horizons drive the purged splits); its
    ``drops`` count the bars without a label by cause, and ``warmup_dropped`` / ``nan_dropped`` the
    labelled bars without features. ``identity`` names the candles: ``dataset`` (description),
    ``dataset_version`` (``None`` for the bundled sample or a file without metadata), ``origin`` (``store`` or
    ``sample``), ``sha256`` (content hash of the candles read),
    ``start`` / ``end`` (first and last candle open time, UTC ISO), ``candles`` (rows read).
    """

    X: np.ndarray
    y: np.ndarray
    labels: Labels
    feature_names: list[str]
    identity: dict[str, Any]
    warmup_dropped: int
    nan_dropped: int
    features_cached: bool | None
    notes: list[str]

    def drop_report(self) -> dict[str, int]:
        """Bars not used as examples, by cause (label causes first, then ``warmup`` and ``feature_nan``)."""
        return {**self.labels.drops, "warmup": self.warmup_dropped, "feature_nan": self.nan_dropped}


def _features_table(store: CandleStore, candles: Any, dataset: Any, symbol: str, timeframe: str,
                    cfg: FeaturesConfig, start: str | None, end: str | None) -> tuple[Any, dict[str, Any], bool | None]:
    """The feature table, what it was built from, and whether it came from the cache (``None``: not cached)."""
    import pyarrow.parquet as pq

    from ..data.datasets import version_of
    from ..data.hashing import content_sha256

    if store.writable or not store.root.exists():
        run = feature_files.make(store, symbol, timeframe, cfg, start=start, end=end)
        table = pq.read_table(run.path)
        return table, {"dataset": run.meta["dataset"], "dataset_version": run.meta["version"],
                       "origin": dataset.origin, "sha256": run.meta["sha256"]}, run.cached
    # A read-only store: the same features, computed here and not written anywhere.
    table = features.build(candles, cfg).table
    return table, {"dataset": dataset.describe(), "dataset_version": version_of(store, dataset),
                   "origin": dataset.origin, "sha256": content_sha256(candles)}, None


def build(store: CandleStore, symbol: str, timeframe: str, cfg: FeaturesConfig, train: TrainConfig, *,
          start: str | None = None, end: str | None = None) -> Examples:
    """The labelled examples of ``symbol``/``timeframe`` in ``[start, end)`` (UTC dates or ISO times).

    Labels follow ``train`` (``horizon`` bars, ``label_rule``, ``dead_zone_bps``, ``keep_ties``).
    Raises :class:`DataError` for a missing dataset, an empty range or no examples left, and
    :class:`~genesis_fw.errors.ConfigError` for a bad horizon or label option.
    """
    t_start = parse_time(start, what="start")
    t_end = parse_time(end, what="end")
    if t_start is not None and t_end is not None and t_start >= t_end:
        raise DataError(f"start {t_start.isoformat()} is not before end {t_end.isoformat()}")
    dataset, notes = locate(store, symbol, timeframe)
    candles = read(dataset, t_start, t_end)
    if candles.num_rows == 0:
        raise DataError(f"no {dataset.describe()} candles in [{start or '-inf'}, {end or '+inf'})")
    labels = labels_for_table(candles, timeframe, train.horizon, rule=train.label_rule,
                              dead_zone_bps=train.dead_zone_bps, keep_ties=train.keep_ties)
    table, identity, cached = _features_table(store, candles, dataset, symbol, timeframe, cfg, start, end)
    names = features.names(cfg)
    feat_ts = table.column("timestamp").cast("int64").to_numpy()
    matrix = np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names])
    # Both are in time order: a label's bar has features unless it lies in the warm-up.
    pos = np.searchsorted(feat_ts, labels.timestamp_ms)
    has = (pos < feat_ts.size) & (feat_ts[np.minimum(pos, max(feat_ts.size - 1, 0))] == labels.timestamp_ms)
    rows = pos[has]
    finite = np.isfinite(matrix[rows]).all(axis=1)
    keep = np.flatnonzero(has)[finite]
    if keep.size == 0:
        raise DataError(f"no labelled bars with features in {dataset.describe()} [{start or '-inf'}, "
                        f"{end or '+inf'}): {candles.num_rows} candles, warm-up {features.warmup_bars(cfg)} bars, "
                        f"horizon {train.horizon} bars; use more data")
    kept = attrs.evolve(labels, index=labels.index[keep], timestamp_ms=labels.timestamp_ms[keep],
                        end_ms=labels.end_ms[keep], ret=labels.ret[keep], price_up=labels.price_up[keep])
    ts = candles.column("timestamp").cast("int64").to_numpy()
    identity |= {"start": _iso(ts[0]), "end": _iso(ts[-1]), "candles": int(candles.num_rows)}
    return Examples(
        X=np.ascontiguousarray(matrix[rows[finite]]),
        y=kept.price_up.astype(np.int8),
        labels=kept,
        feature_names=names,
        identity=identity,
        warmup_dropped=int((~has).sum()),
        nan_dropped=int((~finite).sum()),
        features_cached=cached,
        notes=notes,
    )


def _iso(ms: Any) -> str:
    return from_ms(int(ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_text(identity: dict[str, Any]) -> int | str:
    """The dataset version recorded in a model file: its number, or what stands in for one
    ("bundled sample", "unversioned") when the candles have no version."""
    if identity["dataset_version"] is not None:
        return int(identity["dataset_version"])
    return "bundled sample" if identity["origin"] == "sample" else "unversioned"

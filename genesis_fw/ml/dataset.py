"""Labelled examples for training: the features of each bar joined with its forward-return label.

:func:`build` reads one dataset's candles in ``[start, end)`` (UTC) exactly as ``genesis-fw features``
does (:func:`genesis_fw.data.store.locate` / :func:`~genesis_fw.data.store.read`: the store's file, a
finer one resampled on the fly, or the bundled sample), takes the features from the cached feature
file when it was built from the same candles (:func:`genesis_fw.ml.feature_files.lookup`: same content
SHA-256 and definitions, however the range was spelled), else computes them in memory, and the labels
from :func:`genesis_fw.ml.labels.labels_for_table` over the same candles, and joins them
by bar open time. A bar is an example only if it has both: bars in the features' warm-up, bars with
a non-finite feature and bars without a label are dropped (counted by cause), never filled.

:func:`build` writes nothing. Features computed for the full range of a writable store can be cached
afterwards with :meth:`Examples.save_features`, which ``genesis-fw train`` calls only once it has
succeeded; a ranged request is never written, so it cannot replace the full-range file.
"""

from __future__ import annotations

from collections.abc import Callable
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
    ``features_cached``: ``True`` from the feature file, ``False`` computed and cacheable
    (:meth:`save_features`), ``None`` computed in memory only (a ranged request or a read-only store).
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
    _save: Callable[[], Any] | None = None

    def save_features(self) -> bool:
        """Write the features computed for these examples into the store's cache when they may go there
        (``features_cached`` is ``False``); whether anything was written. :class:`OutputError` if it fails."""
        if self._save is None:
            return False
        self._save()
        return True

    def drop_report(self) -> dict[str, int]:
        """Bars not used as examples, by cause (label causes first, then ``warmup`` and ``feature_nan``)."""
        return {**self.labels.drops, "warmup": self.warmup_dropped, "feature_nan": self.nan_dropped}


def _features_table(store: CandleStore, candles: Any, dataset: Any, symbol: str, timeframe: str,
                    cfg: FeaturesConfig, start: str | None, end: str | None,
                    stat: dict[str, int] | None) -> tuple[Any, dict[str, Any], bool | None, Callable[[], Any] | None]:
    """The feature table, what it was built from, whether it came from the cache (``None``: computed and
    not to be cached) and, for features that may be cached, the deferred write."""
    import pyarrow.parquet as pq

    from ..data.datasets import version_of
    from ..data.hashing import content_sha256

    sha = content_sha256(candles)
    identity = {"dataset": dataset.describe(), "dataset_version": version_of(store, dataset),
                "origin": dataset.origin, "sha256": sha}
    hit = feature_files.lookup(store, symbol, timeframe, cfg, sha)
    if hit is not None:
        try:
            return pq.read_table(hit.path), identity, True, None
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            pass  # damaged or replaced meanwhile: computed below
    cacheable = stat is not None and start is None and end is None
    if not cacheable:
        return features.build(candles, cfg).table, identity, None, None
    request = feature_files.request_of(dataset, symbol, timeframe, start, end)
    pending = feature_files.compute(store, dataset, candles, cfg, request=request, sha256=sha, stat=stat)
    return pending.table, identity, False, pending.save


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
    # Only a writable store may get the features afterwards; the source's stat is taken before reading.
    stat = feature_files.source_stat(dataset) if store.writable or not store.root.exists() else None
    candles = read(dataset, t_start, t_end)
    if candles.num_rows == 0:
        raise DataError(f"no {dataset.describe()} candles in [{start or '-inf'}, {end or '+inf'})")
    labels = labels_for_table(candles, timeframe, train.horizon, rule=train.label_rule,
                              dead_zone_bps=train.dead_zone_bps, keep_ties=train.keep_ties)
    table, identity, cached, save = _features_table(store, candles, dataset, symbol, timeframe, cfg, start, end, stat)
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
        save=save,
    )


def _iso(ms: Any) -> str:
    return from_ms(int(ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_text(identity: dict[str, Any]) -> int | str:
    """The dataset version recorded in a model file: its number, or what stands in for one
    ("bundled sample", "unversioned") when the candles have no version."""
    if identity["dataset_version"] is not None:
        return int(identity["dataset_version"])
    return "bundled sample" if identity["origin"] == "sample" else "unversioned"

"""Time-ordered splits of labelled bars with a purge and an embargo, so no label's horizon leaks across parts.

Every labelled bar has a horizon ``[start_ms, end_ms]``: the open time of its bar and the open time of its
endpoint candle (ms, UTC; :attr:`genesis_fw.ml.labels.Labels.end_ms`). Two labels overlap when these
closed intervals intersect. Purging and embargo are measured in time, never in rows, so gaps in the
candles are handled; an embargo of ``e`` bars is ``e x timeframe`` of time (``1M``: ``e`` calendar months).

* :func:`chronological_split`: train / validation / test in time order (default fractions 0.6 / 0.2 / 0.2 of
  the labelled rows). Each earlier part keeps only rows whose horizon ends before the next part's first
  bar, and at least ``embargo`` bars before it. The boundaries are returned as UTC ISO times.
* :class:`PurgedKFold`: K contiguous, time-ordered test folds over (usually) the training part, never
  shuffled, following scikit-learn's splitter protocol. A row trains only if its horizon ends before the
  test fold's first bar, or starts more than ``embargo`` bars after the last horizon end in the test fold.
  With zero-length horizons and no embargo the folds are exactly ``KFold(n_splits, shuffle=False)``'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from ..data.timeframes import check_timeframe, from_ms
from ..errors import ConfigError, DataError
from .labels import Labels, add_bars

PARTS = ("train", "validation", "test")


def _iso(ms: int) -> str:
    return from_ms(int(ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_embargo(embargo: Any) -> int:
    if isinstance(embargo, bool) or not isinstance(embargo, int | np.integer) or embargo < 0:
        raise ConfigError(f"invalid embargo {embargo!r}: expected a whole number of bars >= 0")
    return int(embargo)


def _horizons(start_ms: Any, end_ms: Any) -> tuple[np.ndarray, np.ndarray]:
    start = np.ascontiguousarray(start_ms, dtype=np.int64)
    end = np.ascontiguousarray(end_ms, dtype=np.int64)
    if start.ndim != 1 or start.shape != end.shape:
        raise DataError(f"label start and end times must be 1-D arrays of one length, got {start.shape}, {end.shape}")
    if start.size > 1 and np.any(np.diff(start) <= 0):
        raise DataError("labelled rows must be in strictly increasing time order")
    if np.any(end < start):
        raise DataError("a label's horizon ends before its bar: end_ms must be >= start_ms")
    return start, end


def purge(end_ms: Any, rows: Any, next_start_ms: int, embargo: int, timeframe: str) -> np.ndarray:
    """The positions ``rows`` whose label horizon ends (``end_ms[row]``, ms UTC) strictly before
    ``embargo`` bars ahead of ``next_start_ms``, the first bar of the part that follows: what an earlier
    part keeps so none of its labels reaches into, or within ``embargo`` bars of, the later part."""
    rows = np.asarray(rows, dtype=np.int64)
    limit = add_bars(int(next_start_ms), -_check_embargo(embargo), timeframe)  # horizons must end before this
    return rows[np.asarray(end_ms, dtype=np.int64)[rows] < limit]


@attrs.frozen(eq=False)
class Split:
    """Row positions (into the labelled rows, int64, time order) of each part, and where the parts lie.

    ``boundaries`` has ``{part}_start`` / ``{part}_end`` (open times of the part's first and last bar) and
    ``{part}_label_end`` (the last endpoint open time of the part's labels), as UTC ISO strings.
    ``purged`` counts the rows each part lost to the purge and embargo before the next part.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    boundaries: dict[str, str]
    purged: dict[str, int]
    fractions: tuple[float, float, float]
    embargo: int

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def chronological_split(
    start_ms: Any,
    end_ms: Any,
    timeframe: str,
    *,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    embargo: int = 0,
    horizon: int | None = None,
) -> Split:
    """Split labelled rows (horizons ``[start_ms, end_ms]``, ms UTC) into train / validation / test in time order.

    ``fractions`` (of the labelled rows, summing to 1) place the cut points; then each earlier part drops
    its rows whose horizon reaches within ``embargo`` bars of the next part's first bar. A part left
    empty raises :class:`DataError` (too few rows for the split and horizon); bad fractions or embargo
    raise :class:`ConfigError`. ``horizon`` (bars) only makes the error message say what it is.
    """
    check_timeframe(timeframe)
    emb = _check_embargo(embargo)
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or not all(math.isfinite(f) and f > 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ConfigError(f"invalid split fractions {tuple(fractions)!r}: expected three numbers > 0 summing to 1")
    start, end = _horizons(start_ms, end_ms)
    n = start.size
    n_train, n_val = int(n * fr[0]), int(n * fr[1])
    bounds = [0, n_train, n_train + n_val, n]
    raw = [np.arange(bounds[k], bounds[k + 1], dtype=np.int64) for k in range(3)]
    kept: list[np.ndarray] = []
    purged: dict[str, int] = {}
    for k, rows in enumerate(raw):
        if k < 2 and raw[k + 1].size and rows.size:
            keep = purge(end, rows, start[raw[k + 1][0]], emb, timeframe)
        else:
            keep = rows
        purged[PARTS[k]] = int(rows.size - keep.size)
        kept.append(keep)
    empty = [PARTS[k] for k in range(3) if kept[k].size == 0]
    if empty:
        what = f"horizon {horizon} bars, " if horizon is not None else ""
        raise DataError(
            f"too few labelled rows ({n}) for a {'/'.join(f'{f:g}' for f in fr)} split with {what}embargo {emb}: "
            f"the {' and '.join(empty)} part{'s are' if len(empty) > 1 else ' is'} empty after purging; "
            "use more data, a shorter horizon or a smaller embargo"
        )
    boundaries: dict[str, str] = {}
    for name, rows in zip(PARTS, kept, strict=True):
        boundaries[f"{name}_start"] = _iso(start[rows[0]])
        boundaries[f"{name}_end"] = _iso(start[rows[-1]])
        boundaries[f"{name}_label_end"] = _iso(end[rows].max())
    return Split(kept[0], kept[1], kept[2], boundaries, purged, fr, emb)  # type: ignore[arg-type]


def split_labels(labels: Labels, **options: Any) -> Split:
    """:func:`chronological_split` over ``labels`` (its horizon and timeframe)."""
    return chronological_split(labels.timestamp_ms, labels.end_ms, labels.timeframe, horizon=labels.horizon, **options)


class PurgedKFold:
    """Time-ordered K-fold cross-validation with purge and embargo, for scikit-learn (``cv=PurgedKFold(...)``).

    ``start_ms`` / ``end_ms`` are the horizons of the rows of ``X`` (ms UTC, rows in time order), e.g. the
    training part's labels. Test folds are ``n_splits`` contiguous blocks of rows, sized like
    ``KFold(n_splits)``'s. Training rows are all other rows except those whose horizon overlaps the test
    fold's span ``[first test bar, last test horizon end]`` (purge, both sides) and those starting within
    ``embargo`` bars after that span (embargo). Never shuffles.
    """

    def __init__(self, n_splits: int = 5, *, start_ms: Any, end_ms: Any, timeframe: str, embargo: int = 0) -> None:
        if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer) or n_splits < 2:
            raise ConfigError(f"invalid number of folds {n_splits!r}: expected a whole number >= 2")
        self.n_splits = int(n_splits)
        self.timeframe = check_timeframe(timeframe)
        self.embargo = _check_embargo(embargo)
        self.start_ms, self.end_ms = _horizons(start_ms, end_ms)

    @classmethod
    def from_labels(cls, labels: Labels, rows: Any = None, n_splits: int = 5, *, embargo: int = 0) -> PurgedKFold:
        """Folds over ``labels`` (or over its rows at positions ``rows``, e.g. ``split.train``)."""
        sel = slice(None) if rows is None else np.asarray(rows)
        return cls(
            n_splits, start_ms=labels.timestamp_ms[sel], end_ms=labels.end_ms[sel], timeframe=labels.timeframe,
            embargo=embargo,
        )

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, test_idx)`` row positions (int64) for each fold, in time order."""
        n = self.start_ms.size
        n_x = X.shape[0] if hasattr(X, "shape") else len(X)
        if n_x != n:
            raise DataError(f"X has {n_x} rows but the splitter was given {n} label horizons")
        if self.n_splits > n:
            raise DataError(f"too few rows ({n}) for {self.n_splits} folds")
        sizes = np.full(self.n_splits, n // self.n_splits, dtype=np.int64)
        sizes[: n % self.n_splits] += 1
        rows = np.arange(n, dtype=np.int64)
        stop = 0
        for size in sizes:
            begin, stop = stop, stop + int(size)
            lo = self.start_ms[begin]
            hi = int(self.end_ms[begin:stop].max())
            after = int(add_bars(hi, self.embargo, self.timeframe))
            train = (self.end_ms < lo) | (self.start_ms > after)
            train[begin:stop] = False
            yield rows[train], rows[begin:stop]

    def __repr__(self) -> str:
        return f"PurgedKFold(n_splits={self.n_splits}, timeframe={self.timeframe!r}, embargo={self.embargo})"

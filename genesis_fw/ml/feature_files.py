"""Feature files in the store, cached by content (``genesis-fw features``).

``<data_dir>/features/{symbol}_{timeframe}.parquet`` holds ``timestamp`` (UTC) and one float64 column per
feature (:mod:`genesis_fw.ml.features`); ``{symbol}_{timeframe}.json`` beside it says what it was built
from: the candles' content SHA-256 (:func:`genesis_fw.data.hashing.content_sha256` of exactly the candles
used, after the range and any resampling), the source dataset's version, the definitions' hash, the rows
written, the warm-up dropped and the library versions.

The cache key is the candles' SHA-256 plus the definitions' hash (and the range asked for). When the
source file's size and modification time are those recorded, it is not even read; otherwise the candles
are read and hashed, and an equal key still means nothing to do. Both files are written atomically, the
Parquet file first, so the JSON never describes a file that is not there.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from .._util import arrow_to_numpy, atomic_path, write_text_atomic
from ..config import FeaturesConfig
from ..data.datasets import version_of
from ..data.store import CandleStore, locate, read
from ..data.timeframes import check_symbol, check_timeframe, from_ms, parse_time
from ..errors import DataError, OutputError
from . import features

#: Version of the metadata JSON's layout.
SCHEMA_VERSION = 1


def paths(store: CandleStore, symbol: str, timeframe: str) -> tuple[Path, Path]:
    """The feature file and its metadata JSON for ``symbol``/``timeframe``."""
    stem = f"{check_symbol(symbol)}_{check_timeframe(timeframe)}"
    return store.features_dir / f"{stem}.parquet", store.features_dir / f"{stem}.json"


@attrs.frozen
class FeatureRun:
    """What :func:`make` did: ``cached`` (nothing written) or not, the files, their metadata and notes."""

    cached: bool
    path: Path
    meta_path: Path
    meta: dict[str, Any]
    notes: list[str]


def _stat(path: Path) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_meta(meta_path: Path) -> dict[str, Any] | None:
    """The metadata JSON, or ``None`` when missing or unreadable (then the features are rebuilt)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("schema_version") == SCHEMA_VERSION else None


def _libraries() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("genesis-fw", "numpy", "numba", "duckdb", "pyarrow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def make(store: CandleStore, symbol: str, timeframe: str, cfg: FeaturesConfig, *,
         start: str | None = None, end: str | None = None) -> FeatureRun:
    """Build (or find cached) the features of ``symbol``/``timeframe`` in ``[start, end)`` (UTC).

    The candles are the store's file, a finer one resampled on the fly, or the bundled sample, as
    for ``backtest`` (:func:`genesis_fw.data.store.locate`). Raises :class:`DataError` for a missing
    dataset, an empty range or too few rows for the warm-up.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from ..data.hashing import content_sha256

    t_start = parse_time(start, what="start")
    t_end = parse_time(end, what="end")
    if t_start is not None and t_end is not None and t_start >= t_end:
        raise DataError(f"start {t_start.isoformat()} is not before end {t_end.isoformat()}")
    dataset, notes = locate(store, symbol, timeframe)
    path, meta_path = paths(store, symbol, timeframe)
    defs_hash = features.definitions_hash(cfg)
    warmup = features.warmup_bars(cfg)
    request = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end,
               "source_file": str(dataset.path), "resampled_from": dataset.resampled_from}
    try:
        source_stat = _stat(dataset.path)
    except OSError as exc:
        raise DataError(f"cannot read {dataset.path}: {exc.strerror or exc}") from None
    old = read_meta(meta_path)
    fresh = (old is not None and path.is_file() and old.get("definitions_hash") == defs_hash
             and old.get("request") == request)
    if fresh and old.get("source_stat") == source_stat:
        return FeatureRun(True, path, meta_path, old, notes)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Loading numba and its kernels takes longer than reading the candles, and DuckDB's window
        # queries as long as the rest: run both beside the main thread's reading and hashing.
        kernels = pool.submit(features.load_kernels)
        candles = read(dataset, t_start, t_end)
        if candles.num_rows == 0:
            raise DataError(f"no {dataset.describe()} candles in [{start or '-inf'}, {end or '+inf'})")
        window = pool.submit(features.window_features, candles, cfg) if candles.num_rows > warmup else None
        sha = content_sha256(candles)
        if fresh and old.get("sha256") == sha:
            return FeatureRun(True, path, meta_path, old, notes)
        result = features.build(candles, cfg, kernels=kernels, window=window)
    table = result.table
    ts = arrow_to_numpy(table.column("timestamp").cast(pa.int64()), "int64")  # UTC ms; no Arrow scalars (pandas)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "request": request,
        "dataset": dataset.describe(),
        "origin": dataset.origin,
        "sha256": sha,
        "version": version_of(store, dataset),
        "source_stat": source_stat,
        "candles": candles.num_rows,
        "rows": table.num_rows,
        "warmup_dropped": result.warmup_dropped,
        "first_timestamp": from_ms(int(ts[0])).isoformat(),
        "last_timestamp": from_ms(int(ts[-1])).isoformat(),
        "features": features.names(cfg),
        "definitions_hash": defs_hash,
        "params": attrs.asdict(cfg),
        "kernel_version": features.indicators.KERNEL_VERSION,
        "libraries": _libraries(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write(table, meta, path, meta_path)
    return FeatureRun(False, path, meta_path, meta, notes)


def _write(table: Any, meta: dict[str, Any], path: Path, meta_path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The old metadata goes first: a crash between the two writes leaves a file without a
        # (matching) description, which the next run rebuilds, never a description of other data.
        meta_path.unlink(missing_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="snappy", use_dictionary=False)  # floats: no repeats
        write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write features to {path.parent}: {exc.strerror or exc}") from None


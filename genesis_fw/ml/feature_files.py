"""Feature files in the store, cached by content (``genesis-fw features``).

``<data_dir>/features/{symbol}_{timeframe}.parquet`` holds ``timestamp`` (UTC) and one float64 column per
feature (:mod:`genesis_fw.ml.features`); ``{symbol}_{timeframe}.json`` beside it says what it was built
from: the candles' content SHA-256 (:func:`genesis_fw.data.hashing.content_sha256` of exactly the candles
used, after the range and any resampling), the source dataset's version, the definitions' hash, the rows
written, the warm-up dropped and the library versions.

The cache key is the candles' SHA-256 plus the definitions' hash: whatever range was asked for and
however it was spelled, candles that hash alike have the features of the file. When the source file's
size and modification time and the resolved range (UTC) are those recorded, it is not even read;
otherwise the candles are read and hashed, and an equal key still means nothing to do. Both files are
written atomically, the Parquet file first, so the JSON never describes a file that is not there.

Only ``genesis-fw features`` writes here unconditionally (:func:`make`). ``train`` and ``evaluate`` use
:func:`lookup` and, on a miss, compute in memory (:func:`compute`); ``train`` writes the result with
:meth:`Pending.save` only after it succeeded and only for the full range, so a failed or ranged run
never replaces the file.
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


@attrs.frozen(eq=False)
class Pending:
    """Features computed in memory (``table``) with the metadata they would be stored with; not written
    until :meth:`save` is called."""

    table: Any
    meta: dict[str, Any]
    path: Path
    meta_path: Path

    def save(self) -> FeatureRun:
        """Write the feature file and its JSON (atomically; :class:`OutputError` if that fails)."""
        _write(self.table, self.meta, self.path, self.meta_path)
        return FeatureRun(False, self.path, self.meta_path, self.meta, [])


def request_of(dataset: Any, symbol: str, timeframe: str, start: str | None, end: str | None) -> dict[str, Any]:
    """What the metadata records as asked for: the range resolved to UTC ISO times (``None``: open), so
    ``2019-01-01`` and ``2019-01-01T00:00`` are the same request, and the source file."""
    t_start, t_end = parse_time(start, what="start"), parse_time(end, what="end")
    return {"symbol": symbol, "timeframe": timeframe,
            "start": None if t_start is None else t_start.isoformat(),
            "end": None if t_end is None else t_end.isoformat(),
            "source_file": str(dataset.path), "resampled_from": dataset.resampled_from}


def source_stat(dataset: Any) -> dict[str, int]:
    """Size and modification time (ns) of the dataset's source file; :class:`DataError` if unreadable.
    Take it before reading the candles, so a file changed meanwhile never matches the recorded one."""
    try:
        return _stat(dataset.path)
    except OSError as exc:
        raise DataError(f"cannot read {dataset.path}: {exc.strerror or exc}") from None


def lookup(store: CandleStore, symbol: str, timeframe: str, cfg: FeaturesConfig, sha256: str) -> FeatureRun | None:
    """The stored feature file when it was built from candles with content hash ``sha256`` under the
    definitions of ``cfg`` (the cache key), else ``None``. Reads only the metadata JSON."""
    path, meta_path = paths(store, symbol, timeframe)
    old = read_meta(meta_path)
    if (old is not None and path.is_file() and old.get("definitions_hash") == features.definitions_hash(cfg)
            and old.get("sha256") == sha256):
        return FeatureRun(True, path, meta_path, old, [])
    return None


def compute(store: CandleStore, dataset: Any, candles: Any, cfg: FeaturesConfig, *, request: dict[str, Any],
            sha256: str, stat: dict[str, int], kernels: Any = None, window: Any = None) -> Pending:
    """The features of ``candles`` (of ``dataset``, content hash ``sha256``) in memory, with their metadata."""
    import pyarrow as pa

    result = features.build(candles, cfg, kernels=kernels, window=window)
    table = result.table
    ts = arrow_to_numpy(table.column("timestamp").cast(pa.int64()), "int64")  # UTC ms; no Arrow scalars (pandas)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "request": request,
        "dataset": dataset.describe(),
        "origin": dataset.origin,
        "sha256": sha256,
        "version": version_of(store, dataset),
        "source_stat": stat,
        "candles": candles.num_rows,
        "rows": table.num_rows,
        "warmup_dropped": result.warmup_dropped,
        "first_timestamp": from_ms(int(ts[0])).isoformat(),
        "last_timestamp": from_ms(int(ts[-1])).isoformat(),
        "features": features.names(cfg),
        "definitions_hash": features.definitions_hash(cfg),
        "params": attrs.asdict(cfg),
        "kernel_version": features.indicators.KERNEL_VERSION,
        "libraries": _libraries(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path, meta_path = paths(store, request["symbol"], request["timeframe"])
    return Pending(table, meta, path, meta_path)


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

    from ..data.hashing import content_sha256

    t_start = parse_time(start, what="start")
    t_end = parse_time(end, what="end")
    if t_start is not None and t_end is not None and t_start >= t_end:
        raise DataError(f"start {t_start.isoformat()} is not before end {t_end.isoformat()}")
    dataset, notes = locate(store, symbol, timeframe)
    path, meta_path = paths(store, symbol, timeframe)
    warmup = features.warmup_bars(cfg)
    request = request_of(dataset, symbol, timeframe, start, end)
    stat = source_stat(dataset)
    old = read_meta(meta_path)
    if (old is not None and path.is_file() and old.get("definitions_hash") == features.definitions_hash(cfg)
            and old.get("request") == request and old.get("source_stat") == stat):
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
        hit = lookup(store, symbol, timeframe, cfg, sha)
        if hit is not None:
            return attrs.evolve(hit, notes=notes)
        pending = compute(store, dataset, candles, cfg, request=request, sha256=sha, stat=stat,
                          kernels=kernels, window=window)
    return attrs.evolve(pending.save(), notes=notes)


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


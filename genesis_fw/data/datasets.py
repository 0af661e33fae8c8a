"""Dataset versions: every change of a dataset's content is a new, numbered, reloadable version.

For ``tBTCUSD`` ``1m`` in the store at ``data/``:

* ``data/candles/tBTCUSD_1m.parquet`` -- the current version;
* ``data/metadata/tBTCUSD_1m.json`` -- its metadata (fields below);
* ``data/candles/versions/tBTCUSD_1m.v{N}.parquet`` and ``data/metadata/versions/tBTCUSD_1m.v{N}.json``
  -- every version, the current one included, kept until ``genesis-fw datasets prune`` removes it
  (the version files are hard links where the file system allows, so keeping them costs no space
  while they equal the current file);
* the catalog's ``dataset_versions`` table -- one row per version.

Metadata fields: ``symbol, timeframe, version, fetched_at, start_date, end_date, num_candles, gaps,
quality_score, source, sha256, schema_version``. ``sha256`` is :func:`content_sha256` of the candles
(independent of Parquet encoding), the same digest a backtest records for the candles it used;
``gaps`` counts runs of missing grid times; ``quality_score`` is filled in by ``genesis-fw validate``
(``None`` until then). Publishing content equal to the current version creates no new version.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa

from .._util import write_text_atomic
from ..catalog import Catalog
from ..errors import DataError
from .hashing import content_sha256
from .store import CandleStore, Dataset, conform
from .timeframes import check_symbol, check_timeframe, from_ms, grid_origin_ms, timeframe_ms

#: Version of the candle schema and metadata layout written by this code.
SCHEMA_VERSION = 1


def count_gaps(timestamp_ms: np.ndarray, timeframe: str) -> int:
    """Runs of missing grid slots between the first and last of the sorted ``timestamp_ms`` (ms since the
    epoch, UTC).

    The slots are those of ``sql/validation/gaps.sql``: whole widths from the timeframe's grid origin
    (Monday 1970-01-05 for weeks, the epoch otherwise), calendar months for ``1M``.
    """
    if timestamp_ms.size < 2:
        return 0
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    width = timeframe_ms(timeframe)
    if width == 0:
        slots = ts.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    else:
        slots = (ts - grid_origin_ms(timeframe)) // width
    return int(np.count_nonzero(np.diff(slots) > 1))


@attrs.frozen
class Version:
    """One dataset version's metadata (see the module docstring)."""

    symbol: str
    timeframe: str
    version: int
    fetched_at: str
    start_date: str | None
    end_date: str | None
    num_candles: int
    gaps: int
    quality_score: float | None
    source: str
    sha256: str
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def metadata_path(store: CandleStore, symbol: str, timeframe: str, version: int | None = None) -> Path:
    stem = f"{check_symbol(symbol)}_{check_timeframe(timeframe)}"
    if version is None:
        return store.metadata_dir / f"{stem}.json"
    return store.metadata_dir / "versions" / f"{stem}.v{version}.json"


def version_path(store: CandleStore, symbol: str, timeframe: str, version: int) -> Path:
    return store.candles_dir / "versions" / f"{check_symbol(symbol)}_{check_timeframe(timeframe)}.v{version}.parquet"


def current(store: CandleStore, symbol: str, timeframe: str) -> Version | None:
    """Metadata of the current version, or ``None`` for a dataset without metadata."""
    path = metadata_path(store, symbol, timeframe)
    if not path.is_file():
        return None
    try:
        return Version(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"unreadable dataset metadata {path}: {exc}") from None


def version_of(store: CandleStore, dataset: Dataset) -> int | None:
    """Version number of the store file ``dataset`` reads (its source file when resampled on the fly);
    ``None`` for the bundled sample or a file without metadata."""
    if dataset.origin != "store":
        return None
    meta = current(store, dataset.symbol, dataset.resampled_from or dataset.timeframe)
    return meta.version if meta is not None else None


def versions(store: CandleStore, symbol: str, timeframe: str) -> list[Version]:
    """Every version whose metadata is still kept, oldest first."""
    folder = store.metadata_dir / "versions"
    out = []
    for path in folder.glob(f"{check_symbol(symbol)}_{check_timeframe(timeframe)}.v*.json"):
        try:
            out.append(Version(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda v: v.version)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def publish(store: CandleStore, symbol: str, timeframe: str, table: pa.Table, *, source: str) -> tuple[Version, bool]:
    """Make ``table`` the current content of the dataset; return its version and whether it is new.

    Order of writes, each atomic: the new Parquet file (current path), its version copy, the version
    metadata, the current metadata, the catalog row. A crash in between leaves the previous current
    file or the new one, never a half-written file; the previous version's file stays in
    ``candles/versions/``.
    """
    check_symbol(symbol)
    check_timeframe(timeframe)
    table = conform(table, where=f"{symbol} {timeframe}")
    sha = content_sha256(table)
    previous = current(store, symbol, timeframe)
    if previous is not None and previous.sha256 == sha and store.has(symbol, timeframe):
        return previous, False
    number = (previous.version if previous is not None else 0) + 1
    existing = versions(store, symbol, timeframe)
    if existing:
        number = max(number, existing[-1].version + 1)
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    meta = Version(
        symbol=symbol,
        timeframe=timeframe,
        version=number,
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        start_date=from_ms(int(ts[0])).isoformat() if ts.size else None,
        end_date=from_ms(int(ts[-1])).isoformat() if ts.size else None,
        num_candles=int(ts.size),
        gaps=count_gaps(ts, timeframe),
        quality_score=None,
        source=source,
        sha256=sha,
    )
    path = store.write(symbol, timeframe, table)
    kept = version_path(store, symbol, timeframe, number)
    try:
        _link_or_copy(path, kept)
        text = json.dumps(meta.to_dict(), indent=2) + "\n"
        write_text_atomic(metadata_path(store, symbol, timeframe, number), text)
        write_text_atomic(metadata_path(store, symbol, timeframe), text)
    except OSError as exc:
        raise DataError(f"cannot write the metadata of {symbol} {timeframe}: {exc.strerror or exc}") from None
    Catalog(store.catalog_path).record_version({
        **{k: v for k, v in meta.to_dict().items() if k not in ("fetched_at", "quality_score", "schema_version")},
        "created_at": meta.fetched_at,
        "path": str(kept),
        "current_path": str(path),
    })
    return meta, True


def update_quality(store: CandleStore, symbol: str, timeframe: str, quality_score: float, gaps: int) -> None:
    """Store a validation result in the current version's metadata (and its version copy)."""
    meta = current(store, symbol, timeframe)
    if meta is None:
        return
    meta = attrs.evolve(meta, quality_score=quality_score, gaps=gaps)
    text = json.dumps(meta.to_dict(), indent=2) + "\n"
    write_text_atomic(metadata_path(store, symbol, timeframe, meta.version), text)
    write_text_atomic(metadata_path(store, symbol, timeframe), text)


def open_version(store: CandleStore, symbol: str, timeframe: str, version: int | None = None) -> Dataset:
    """The dataset of ``version`` (default: current), to read with :func:`genesis_fw.data.store.read`."""
    if version is None:
        if not store.has(symbol, timeframe):
            raise DataError(f"the store has no {symbol} {timeframe} dataset")
        return Dataset(symbol, timeframe, store.path(symbol, timeframe))
    path = version_path(store, symbol, timeframe, version)
    if not path.is_file():
        known = [v.version for v in versions(store, symbol, timeframe)
                 if version_path(store, symbol, timeframe, v.version).is_file()]
        raise DataError(f"{symbol} {timeframe} has no kept version {version}; kept: "
                        f"{', '.join(map(str, known)) or 'none'}")
    return Dataset(symbol, timeframe, path)


def prune(store: CandleStore, *, keep: int = 1, symbol: str | None = None,
          timeframe: str | None = None) -> list[tuple[str, str, int]]:
    """Remove the files of all but the newest ``keep`` versions (the current one is always kept).

    Metadata files stay, so the catalog and the version history still say what existed.
    """
    if keep < 1:
        raise DataError("prune keeps at least one version (--keep 1 or more)")
    removed = []
    folder = store.candles_dir / "versions"
    if not folder.is_dir():
        return removed
    if not store.writable:
        raise DataError(f"the store at {store.root} is read-only: cannot remove old version files")
    groups: dict[tuple[str, str], list[int]] = {}
    for path in folder.glob("*.v*.parquet"):
        stem, _, num = path.stem.rpartition(".v")
        sym, _, tf = stem.rpartition("_")
        if not num.isdigit() or (symbol and sym != symbol) or (timeframe and tf != timeframe):
            continue
        groups.setdefault((sym, tf), []).append(int(num))
    catalog = Catalog(store.catalog_path)
    for (sym, tf), nums in sorted(groups.items()):
        cur = current(store, sym, tf)
        for num in sorted(nums)[:-keep]:
            if cur is not None and num == cur.version:
                continue
            path = version_path(store, sym, tf, num)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise DataError(f"cannot remove {path}: {exc.strerror or exc}") from None
            catalog.mark_pruned(sym, tf, num)
            removed.append((sym, tf, num))
    return removed

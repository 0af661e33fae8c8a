"""The candle store: Parquet files of OHLCV candles under a data directory.

Layout (see ``data/DATA_FORMAT.md``)::

    <data_dir>/candles/{symbol}_{timeframe}.parquet
    <data_dir>/features/
    <data_dir>/metadata/
    <data_dir>/genesis.db          the catalog (see :mod:`genesis_fw.catalog`)
    <data_dir>/.tmp/               DuckDB's spill folder for the SQL console (see :mod:`genesis_fw.console`)

The data directory is ``--data-dir``, else ``$GENESIS_DATA_DIR``, else ``./data``.

Candle schema: ``timestamp`` (timestamp[ms, tz=UTC], the candle's open time), ``open``, ``high``,
``low``, ``close``, ``volume`` (float64). Rows are sorted by timestamp and unique, and every timestamp
is on the timeframe's grid (:mod:`genesis_fw.data.timeframes`: weeks open on Mondays 00:00 UTC, ``1M``
on the 1st of the month, other widths on multiples of the width since the epoch). Minutes without
trades are absent: a gap is a missing row, never a zero-filled one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import sqlfiles
from .._util import arrow_to_numpy, atomic_path
from ..errors import DataError, OutputError
from .timeframes import (
    TIMEFRAMES,
    check_symbol,
    check_timeframe,
    from_ms,
    grid_origin_ms,
    grid_rule,
    is_finer,
    slot_start_ms,
    timeframe_ms,
    to_ms,
)

SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
    ]
)
COLUMNS = SCHEMA.names

#: Rows per Parquet row group: small enough that a range read skips most of a long file.
ROW_GROUP_SIZE = 32_768

DATA_DIR_ENV = "GENESIS_DATA_DIR"

#: Folders of the store that only the store itself writes (see :meth:`CandleStore.check_output`).
MANAGED_DIRS = ("candles", "features", "metadata")
#: The catalog file and SQLite's companions of it, also the store's own.
CATALOG_SUFFIXES = ("", "-wal", "-shm", "-journal")

#: Stand-in for an open end of a time range, in ms (year 2286): within DuckDB's timestamp range.
_UNBOUNDED_MS = 10**13


def default_data_dir() -> Path:
    """``$GENESIS_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def conform(table: pa.Table, *, where: str = "candles") -> pa.Table:
    """Return ``table`` cast to :data:`SCHEMA`, sorted by timestamp; reject what cannot be fixed safely.

    Missing columns, nulls, or duplicate timestamps raise :class:`DataError`. Extra columns are dropped.
    A naive timestamp column is taken as UTC; seconds/micro/nanoseconds are converted to ms.
    """
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    table = table.select(COLUMNS)
    ts = table.column("timestamp")
    if ts.type == pa.timestamp("ms", tz="UTC"):
        pass  # the store's own format: nothing to convert
    elif pa.types.is_timestamp(ts.type):
        import pyarrow.compute as pc  # only foreign files need it; kept off the common path

        if ts.type.tz is None:
            ts = pc.assume_timezone(ts, "UTC")
        ts = ts.cast(pa.timestamp(ts.type.unit, tz="UTC"))
        if ts.type.unit in ("us", "ns"):
            ts = pc.cast(ts, pa.timestamp("ms", tz="UTC"), safe=False)
        else:
            ts = ts.cast(pa.timestamp("ms", tz="UTC"))
    elif pa.types.is_integer(ts.type):
        ts = ts.cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    else:
        raise DataError(f"{where}: column 'timestamp' has type {ts.type}; expected a timestamp or ms integers")
    cols = [ts]
    for name in COLUMNS[1:]:
        col = table.column(name)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type)):
            raise DataError(f"{where}: column {name!r} has type {col.type}; expected numbers")
        cols.append(col.cast(pa.float64()))
    for name, col in zip(COLUMNS, cols, strict=True):
        if col.null_count:
            raise DataError(f"{where}: column {name!r} has {col.null_count} null value(s)")
    out = pa.Table.from_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in cols],
                               schema=SCHEMA)
    ts_ms = arrow_to_numpy(out.column("timestamp").cast(pa.int64()), "int64")
    if ts_ms.size > 1 and np.any(ts_ms[1:] <= ts_ms[:-1]):
        order = np.argsort(ts_ms, kind="stable")
        ts_sorted = ts_ms[order]
        dup = np.flatnonzero(ts_sorted[1:] == ts_sorted[:-1])
        if dup.size:
            first = from_ms(int(ts_sorted[dup[0]])).isoformat()
            raise DataError(f"{where}: {dup.size} duplicate timestamp(s), first at {first}")
        out = out.take(pa.array(order))
    return out


#: Labels of the candle sanity rules, in report order (see :func:`candle_problems`).
PROBLEM_LABELS: dict[str, str] = {
    "non_finite": "NaN or infinite values",
    "non_positive_price": "price <= 0",
    "negative_volume": "negative volume",
    "high_below_low": "high below low",
    "high_low_not_bracketing": "high/low not bracketing open/close",
}
#: Rules that make a candle impossible to trade or measure.
UNUSABLE = ("non_finite", "non_positive_price")
#: Rules the store refuses on every write (:func:`check_candles`): the unusable ones plus values no
#: trade can produce. A candle breaking only ``high_low_not_bracketing`` (open or close outside
#: [low, high], which real exchanges occasionally send) is stored; ``backtest`` notes it and
#: ``validate`` reports it.
REFUSED = (*UNUSABLE, "negative_volume", "high_below_low")


@attrs.frozen
class CandleProblems:
    """What :func:`candle_problems` found. ``counts``: rows breaking each rule (a row may break
    several). ``unusable``: rows with a NaN/infinite value or a price <= 0; ``inconsistent``: the other
    rows breaking a rule (negative volume, high below low, high/low not bracketing open/close);
    ``refused``: rows breaking a rule of :data:`REFUSED`. ``first_*``: open time (UTC ms) of the first
    such row, ``None`` when there is none."""

    counts: dict[str, int]
    unusable: int
    inconsistent: int
    refused: int
    first_unusable: int | None
    first_inconsistent: int | None
    first_refused: int | None

    def describe(self, rules: tuple[str, ...] | None = None) -> str:
        """``"high below low (2), negative volume (1)"`` for the rules (default: all) that were broken."""
        return ", ".join(f"{PROBLEM_LABELS[k]} ({n})" for k, n in self.counts.items()
                         if n and (rules is None or k in rules))

    def refusal(self) -> str | None:
        """Why the store refuses these candles, in one line, or ``None`` when it takes them all."""
        if not self.refused:
            return None
        return (f"{self.refused} candle(s) with {self.describe(REFUSED)}, first at "
                f"{from_ms(self.first_refused).isoformat()}; such candles are never stored")


def candle_problems(candles) -> CandleProblems:
    """Check candles for values no real candle has; vectorised NumPy, a few ms per million rows.

    ``candles`` is a table with the store's columns or any object with ``timestamp``, ``open``, ...
    arrays (e.g. :class:`genesis_fw.strategy.Bars`). Rules: every price and the volume finite; every
    price > 0; volume >= 0; ``high >= low``; ``high >= max(open, close)`` and ``low <= min(open, close)``
    (exact comparisons: Bitfinex candles and resampled ones satisfy them exactly).
    """
    if isinstance(candles, pa.Table):
        ts, o, h, lo, c, v = (np.asarray(candles.column(n).cast(pa.int64()) if n == "timestamp"
                                         else candles.column(n)) for n in COLUMNS)
    else:
        ts, o, h, lo, c, v = (np.asarray(getattr(candles, n)) for n in COLUMNS)
    with np.errstate(invalid="ignore"):
        flags = {
            "non_finite": ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)),
            "non_positive_price": (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0),
            "negative_volume": v < 0,
            "high_below_low": h < lo,
            "high_low_not_bracketing": (h < np.maximum(o, c)) | (lo > np.minimum(o, c)),
        }
    unusable = np.logical_or.reduce([flags[k] for k in UNUSABLE])
    refused = np.logical_or.reduce([flags[k] for k in REFUSED])
    inconsistent = ~unusable & np.logical_or.reduce([m for k, m in flags.items() if k not in UNUSABLE])

    def first(mask: np.ndarray) -> int | None:
        return int(ts[int(np.argmax(mask))]) if mask.any() else None

    return CandleProblems({k: int(np.count_nonzero(m)) for k, m in flags.items()}, int(np.count_nonzero(unusable)),
                          int(np.count_nonzero(inconsistent)), int(np.count_nonzero(refused)), first(unusable),
                          first(inconsistent), first(refused))


def check_candles(table: pa.Table, *, where: str, allow_empty: bool = True) -> None:
    """Raise :class:`DataError` if ``table`` (store schema) holds a candle breaking a rule of
    :data:`REFUSED` (NaN/inf, a price <= 0, negative volume, high below low), or holds no candle at all
    when not ``allow_empty``. The one gate of every write into the store; open or close outside
    [low, high] passes (see :data:`REFUSED`)."""
    if table.num_rows == 0:
        if not allow_empty:
            raise DataError(f"{where}: no candles")
        return
    reason = candle_problems(table).refusal()
    if reason:
        raise DataError(f"{where}: {reason}")


def _sample_root() -> Path:
    """The bundled sample folder, symlinks resolved."""
    return Path(os.path.realpath(str(resources.files("genesis_fw") / "sample")))


def _in_sample(resolved: Path) -> bool:
    """Whether the already resolved path ``resolved`` is the bundled sample folder or inside it."""
    return resolved.is_relative_to(_sample_root())


@attrs.frozen
class Dataset:
    """One candle file: which symbol and timeframe, where it lives, and how it was obtained.

    ``origin`` is ``"store"`` or ``"sample"`` (the bundled sample); ``resampled_from`` names the finer
    timeframe it is aggregated from on the fly, or is ``None`` when the file holds ``timeframe`` itself.
    """

    symbol: str
    timeframe: str
    path: Path
    origin: str = "store"
    resampled_from: str | None = None

    def describe(self) -> str:
        """Human-readable one-liner, e.g. ``tBTCUSD 1h (resampled from 1m, bundled sample)``."""
        notes = []
        if self.resampled_from:
            notes.append(f"resampled from {self.resampled_from}")
        if self.origin == "sample":
            notes.append("bundled sample")
        return f"{self.symbol} {self.timeframe}" + (f" ({', '.join(notes)})" if notes else "")


@attrs.define
class CandleStore:
    """Candle files under ``root``; see the module docstring for the layout.

    ``read_only`` stores (the bundled sample) refuse writes.
    """

    root: Path = attrs.field(converter=Path)
    read_only: bool = False

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str] | None = None) -> CandleStore:
        """The store at ``data_dir`` (default: ``$GENESIS_DATA_DIR`` or ``./data``)."""
        return cls(Path(data_dir) if data_dir is not None else default_data_dir())

    @classmethod
    def sample(cls) -> CandleStore:
        """The read-only bundled sample (real Bitfinex tBTCUSD 1m candles, 2019-04 .. 2019-06)."""
        return cls(_sample_root(), read_only=True)

    @property
    def writable(self) -> bool:
        """Whether this process can write into the store folder: False for the bundled sample, a folder
        on a read-only mount (also for root) or without write permission, and a folder that does not exist."""
        return not self.read_only and os.access(self.root, os.W_OK)

    @property
    def candles_dir(self) -> Path:
        return self.root / "candles" if not self.read_only else self.root

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def metadata_dir(self) -> Path:
        return self.root / "metadata"

    @property
    def catalog_path(self) -> Path:
        return self.root / "genesis.db"

    def is_managed(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` is one of the store's own files: the catalog (and its ``-wal``, ``-shm``,
        ``-journal``), anything under ``candles/``, ``features/``, ``metadata/``, or a dot-file or
        dot-folder directly in the store (the store's internal state); or anything inside the bundled
        sample folder (:meth:`sample`), which ships with the package. Symlinks and relative paths (to
        the working directory) are resolved first."""
        target = Path(os.path.realpath(path))
        if _in_sample(target):
            return True
        root = Path(os.path.realpath(self.root))
        if not target.is_relative_to(root) or target == root:
            return False
        first = target.relative_to(root).parts[0]
        return (first in MANAGED_DIRS or first.startswith(".")
                or first in {self.catalog_path.name + suffix for suffix in CATALOG_SUFFIXES})

    def check_output(self, path: str | os.PathLike[str]) -> None:
        """Raise :class:`OutputError` when a command's output ``path`` would overwrite the store's own
        files or the bundled sample (:meth:`is_managed`); reports and exports must never replace
        candles or the catalog."""
        if not self.is_managed(path):
            return
        if _in_sample(Path(os.path.realpath(path))):
            raise OutputError(f"{path} is inside the bundled sample ({_sample_root()}), which ships with "
                              "genesis-fw; choose another path")
        raise OutputError(f"{path} is inside the store's own files ({', '.join(d + '/' for d in MANAGED_DIRS)} "
                          f"and the catalog {self.catalog_path.name} under {self.root}); choose another path")

    def path(self, symbol: str, timeframe: str) -> Path:
        """File of ``symbol``/``timeframe`` (validated first, so it is always inside the store)."""
        return self.candles_dir / f"{check_symbol(symbol)}_{check_timeframe(timeframe)}.parquet"

    def has(self, symbol: str, timeframe: str) -> bool:
        return self.path(symbol, timeframe).is_file()

    def datasets(self) -> list[Dataset]:
        """Every candle file in the store whose name is a valid ``{symbol}_{timeframe}.parquet``."""
        found = []
        if not self.candles_dir.is_dir():
            return found
        origin = "sample" if self.read_only else "store"
        for path in sorted(self.candles_dir.glob("*.parquet")):
            symbol, sep, timeframe = path.stem.rpartition("_")
            if sep and timeframe in TIMEFRAMES:
                try:
                    check_symbol(symbol)
                except DataError:
                    continue
                found.append(Dataset(symbol, timeframe, path, origin))
        return found

    def find(self, symbol: str, timeframe: str) -> Dataset | None:
        """The dataset for ``symbol``/``timeframe``: the file itself, else the finest file it can be
        resampled from, else ``None``."""
        if self.has(symbol, timeframe):
            return Dataset(symbol, timeframe, self.path(symbol, timeframe), "sample" if self.read_only else "store")
        finer = [d for d in self.datasets() if d.symbol == symbol and is_finer(d.timeframe, timeframe)]
        if not finer:
            return None
        best = min(finer, key=lambda d: timeframe_ms(d.timeframe))
        return attrs.evolve(best, timeframe=timeframe, resampled_from=best.timeframe)

    def write(self, symbol: str, timeframe: str, table: pa.Table) -> Path:
        """Replace the dataset's file with ``table`` atomically; return the path.

        The table is conformed first (:func:`conform`) and refused when misaligned or when
        :func:`check_candles` flags a candle (NaN/inf, price <= 0, negative volume, high below low).
        The new file is written beside the old one and
        renamed over it only once complete, so a crash mid-write leaves the previous file intact.
        """
        if self.read_only:
            raise DataError(f"the store at {self.root} is read-only")
        path = self.path(symbol, timeframe)
        table = conform(table, where=f"{symbol} {timeframe}")
        check_alignment(table, timeframe, where=f"{symbol} {timeframe}")
        check_candles(table, where=f"{symbol} {timeframe}")
        try:
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE)
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path


def locate(store: CandleStore, symbol: str, timeframe: str, *, using: str = "using") -> tuple[Dataset, list[str]]:
    """The dataset a command should read for ``symbol``/``timeframe``, and one-line notes on how it was found.

    The store's file, else a finer stored timeframe resampled on the fly, else the same two in the
    bundled sample. ``using`` is the verb of the sample note ("using", "validating").
    """
    notes: list[str] = []
    found = store.find(symbol, timeframe)
    if found is None:
        found = CandleStore.sample().find(symbol, timeframe)
        if found is None:
            raise DataError(
                f"no {symbol} candles at {timeframe} or finer in the store at {store.root} "
                "(the bundled sample has tBTCUSD 1m only); fetch or import them first"
            )
        notes.append(f"the store has no {symbol} {timeframe} data; {using} the bundled sample "
                     "(real Bitfinex tBTCUSD 1m, 2019-04-01 .. 2019-06-30)")
    if found.resampled_from:
        notes.append(f"resampling {symbol} {found.resampled_from} to {timeframe} on the fly (sql/resample.sql)")
    return found, notes


def check_alignment(table: pa.Table, timeframe: str, *, where: str, hint: str = "") -> None:
    """Raise :class:`DataError` if a timestamp is not a slot start of ``timeframe``'s grid
    (:func:`~genesis_fw.data.timeframes.slot_start_ms`: Monday weeks, calendar months, UTC).

    ``hint`` (how to fix it) is appended to the message after a semicolon.
    """
    if table.num_rows == 0:
        return
    ts = arrow_to_numpy(table.column("timestamp").cast(pa.int64()), "int64")
    width, origin = timeframe_ms(timeframe), grid_origin_ms(timeframe)
    if width:  # one modulo pass: this runs on every read of a stored file
        offset = (ts - origin) % width if origin else ts % width
    else:
        offset = ts - slot_start_ms(ts, timeframe)
    if offset.any():
        bad = np.flatnonzero(offset)
        raise DataError(
            f"{where}: {bad.size} timestamp(s) not aligned to the {timeframe} grid ({grid_rule(timeframe)}), "
            f"first at {from_ms(int(ts[bad[0]])).isoformat()}" + (f"; {hint}" if hint else "")
        )


def read(dataset: Dataset, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """Candles of ``dataset`` with open time in ``[start, end)`` (UTC; ``None`` = unbounded).

    Plain files are read row group by row group: groups whose timestamp statistics lie outside the
    range are never read, so one month of a ten-year file reads about one month. Resampled
    datasets run ``sql/resample.sql`` in DuckDB over the finer file. A file whose candles are off the
    timeframe's grid (e.g. a ``1W`` file with the Thursday weeks written before weeks opened on Mondays)
    raises :class:`DataError` saying how to rebuild it.
    """
    if dataset.resampled_from is not None:
        return resample(dataset.path, dataset.timeframe, start, end)
    lo = to_ms(start) if start is not None else None
    hi = to_ms(end) if end is not None else None
    try:
        pf = pq.ParquetFile(dataset.path)
        groups = _row_groups_in_range(pf, lo, hi)
        table = pf.read_row_groups(groups, columns=COLUMNS) if groups else pf.schema_arrow.empty_table()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {dataset.path}: {exc}") from None
    table = conform(table, where=str(dataset.path))
    check_alignment(table, dataset.timeframe, where=f"{dataset.symbol} {dataset.timeframe} ({dataset.path})",
                    hint=f"see 'genesis-fw validate --symbol {dataset.symbol} --timeframe {dataset.timeframe}'; "
                         f"rebuild it from finer candles with 'genesis-fw resample --symbol {dataset.symbol} "
                         f"--to {dataset.timeframe}' or fetch it again")
    if lo is not None or hi is not None:
        ts = arrow_to_numpy(table.column("timestamp").cast(pa.int64()), "int64")
        first = int(np.searchsorted(ts, lo, "left")) if lo is not None else 0
        last = int(np.searchsorted(ts, hi, "left")) if hi is not None else ts.size
        table = table.slice(first, max(last - first, 0))
    return table


def time_span(path: Path) -> tuple[int, int] | None:
    """Open times (ms) of the first and last candle of a store file, from the Parquet footer when its
    statistics allow (no data pages read); ``None`` for an empty file."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    if meta.num_rows == 0:
        return None
    col = pf.schema_arrow.get_field_index("timestamp")
    first = meta.row_group(0).column(col).statistics
    last = meta.row_group(meta.num_row_groups - 1).column(col).statistics
    if all(st is not None and st.has_min_max and isinstance(st.min, datetime) for st in (first, last)):
        lo, hi = first.min, last.max
        return to_ms(lo if lo.tzinfo else lo.replace(tzinfo=UTC)), to_ms(hi if hi.tzinfo else hi.replace(tzinfo=UTC))
    ts = conform(pf.read(columns=COLUMNS), where=str(path)).column("timestamp").cast(pa.int64())
    return ts[0].as_py(), ts[-1].as_py()


def _row_groups_in_range(pf: pq.ParquetFile, lo: int | None, hi: int | None) -> list[int]:
    """Row groups whose timestamp statistics may hold a value in ``[lo, hi)`` (ms); all when unknown.

    This is the range push-down: only these groups are read from disk.
    """
    meta = pf.metadata
    groups = list(range(meta.num_row_groups))
    if lo is None and hi is None:
        return groups
    try:
        col = pf.schema_arrow.get_field_index("timestamp")
    except KeyError:
        return groups
    keep = []
    for g in groups:
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.min, datetime):
            keep.append(g)
            continue
        gmin, gmax = (to_ms(v if v.tzinfo else v.replace(tzinfo=UTC)) for v in (stats.min, stats.max))
        if (hi is None or gmin < hi) and (lo is None or gmax >= lo):
            keep.append(g)
    return keep


def _bucket_bounds(timeframe: str, start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """Source-row range in ms covering every bucket whose open time is in ``[start, end)``."""
    width = timeframe_ms(timeframe)
    lo = to_ms(start) if start is not None else -(_UNBOUNDED_MS)
    hi = to_ms(end) if end is not None else _UNBOUNDED_MS
    if width == 0:  # calendar month: start of lo's month; hi rounded up to the next month start
        if start is not None:
            s = start
            lo = to_ms(s.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        if end is not None:
            e = end
            floor = e.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            if floor != e:
                floor = floor.replace(year=floor.year + floor.month // 12, month=floor.month % 12 + 1)
            hi = to_ms(floor)
        return lo, hi
    if start is not None:
        lo = slot_start_ms(lo, timeframe)
    if end is not None:
        hi += (grid_origin_ms(timeframe) - hi) % width  # up to the next slot start
    return lo, hi


def resample(source: Path, timeframe: str, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """Aggregate the candles in ``source`` into ``timeframe`` buckets with ``sql/resample.sql``.

    Buckets are the timeframe's grid slots in UTC (weeks from Monday 00:00, ``1M``: calendar months,
    other widths: multiples since the epoch; :mod:`~genesis_fw.data.timeframes`); open = first open,
    high = max, low = min, close = last close, volume = sum. A bucket with no source candle is
    absent. Only buckets whose open time is in ``[start, end)`` are returned, each one whole.
    """
    import duckdb

    lo, hi = _bucket_bounds(timeframe, start, end)
    params = {
        "source": str(source),
        "bucket_ms": timeframe_ms(timeframe),
        "origin_ms": grid_origin_ms(timeframe),
        "lo_ms": lo,
        "hi_ms": hi,
        "start_ms": to_ms(start) if start is not None else -(_UNBOUNDED_MS),
        "end_ms": to_ms(end) if end is not None else _UNBOUNDED_MS,
    }
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # One thread: parallel partial sums add the volumes in a varying order, and the last bit of a
        # float sum then changes from run to run -- which would change the dataset's SHA-256.
        con.execute("SET threads = 1")
        table = sqlfiles.to_arrow(con, sqlfiles.load("resample"), params)
    except duckdb.Error as exc:
        raise DataError(f"cannot resample {source} to {timeframe}: {exc}") from None
    finally:
        con.close()
    return conform(table, where=f"{source} resampled to {timeframe}")

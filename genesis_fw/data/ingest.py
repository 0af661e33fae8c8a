"""Putting candles into the store: importing files and storing resampled datasets.

Every write goes through :func:`genesis_fw.data.datasets.publish`: atomic, versioned, recorded in the catalog.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pyarrow as pa

from ..errors import DataError
from .store import CandleStore, Dataset, check_candles, conform, read
from .timeframes import check_symbol, check_timeframe, is_finer, timeframe_ms


@attrs.frozen
class WriteResult:
    path: Path
    num_candles: int
    version: int
    new_version: bool


def _publish(store: CandleStore, symbol: str, timeframe: str, table: pa.Table, source: str) -> WriteResult:
    from .datasets import publish

    meta, new = publish(store, symbol, timeframe, table, source=source)
    return WriteResult(store.path(symbol, timeframe), meta.num_candles, meta.version, new)


def read_candle_file(source: Path) -> pa.Table:
    """A Parquet or CSV file of candles, conformed to the store schema and checked.

    Refused with :class:`DataError`: an empty file, and candles :func:`~genesis_fw.data.store.check_candles`
    flags (NaN/inf, price <= 0, negative volume, high below low); open or close outside [low, high] is kept.
    """
    if not source.is_file():
        raise DataError(f"no such file: {source}")
    try:
        if source.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(source)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(source)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {source}: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{source} holds no candles; nothing imported (an empty file would make an empty version)")
    table = conform(table, where=str(source))
    check_candles(table, where=str(source), allow_empty=False)
    return table


def import_file(store: CandleStore, source: Path, symbol: str, timeframe: str) -> WriteResult:
    """Replace ``symbol``/``timeframe`` in the store with the candles of ``source``."""
    check_symbol(symbol)
    check_timeframe(timeframe)
    table = read_candle_file(Path(source))
    return _publish(store, symbol, timeframe, table, f"import:{Path(source).name}")


def resample_into_store(store: CandleStore, symbol: str, target_tf: str, source_tf: str | None = None) -> WriteResult:
    """Aggregate a stored finer timeframe into ``target_tf`` and store it as its own dataset."""
    check_symbol(symbol)
    check_timeframe(target_tf)
    if source_tf is None:
        found = store.find(symbol, target_tf)
        if found is None or found.resampled_from is None:
            finer = [d.timeframe for d in store.datasets() if d.symbol == symbol and is_finer(d.timeframe, target_tf)]
            if not finer:
                raise DataError(f"the store has no {symbol} candles finer than {target_tf} to resample")
            source_tf = min(finer, key=timeframe_ms)
        else:
            source_tf = found.resampled_from
    check_timeframe(source_tf)
    if not is_finer(source_tf, target_tf):
        raise DataError(f"cannot resample {source_tf} to {target_tf}: the target must be a coarser multiple")
    if not store.has(symbol, source_tf):
        raise DataError(f"the store has no {symbol} {source_tf} candles; list datasets with: "
                        "genesis-fw sql \"SELECT * FROM datasets\"")
    dataset = Dataset(symbol, target_tf, store.path(symbol, source_tf), resampled_from=source_tf)
    return _publish(store, symbol, target_tf, read(dataset), f"resampled:{source_tf}")

"""Content hashing of candles: the one SHA-256 that dataset versions, quality rows and backtest
runs all record, so they join on it.

The digest covers the candles' content, not a file's bytes: timestamps (int64 UTC ms) then open,
high, low, close and volume (float64), each as one little-endian binary array. Two Parquet files
with different compression or row groups but the same candles hash alike.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from ..strategy import Bars


def bars_sha256(bars: Bars) -> str:
    """SHA-256 of the exact candles in ``bars`` (timestamps and OHLCV, little-endian)."""
    h = hashlib.sha256()
    for arr in (bars.timestamp, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def content_sha256(table: pa.Table) -> str:
    """SHA-256 of a candle table's content; equal to :func:`bars_sha256` of the same candles."""
    from ..strategy import Bars

    return bars_sha256(Bars.from_table(table))


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks. Raises ``OSError`` if it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

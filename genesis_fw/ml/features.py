"""The default feature set: one column per feature, computed from candles without lookahead.

The value of every feature at bar ``t`` uses candles ``0..t`` only, so features computed on data cut
at any time ``T`` are identical, bar for bar up to ``T``, to those computed on the full data.

* recursive features come from :mod:`genesis_fw.indicators` (the kernels strategies use too):
  ``ema_{n}`` = EMA(close, span n) / close (a ratio, around 1), ``rsi_{n}`` (percent, 0..100),
  ``adx_{n}``, ``plus_di_{n}``, ``minus_di_{n}`` (percent), ``atr_{n}`` = ATR / close (a fraction);
* window features are SQL that DuckDB runs over the candles (``sql/features/``):
  ``log_return_{k}`` (fraction), ``volatility_{w}`` (fraction per bar), ``volume_z_{w}`` (unitless).

Windows and lags count rows: a missing candle is not a row. The first :func:`warmup_bars` rows, where a
feature is undefined or a recursion still depends on how it was seeded, are dropped
(:func:`build`). Parameters: :class:`genesis_fw.config.FeaturesConfig`.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from .. import indicators, sqlfiles
from .._util import arrow_to_numpy
from ..config import FeaturesConfig
from ..errors import DataError

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pyarrow as pa

#: The SQL files of the window features (``sql/features/*.sql``), part of the definitions' hash.
SQL_FILES = ("features/log_return", "features/volatility", "features/volume_zscore")


def names(cfg: FeaturesConfig) -> list[str]:
    """Feature column names, in file order."""
    out = [f"ema_{n}" for n in cfg.ema_spans]
    out += [f"rsi_{cfg.rsi_period}", f"adx_{cfg.adx_period}", f"plus_di_{cfg.adx_period}",
            f"minus_di_{cfg.adx_period}", f"atr_{cfg.atr_period}"]
    out += [f"log_return_{k}" for k in cfg.return_lags]
    out += [f"volatility_{cfg.volatility_window}", f"volume_z_{cfg.volume_window}"]
    return out


def warmup_bars(cfg: FeaturesConfig) -> int:
    """Leading rows dropped: the longest of each feature's undefined stretch and (for the recursive
    ones) the bars until their seed weighs less than :data:`genesis_fw.indicators.SEED_WEIGHT`."""
    return max(
        *(indicators.ema_warmup(n) for n in cfg.ema_spans),
        indicators.rsi_warmup(cfg.rsi_period),
        indicators.dmi_warmup(cfg.adx_period),
        indicators.atr_warmup(cfg.atr_period),
        max(cfg.return_lags),
        cfg.volatility_window,
        cfg.volume_window - 1,
    )


def definitions(cfg: FeaturesConfig) -> dict[str, Any]:
    """What the features are: resolved parameters, the SQL text and the kernels' version."""
    return {
        "params": attrs.asdict(cfg),
        "names": names(cfg),
        "warmup_bars": warmup_bars(cfg),
        "sql": {name: sqlfiles.load(name) for name in SQL_FILES},
        "kernel_version": indicators.KERNEL_VERSION,
    }


def definitions_hash(cfg: FeaturesConfig) -> str:
    """SHA-256 (hex) of :func:`definitions` as canonical JSON: changes when any parameter, SQL file or
    kernel version does."""
    text = json.dumps(definitions(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_kernels() -> None:
    """Import numba and load the recursive features' kernels from numba's on-disk cache (compiling
    them the first time), for exactly the argument types :func:`compute` passes them.

    :func:`genesis_fw.ml.feature_files.make` runs this in a background thread while it reads and hashes
    the candles, so the import and cache loading (most of a cold run) overlap that work.
    """
    x = _read_only(np.linspace(1.0, 2.0, 8))
    _recursive_arrays(x, x, x, FeaturesConfig())


def compute(candles: pa.Table, cfg: FeaturesConfig, *, kernels: Future[None] | None = None,
            window: Future[dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Every feature for every candle (NaN where undefined), as float64 arrays keyed by name.

    ``candles`` has the store's schema and is sorted by timestamp. DuckDB runs the window features in
    a second thread while the numba kernels (which release the GIL) compute the recursive ones.
    ``kernels``, when given, is a running :func:`load_kernels`, waited for before the kernels are used;
    ``window``, when given, is a running :func:`window_features` of the same candles and ``cfg``.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        if window is None:
            window = pool.submit(window_features, candles, cfg)
        if kernels is not None:
            kernels.result()
        h, lo, c = (_read_only(np.ascontiguousarray(arrow_to_numpy(candles.column(k), "float64"), dtype=np.float64))
                    for k in ("high", "low", "close"))
        out = _recursive_arrays(h, lo, c, cfg)
        out.update(window.result())
    return {name: out[name] for name in names(cfg)}


def _read_only(x: np.ndarray) -> np.ndarray:
    """``x`` marked read-only: the kernels always see the same argument types (numba compiles and
    caches one machine-code version per type, and read-only is part of an array's type), whether
    the column was converted without a copy (read-only) or copied (writable)."""
    x.flags.writeable = False
    return x


def _recursive_arrays(h: np.ndarray, lo: np.ndarray, c: np.ndarray, cfg: FeaturesConfig) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for n in cfg.ema_spans:
        out[f"ema_{n}"] = indicators.ema(c, n) / c
    out[f"rsi_{cfg.rsi_period}"] = indicators.rsi(c, cfg.rsi_period)
    plus_di, minus_di, adx = indicators.dmi(h, lo, c, cfg.adx_period)
    out[f"adx_{cfg.adx_period}"] = adx
    out[f"plus_di_{cfg.adx_period}"] = plus_di
    out[f"minus_di_{cfg.adx_period}"] = minus_di
    out[f"atr_{cfg.atr_period}"] = indicators.atr(h, lo, c, cfg.atr_period) / c
    return out


def window_features(candles: pa.Table, cfg: FeaturesConfig) -> dict[str, np.ndarray]:
    """The window features (``sql/features/``, run by DuckDB) of ``candles``, NaN where undefined."""
    import duckdb

    out: dict[str, np.ndarray] = {}
    con = duckdb.connect()
    try:
        con.register("candles", candles.select(["timestamp", "close", "volume"]))

        def run(name: str, **params: Any) -> pa.Array:
            return con.sql(sqlfiles.load(name), params=params).to_arrow_table().column("value").combine_chunks()

        lags = list(cfg.return_lags)
        for k, values in zip(lags, run("features/log_return", lags=lags), strict=True):
            out[f"log_return_{k}"] = _floats(values.values) if values.is_valid else np.full(candles.num_rows, np.nan)
        out[f"volatility_{cfg.volatility_window}"] = _floats(run("features/volatility", window=cfg.volatility_window))
        out[f"volume_z_{cfg.volume_window}"] = _floats(run("features/volume_zscore", window=cfg.volume_window))
    finally:
        con.close()
    return out


def _floats(values: pa.Array) -> np.ndarray:
    """A float64 Arrow array (a query's result) as numpy, NaN where it is null (without pandas:
    see :func:`genesis_fw._util.arrow_to_numpy`)."""
    if not values.null_count:
        return arrow_to_numpy(values, "float64")
    validity, data = values.buffers()[:2]
    x = np.frombuffer(data, dtype=np.float64, count=len(values), offset=values.offset * 8)
    valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return np.where(valid[values.offset:values.offset + len(values)].astype(bool), x, np.nan)


@attrs.frozen
class Features:
    """Features with the warm-up dropped: ``table`` holds ``timestamp`` (UTC) and one float64 column
    per feature; ``warmup_dropped`` rows were dropped from the front."""

    table: Any
    warmup_dropped: int


def build(candles: pa.Table, cfg: FeaturesConfig, *, kernels: Future[None] | None = None,
          window: Future[dict[str, np.ndarray]] | None = None) -> Features:
    """The features of ``candles`` after the warm-up (:func:`warmup_bars`).

    Raises :class:`DataError` when there are no rows left after the warm-up. ``kernels`` and ``window``:
    as for :func:`compute`.
    """
    import pyarrow as pa

    warmup = warmup_bars(cfg)
    if candles.num_rows <= warmup:
        raise DataError(f"too few rows: {candles.num_rows} candles, the features need more than {warmup} "
                        "(their warm-up); use a longer range, a finer timeframe or shorter spans/periods")
    values = compute(candles, cfg, kernels=kernels, window=window)
    columns = {"timestamp": candles.column("timestamp").slice(warmup)}
    for name in names(cfg):
        col = values[name][warmup:]
        if not np.isfinite(col).all():
            bad = int(np.flatnonzero(~np.isfinite(col))[0]) + warmup
            raise DataError(f"feature {name} is not finite at candle {bad} after the warm-up; check the candles "
                            "(genesis-fw validate)")
        # The array's own memory, as pa.array(col) would copy it, minus pa.array's pandas import.
        columns[name] = pa.Array.from_buffers(pa.float64(), col.size, [None, pa.py_buffer(col)])
    return Features(pa.table(columns), warmup)

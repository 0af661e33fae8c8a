"""The peer of ``genesis-fw features``: plain pandas + TA-Lib computing the same 15 default features.

    python benchmarks/_features_peer.py CANDLES.parquet OUT.parquet WARMUP

Reads the candles, computes the features, drops the first WARMUP rows, writes Parquet. ``compute`` is
also timed in-process by bench_features.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import talib

EMA_SPANS = (5, 10, 20, 50)
LAGS = (1, 5, 10, 20)


def compute(df: pd.DataFrame) -> pd.DataFrame:
    h, lo, c, v = (df[k].to_numpy() for k in ("high", "low", "close", "volume"))
    out = pd.DataFrame({"timestamp": df["timestamp"]})
    close = df["close"]
    for n in EMA_SPANS:
        out[f"ema_{n}"] = talib.EMA(c, timeperiod=n) / c
    out["rsi_14"] = talib.RSI(c, timeperiod=14)
    out["adx_14"] = talib.ADX(h, lo, c, timeperiod=14)
    out["plus_di_14"] = talib.PLUS_DI(h, lo, c, timeperiod=14)
    out["minus_di_14"] = talib.MINUS_DI(h, lo, c, timeperiod=14)
    out["atr_14"] = talib.ATR(h, lo, c, timeperiod=14) / c
    for k in LAGS:
        out[f"log_return_{k}"] = np.log(close / close.shift(k))
    out["volatility_20"] = np.log(close / close.shift(1)).rolling(20).std()
    roll = df["volume"].rolling(50)
    std = roll.std()
    out["volume_z_50"] = ((df["volume"] - roll.mean()) / std).where(std > 0, 0.0).where(std.notna())
    del v
    return out


def main() -> int:
    src, dst, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3])
    df = pd.read_parquet(src)
    compute(df).iloc[warmup:].to_parquet(dst, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

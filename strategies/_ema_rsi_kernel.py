"""Compiled decision loop of :mod:`ema_rsi`'s fast path (imported on first use, so that listing
plugins does not load numba)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def cross_targets(fast, slow, rsi, warmup, rsi_upper, rsi_lower):
    """1 / -1 where the EMAs cross up / down with RSI on the allowed side, NaN elsewhere and before ``warmup``."""
    n = fast.shape[0]
    out = np.full(n, np.nan)
    for i in range(max(warmup, 1), n):
        if fast[i] > slow[i] and fast[i - 1] <= slow[i - 1] and rsi[i] < rsi_upper:
            out[i] = 1.0
        elif fast[i] < slow[i] and fast[i - 1] >= slow[i - 1] and rsi[i] > rsi_lower:
            out[i] = -1.0
    return out

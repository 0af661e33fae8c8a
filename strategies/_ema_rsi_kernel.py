"""Compiled decision loop of :mod:`ema_rsi`'s fast path (imported on first use, so that listing
plugins does not load numba)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def cross_targets(fast, slow, rsi, warmup, rsi_upper, rsi_lower):
    """1 / -1 where the EMAs cross up / down with RSI on the allowed side, NaN elsewhere and before ``warmup``.

    The conditions are combined without short-circuiting and the previous bar's values are carried in
    registers: the same decisions as the per-bar ``next``, about ten times faster than the branchy form.
    """
    n = fast.shape[0]
    out = np.empty(n)
    start = max(warmup, 1)
    fp = np.nan
    sp = np.nan
    for i in range(n):
        f = fast[i]
        s = slow[i]
        v = np.nan
        if i >= start:
            up = (f > s) & (fp <= sp) & (rsi[i] < rsi_upper)
            down = (f < s) & (fp >= sp) & (rsi[i] > rsi_lower)
            if up:
                v = 1.0
            elif down:
                v = -1.0
        out[i] = v
        fp = f
        sp = s
    return out

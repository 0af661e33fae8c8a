"""Causal technical indicators over numpy arrays (value at ``t`` uses inputs ``0..t`` only).

The recursions are compiled with numba and cached on disk, so a new process loads them instead of
compiling them.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _ewm(x, alpha):
    n = x.shape[0]
    out = np.empty(n)
    decay = 1.0 - alpha
    prev = np.nan
    for i in range(n):
        v = x[i]
        if np.isnan(prev):
            prev = v
        elif not np.isnan(v):
            prev = alpha * v + decay * prev
        out[i] = prev
    return out


def ewm(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted mean seeded with the first value (pandas ``ewm(alpha, adjust=False)``).

    ``y[0] = x[0]``; ``y[t] = alpha * x[t] + (1 - alpha) * y[t-1]``. Leading NaNs stay NaN and the
    first finite value seeds the recursion; a NaN later on carries the previous value forward.
    """
    return _ewm(np.ascontiguousarray(x, dtype=np.float64), float(alpha))


def ema(close: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (n + 1)`` (pandas ``ewm(span=n, adjust=False)``)."""
    return ewm(close, 2.0 / (n + 1))


@njit(cache=True, nogil=True)
def _rsi(close, alpha):
    n = close.shape[0]
    out = np.empty(n)
    if n == 0:
        return out
    out[0] = np.nan
    gain = np.nan
    loss = np.nan
    decay = 1.0 - alpha
    for i in range(1, n):
        d = close[i] - close[i - 1]
        g = d if d > 0 else 0.0
        lo = -d if d < 0 else 0.0
        if np.isnan(gain):
            gain, loss = g, lo
        else:
            gain = alpha * g + decay * gain
            loss = alpha * lo + decay * loss
        out[i] = 100.0 if loss == 0 else 100.0 - 100.0 / (1.0 + gain / loss)
    return out


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI in percent (0..100).

    Gains and losses of close-to-close changes are smoothed with ``alpha = 1/n``, seeded with the first
    change; ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``, and 100 where ``avg_loss`` is 0. The first
    bar has no change and is NaN.
    """
    return _rsi(np.ascontiguousarray(close, dtype=np.float64), 1.0 / n)

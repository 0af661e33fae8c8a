"""Causal technical indicators over numpy arrays (value at ``t`` uses inputs ``0..t`` only)."""

from __future__ import annotations

import numpy as np


def ewm(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted mean seeded with the first value (pandas ``ewm(alpha, adjust=False)``).

    ``y[0] = x[0]``; ``y[t] = alpha * x[t] + (1 - alpha) * y[t-1]``. Leading NaNs stay NaN and the
    first finite value seeds the recursion.
    """
    from scipy.signal import lfilter

    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(x))
    if finite.size == 0:
        return out
    s = finite[0]
    out[s] = x[s]
    if s + 1 < x.size:
        decay = 1.0 - alpha
        out[s + 1 :], _ = lfilter([alpha], [1.0, -decay], x[s + 1 :], zi=[decay * x[s]])
    return out


def ema(close: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (n + 1)`` (pandas ``ewm(span=n, adjust=False)``)."""
    return ewm(close, 2.0 / (n + 1))


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI in percent (0..100).

    Gains and losses of close-to-close changes are smoothed with ``alpha = 1/n``, seeded with the first
    change; ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``, and 100 where ``avg_loss`` is 0. The first
    bar has no change and is NaN.
    """
    close = np.asarray(close, dtype=np.float64)
    delta = np.empty_like(close)
    delta[:1] = np.nan
    delta[1:] = np.diff(close)
    avg_gain = ewm(np.where(delta > 0, delta, 0.0) + delta * 0, 1.0 / n)
    avg_loss = ewm(np.where(delta < 0, -delta, 0.0) + delta * 0, 1.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    out[avg_loss == 0] = 100.0
    out[np.isnan(avg_gain)] = np.nan
    return out

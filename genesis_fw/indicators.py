"""Causal technical indicators over numpy arrays (value at ``t`` uses inputs ``0..t`` only).

The recursions are compiled with numba on their first call and cached on disk, so a new process loads
them instead of compiling them; importing this module does not import numba (a cached
``genesis-fw features`` run needs the warm-up arithmetic below, not the kernels).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np


def _kernel(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled by numba (``njit(cache=True, nogil=True)``) on its first call."""
    compiled = None

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        nonlocal compiled
        if compiled is None:
            from numba import njit

            compiled = njit(cache=True, nogil=True)(fn)
        return compiled(*args)

    return call


@_kernel
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


@_kernel
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


#: Bump when a kernel's output changes: feature files record it in their definitions' hash.
KERNEL_VERSION = 1

#: A recursive indicator counts as settled once its seed weighs less than this in its value.
SEED_WEIGHT = 1e-9


def settle_bars(alpha: float, weight: float = SEED_WEIGHT) -> int:
    """Bars after its seed until a recursion ``y = alpha * x + (1 - alpha) * y`` keeps less than ``weight``
    of the seed: ``ceil(ln(weight) / ln(1 - alpha))``.

    Two seedings of the same recursion (ours: the first value; TA-Lib: a simple mean of the first ``n``)
    differ by at most ``weight`` times the difference of the seeds from then on.
    """
    return math.ceil(math.log(weight) / math.log1p(-alpha))


def ema_warmup(n: int) -> int:
    """Leading bars of :func:`ema` (span ``n``) that still depend on the seed (see :data:`SEED_WEIGHT`);
    counted from the first bar, where TA-Lib's SMA seed sits at bar ``n - 1``."""
    return n - 1 + settle_bars(2.0 / (n + 1))


def rsi_warmup(n: int) -> int:
    """Leading bars of :func:`rsi` that still depend on the seed (see :data:`SEED_WEIGHT`)."""
    return n + settle_bars(1.0 / n)


def atr_warmup(n: int) -> int:
    """Leading bars of :func:`atr` that are undefined (``n``) or still depend on the start of the data."""
    return n + settle_bars(1.0 / n)


def dmi_warmup(n: int) -> int:
    """Leading bars of :func:`dmi` (ADX is the last to be defined, at ``2n - 1``) that are undefined or
    still depend on the start of the data."""
    return 2 * n - 1 + settle_bars(1.0 / n)


@_kernel
def _atr(high, low, close, n):
    m = close.shape[0]
    out = np.full(m, np.nan)
    if m <= n:
        return out
    total = 0.0
    for i in range(1, n + 1):  # true range: max(high - low, |high - prev close|, |low - prev close|)
        total += max(high[i] - low[i], max(abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
    prev = total / n
    out[n] = prev
    for i in range(n + 1, m):
        t = max(high[i] - low[i], max(abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
        prev = (prev * (n - 1) + t) / n
        out[i] = prev
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's Average True Range, in price units, as TA-Lib's ``ATR`` defines it.

    True range ``TR[t] = max(high - low, |high - close[t-1]|, |low - close[t-1]|)`` (from bar 1);
    ``ATR[n]`` is the mean of ``TR[1..n]`` and then ``ATR[t] = (ATR[t-1] * (n - 1) + TR[t]) / n``.
    Bars ``0..n-1`` are NaN. Equal to TA-Lib bar for bar, warm-up included.
    """
    return _atr(_f64(high), _f64(low), _f64(close), int(n))


@_kernel
def _dmi(high, low, close, n):
    m = close.shape[0]
    plus_di = np.full(m, np.nan)
    minus_di = np.full(m, np.nan)
    adx = np.full(m, np.nan)
    if m <= n:
        return plus_di, minus_di, adx
    p_dm = 0.0
    m_dm = 0.0
    tr = 0.0
    sum_dx = 0.0
    prev_adx = np.nan
    for i in range(1, m):
        up = high[i] - high[i - 1]
        down = low[i - 1] - low[i]
        dp = 0.0
        dn = 0.0
        if down > 0 and up < down:
            dn = down
        elif up > 0 and up > down:
            dp = up
        t = max(high[i] - low[i], max(abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
        if i < n:  # Wilder's sums are seeded with the first n - 1 moves
            p_dm += dp
            m_dm += dn
            tr += t
            continue
        p_dm = p_dm - p_dm / n + dp
        m_dm = m_dm - m_dm / n + dn
        tr = tr - tr / n + t
        if -1e-8 < tr < 1e-8:  # TA-Lib's TA_IS_ZERO: no range, no direction
            plus_di[i] = 0.0
            minus_di[i] = 0.0
            dx = np.nan
        else:
            pdi = 100.0 * (p_dm / tr)
            mdi = 100.0 * (m_dm / tr)
            plus_di[i] = pdi
            minus_di[i] = mdi
            s = pdi + mdi
            dx = 100.0 * (abs(mdi - pdi) / s) if not (-1e-8 < s < 1e-8) else np.nan
        if i < 2 * n - 1:
            if not np.isnan(dx):
                sum_dx += dx
        elif i == 2 * n - 1:
            if not np.isnan(dx):
                sum_dx += dx
            prev_adx = sum_dx / n
            adx[i] = prev_adx
        else:
            if not np.isnan(dx):  # a bar without direction keeps the previous ADX, as in TA-Lib
                prev_adx = (prev_adx * (n - 1) + dx) / n
            adx[i] = prev_adx
    return plus_di, minus_di, adx


def dmi(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilder's directional movement: ``(+DI, -DI, ADX)``, each in percent (0..100), as TA-Lib's
    ``PLUS_DI``, ``MINUS_DI`` and ``ADX`` define them.

    ``+DM = high - high[t-1]`` when it is positive and larger than ``-DM = low[t-1] - low`` (else 0),
    and the other way round. ``+DM``, ``-DM`` and the true range are Wilder sums seeded with the first
    ``n - 1`` moves (``S[t] = S[t-1] - S[t-1] / n + x[t]``); ``+DI = 100 * S(+DM) / S(TR)`` from bar ``n``.
    ``DX = 100 * |+DI - -DI| / (+DI + -DI)``; ``ADX`` at bar ``2n - 1`` is the mean of the first ``n``
    DX values, then Wilder-smoothed (``alpha = 1/n``). Earlier bars are NaN. Equal to TA-Lib bar for
    bar, warm-up included.
    """
    return _dmi(_f64(high), _f64(low), _f64(close), int(n))


def _f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)

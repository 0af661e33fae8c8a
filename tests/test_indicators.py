"""Indicators against independent definitions: pandas' ewm and a plain-Python Wilder RSI."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesis_fw.indicators import ema, ewm, rsi
from genesis_fw.testing import sample_bars


def wilder_rsi_reference(close, n):
    out = [float("nan")]
    ag = al = None
    for i in range(1, len(close)):
        d = close[i] - close[i - 1]
        g, lo = max(d, 0.0), max(-d, 0.0)
        if ag is None:
            ag, al = g, lo
        else:
            ag = ag + (g - ag) / n
            al = al + (lo - al) / n
        out.append(100.0 if al == 0 else 100 - 100 / (1 + ag / al))
    return np.array(out)


def test_ema_matches_pandas_ewm_on_real_closes():
    pd = pytest.importorskip("pandas")
    close = sample_bars(20_000).close
    for n in (12, 26, 200):
        expected = pd.Series(close).ewm(span=n, adjust=False).mean().to_numpy()
        np.testing.assert_allclose(ema(close, n), expected, rtol=1e-12)


def test_rsi_matches_pandas_formulation_and_reference():
    pd = pytest.importorskip("pandas")
    close = sample_bars(20_000).close
    delta = pd.Series(close).diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    expected = (100 - 100 / (1 + gain / loss)).where(loss != 0, 100.0).to_numpy(copy=True)
    expected[0] = np.nan
    got = rsi(close, 14)
    np.testing.assert_allclose(got, expected, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(got[:3000], wilder_rsi_reference(close[:3000], 14), rtol=1e-10, equal_nan=True)


def test_hand_computed_values():
    x = np.array([1.0, 2.0, 3.0, 2.5])
    np.testing.assert_allclose(ema(x, 3), [1.0, 1.5, 2.25, 2.375])
    # alpha 1/3: gains 1, 1 -> loss 0 -> 100; then loss 0.5: ag = 2/3, al = 1/6 -> 80.
    np.testing.assert_allclose(rsi(x, 3), [np.nan, 100.0, 100.0, 80.0], equal_nan=True)
    np.testing.assert_allclose(ewm(np.array([np.nan, np.nan, 4.0, 6.0]), 0.5), [np.nan, np.nan, 4.0, 5.0],
                               equal_nan=True)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1, 1e6), min_size=5, max_size=200), st.integers(2, 50))
def test_causal_prefix_property(values, n):
    x = np.array(values)
    k = len(x) // 2
    np.testing.assert_array_equal(ema(x[:k], n), ema(x, n)[:k])
    np.testing.assert_array_equal(rsi(x[:k], n), rsi(x, n)[:k])
    r = rsi(x, n)[1:]
    assert np.all((r >= 0) & (r <= 100))

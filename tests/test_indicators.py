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


# --- TA-Lib as the independent reference, on real candles --------------------------------------------------

def _real_candles():
    """Real Bitfinex candles: the two 2-day 1m fixtures, the bundled 1m sample and that sample at 1h."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from genesis_fw.data.store import CandleStore, resample

    sample_path = CandleStore.sample().path("tBTCUSD", "1m")
    data = Path(__file__).parent / "data"
    tables = {p.name: pq.read_table(p) for p in sorted(data.glob("*.parquet"))}
    tables["sample 1m"] = pq.read_table(sample_path)
    tables["sample 1h"] = resample(sample_path, "1h")
    return {name: tuple(t.column(k).to_numpy().astype(float) for k in ("high", "low", "close"))
            for name, t in tables.items()}


REAL = None


def real_candles():
    global REAL
    if REAL is None:
        REAL = _real_candles()
    return REAL


@pytest.mark.parametrize("n", [2, 5, 14, 30])
def test_atr_and_dmi_equal_talib_on_real_candles(n):
    talib = pytest.importorskip("talib")
    from genesis_fw.indicators import atr, dmi

    for name, (h, lo, c) in real_candles().items():
        ours = {"ATR": atr(h, lo, c, n)}
        ours["PLUS_DI"], ours["MINUS_DI"], ours["ADX"] = dmi(h, lo, c, n)
        for fn, got in ours.items():
            ref = getattr(talib, fn)(h, lo, c, timeperiod=n)
            # Same seeding as TA-Lib: undefined on the same bars and equal on every other one.
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{fn}({n}) on {name}")
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9, equal_nan=True,
                                       err_msg=f"{fn}({n}) on {name}")


@pytest.mark.parametrize("n", [5, 10, 20, 50, 100])
def test_ema_and_rsi_agree_with_talib_after_their_warmup(n):
    """Our EMA seeds with the first close and TA-Lib's with the mean of the first n; our RSI seeds with the
    first change and TA-Lib's with the mean of the first n. Past ``ema_warmup``/``rsi_warmup`` the seed
    weighs less than 1e-9, and the two agree to that: relative 1e-9 for EMA, 1e-7 RSI points (0..100)."""
    talib = pytest.importorskip("talib")
    from genesis_fw.indicators import ema_warmup, rsi_warmup

    checked = 0
    for name, (_h, _lo, c) in real_candles().items():
        k = ema_warmup(n)
        if k < c.size:
            np.testing.assert_allclose(ema(c, n)[k:], talib.EMA(c, timeperiod=n)[k:], rtol=1e-9,
                                       err_msg=f"EMA({n}) on {name}")
            checked += 1
        k = rsi_warmup(n)
        if k < c.size:
            np.testing.assert_allclose(rsi(c, n)[k:], talib.RSI(c, timeperiod=n)[k:], rtol=0, atol=1e-7,
                                       err_msg=f"RSI({n}) on {name}")
    assert checked >= 3


def test_warmup_is_needed_before_it():
    """The warm-up is real: shortly after TA-Lib's first value our seeding still differs measurably."""
    talib = pytest.importorskip("talib")
    _h, _lo, c = real_candles()["sample 1m"]
    assert np.nanmax(np.abs(ema(c, 50) - talib.EMA(c, timeperiod=50))[49:60] / c[49:60]) > 1e-6
    assert np.nanmax(np.abs(rsi(c, 14) - talib.RSI(c, timeperiod=14))[14:30]) > 1e-3


def test_atr_and_dmi_hand_computed():
    from genesis_fw.indicators import atr, dmi

    h = np.array([10.0, 12.0, 13.0, 12.5])
    lo = np.array([9.0, 10.0, 11.0, 10.0])
    c = np.array([9.5, 11.5, 12.0, 11.0])
    # TR from bar 1: max(2, 2.5, 0.5) = 2.5; max(2, 1.5, 0.5) = 2; max(2.5, 0.5, 2) = 2.5.
    np.testing.assert_allclose(atr(h, lo, c, 2), [np.nan, np.nan, 2.25, (2.25 + 2.5) / 2], equal_nan=True)
    pdi, mdi, adx = dmi(h, lo, c, 2)
    # +DM: 2, 1, 0; -DM: 0, 0, 1. Sums seeded with bar 1: S+ = 2 - 1 + 1 = 2, STR = 2.5 - 1.25 + 2 = 3.25.
    assert pdi[2] == pytest.approx(100 * 2 / 3.25) and mdi[2] == 0
    # Bar 3: S+ = 2 - 1 + 0 = 1, S- = 0 + 1 = 1, STR = 3.25 - 1.625 + 2.5 = 4.125 -> DX 0; ADX = (100 + 0) / 2.
    assert pdi[3] == pytest.approx(100 / 4.125) and mdi[3] == pytest.approx(100 / 4.125)
    np.testing.assert_allclose(adx, [np.nan, np.nan, np.nan, 50.0], equal_nan=True)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 1e4), st.floats(0, 0.05), st.floats(0, 1)), min_size=5, max_size=150),
       st.integers(2, 20))
def test_atr_dmi_prefix_property(rows, n):
    from genesis_fw.indicators import atr, dmi

    c = np.array([r[0] for r in rows])
    h = c * (1 + np.array([r[1] for r in rows]))
    lo = c * (1 - np.array([r[1] * r[2] for r in rows]))
    k = len(c) // 2
    np.testing.assert_array_equal(atr(h[:k], lo[:k], c[:k], n), atr(h, lo, c, n)[:k])
    for part, full in zip(dmi(h[:k], lo[:k], c[:k], n), dmi(h, lo, c, n), strict=True):
        np.testing.assert_array_equal(part, full[:k])


def test_importing_indicators_does_not_import_numba():
    """A cached `genesis-fw features` run needs the warm-up arithmetic, not the kernels: numba (about a
    third of a second to import) loads on a kernel's first call only."""
    import subprocess
    import sys

    code = ("import sys; from genesis_fw import indicators; assert indicators.ema_warmup(10) == 113; "
            "assert 'numba' not in sys.modules; indicators.ema(__import__('numpy').ones(3), 2); "
            "assert 'numba' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

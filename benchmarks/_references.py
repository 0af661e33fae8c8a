"""The same ema_rsi rules in backtesting.py and vectorbt, lined up with genesis-fw's fill rules.

Shared by the reference test (tests/test_reference_backtesting.py) and bench_backtest.py.
Pitfalls handled here (backtesting.py 0.6.6): exclusive_orders=True and a guard against repeating a
same-side order; no order on the last bar (it would fill at that bar's own open); a final open
trade is closed by ``finalize_trades=True`` at the last bar's open, while genesis-fw closes at the
last close, so callers compare that one exit price separately.
"""

from __future__ import annotations

import numpy as np

from genesis_fw.indicators import ema, rsi


def bars_frame(bars):
    import pandas as pd

    idx = pd.to_datetime(bars.timestamp, unit="ms")  # naive UTC: tz-aware indexes are much slower
    return pd.DataFrame({"Open": bars.open, "High": bars.high, "Low": bars.low, "Close": bars.close,
                         "Volume": bars.volume}, index=idx)


def backtesting_py_trades(bars, fast=12, slow=26, rsi_period=14, rsi_upper=70.0, rsi_lower=30.0,
                          cash=1e12):
    """Run ema_rsi in backtesting.py with zero costs; its trades as
    (entry_bar, exit_bar, side, entry_price, exit_price) and the stats."""
    from backtesting import Backtest, Strategy

    n = len(bars)

    class EmaRsiBT(Strategy):
        def init(self):
            close = np.asarray(self.data.Close, dtype=float)
            self.f = self.I(ema, close, fast, name="fast")
            self.s = self.I(ema, close, slow, name="slow")
            self.r = self.I(rsi, close, rsi_period, name="rsi")

        def next(self):
            i = len(self.data) - 1
            if i < slow or i == n - 1:
                return
            f, s, r = self.f, self.s, self.r
            if f[-1] > s[-1] and f[-2] <= s[-2] and r[-1] < rsi_upper:
                if not self.position.is_long:
                    self.buy(size=0.5)
            elif f[-1] < s[-1] and f[-2] >= s[-2] and r[-1] > rsi_lower:
                if not self.position.is_short:
                    self.sell(size=0.5)

    bt = Backtest(bars_frame(bars), EmaRsiBT, cash=cash, commission=0.0, exclusive_orders=True,
                  finalize_trades=True)
    stats = bt.run()
    t = stats._trades
    rows = list(zip(t.EntryBar.astype(int), t.ExitBar.astype(int), np.sign(t.Size).astype(int),
                    t.EntryPrice.astype(float), t.ExitPrice.astype(float), strict=True))
    return rows, stats

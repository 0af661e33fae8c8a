"""genesis-fw's ema_rsi trades equal backtesting.py's on real data with zero costs (independent reference)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from genesis_fw.backtest.engine import run
from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore

pytest.importorskip("backtesting")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _references import backtesting_py_trades  # noqa: E402


@pytest.mark.parametrize("timeframe,start,end,params", [
    ("1m", "2019-04-01", "2019-04-08", {}),
    ("15m", None, None, {"fast": 8, "slow": 21}),
])
def test_same_trades_as_backtesting_py(timeframe, start, end, params):
    cfg = RuntimeConfig.load(None, {"timeframe": timeframe, "commission": "0", "slippage": "0",
                                    **({"start": start, "end": end} if start else {}),
                                    **{f"strategy.{k}": str(v) for k, v in params.items()}})
    result = run(cfg, CandleStore.sample())
    ours = [(int(t[0]), int(t[1]), int(t[2]), float(t[4]), float(t[5])) for t in result.trades]
    theirs, _ = backtesting_py_trades(result.bars, **params)
    assert len(ours) > 20, "the comparison needs trades to mean anything"
    assert len(ours) == len(theirs)
    # Every trade but the last: identical bars, side and prices.
    for a, b in zip(ours[:-1], theirs[:-1], strict=True):
        assert a[:3] == b[:3]
        assert a[3] == pytest.approx(b[3], rel=1e-12) and a[4] == pytest.approx(b[4], rel=1e-12)
    # The last trade is still open at the end: we close it at the last close, backtesting.py at the last open.
    assert ours[-1][:3] == theirs[-1][:3] and ours[-1][3] == pytest.approx(theirs[-1][3])
    assert ours[-1][4] == result.bars.close[-1]
    assert theirs[-1][4] == pytest.approx(result.bars.open[-1])


def test_fast_and_per_bar_paths_give_identical_results():
    cfg = RuntimeConfig.load(None, {"start": "2019-04-01", "end": "2019-04-15", "slippage": "3"})
    fast = run(cfg, CandleStore.sample(), path="fast")
    slow = run(cfg, CandleStore.sample(), path="per_bar")
    assert fast.path == "fast" and slow.path == "per_bar"
    assert fast.trades.shape[0] > 50
    assert np.array_equal(fast.trades, slow.trades)
    assert np.array_equal(fast.equity, slow.equity)

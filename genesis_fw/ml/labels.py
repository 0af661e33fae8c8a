"""Forward-return labels that match what the backtest can trade, with no lookahead.

Definitions (times are candle open times, ms since the epoch, UTC; ``h`` = ``horizon`` in bars):

* A decision taken at the close of bar ``t`` fills at the **open of the first candle after t**
  (the backtest's fill rule, ``docs/BACKTEST_GUIDE.md``): that open is the **entry price**.
* The **endpoint** of ``t`` is the open time ``t + h x timeframe`` (``1M``: ``h`` calendar months
  later). The **exit price** is the close of the candle at the endpoint.
* ``ret = exit / entry - 1``, a simple return as a fraction (0.01 = 1 %).
* ``price_up = 1`` if ``ret > dead_zone``, ``0`` if ``ret < -dead_zone``, else a **tie**, with
  ``dead_zone = dead_zone_bps / 10_000``. With the default ``dead_zone_bps = 0`` only an exact zero
  return is a tie. Ties are dropped by default; ``keep_ties=True`` labels them 0 ("not up").

A bar ``t`` gets a label only if (in this order of causes, each bar counted under the first that applies):

1. ``end_of_data``: the endpoint lies after the last candle (the last ``h`` bars of time);
2. ``missing_endpoint``: no candle opens at the endpoint (missing minutes are absent rows);
3. ``gap_in_horizon`` (only with ``rule="strict"``): a candle among ``t+1 .. t+h`` is missing;
4. ``tie``: the return is inside the dead zone (unless ``keep_ties``).

``rule="endpoint"`` (default) applies 1, 2 and 4. Dropped bars are never filled. Because the label of ``t``
reads only candles with open time in ``(t, endpoint]``, labels on data cut at time ``T`` equal those on
the full data for every ``t <= T - h x timeframe`` (prefix invariance, ``tests/test_labels.py``).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from ..data.timeframes import check_timeframe, slot_start_ms, timeframe_ms
from ..errors import ConfigError, DataError

#: Existence rules for a label (see the module docstring).
RULES = ("endpoint", "strict")
#: Causes of a dropped label, in the order they are checked.
DROP_CAUSES = ("end_of_data", "missing_endpoint", "gap_in_horizon", "tie")


def check_horizon(horizon: Any) -> int:
    """Return ``horizon`` (bars) if it is a positive integer, else raise :class:`ConfigError`."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon <= 0:
        raise ConfigError(f"invalid horizon {horizon!r}: expected a positive whole number of bars (e.g. 20)")
    return int(horizon)


def add_bars(ts_ms: Any, bars: int, timeframe: str) -> np.ndarray:
    """Open times ``bars`` bars of real time after each ``ts_ms`` (ms, UTC) on ``timeframe``'s grid.

    ``1M`` steps by calendar months (``ts_ms`` must be month starts); other timeframes by ``bars x width``.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    width = timeframe_ms(timeframe)
    if width:
        return ts + np.int64(bars) * width
    months = ts.astype("datetime64[ms]").astype("datetime64[M]")
    return (months + int(bars)).astype("datetime64[ms]").astype(np.int64)


@attrs.frozen(eq=False)
class Labels:
    """Labels of the bars that have one, in time order, and why the others have none.

    ``index`` are row positions in the candles given; ``timestamp_ms`` their open times and ``end_ms``
    the open times of their endpoint candles (ms, UTC): the label's horizon is ``[timestamp_ms, end_ms]``
    in bar open times, what purged splits use. ``ret`` is the forward return (fraction), ``price_up``
    1/0 (int8). ``drops`` maps each of :data:`DROP_CAUSES` to the number of bars dropped for it.
    """

    index: np.ndarray
    timestamp_ms: np.ndarray
    end_ms: np.ndarray
    ret: np.ndarray
    price_up: np.ndarray
    drops: dict[str, int]
    n_bars: int
    timeframe: str
    horizon: int
    rule: str
    dead_zone_bps: float
    keep_ties: bool

    def __len__(self) -> int:
        return int(self.index.size)

    def up_rate(self) -> float:
        """Fraction of labels that are 1 (NaN when there are none)."""
        return float(self.price_up.mean()) if len(self) else math.nan

    def drop_report(self) -> str:
        """One line: bars, labels kept and the drops by cause, each with its percentage of all bars."""
        n = max(self.n_bars, 1)
        parts = [f"{cause} {count} ({100 * count / n:.2f} %)" for cause, count in self.drops.items()]
        return (
            f"{self.n_bars} bars, {len(self)} labelled ({100 * len(self) / n:.2f} %), horizon {self.horizon} "
            f"x {self.timeframe}, rule {self.rule}; dropped: " + ", ".join(parts)
        )


def forward_labels(
    timestamp_ms: Any,
    open_: Any,
    close: Any,
    timeframe: str,
    horizon: int,
    *,
    rule: str = "endpoint",
    dead_zone_bps: float = 0.0,
    keep_ties: bool = False,
) -> Labels:
    """Label candles (open times ``timestamp_ms`` in ms UTC, strictly increasing, on ``timeframe``'s grid).

    See the module docstring for the definitions. ``dead_zone_bps`` is in basis points (>= 0).
    Raises :class:`ConfigError` for a bad horizon, rule or dead zone and :class:`DataError` for
    candles that are unsorted, duplicated, off the grid or have prices that give no finite return.
    """
    check_timeframe(timeframe)
    h = check_horizon(horizon)
    if rule not in RULES:
        raise ConfigError(f"invalid label rule {rule!r}: expected one of {', '.join(RULES)}")
    if isinstance(dead_zone_bps, bool) or not isinstance(dead_zone_bps, int | float | np.number) or not (
        math.isfinite(dead_zone_bps) and dead_zone_bps >= 0
    ):
        raise ConfigError(f"invalid dead zone {dead_zone_bps!r}: expected basis points >= 0 (e.g. 0 or 5)")
    ts = np.ascontiguousarray(timestamp_ms, dtype=np.int64)
    o = np.ascontiguousarray(open_, dtype=np.float64)
    c = np.ascontiguousarray(close, dtype=np.float64)
    if not (ts.ndim == o.ndim == c.ndim == 1 and ts.size == o.size == c.size):
        raise DataError(
            f"labels need 1-D timestamp, open and close of one length, got {ts.shape}, {o.shape}, {c.shape}"
        )
    n = ts.size
    if n > 1 and np.any(np.diff(ts) <= 0):
        first = int(np.argmax(np.diff(ts) <= 0)) + 1
        raise DataError(f"candle open times must be strictly increasing; row {first} is not (duplicate or unsorted)")
    off = slot_start_ms(ts, timeframe) != ts
    if np.any(off):
        raise DataError(
            f"{int(off.sum())} candle open times are off the {timeframe} grid (first at row {int(np.argmax(off))})"
        )

    rows = np.arange(n, dtype=np.int64)
    end = add_bars(ts, h, timeframe)
    j = np.searchsorted(ts, end)  # row of the endpoint candle when it exists
    past_end = end > ts[-1] if n else np.zeros(0, dtype=bool)
    exists = ~past_end & (ts[np.minimum(j, max(n - 1, 0))] == end)
    missing = ~past_end & ~exists
    gap = exists & (j - rows != h) if rule == "strict" else np.zeros(n, dtype=bool)
    ok = exists & ~gap

    idx = rows[ok]
    entry = o[idx + 1]  # the first candle after t: it exists, the endpoint is one
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = c[j[ok]] / entry - 1.0
    bad = ~np.isfinite(ret)
    if np.any(bad):
        row = int(idx[np.argmax(bad)])
        raise DataError(f"no finite forward return at row {row}: entry open {entry[np.argmax(bad)]!r}")
    dz = float(dead_zone_bps) / 1e4
    up = ret > dz
    tie = ~up & ~(ret < -dz)
    keep = np.ones(idx.size, dtype=bool) if keep_ties else ~tie
    drops = {
        "end_of_data": int(past_end.sum()),
        "missing_endpoint": int(missing.sum()),
        "gap_in_horizon": int(gap.sum()),
        "tie": 0 if keep_ties else int(tie.sum()),
    }
    idx = idx[keep]
    return Labels(
        index=idx,
        timestamp_ms=ts[idx],
        end_ms=end[idx],
        ret=ret[keep],
        price_up=up[keep].astype(np.int8),
        drops=drops,
        n_bars=int(n),
        timeframe=timeframe,
        horizon=h,
        rule=rule,
        dead_zone_bps=float(dead_zone_bps),
        keep_ties=bool(keep_ties),
    )


def labels_for_table(table: Any, timeframe: str, horizon: int, **options: Any) -> Labels:
    """:func:`forward_labels` over a candle table (pyarrow, columns ``timestamp``, ``open``, ``close``)."""
    ts = table.column("timestamp").cast("int64").to_numpy()
    return forward_labels(
        ts, table.column("open").to_numpy(), table.column("close").to_numpy(), timeframe, horizon, **options
    )

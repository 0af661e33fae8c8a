"""The position tracker: turns a series of target positions into fills, trades and an equity curve.

This is the engine's hot loop, compiled with numba (cached on disk, so a new process does not pay
the compile). Rules, bar by bar (``i`` = bar index):

1. **Open of bar i**: the target decided at the close of bar ``i - 1`` is executed as a market
   order at ``open[i]``. A target equal to the current side does nothing (no resizing); a
   different one closes the position and, unless it is FLAT, opens the new side (a reversal is two
   fills at the same open). The target of the last bar is never executed.
2. **Inside bar i**: the open position is checked against ``low[i]``/``high[i]``, the adverse side
   first (the conservative rule: of two outcomes the bar's range cannot order, the worse one is
   assumed):

   a. **Liquidation and stop-loss** lie on the adverse side (below a long, above a short). The
      price moving away from the open reaches the nearer of the two first, so that one fills:
      the stop when it lies at or before the liquidation level, else the liquidation. A bar that
      *opens* beyond the liquidation level is liquidated at the open, whatever the stop.
   b. **Take-profit** is checked only when neither of those was hit (when a take-profit and a
      stop or liquidation both lie inside the bar's range, the adverse one is assumed).

   A stop fills at the stop price, or at ``open[i]`` when the bar opened beyond it, with slippage
   (it is a market order). A take-profit fills exactly at its price (a limit order; never better).
   Levels are fractions of the entry fill price.
3. **Close of bar i**: equity is marked at ``close[i]``. (A close at or below the maintenance level
   is liquidated at that close; with consistent candles step 2 has already caught it.)

**Liquidation.** ``maintenance`` is an equity level in the quote currency (default 0: the position
is closed when the account is worth nothing). The liquidation level is the market price ``p`` at
which closing the whole position -- a market order: fill ``p * (1 - slip * side)``, commission on
that fill -- would leave equity exactly equal to ``maintenance``; the closing commission is inside
the level, so it never pushes the equity below ``maintenance``. The adverse extreme of the bar
(``high`` for a short, ``low`` for a long) is compared with that level; when it is reached the
position is closed at the level (equity = ``maintenance``), or at the bar's open when the bar opened
beyond it (a gap: fill and commission as for any market order at the open, so equity ends below
``maintenance``, and below 0 if the open lies beyond the price where equity is 0 -- the simulator
does not assume anyone absorbs that loss). The trade's exit reason is ``liquidation``. After a
liquidation the account is flat for the rest of the run: no later target is executed. An
unleveraged long (``size <= 1``) cannot be liquidated at ``maintenance = 0`` (its level is <= 0).

At the end an open position is closed at the last close (costs included) and counted as a trade.

Costs: slippage ``slip`` (a fraction: 5 bps = 0.0005) moves every market fill against the trader;
commission ``commission`` (a fraction of traded notional) is paid on each fill. Sizing: a new
position commits ``size`` x equity (at that open, after closing the old one) to notional plus
entry commission, so ``size = 1`` is fully invested without borrowing for the fee. No position is
opened while equity is at or below ``maintenance``.

Exit reasons: see :data:`EXIT_REASONS`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Codes of ``Trades.reason`` (why a trade was closed).
EXIT_REASONS = ("signal", "reverse", "stop_loss", "take_profit", "end", "liquidation")
_SIGNAL, _REVERSE, _STOP, _TAKE, _END, _LIQUIDATION = range(6)


@njit(cache=True, nogil=True)
def _close(qty, side, price, slip, commission, cash):
    fill = price * (1.0 - slip * side)
    fee = commission * abs(qty) * fill
    return cash + qty * fill - fee, fill, fee


@njit(cache=True, nogil=True)
def _book(trades, nt, entry_bar, exit_bar, side, qty, entry_fill, exit_fill, entry_fee, exit_fee, reason):
    """Write trade row ``nt``; return the next row index."""
    trades[nt, 0] = entry_bar
    trades[nt, 1] = exit_bar
    trades[nt, 2] = side
    trades[nt, 3] = qty
    trades[nt, 4] = entry_fill
    trades[nt, 5] = exit_fill
    trades[nt, 6] = qty * (exit_fill - entry_fill) - entry_fee - exit_fee
    trades[nt, 7] = entry_fee + exit_fee
    trades[nt, 8] = reason
    return nt + 1


@njit(cache=True, nogil=True)
def track(open_, high, low, close, targets, initial_cash, commission, slip, size, stop_loss, take_profit,
          maintenance=0.0):
    """Simulate the targets; see the module docstring. ``stop_loss``/``take_profit`` <= 0 means off;
    ``maintenance`` is the equity (quote currency) at which a position is liquidated, default 0.

    Returns ``(equity, position, trades)``: equity (quote currency) and position (signed base units)
    at each close, and a float64 array of trades, one row each:
    ``entry_bar, exit_bar, side, qty, entry_price, exit_price, pnl, commission, reason``.
    """
    n = close.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    trades = np.empty((n + 1, 9))
    nt = 0
    cash = initial_cash
    qty = 0.0
    side = 0
    entry_fill = 0.0
    entry_fee = 0.0
    entry_bar = -1
    liq = 0.0
    halted = False
    for i in range(n):
        o = open_[i]
        if i > 0 and not halted:
            tgt = targets[i - 1]
            if not np.isnan(tgt):
                d = 0
                if tgt > 0:
                    d = 1
                elif tgt < 0:
                    d = -1
                if d != side:
                    if side != 0:
                        cash, fill, fee = _close(qty, side, o, slip, commission, cash)
                        nt = _book(trades, nt, entry_bar, i, side, qty, entry_fill, fill, entry_fee, fee,
                                   _REVERSE if d != 0 else _SIGNAL)
                        qty = 0.0
                        side = 0
                    if d != 0 and cash > maintenance:
                        fill = o * (1.0 + slip * d)
                        units = size * cash / (fill * (1.0 + commission))
                        entry_fee = commission * units * fill
                        qty = d * units
                        cash -= qty * fill + entry_fee
                        side = d
                        entry_fill = fill
                        entry_bar = i
                        # Market price at which closing everything leaves equity == maintenance (costs
                        # included); cash and qty stay fixed while the position is open.
                        liq = (maintenance - cash) / (qty * (1.0 - commission * side) * (1.0 - slip * side))
        if side != 0 and (stop_loss > 0 or take_profit > 0 or (
                min(o, low[i]) <= liq if side > 0 else max(o, high[i]) >= liq)):
            exit_price = 0.0
            reason = -1
            at_level = False
            if side > 0:
                stop = entry_fill * (1.0 - stop_loss)
                take = entry_fill * (1.0 + take_profit)
                if o <= liq:
                    exit_price = o * (1.0 - slip)
                    reason = _LIQUIDATION
                elif stop_loss > 0 and low[i] <= stop and stop >= liq:
                    exit_price = min(o, stop) * (1.0 - slip)
                    reason = _STOP
                elif low[i] <= liq:
                    exit_price = liq * (1.0 - slip)
                    reason = _LIQUIDATION
                    at_level = True
                elif take_profit > 0 and high[i] >= take:
                    exit_price = take
                    reason = _TAKE
            else:
                stop = entry_fill * (1.0 + stop_loss)
                take = entry_fill * (1.0 - take_profit)
                if o >= liq:
                    exit_price = o * (1.0 + slip)
                    reason = _LIQUIDATION
                elif stop_loss > 0 and high[i] >= stop and stop <= liq:
                    exit_price = max(o, stop) * (1.0 + slip)
                    reason = _STOP
                elif high[i] >= liq:
                    exit_price = liq * (1.0 + slip)
                    reason = _LIQUIDATION
                    at_level = True
                elif take_profit > 0 and low[i] <= take:
                    exit_price = take
                    reason = _TAKE
            if reason >= 0:
                fee = commission * abs(qty) * exit_price
                cash += qty * exit_price - fee
                if at_level:
                    cash = maintenance  # exactly the level (the line above differs only by rounding)
                nt = _book(trades, nt, entry_bar, i, side, qty, entry_fill, exit_price, entry_fee, fee, reason)
                qty = 0.0
                side = 0
                if reason == _LIQUIDATION:
                    halted = True
        eq = cash + qty * close[i]
        last = i == n - 1
        if side != 0 and (eq <= maintenance or last):
            cash, fill, fee = _close(qty, side, close[i], slip, commission, cash)
            nt = _book(trades, nt, entry_bar, i, side, qty, entry_fill, fill, entry_fee, fee,
                       _END if last and eq > maintenance else _LIQUIDATION)
            qty = 0.0
            side = 0
            eq = cash
        if eq <= maintenance:
            halted = True
        equity[i] = eq
        position[i] = qty
    return equity, position, trades[:nt].copy()

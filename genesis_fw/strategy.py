"""The strategy contract: what a strategy plugin implements and what the backtest engine gives it.

A strategy is a subclass of :class:`Strategy` with

* ``Params`` -- a frozen attrs class of its parameters (types and defaults; ``genesis-fw plugins``
  lists them and ``strategy.<name>=value`` overrides them);
* ``init(bars)`` -- compute causal indicators once, vectorised over the whole series, and keep them
  on ``self``. An indicator at bar ``t`` may use bars ``0..t`` only;
* ``next(i)`` -- the decision at the close of bar ``i``: return a target position (:data:`LONG`,
  :data:`SHORT`, :data:`FLAT`) or ``None`` to keep the current one. ``next`` may read indicators and
  bars at indices ``<= i`` and carry its own state on ``self`` between bars;
* optionally ``targets(bars)`` -- the same decisions for every bar at once, as a float array with
  NaN for "keep". The engine uses it as the fast path; :func:`genesis_fw.testing.check_strategy`
  proves it agrees with ``next``;
* optionally ``history_bars()`` -- how many bars before the run's ``start`` the strategy needs to be
  ready on its first traded bar (its warm-up; default 0). When the run has a ``start``, the engine
  loads up to that many earlier candles and gives ``init``/``targets``/``next`` the history followed by
  the period (index 0 is the oldest history bar); it trades, measures and reports only from the first
  bar at or after ``start``, starting flat there. Fewer bars than asked (the data begins later) are a
  note, not an error. Without a ``start`` there is nothing before the range: no history;
* optionally ``bind(symbol, timeframe)`` -- called by the engine before ``history_bars`` and ``init``
  with the run's symbol and timeframe (``Bars`` do not carry them). A strategy that only suits some
  data (e.g. a model trained on one symbol and timeframe) raises a
  :class:`~genesis_fw.errors.GenesisError` here. Default: nothing;
* optionally ``periods()`` -- named date ranges the strategy knows, e.g. the train / validation / test
  parts of its model, as ``{name: (start, end)}`` (UTC ISO times, end exclusive); ``genesis-fw
  backtest --period NAME`` runs over one of them. Default: none.

A strategy sees data, never the engine: fills, costs and positions are the engine's business. A
decision taken at the close of bar ``i`` is filled at the open of bar ``i + 1``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np

#: Target position values (multiplied by the configured ``size``, a fraction of equity).
LONG = 1.0
SHORT = -1.0
FLAT = 0.0


@attrs.frozen
class Bars:
    """Candles as numpy arrays of equal length, in time order.

    ``timestamp`` is int64 milliseconds since the epoch (UTC, the candle's open time); prices and
    volume are float64 in the quote / base currency.
    """

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    @classmethod
    def from_table(cls, table: Any) -> Bars:
        """From a ``pyarrow.Table`` with the store's candle schema."""
        import pyarrow as pa

        from ._util import arrow_to_numpy

        ts = arrow_to_numpy(table.column("timestamp").cast(pa.int64()), "int64")
        cols = {n: np.ascontiguousarray(arrow_to_numpy(table.column(n), "float64"), dtype=np.float64)
                for n in ("open", "high", "low", "close", "volume")}
        return cls(timestamp=np.ascontiguousarray(ts, dtype=np.int64), **cols)

    def head(self, n: int) -> Bars:
        """The first ``n`` bars (used to prove a strategy does not look ahead)."""
        return Bars(*(getattr(self, f.name)[:n] for f in attrs.fields(Bars)))

    def tail(self, start: int) -> Bars:
        """The bars from index ``start`` on (the traded period after ``start`` history bars)."""
        return Bars(*(getattr(self, f.name)[start:] for f in attrs.fields(Bars)))


@attrs.frozen
class NoParams:
    """A strategy or model without parameters."""


class Strategy:
    """Base class of strategy plugins; see the module docstring for the contract."""

    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()

    def init(self, bars: Bars) -> None:
        """Precompute causal indicators over ``bars``. Default: nothing."""

    def next(self, i: int) -> float | None:
        """Target position decided at the close of bar ``i``, or ``None`` to keep the current one."""
        raise NotImplementedError(f"{type(self).__name__} must implement next(i)")

    def targets(self, bars: Bars) -> np.ndarray:
        """Optional fast path: the decision of every bar at once (NaN = keep). Called after ``init``."""
        raise NotImplementedError

    def history_bars(self) -> int:
        """Bars needed before the run's ``start`` (a whole number >= 0). Default: 0, none."""
        return 0

    def bind(self, symbol: str, timeframe: str) -> None:
        """The run's symbol and timeframe, given before ``history_bars`` and ``init``. Default: ignored."""

    def periods(self) -> dict[str, tuple[str, str]]:
        """Named ``(start, end)`` ranges (UTC ISO, end exclusive) for ``backtest --period``. Default: none."""
        return {}

    @classmethod
    def has_fast_path(cls) -> bool:
        """True when the class overrides :meth:`targets`."""
        return cls.targets is not Strategy.targets

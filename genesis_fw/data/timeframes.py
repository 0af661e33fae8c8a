"""Symbols, timeframes, their time grids and UTC time parsing shared by every stage.

Times inside the framework are UTC. Durations are in milliseconds (``*_ms``).

The grid of a timeframe is the set of open times its candles may have (``data/DATA_FORMAT.md``):

* whole weeks (``1W``, ``14D``): every width from Monday 1970-01-05 00:00 UTC, the first Monday after
  the epoch, so weeks open on Mondays 00:00 UTC (ISO weeks, as traders and chart sites count them);
* ``1M``: calendar months, 00:00 UTC on the 1st;
* every other width (``1m`` .. ``1D``): multiples of the width since the epoch, 1970-01-01 00:00 UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import DataError

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: Open time of the week grid: 1970-01-05 00:00 UTC, the first Monday after the epoch (ms).
WEEK_ORIGIN_MS = 4 * DAY_MS

#: Known timeframes and their bucket width in ms. ``1M`` is a calendar month (width 0 = irregular).
TIMEFRAMES: dict[str, int] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "3h": 3 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1D": DAY_MS,
    "1W": 7 * DAY_MS,
    "14D": 14 * DAY_MS,
    "1M": 0,
}

_SYMBOL_RE = re.compile(r"t[A-Z0-9]+(:[A-Z0-9]+)?")


def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is a Bitfinex trading symbol (``tBTCUSD``, ``tTESTBTC:TESTUSD``).

    Anything else (``BTC USD``, ``../../etc``) raises :class:`DataError`; a symbol is never used as a
    path before passing this check.
    """
    if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
        raise DataError(
            f"invalid symbol {symbol!r}: expected a Bitfinex trading symbol like 'tBTCUSD' "
            "('t' followed by upper-case letters and digits)"
        )
    return symbol


def check_timeframe(timeframe: str) -> str:
    """Return ``timeframe`` if it is one of :data:`TIMEFRAMES`, else raise :class:`DataError`."""
    if timeframe not in TIMEFRAMES:
        from .._util import did_you_mean

        same_letters = [t for t in TIMEFRAMES if t.lower() == str(timeframe).lower()]  # 1H -> 1h, 1d -> 1D
        hint = f" (did you mean {same_letters[0]!r}?)" if same_letters else did_you_mean(str(timeframe), TIMEFRAMES)
        raise DataError(
            f"unknown timeframe {timeframe!r}{hint}; "
            f"known: {' '.join(TIMEFRAMES)}"
        )
    return timeframe


def timeframe_ms(timeframe: str) -> int:
    """Bucket width of ``timeframe`` in ms; 0 for the calendar month ``1M``."""
    return TIMEFRAMES[check_timeframe(timeframe)]


def is_finer(fine: str, coarse: str) -> bool:
    """True when candles of ``fine`` can be aggregated into ``coarse`` buckets."""
    f, c = timeframe_ms(fine), timeframe_ms(coarse)
    if c == 0:  # calendar months are whole days
        return f != 0 and DAY_MS % f == 0
    return f != 0 and f < c and c % f == 0


def grid_origin_ms(timeframe: str) -> int:
    """Open time (ms since the epoch, UTC) of one slot of ``timeframe``'s grid; the others open whole widths
    from it. :data:`WEEK_ORIGIN_MS` (a Monday) for whole weeks, else 0 (the epoch; also for ``1M``)."""
    width = timeframe_ms(timeframe)
    return WEEK_ORIGIN_MS if width and width % WEEK_MS == 0 else 0


def grid_rule(timeframe: str) -> str:
    """The grid of ``timeframe`` in words, for messages: ``Mondays 00:00 UTC`` for ``1W``."""
    width = timeframe_ms(timeframe)
    if width == 0:
        return "the 1st of each month, 00:00 UTC"
    if width == WEEK_MS:
        return "Mondays 00:00 UTC"
    if width % WEEK_MS == 0:
        return f"every {width // DAY_MS} days from Monday 1970-01-05 00:00 UTC"
    return f"multiples of {timeframe} since 1970-01-01 00:00 UTC"


def slot_start_ms(ts_ms: Any, timeframe: str) -> Any:
    """Open time of the ``timeframe`` grid slot holding each ``ts_ms`` (ms since the epoch, UTC).

    ``ts_ms`` is an int or a numpy int64 array; the result has the same kind. A timestamp is on the grid
    exactly when it equals its slot start.
    """
    width = timeframe_ms(timeframe)
    if width:
        return ts_ms - (ts_ms - grid_origin_ms(timeframe)) % width  # floor modulo: right before 1970 too
    import numpy as np

    months = np.asarray(ts_ms, dtype=np.int64).astype("datetime64[ms]").astype("datetime64[M]")
    starts = months.astype("datetime64[ms]").astype(np.int64)
    return starts if isinstance(ts_ms, np.ndarray) else int(starts)


def parse_time(value: str | datetime | None, *, what: str = "time") -> datetime | None:
    """Parse a date or ISO time as UTC (``2024-04-01``, ``2024-04-01T12:00``, ``...Z``).

    A naive value is taken as UTC; an aware one is converted to UTC. ``None`` stays ``None``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise DataError(
                f"invalid {what} {value!r}: expected a UTC date or ISO time like 2024-04-01 or "
                "2024-04-01T12:00"
            ) from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (a naive one is taken as UTC), floored."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of ``ms`` milliseconds since the epoch."""
    return _EPOCH + timedelta(milliseconds=int(ms))

"""Symbols, timeframes and UTC time parsing shared by every stage.

Times inside the framework are UTC. Durations are in milliseconds (``*_ms``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ..errors import DataError

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

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

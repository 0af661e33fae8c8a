"""Symbols, timeframes and UTC time parsing (genesis_fw/data/timeframes.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genesis_fw.data.store import CandleStore
from genesis_fw.data.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    TIMEFRAMES,
    check_symbol,
    check_timeframe,
    from_ms,
    grid_origin_ms,
    grid_rule,
    is_finer,
    parse_time,
    slot_start_ms,
    timeframe_ms,
    to_ms,
)
from genesis_fw.errors import DataError

# --- symbols -------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["tBTCUSD", "tETHUSD", "tTESTBTC:TESTUSD", "tBTCF0:USTF0", "t1INCH2"])
def test_valid_symbols_are_returned_unchanged(symbol):
    assert check_symbol(symbol) == symbol


@pytest.mark.parametrize(
    "symbol",
    [
        "../../etc",
        "../../etc/passwd",
        "tBTC/../USD",
        "BTC USD",
        "tBTC USD",
        "tbtcusd",
        "tBTCusd",
        "BTCUSD",  # no leading 't'
        "fUSD",  # funding symbol, not a trading one
        "",
        "t",
        "tBTCUSD\n",
        " tBTCUSD",
        "tBTC:",
        "tBTC:USD:EUR",
        "tBTC_USD",
        "tBTCUSD.parquet",
        None,
        123,
    ],
)
def test_invalid_symbols_raise_data_error(symbol):
    with pytest.raises(DataError, match="invalid symbol"):
        check_symbol(symbol)


@pytest.mark.parametrize("symbol", ["../../etc", "BTC USD", "tbtcusd", "", "../candles/tBTCUSD"])
def test_invalid_symbol_never_becomes_a_path(tmp_path, symbol):
    store = CandleStore(tmp_path / "store")
    with pytest.raises(DataError, match="invalid symbol"):
        store.path(symbol, "1m")
    with pytest.raises(DataError):
        store.has(symbol, "1m")
    with pytest.raises(DataError):
        store.find(symbol, "1m")
    # nothing was created anywhere while refusing
    assert not (tmp_path / "store").exists()


# --- timeframes ----------------------------------------------------------------------------------


def test_timeframe_widths():
    assert timeframe_ms("1m") == 60_000
    assert timeframe_ms("5m") == 5 * 60_000
    assert timeframe_ms("1h") == 3_600_000
    assert timeframe_ms("3h") == 3 * 3_600_000
    assert timeframe_ms("1D") == 86_400_000
    assert timeframe_ms("1W") == 7 * 86_400_000
    assert timeframe_ms("14D") == 14 * 86_400_000
    assert timeframe_ms("1M") == 0
    assert (MINUTE_MS, HOUR_MS, DAY_MS) == (60_000, 3_600_000, 86_400_000)


@pytest.mark.parametrize("tf", list(TIMEFRAMES))
def test_every_known_timeframe_is_accepted(tf):
    assert check_timeframe(tf) == tf


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [("1H", "1h"), ("5min", "5m"), ("1d", "1D"), ("15", "15m"), ("4hh", "4h"), ("1mo", "1m")],
)
def test_unknown_timeframe_suggests_close_match(bad, suggestion):
    with pytest.raises(DataError) as exc:
        check_timeframe(bad)
    msg = str(exc.value)
    assert f"unknown timeframe {bad!r}" in msg
    assert f"did you mean {suggestion!r}?" in msg
    assert "known: 1m 5m 15m" in msg


@pytest.mark.parametrize("bad", ["", "weekly", "xyz", "../1m"])
def test_unknown_timeframe_without_close_match(bad):
    with pytest.raises(DataError) as exc:
        check_timeframe(bad)
    assert "did you mean" not in str(exc.value)
    assert "known:" in str(exc.value)


def test_timeframe_ms_validates():
    with pytest.raises(DataError, match="unknown timeframe"):
        timeframe_ms("2m")


def test_store_path_rejects_bad_timeframe(tmp_path):
    with pytest.raises(DataError, match="unknown timeframe '1H'.*did you mean '1h'"):
        CandleStore(tmp_path).path("tBTCUSD", "1H")


@pytest.mark.parametrize(
    ("fine", "coarse", "expected"),
    [
        ("1m", "5m", True),
        ("1m", "1h", True),
        ("5m", "15m", True),
        ("15m", "1h", True),
        ("1h", "3h", True),
        ("1h", "1D", True),
        ("4h", "1D", True),
        ("1D", "1W", True),
        ("1W", "14D", True),
        ("1m", "1M", True),
        ("1h", "1M", True),
        ("12h", "1M", True),
        ("1D", "1M", True),
        # not finer
        ("1m", "1m", False),
        ("5m", "1m", False),
        ("1h", "1h", False),
        ("1D", "1h", False),
        # not a divisor
        ("3h", "4h", False),
        ("4h", "6h", False),
        ("30m", "15m", False),
        # weeks never tile calendar months, months are not finer than anything
        ("1W", "1M", False),
        ("14D", "1M", False),
        ("1M", "1M", False),
        ("1M", "1W", False),
    ],
)
def test_is_finer(fine, coarse, expected):
    assert is_finer(fine, coarse) is expected


def test_is_finer_validates_names():
    with pytest.raises(DataError):
        is_finer("1x", "1h")


# --- parse_time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-04-01", datetime(2024, 4, 1, tzinfo=UTC)),
        ("2024-04-01T12:00", datetime(2024, 4, 1, 12, 0, tzinfo=UTC)),
        ("2024-04-01T12:00:30", datetime(2024, 4, 1, 12, 0, 30, tzinfo=UTC)),
        ("2024-04-01 12:00", datetime(2024, 4, 1, 12, 0, tzinfo=UTC)),
        ("2024-04-01T12:00Z", datetime(2024, 4, 1, 12, 0, tzinfo=UTC)),
        ("2024-04-01T12:00:00.250Z", datetime(2024, 4, 1, 12, 0, 0, 250_000, tzinfo=UTC)),
        ("2024-04-01T12:00+00:00", datetime(2024, 4, 1, 12, 0, tzinfo=UTC)),
        ("2024-04-01T12:00+02:00", datetime(2024, 4, 1, 10, 0, tzinfo=UTC)),
        ("2024-04-01T01:30-05:30", datetime(2024, 4, 1, 7, 0, tzinfo=UTC)),
        ("2024-04-01T01:00+03:00", datetime(2024, 3, 31, 22, 0, tzinfo=UTC)),  # crosses a month back
        ("  2024-04-01  ", datetime(2024, 4, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_text(text, expected):
    got = parse_time(text)
    assert got == expected
    # the result is expressed in UTC, not merely equal as an instant
    assert got.utcoffset() == timedelta(0)
    assert (got.year, got.month, got.day, got.hour, got.minute) == (
        expected.year, expected.month, expected.day, expected.hour, expected.minute,
    )


@pytest.mark.usefixtures("local_zone_new_york")
def test_naive_times_are_utc_whatever_the_local_zone():
    assert time.localtime(0).tm_hour == 19  # the zone change is in effect
    assert parse_time("2019-04-01T12:00") == datetime(2019, 4, 1, 12, 0, tzinfo=UTC)
    assert parse_time(datetime(2019, 4, 1, 12, 0)) == datetime(2019, 4, 1, 12, 0, tzinfo=UTC)
    assert to_ms(datetime(2019, 4, 1)) == 1_554_076_800_000
    assert from_ms(1_554_076_800_000).hour == 0


def test_parse_time_naive_datetime_is_utc():
    got = parse_time(datetime(2019, 4, 1, 12, 0))
    assert got == datetime(2019, 4, 1, 12, 0, tzinfo=UTC)
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_parse_time_aware_datetime_is_converted_to_utc():
    tokyo = timezone(timedelta(hours=9))
    got = parse_time(datetime(2019, 4, 1, 3, 0, tzinfo=tokyo))
    assert got.utcoffset() == timedelta(0)
    assert (got.day, got.hour) == (31, 18)
    assert got == datetime(2019, 3, 31, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, ""])
def test_parse_time_empty_is_none(value):
    assert parse_time(value) is None


@pytest.mark.parametrize(
    "garbage", ["abc", "2024-13-01", "2024-02-30", "yesterday", "2024/04/01", "01.04.2024", "2024-04-01T25:00", "Z"]
)
def test_parse_time_garbage_raises_data_error(garbage):
    with pytest.raises(DataError, match=r"invalid start .*expected a UTC date or ISO time"):
        parse_time(garbage, what="start")


# --- grids ---------------------------------------------------------------------------------------


def test_week_grids_open_on_mondays_and_the_rest_on_the_epoch():
    assert from_ms(grid_origin_ms("1W")) == from_ms(grid_origin_ms("14D")) == datetime(1970, 1, 5, tzinfo=UTC)
    assert from_ms(grid_origin_ms("1W")).weekday() == 0  # Monday
    assert {grid_origin_ms(tf) for tf in TIMEFRAMES if tf not in ("1W", "14D")} == {0}
    assert grid_rule("1W") == "Mondays 00:00 UTC"
    assert grid_rule("14D") == "every 14 days from Monday 1970-01-05 00:00 UTC"
    assert grid_rule("1M") == "the 1st of each month, 00:00 UTC"
    assert grid_rule("4h") == "multiples of 4h since 1970-01-01 00:00 UTC"


@given(st.integers(min_value=-10**12, max_value=10**13), st.sampled_from(list(TIMEFRAMES)))
def test_slot_start_is_the_grid_time_at_or_before(ms, tf):
    """The slot start is on the grid (Mondays for weeks, the 1st for months), at or before ``ms`` and less
    than one slot before it; a numpy array gives the same answers as single ints."""
    import numpy as np

    start = slot_start_ms(ms, tf)
    assert isinstance(start, int) and start <= ms
    dt, at = from_ms(start), from_ms(ms)
    width = timeframe_ms(tf)
    if width == 0:
        assert (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond) == \
            (at.year, at.month, 1, 0, 0, 0, 0)
    else:
        assert ms - start < width and (start - (4 * DAY_MS if tf in ("1W", "14D") else 0)) % width == 0
        if tf in ("1W", "14D"):
            assert dt.weekday() == 0 and dt.time() == datetime.min.time()
    assert slot_start_ms(np.array([ms, start], dtype=np.int64), tf).tolist() == [start, start]


# --- to_ms / from_ms -----------------------------------------------------------------------------


def test_to_ms_and_from_ms_known_values():
    assert to_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_ms(datetime(2019, 4, 1, tzinfo=UTC)) == 1_554_076_800_000
    assert to_ms(datetime(2019, 4, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))) == 1_554_076_800_000
    assert from_ms(1_554_076_800_000) == datetime(2019, 4, 1, tzinfo=UTC)
    assert from_ms(1_554_076_800_000).utcoffset() == timedelta(0)
    # 2038-04-25T12:27:24.548Z: float arithmetic (timestamp() * 1000) used to give ...547 here
    assert to_ms(datetime(2038, 4, 25, 12, 27, 24, 548_000, tzinfo=UTC)) == 2_155_811_244_548


@given(st.integers(min_value=0, max_value=10**13 - 1))
def test_to_ms_from_ms_round_trip_is_exact(ms):
    dt = from_ms(ms)
    assert dt == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert to_ms(dt) == ms

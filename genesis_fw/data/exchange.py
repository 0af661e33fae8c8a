"""Bitfinex public REST v2 candles: a rate-limited, retrying client that returns only valid pages.

One request is ``GET {base_url}/v2/candles/trade:{TF}:{SYMBOL}/hist?limit=..&sort=1&start=..&end=..``
(``start``/``end`` in ms, both inclusive on the wire). Each wire row is ``[MTS, OPEN, CLOSE, HIGH, LOW,
VOLUME]`` -- CLOSE comes before HIGH -- and :meth:`BitfinexClient.page` returns it conformed to
:data:`genesis_fw.data.store.SCHEMA`.

Failures are sorted by one table, :data:`CLASSIFICATION` (documented in ``docs/DATA_PIPELINE.md``):

* retryable (:class:`~genesis_fw.errors.TemporaryExchangeError`, retried with exponential backoff plus
  jitter, honouring ``Retry-After``): server trouble and rate limits -- HTTP 429 and 5xx, the error
  codes 10000 (ERR_UNK), 11000 (ERR_READY, "not ready"), 11010 (ERR_RATE_LIMIT) and 20060
  (maintenance) whatever the HTTP status, timeouts, connection errors and resets, and any 2xx answer
  that is not a valid page (not JSON, not a list of 6-number rows, rows unsorted or duplicated,
  outside the requested range, more rows than ``limit``, or a candle the store refuses: NaN/inf, a
  price <= 0, negative volume, high below low -- :meth:`~genesis_fw.data.store.CandleProblems.refusal`);
* final (:class:`RequestRefused`, an ExchangeError, raised at once): errors about the request --
  10020 (ERR_PARAMS: symbol, timeframe or limit invalid), 10001 (ERR_GENERIC, e.g. "symbol: invalid"),
  other 4xx, and redirects.

Bitfinex answers most errors with HTTP 500 and a ``["error", code, message]`` body, so a listed error
code decides before the HTTP status; a code the table does not list is judged by the status. When the
attempts are used up the last failure is raised as a plain ExchangeError with a one-line message saying
how many attempts were made over how many seconds (:class:`BadCandles` when the last answer held a
candle the store refuses, naming its open time and the rule). A page is returned only when it is completely valid;
nothing partial leaks out.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import attrs
import httpx
import numpy as np
import pyarrow as pa

from ..errors import DataError, ExchangeError, TemporaryExchangeError
from .ratelimit import RateLimiter
from .store import SCHEMA, candle_problems, conform
from .timeframes import check_symbol, from_ms

#: Timeframes the exchange serves itself (``4h`` is not one of them: resample it from ``1h``).
NATIVE_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1D", "1W", "14D", "1M")
#: Most rows the exchange returns in one response.
PAGE_LIMIT = 10_000
#: Bitfinex error code of "ratelimit: error".
RATE_LIMIT_CODE = 11010
#: Jitter added on top of the exponential delay, as a fraction of it (0.25 = up to +25 %).
JITTER = 0.25

#: How a failed answer is sorted: key -> (retryable, why). Looked up in order: the error code of a
#: ``["error", code, message]`` body (``"error 10020"``), then the exact HTTP status (``"HTTP 429"``),
#: then its class (``"HTTP 5xx"``), then the transport failure. Codes from the Bitfinex API v2 docs'
#: list of error codes; Bitfinex sends most of them with HTTP 500, so the code decides, not the status.
CLASSIFICATION: dict[str, tuple[bool, str]] = {
    "error 10000": (True, "ERR_UNK: unknown error on the exchange's side"),
    "error 11000": (True, "ERR_READY: the exchange is not ready, try again later"),
    "error 11010": (True, "ERR_RATE_LIMIT: too many requests"),
    "error 20060": (True, "the exchange is in maintenance"),
    "error 10020": (False, "ERR_PARAMS: a parameter of the request is invalid, e.g. symbol, timeframe or limit"),
    "error 10001": (False, "ERR_GENERIC: the exchange rejects the request, e.g. 'symbol: invalid'"),
    "HTTP 429": (True, "too many requests"),
    "HTTP 5xx": (True, "server trouble"),  # also an error body whose code is not listed above
    "HTTP 4xx": (False, "the request is wrong"),  # ditto
    "HTTP 3xx": (False, "a redirect: not followed, the base URL is wrong"),
    "HTTP 2xx": (True, "not a valid page"),  # not JSON, malformed or out-of-range rows, an unlisted error code
    "timeout": (True, "no answer within the timeout"),
    "connection error": (True, "refused, reset or closed before the whole answer arrived"),
}


def classify(status: int | None, code: int | None = None) -> tuple[str, bool, str]:
    """``(key, retryable, why)`` of :data:`CLASSIFICATION` for an answer with HTTP ``status`` and error
    ``code`` (``None``: no error body); ``status=None`` is a connection error."""
    if code is not None and f"error {code}" in CLASSIFICATION:
        key = f"error {code}"
    elif status is None:
        key = "connection error"
    elif f"HTTP {status}" in CLASSIFICATION:
        key = f"HTTP {status}"
    else:
        key = f"HTTP {min(max(status // 100, 2), 5)}xx"
    retry, why = CLASSIFICATION[key]
    return key, retry, why

_DEFAULT_URL = "https://api-pub.bitfinex.com"


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a temporary failure is retried.

    Attempt ``n`` (1-based) that fails waits ``min(max_delay_s, base_delay_s * 2**(n-1) * (1 + JITTER*u))``
    with ``u`` uniform in [0, 1), or the server's ``Retry-After`` when that is longer.
    """

    max_attempts: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    base_delay_s: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    max_delay_s: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Backoff after failed attempt ``attempt`` (1-based), jitter included."""
        exp = self.base_delay_s * 2.0 ** min(attempt - 1, 62)
        return min(self.max_delay_s, exp * (1.0 + JITTER * rng.random()))


class _Failure(TemporaryExchangeError):
    """A temporary failure of one attempt, with what the retry loop needs to report it."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class _BadCandles(_Failure):
    """A page holding a candle the store refuses (:meth:`~genesis_fw.data.store.CandleProblems.refusal`)."""


class BadCandles(ExchangeError):
    """The exchange kept sending a candle the store refuses (NaN/inf, price <= 0, negative volume, high below
    low) for the same request until the attempts ran out. The message names the candle's open time and the
    rule; a range that excludes the candle can still be fetched."""


class RequestRefused(ExchangeError):
    """The exchange refused the request itself (a final verdict of :data:`CLASSIFICATION`): retrying,
    now or later, gets the same answer."""


class _Permanent(ExchangeError):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BitfinexClient:
    """Candles from the Bitfinex public REST v2 API (or a server speaking the same wire format).

    Every request -- retries included -- holds a slot of the :class:`~genesis_fw.data.ratelimit.RateLimiter`
    from before it is sent until its attempt ends (``rate_limit`` requests per rolling minute with the
    default safety margin, in memory; or the given ``limiter``, e.g. one shared by every process
    fetching into a store). ``sleep``/``clock``/``rng`` are injectable
    so backoff can be tested with a fake clock. ``on_event`` receives a dict for every retry and failure::

        {"event": "retry" | "failed", "reason": str, "attempt": n, "delay_s": float | None,
         "url": "/v2/candles/...?limit=..", "status": int | None}
    """

    def __init__(self, base_url: str = _DEFAULT_URL, *, rate_limit: int = 10, retry: RetryPolicy = RetryPolicy(),
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[dict], None] | None = None, rng: random.Random | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.limiter = limiter if limiter is not None else RateLimiter(rate_limit, clock=clock, sleep=sleep)
        self._sleep = sleep
        self._clock = clock
        self._on_event = on_event
        self._rng = rng if rng is not None else random.Random()
        self._http = httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                  headers={"accept": "application/json", "user-agent": "genesis-fw"})

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BitfinexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------------------
    def page(self, symbol: str, timeframe: str, start_ms: int, end_ms: int, limit: int = PAGE_LIMIT) -> pa.Table:
        """The first ``limit`` candles with open time in ``[start_ms, end_ms)`` (``end_ms`` exclusive).

        Fewer than ``limit`` rows does not mean the range is exhausted (a server may send a short
        page); page on from the last timestamp + 1 until a page is empty (see :meth:`iter_pages`).
        """
        self._check(symbol, timeframe, limit)
        start_ms, end_ms = int(start_ms), int(end_ms)
        if start_ms >= end_ms:
            return SCHEMA.empty_table()
        path = f"/v2/candles/trade:{timeframe}:{symbol}/hist"
        query = f"limit={limit}&sort=1&start={start_ms}&end={end_ms - 1}"
        return self._request(path, query, lambda body: _parse_page(body, start_ms, end_ms, limit))

    def iter_pages(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                   limit: int = PAGE_LIMIT) -> Iterator[pa.Table]:
        """Pages of candles covering ``[start_ms, end_ms)`` in order; stops at ``end_ms`` or an empty page.

        A short page is not taken as the end (it may be a truncated answer): paging goes on from its last
        timestamp + 1, so the range end costs one extra, empty request. Bad arguments raise at the call.
        """
        self._check(symbol, timeframe, limit)
        return self._pages(symbol, timeframe, int(start_ms), int(end_ms), limit)

    def _pages(self, symbol: str, timeframe: str, cursor: int, end_ms: int, limit: int) -> Iterator[pa.Table]:
        while cursor < end_ms:
            table = self.page(symbol, timeframe, cursor, end_ms, limit)
            if table.num_rows == 0:
                return
            yield table
            # page() guarantees every row is in [cursor, end_ms): the cursor strictly advances
            cursor = int(table.column("timestamp").cast(pa.int64())[-1].as_py()) + 1

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _check(symbol: str, timeframe: str, limit: int) -> None:
        check_symbol(symbol)
        if timeframe not in NATIVE_TIMEFRAMES:
            raise DataError(f"timeframe {timeframe!r} is not served by Bitfinex; native timeframes: "
                            f"{' '.join(NATIVE_TIMEFRAMES)} (resample the others from one of them)")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_LIMIT:
            raise DataError(f"page limit must be an integer in 1..{PAGE_LIMIT}, got {limit!r}")

    def _emit(self, **event: Any) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _request(self, path: str, query: str, parse: Callable[[Any], pa.Table]) -> pa.Table:
        url = f"{path}?{query}"
        policy = self.retry
        attempt = 0
        t0 = self._clock()
        while True:
            attempt += 1
            try:
                with self.limiter.slot():  # the slot ends when the attempt does, whatever the outcome
                    return self._attempt(self.base_url + url, parse)
            except _Permanent as exc:
                self._emit(event="failed", reason=exc.reason, attempt=attempt, delay_s=None, url=url,
                           status=exc.status)
                raise RequestRefused(f"Bitfinex refused GET {url}: {exc.reason}") from None
            except _Failure as exc:
                if attempt >= policy.max_attempts:
                    self._emit(event="failed", reason=exc.reason, attempt=attempt, delay_s=None, url=url,
                               status=exc.status)
                    took = self._clock() - t0
                    kind = BadCandles if isinstance(exc, _BadCandles) else ExchangeError
                    raise kind(f"Bitfinex GET {url} failed after {attempt} attempt{'s' * (attempt > 1)} "
                                        f"over {took:.1f} s: {exc.reason}") from None
                delay = policy.delay(attempt, self._rng)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                self._emit(event="retry", reason=exc.reason, attempt=attempt, delay_s=delay, url=url,
                           status=exc.status)
                if delay > 0:
                    self._sleep(delay)

    def _attempt(self, url: str, parse: Callable[[Any], pa.Table]) -> pa.Table:
        try:
            resp = self._http.get(url)
        except httpx.TimeoutException as exc:
            _verdict("timeout", f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            _verdict("connection error", f"connection error ({type(exc).__name__}: {_one_line(str(exc))})")
        status = resp.status_code
        text = resp.text
        try:
            body = resp.json()
        except ValueError:
            body = _NOT_JSON
        reason_phrase = f"HTTP {status}" + (f" {resp.reason_phrase}" if resp.reason_phrase else "")
        code = _error_code(body)
        if code is not None or status >= 300:
            key, _, why = classify(status, code)
            _verdict(key, f"{reason_phrase}: {_error_text(body) or _snippet(text)} ({why})", status,
                     _retry_after(resp.headers.get("retry-after")))
        if body is _NOT_JSON:
            _verdict("HTTP 2xx", f"{reason_phrase} with a body that is not JSON: {_snippet(text)}", status)
        try:
            return parse(body)
        except _BadCandles as exc:
            raise _BadCandles(exc.reason, status) from None
        except _Failure as exc:  # not a valid page
            _verdict("HTTP 2xx", exc.reason, status)


def _verdict(key: str, reason: str, status: int | None = None, retry_after: float | None = None) -> NoReturn:
    """Raise the failure ``reason`` as :data:`CLASSIFICATION` row ``key`` says: retryable or final."""
    if CLASSIFICATION[key][0]:
        raise _Failure(reason, status, retry_after)
    raise _Permanent(reason, status)


_NOT_JSON = object()


def _error_code(body: Any) -> int | None:
    """The code of an error body: ``["error", code, message]`` (v2) or ``{"error": ...}`` (older endpoints,
    ``ERR_RATE_LIMIT`` read as 11010); -1 for an error body without a readable code; ``None`` otherwise."""
    if isinstance(body, list) and body and body[0] == "error":
        code = body[1] if len(body) > 1 else None
        return code if isinstance(code, int) and not isinstance(code, bool) else -1
    if isinstance(body, dict) and "error" in body:
        return RATE_LIMIT_CODE if "RATE_LIMIT" in str(body["error"]).upper() else -1
    return None


def _error_text(body: Any) -> str:
    if isinstance(body, list) and body and body[0] == "error":
        return _one_line(" ".join(str(x) for x in body[1:]))
    if isinstance(body, dict) and "error" in body:
        return _one_line(" ".join(str(body[k]) for k in ("error", "message") if k in body))
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _snippet(text: str, n: int = 120) -> str:
    text = _one_line(text)
    return (text[:n] + "...") if len(text) > n else (text or "(empty body)")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _parse_page(body: Any, start_ms: int, end_ms: int, limit: int) -> pa.Table:
    """Wire rows -> a table in :data:`SCHEMA`, or :class:`_Failure` saying why the body is not a valid page."""
    if not isinstance(body, list):
        raise _Failure(f"body is a JSON {type(body).__name__}, not a list of candles")
    if len(body) > limit:
        raise _Failure(f"page has {len(body)} rows, more than limit={limit}")
    for i, row in enumerate(body):
        if not isinstance(row, list) or len(row) != 6 or not all(_is_number(x) for x in row):
            raise _Failure(f"row {i} is not [MTS, OPEN, CLOSE, HIGH, LOW, VOLUME] numbers: {_snippet(repr(row), 80)}")
        if not isinstance(row[0], int) and not float(row[0]).is_integer():
            raise _Failure(f"row {i} has a non-integer MTS {row[0]!r}")
    if not body:
        return SCHEMA.empty_table()
    try:
        mts = np.array([row[0] for row in body], dtype=np.int64)
        values = np.array([row[1:] for row in body], dtype=np.float64)
    except (OverflowError, ValueError) as exc:
        raise _Failure(f"rows cannot be read as numbers: {exc}") from None
    if not np.all(np.isfinite(values)):
        raise _Failure("page has non-finite prices or volumes")
    if mts.size > 1 and np.any(np.diff(mts) <= 0):
        i = int(np.flatnonzero(np.diff(mts) <= 0)[0])
        kind = "duplicated" if mts[i + 1] == mts[i] else "out of order"
        raise _Failure(f"rows {kind} at MTS {int(mts[i + 1])}")
    if mts[0] < start_ms or mts[-1] >= end_ms:
        bad = int(mts[0] if mts[0] < start_ms else mts[-1])
        raise _Failure(f"row at {_iso(bad)} is outside the requested range [{_iso(start_ms)}, {_iso(end_ms)})")
    # wire order: MTS, OPEN, CLOSE, HIGH, LOW, VOLUME
    table = pa.table({"timestamp": pa.array(mts, pa.int64()), "open": values[:, 0], "high": values[:, 2],
                      "low": values[:, 3], "close": values[:, 1], "volume": values[:, 4]})
    table = conform(table, where="Bitfinex page")
    reason = candle_problems(table).refusal()
    if reason:  # the store would refuse the whole dataset at publish time: refuse the page now, while it can be retried
        raise _BadCandles(reason)
    return table


def _iso(ms: int) -> str:
    try:
        return from_ms(ms).isoformat()
    except (OverflowError, ValueError):
        return str(ms)

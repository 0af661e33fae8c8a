"""A local Bitfinex REST v2 candles server for tests: real HTTP on 127.0.0.1, real candles, scripted faults.

Serves ``GET /v2/candles/trade:{TF}:{SYMBOL}/hist?limit=&sort=&start=&end=`` in the exchange's wire format:
rows ``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]``, ``start``/``end`` inclusive ms, ``sort=1`` ascending (``-1``,
the default, newest first), ``limit`` default 100 and capped at 10000. Unknown symbols get ``[]``; unknown
timeframes get HTTP 500 ``["error", 10020, "time_interval: invalid"]`` like Bitfinex.

Candles come from parquet files (default: the bundled sample for tBTCUSD, ``tests/data`` for tETHUSD);
other timeframes are aggregated with :func:`genesis_fw.data.store.resample`.

    with BitfinexServer(rate_limit=5, window_s=0.5) as server:
        server.inject(None, "503", "reset")      # 1st request normal, 2nd gets a 503, 3rd a reset
        server.misbehave(every=3)                 # then every 3rd request: HTTP 500 ERR_UNK / ERR_READY
        ... BitfinexClient(server.url) ...
        server.log                                # [LogEntry(t, path, query, status, fault), ...]
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import attrs
import numpy as np

from genesis_fw.data.store import CandleStore, Dataset, read, resample

DATA = Path(__file__).parent / "data"

#: Every fault :meth:`BitfinexServer.inject` understands (``None`` in a script means "serve normally").
FAULTS = (
    "429",           # HTTP 429 + Retry-After + ["error", 11010, "ratelimit: error"]
    "11010",         # HTTP 500 with the rate-limit error body, no Retry-After
    "10000",         # HTTP 500 ["error", 10000, "unknown error"] (ERR_UNK: server trouble)
    "11000",         # HTTP 500 ["error", 11000, "not ready"] (ERR_READY: try again later)
    "500", "502", "503",  # plain text / HTML gateway error pages
    "timeout",       # sleep past the client's timeout, then answer normally
    "reset",         # headers + half the body, then the connection is closed
    "disconnect",    # connection closed before any response
    "truncated",     # complete HTTP response whose JSON body is cut short
    "html",          # HTTP 200 with an HTML page
    "bad_rows",      # rows of 5 numbers (VOLUME missing)
    "string_rows",   # numbers sent as strings
    "not_list",      # a JSON object instead of a list
    "partial",       # valid JSON page that ends early (first half of the rows, at least one)
    "unsorted",      # two rows swapped
    "duplicate",     # one row sent twice
    "out_of_range",  # an extra row before the requested start
    "overfull",      # one row more than the limit
    "400", "404",    # permanent client errors
    "10020",         # HTTP 500 ["error", 10020, "limit: invalid"]: Bitfinex's answer to a bad request
)
#: Faults about the request itself: a client must give up at once, without retrying.
PERMANENT_FAULTS = ("400", "404", "10020")
SLOW_FAULTS = ("timeout",)


@attrs.frozen
class LogEntry:
    t: float  # time.monotonic() when the request line was read
    path: str
    query: str
    status: int
    fault: str | None = None


def _wire_number(x: float) -> float | int:
    return int(x) if x.is_integer() else x


class BitfinexServer:
    """See the module docstring. ``rate_limit`` requests per rolling ``window_s`` (None: unlimited); excess
    requests are refused with HTTP 429 + ``Retry-After`` (``rate_limit_mode="429"``) or the ``11010`` body."""

    def __init__(self, sources: dict[str, Path] | None = None, *, rate_limit: int | None = None,
                 window_s: float = 60.0, rate_limit_mode: str = "429", timeframes: tuple[str, ...] | None = None,
                 timeout_sleep_s: float = 1.0, latency_s: float = 0.0) -> None:
        if sources is None:
            sample = CandleStore.sample()
            sources = {"tBTCUSD": sample.path("tBTCUSD", "1m"), "tETHUSD": DATA / "tETHUSD_1m_2019-04-01_2d.parquet"}
        self.sources = dict(sources)
        self.rate_limit = rate_limit
        self.window_s = window_s
        self.rate_limit_mode = rate_limit_mode
        from genesis_fw.data.exchange import NATIVE_TIMEFRAMES

        self.timeframes = tuple(timeframes) if timeframes is not None else NATIVE_TIMEFRAMES
        self.timeout_sleep_s = timeout_sleep_s
        #: Seconds every answer is delayed (a slow exchange: lets a test kill a client mid-fetch).
        self.latency_s = latency_s
        self.log: list[LogEntry] = []
        self._faults: deque[str | None] = deque()
        self._every = 0
        self._every_faults: tuple[str, ...] = ()
        self._served = 0  # candle requests past the rate limit, scripted or not
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BitfinexServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bitfinex-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            with self._lock:
                conns = list(self._conns)
            for conn in conns:  # wake handler threads blocked on keep-alive reads
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> BitfinexServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------------------------------
    def inject(self, *script: str | None, times: int = 1) -> None:
        """Queue faults for the next candle requests, in order; ``None`` serves one request normally."""
        for kind in script:
            if kind is not None and kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend(list(script) * times)

    def misbehave(self, every: int, faults: tuple[str, ...] = ("10000", "11000")) -> None:
        """From now on answer every ``every``-th candle request with the next of ``faults``, in turn.

        Counts requests past the server's rate limit; a scripted :meth:`inject` fault takes precedence.
        ``every=0`` stops it.
        """
        for kind in faults:
            if kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._every, self._every_faults, self._served = int(every), tuple(faults), 0

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return sum(f is not None for f in self._faults)

    def candles(self, symbol: str, timeframe: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mts int64[n], values float64[n, 5])`` in wire column order OPEN, CLOSE, HIGH, LOW, VOLUME."""
        key = (symbol, timeframe)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        path = self.sources[symbol]
        table = read(Dataset(symbol, timeframe, path)) if timeframe == "1m" else resample(path, timeframe)
        mts = table.column("timestamp").cast("int64").to_numpy()
        values = np.column_stack([table.column(c).to_numpy() for c in ("open", "close", "high", "low", "volume")])
        with self._lock:
            self._cache[key] = (mts, values)
        return mts, values

    # -- request handling (called from handler threads) ------------------------------------------------
    def _next_fault(self) -> str | None:
        with self._lock:
            self._served += 1
            if self._faults:
                return self._faults.popleft()
            if self._every and self._every_faults and self._served % self._every == 0:
                n = self._served // self._every - 1
                return self._every_faults[n % len(self._every_faults)]
            return None

    def _rate_check(self, now: float) -> float | None:
        """None if the request is within the rate limit (and count it), else seconds until a slot frees."""
        if self.rate_limit is None:
            return None
        with self._lock:
            while self._accepted and self._accepted[0] + self.window_s <= now:
                self._accepted.popleft()
            if len(self._accepted) >= self.rate_limit:
                return self._accepted[0] + self.window_s - now
            self._accepted.append(now)
            return None

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self.log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    owner: BitfinexServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection ends by itself

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._conns.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    # -- responses -----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8",
              headers: dict[str, str] | None = None, declared_length: int | None = None) -> None:
        self._log(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, obj: object, **kw: object) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), **kw)

    def _close_now(self) -> None:
        self._log(0)
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        t = time.monotonic()
        split = urlsplit(self.path)
        self._entry = LogEntry(t, split.path, split.query, 0, None)
        self._logged = False
        try:
            if self.owner.latency_s:
                time.sleep(self.owner.latency_s)
            status, fault = self._serve(t, split.path, split.query)
            self._log(status, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._log(0)

    def _log(self, status: int, fault: str | None = None) -> None:
        """Record this request once, before its answer goes out (a test may read the log right after)."""
        if not self._logged:
            self._logged = True
            self.owner._record(attrs.evolve(self._entry, status=status, fault=fault or self._entry.fault))

    def _serve(self, t: float, path: str, query: str) -> tuple[int, str | None]:
        owner = self.owner
        parts = path.split("/")
        # /v2/candles/trade:{TF}:{SYMBOL}/hist
        if len(parts) != 5 or parts[1:3] != ["v2", "candles"] or parts[4] != "hist" or \
                not parts[3].startswith("trade:") or parts[3].count(":") < 2:
            self._send(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")
            return 404, None
        _, tf, symbol = parts[3].split(":", 2)
        wait = owner._rate_check(t)
        if wait is not None:
            self._entry = attrs.evolve(self._entry, fault="rate_limit")
            if owner.rate_limit_mode == "11010":
                self._json(500, ["error", 11010, "ratelimit: error"])
                return 500, "rate_limit"
            self._json(429, ["error", 11010, "ratelimit: error"], headers={"Retry-After": f"{max(wait, 0):.3f}"})
            return 429, "rate_limit"
        fault = owner._next_fault()
        self._entry = attrs.evolve(self._entry, fault=fault)
        if fault == "429":
            self._json(429, ["error", 11010, "ratelimit: error"], headers={"Retry-After": "0.05"})
            return 429, fault
        if fault == "11010":
            self._json(500, ["error", 11010, "ratelimit: error"])
            return 500, fault
        if fault == "10000":
            self._json(500, ["error", 10000, "unknown error"])
            return 500, fault
        if fault == "11000":
            self._json(500, ["error", 11000, "not ready"])
            return 500, fault
        if fault == "10020":
            self._json(500, ["error", 10020, "limit: invalid"])
            return 500, fault
        if fault == "500":
            self._send(500, b"500 Internal Server Error", "text/plain")
            return 500, fault
        if fault in ("502", "503"):
            html = f"<html><head><title>{fault} Bad Gateway</title></head><body>cloudflare</body></html>"
            self._send(int(fault), html.encode(), "text/html")
            return int(fault), fault
        if fault == "400":
            self._json(400, ["error", 10020, "limit: invalid"])
            return 400, fault
        if fault == "404":
            self._send(404, b"Not Found", "text/plain")
            return 404, fault
        if fault == "disconnect":
            self._close_now()
            return 0, fault
        if fault == "timeout":  # logged now (status 0: no answer in time), answered late if at all
            self._log(0)
        if fault == "timeout" and owner._stop.wait(owner.timeout_sleep_s):
            self._close_now()
            return 0, fault
        if tf not in owner.timeframes:
            self._json(500, ["error", 10020, "time_interval: invalid"])
            return 500, fault
        try:
            q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
            limit = min(int(q.get("limit", 100)), 10_000)
            sort = int(q.get("sort", -1))
            start = int(q["start"]) if q.get("start") else 0
            end = int(q["end"]) if q.get("end") else int(time.time() * 1000)
            if limit < 1:
                raise ValueError
        except ValueError:
            self._json(500, ["error", 10020, "limit: invalid"])
            return 500, fault
        rows = self._rows(symbol, tf, start, end, limit, sort)
        if fault == "partial" and rows:
            rows = rows[: max(1, len(rows) // 2)]
        elif fault == "unsorted" and len(rows) >= 2:
            rows[-1], rows[-2] = rows[-2], rows[-1]
        elif fault == "duplicate" and rows:
            rows.insert(len(rows) // 2, list(rows[len(rows) // 2]))
        elif fault == "out_of_range":
            rows.insert(0, [start - 60_000, 1.0, 1.0, 1.0, 1.0, 1.0])
        elif fault == "overfull":
            rows = self._rows(symbol, tf, start, end, limit + 1, sort)
            while len(rows) <= limit:  # not enough real rows: pad with made-up later ones
                rows.append([(rows[-1][0] if rows else start) + 1, 1, 1, 1, 1, 1])
        elif fault == "bad_rows":
            rows = [r[:5] for r in rows] or [[start, 1, 1, 1, 1]]
        elif fault == "string_rows":
            rows = [[str(x) for x in r] for r in rows] or [[str(start), "1", "1", "1", "1", "1"]]
        if fault == "not_list":
            self._json(200, {"candles": rows})
            return 200, fault
        body = json.dumps(rows, separators=(",", ":")).encode()
        if fault == "truncated":
            self._send(200, body[: max(1, len(body) // 2)])
            return 200, fault
        if fault == "html":
            self._send(200, b"<!DOCTYPE html><html><body>Maintenance</body></html>", "text/html")
            return 200, fault
        if fault == "reset":
            self._send(200, body[: max(1, len(body) // 2)], declared_length=len(body))
            self._close_now()
            return 200, fault
        self._send(200, body)
        return 200, fault

    def _rows(self, symbol: str, tf: str, start: int, end: int, limit: int, sort: int) -> list[list]:
        if symbol not in self.owner.sources:
            return []
        mts, values = self.owner.candles(symbol, tf)
        lo = int(np.searchsorted(mts, start, "left"))
        hi = int(np.searchsorted(mts, end, "right"))  # end is inclusive
        idx = range(lo, min(hi, lo + limit)) if sort == 1 else range(hi - 1, max(lo, hi - limit) - 1, -1)
        return [[int(mts[i]), *(_wire_number(float(v)) for v in values[i])] for i in idx]


def max_in_window(times: list[float], window_s: float, slack_s: float = 0.0) -> int:
    """Most entries of sorted ``times`` in any half-open window ``[t, t + window_s - slack_s)``."""
    best, j = 0, 0
    width = window_s - slack_s
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        best = max(best, i - j + 1)
    return best



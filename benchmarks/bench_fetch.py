"""Fetch efficiency against the local test exchange (tests/bitfinex_server.py) on a full year of 1m candles.

The server enforces the same limit as the client (``--rate-limit`` per rolling 60 s, answering HTTP 429
beyond it). Prints requests per candle, how full the pages are, how many requests the server refused
(target: none), and how much of the allowed request rate the client used: the busiest rolling 60 s
window as a fraction of the limit (never above 100 %), the shortest time between a request and the one a
whole budget later (at least the window padded by the client's safety margin, ``exchange.rate_margin``,
plus the answer's latency), and the idle time the client left on the table
(time a request could have been sent under its padded window, counted from the previous answer, but
was not).

    python benchmarks/bench_fetch.py [--data PATH] [--rate-limit 30] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "bitfinex" / "tBTCUSD_1m_2019.parquet"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rate-limit", type=int, default=30, help="client limit, requests per rolling minute")
    ap.add_argument("--latency", type=float, default=0.05, help="server response delay, seconds")
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"no data at {args.data}")

    from bitfinex_server import BitfinexServer

    from genesis_fw.config import ExchangeConfig
    from genesis_fw.data import fetch
    from genesis_fw.data.store import CandleStore

    start, end = datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)
    config = ExchangeConfig(base_url="", rate_limit=args.rate_limit)
    with tempfile.TemporaryDirectory() as tmp, BitfinexServer({"tBTCUSD": args.data}, latency_s=args.latency,
                                                                rate_limit=args.rate_limit, window_s=60.0) as srv:
        srv.candles("tBTCUSD", "1m")  # load the source before timing
        store = CandleStore.open(tmp)
        t0 = time.monotonic()
        (result,) = fetch.run(store, {"tBTCUSD": ["1m"]}, start, end,
                              exchange=ExchangeConfig(base_url=srv.url, rate_limit=args.rate_limit))
        wall = time.monotonic() - t0
        times = sorted(e.t for e in srv.log)
        refused = sum(e.status == 429 for e in srv.log)
    n, limit = len(times), args.rate_limit
    padded = config.rate_window_s * (1 + config.rate_margin)
    busiest = max(sum(1 for u in times if t <= u < t + 60.0) for t in times)
    # the margin at work: request k + limit reaches the server a padded window after request k's answer
    spacing = min((times[k + limit] - times[k] for k in range(n - limit)), default=float("nan"))
    # Request k (k >= limit) may go out a padded window after the answer to request k - limit at the
    # earliest; anything later than that and later than the previous answer is idle time not needed.
    idle = 0.0
    for k in range(limit, n):
        allowed = max(times[k - limit] + args.latency + padded, times[k - 1] + args.latency)
        idle += max(0.0, times[k] - allowed)
    full_pages = result.candles_fetched / 10_000
    print(f"fetched {result.candles_fetched:,} candles in {result.requests} requests ({n} HTTP requests incl. "
          f"retries) in {wall:.1f} s; limit {limit}/min, server latency {args.latency * 1000:.0f} ms")
    print(f"requests per candle: {n / result.candles_fetched:.6f}  (floor with full pages: "
          f"{1 / 10_000:.6f}; {full_pages:.1f} pages' worth of candles)")
    print(f"refused by the server (HTTP 429): {refused} of {n}  [target 0]")
    print(f"busiest rolling 60 s window: {busiest} requests = {busiest / limit:.0%} of the limit  [never above 100 %]")
    print(f"shortest time from request k to request k + {limit}: {spacing:.2f} s  [padded window {padded:.0f} s "
          f"(margin {config.rate_margin:.0%}) + the answer's latency]")
    print(f"idle time beyond what the limit needs: {idle:.2f} s over {max(0, n - limit)} rate-limited requests")


if __name__ == "__main__":
    main()

"""Fetching candles from the exchange into the store: resumable, incremental, versioned.

For each requested symbol and timeframe:

1. **What is missing**: the requested range ``[start, end)`` minus what the store already holds
   (only the parts before its first and after its last candle are asked for) minus what an
   interrupted earlier fetch already staged.
2. **Paging**: :meth:`BitfinexClient.page` from the cursor to the range end, ``limit=10000``,
   ascending; the next page starts 1 ms after the last candle received; an empty page ends the
   range. Every page is validated by the client before it is returned.
3. **Checkpoint per page**: the page is written to
   ``<data_dir>/metadata/staging/{symbol}_{timeframe}/part-*.parquet`` and the covered interval
   to ``checkpoint.json`` there, each atomically. A fetch interrupted anywhere (Ctrl-C, ``kill -9``,
   retries exhausted) resumes from there without downloading finished pages again.
4. **Publish**: once every range is complete, store + staged candles in ``[start, end)`` become a new
   dataset version (:func:`genesis_fw.data.datasets.publish`) and the staging folder is removed. Nothing
   partial reaches the store. A stored file or staged page that cannot be read fails the dataset with a
   :class:`DataError` naming the file and what to do.

Timeframes the exchange does not serve (``4h``) are fetched at the coarsest native timeframe that
divides them (``1h``), stored as that dataset too, and resampled with ``sql/resample.sql``; the
metadata's ``source`` says ``resampled:1h``. Weeks and months (``1W``, ``14D``, ``1M``) are built the
same way from ``1D`` (:data:`BUILT_LOCALLY`). The source of a timeframe built locally is fetched for
whole buckets of it (:func:`bucket_range`), so the first week holds the whole week.

Every dataset run and every retried or failed request is a line of
``<data_dir>/metadata/fetch_log.jsonl``. The request budget (``exchange.rate_limit`` per
``exchange.rate_window_s``, padded by ``exchange.rate_margin``) is shared by every fetch into the same
store through ``<data_dir>/metadata/rate_window/`` (see :mod:`genesis_fw.data.ratelimit`).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._util import atomic_path, one_line, write_text_atomic
from ..config import ExchangeConfig
from ..errors import DataError, ExchangeError, GenesisError
from .store import CandleStore, Dataset, conform, read, time_span
from .timeframes import check_symbol, check_timeframe, from_ms, is_finer, slot_start_ms, timeframe_ms, to_ms

#: ``genesis-fw fetch --preset NAME``: symbols -> timeframes, and how many months back from now.
PRESETS: dict[str, dict[str, Any]] = {
    "phase3": {
        "datasets": {"tBTCUSD": ["1m", "5m", "15m", "1h", "4h"], "tETHUSD": ["1m", "5m", "1h"]},
        "months": 6,
    },
}


@attrs.frozen
class FetchResult:
    """What one dataset's fetch did."""

    symbol: str
    timeframe: str
    source: str
    candles_fetched: int
    requests: int
    retries: int
    version: int | None
    new_version: bool
    num_candles: int
    duration_s: float


def preset_range(name: str, now: datetime | None = None) -> tuple[dict[str, list[str]], datetime, datetime]:
    """Datasets and ``[start, end)`` of preset ``name``: the last N months up to the current minute (UTC)."""
    if name not in PRESETS:
        from .._util import choices_text, did_you_mean

        raise DataError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; known: {choices_text(PRESETS)}")
    preset = PRESETS[name]
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    months = preset["months"]
    year, month = divmod(now.month - 1 - months, 12)
    start = now.replace(year=now.year + year, month=month + 1, day=min(now.day, 28))
    return preset["datasets"], start, now


#: Native timeframes fetch builds from ``1D`` instead: the store's weeks open on Mondays 00:00 UTC and its
#: months on the 1st, and the exchange's own week and month alignment has not been verified.
BUILT_LOCALLY = ("1W", "14D", "1M")


def native_source(timeframe: str) -> str:
    """The exchange timeframe to fetch for ``timeframe``: itself if native (and not :data:`BUILT_LOCALLY`),
    else the coarsest fetched timeframe that divides it (``4h`` -> ``1h``, ``1W`` -> ``1D``)."""
    from .exchange import NATIVE_TIMEFRAMES

    fetched = [tf for tf in NATIVE_TIMEFRAMES if tf not in BUILT_LOCALLY]
    if timeframe in fetched:
        return timeframe
    finer = [tf for tf in fetched if is_finer(tf, timeframe)]
    if not finer:
        raise DataError(f"no exchange timeframe can be resampled to {timeframe}")
    return max(finer, key=timeframe_ms)


def bucket_range(timeframe: str, start_ms: int, end_ms: int, now_ms: int) -> tuple[int, int]:
    """The source range (UTC ms, half-open) a local build of ``timeframe`` needs for ``[start_ms, end_ms)``:
    whole buckets of the timeframe's grid (:func:`~genesis_fw.data.timeframes.slot_start_ms`: Monday
    weeks, calendar months, 14D slots from Monday 1970-01-05). ``start_ms`` is floored to its bucket's
    start; ``end_ms`` is ceiled to the end of the bucket holding its last millisecond, but never past
    ``now_ms`` (the current, still-open bucket is fetched up to now) and never below ``end_ms``."""
    lo = int(slot_start_ms(start_ms, timeframe))
    last = int(slot_start_ms(end_ms - 1, timeframe))
    width = timeframe_ms(timeframe)
    if width:
        ceil = last + width
    else:  # calendar month: the 1st of the next month
        ceil = int(slot_start_ms(last + 32 * 86_400_000, timeframe))
    return lo, max(end_ms, min(ceil, now_ms))


def _subtract(ranges: list[tuple[int, int]], cut: tuple[int, int]) -> list[tuple[int, int]]:
    lo, hi = cut
    out = []
    for a, b in ranges:
        if hi <= a or lo >= b:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo))
        if hi < b:
            out.append((hi, b))
    return out


class _Staging:
    """Pages of an unfinished fetch of one dataset, and the intervals they cover (ms, half-open)."""

    def __init__(self, store: CandleStore, symbol: str, timeframe: str) -> None:
        self.dir = store.metadata_dir / "staging" / f"{symbol}_{timeframe}"
        self.checkpoint = self.dir / "checkpoint.json"
        self.covered: list[tuple[int, int]] = []
        if self.checkpoint.is_file():
            try:
                data = json.loads(self.checkpoint.read_text(encoding="utf-8"))
                self.covered = [(int(a), int(b)) for a, b in data["covered"]]
            except (OSError, ValueError, KeyError, TypeError):
                self.covered = []  # an unreadable checkpoint only costs a re-download

    def add(self, page: pa.Table, lo: int, hi: int) -> None:
        """Keep ``page`` (the candles in ``[lo, hi)``) and record the interval as covered. A page that
        cannot be written raises :class:`DataError` naming the staging folder."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if page.num_rows:
                with atomic_path(self.dir / f"part-{lo:013d}-{hi:013d}.parquet") as tmp:
                    pq.write_table(page, tmp)
            self.covered.append((lo, hi))
            write_text_atomic(self.checkpoint, json.dumps({"covered": sorted(self.covered)}) + "\n")
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot stage a page in {self.dir}: {one_line(getattr(exc, 'strerror', None) or exc)}"
                            f"; make that path a writable folder (or remove what is in its place)") from None

    def candles(self, lo: int | None = None, hi: int | None = None) -> pa.Table:
        """The staged candles with open time in ``[lo, hi)`` (ms; ``None``: unbounded). A page that
        cannot be read raises :class:`DataError` naming it and the folder to remove."""
        parts = sorted(self.dir.glob("part-*.parquet")) if self.dir.is_dir() else []
        tables = []
        for p in parts:
            try:
                tables.append(conform(pq.read_table(p), where=str(p)))
            except (OSError, pa.ArrowException, DataError) as exc:
                raise DataError(f"the staged page {p} is damaged ({one_line(exc)}); remove the folder {self.dir} "
                                "and fetch again (its pages are downloaded again)") from None
        table = pa.concat_tables(tables) if tables else _empty()
        if (lo is not None or hi is not None) and table.num_rows:
            ts = table.column("timestamp").cast(pa.int64()).to_numpy()
            first = int(np.searchsorted(ts, lo, "left")) if lo is not None else 0
            last = int(np.searchsorted(ts, hi, "left")) if hi is not None else ts.size
            table = table.slice(first, max(last - first, 0))
        return table

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def _stored_span(store: CandleStore, symbol: str, timeframe: str) -> tuple[int, int] | None:
    """:func:`~genesis_fw.data.store.time_span` of the stored file (``None`` when there is none); a file
    that cannot be read raises :class:`DataError` naming it and what to do."""
    path = store.path(symbol, timeframe)
    if not path.is_file():
        return None
    try:
        return time_span(path)
    except (OSError, pa.ArrowException, DataError) as exc:
        raise _damaged(path, symbol, timeframe, exc) from None


def _damaged(path: Path, symbol: str, timeframe: str, exc: BaseException) -> DataError:
    return DataError(f"the stored file {path} is damaged or not a candle file ({one_line(exc)}); remove it, then "
                     f"fetch again or re-import it with 'genesis-fw import FILE --symbol {symbol} --timeframe "
                     f"{timeframe}' (earlier versions are kept in {path.parent / 'versions'})")


def _empty() -> pa.Table:
    from .store import SCHEMA

    return SCHEMA.empty_table()


def _merge(*tables: pa.Table) -> pa.Table:
    """Union of candle tables, sorted, one row per timestamp (the later table wins)."""
    table = pa.concat_tables([t for t in tables if t.num_rows] or [_empty()])
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    # last occurrence of each timestamp, in time order
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    keep = np.r_[ts_sorted[1:] != ts_sorted[:-1], True] if ts.size else np.zeros(0, bool)
    return conform(table.take(pa.array(order[keep])), where="merged candles")


@contextlib.contextmanager
def dataset_lock(store: CandleStore, symbol: str, timeframe: str, on_wait: Callable[[str], None] | None = None):
    """Hold the store-wide lock of one dataset: ``fcntl.flock`` on
    ``<data_dir>/metadata/locks/{symbol}_{timeframe}.lock``.

    Fetches of the same dataset into one store (its staging folder, its next version number) take turns:
    a second process waits here, saying so once through ``on_wait``, and then finds what the first one
    fetched. The OS drops the lock when its process ends, ``kill -9`` included. Without ``fcntl`` or a
    writable ``metadata/locks/`` nothing is locked (as before locks existed).
    """
    import os

    try:
        import fcntl

        path = store.metadata_dir / "locks" / f"{symbol}_{timeframe}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"another fetch of {symbol} {timeframe} into {store.root} is running; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class FetchLog:
    """Appends JSON lines to ``<data_dir>/metadata/fetch_log.jsonl``."""

    def __init__(self, store: CandleStore) -> None:
        self.path = store.metadata_dir / "fetch_log.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class _Progress:
    """tqdm bar on a terminal; otherwise one plain log line per page."""

    def __init__(self, label: str, total_slots: int, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_slots, unit="slot", desc=label, file=sys.stderr, leave=False,
                            dynamic_ncols=True)

    def page(self, slots: int, candles: int, requests: int, upto_ms: int) -> None:
        if self.bar is not None:
            self.bar.update(slots)
            self.bar.set_postfix(candles=candles, requests=requests, refresh=False)
        elif self.enabled:
            print(f"{self.label}: {candles} candles, {requests} requests, up to "
                  f"{from_ms(upto_ms).isoformat()[:16]}Z", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fetch_dataset(client: Any, store: CandleStore, symbol: str, timeframe: str, start_ms: int, end_ms: int, *,
                  log: FetchLog, progress: bool = False, counters: dict[str, int] | None = None) -> FetchResult:
    """Fetch what is missing of ``symbol``/``timeframe`` (a native timeframe) in ``[start_ms, end_ms)``."""
    from .datasets import publish

    t0 = time.monotonic()
    width = timeframe_ms(timeframe)
    counters = counters if counters is not None else {"retries": 0}
    retries_before = counters.get("retries", 0)
    # The stored span comes from the Parquet footer: a fetch with nothing missing reads no candles.
    record = {"event": "fetch", "symbol": symbol, "timeframe": timeframe,
              "range": [from_ms(start_ms).isoformat(), from_ms(end_ms).isoformat()]}
    fetched = requests = 0

    def failed(exc: BaseException, status: str = "failed") -> None:
        log.write({**record, "status": status, "requests": requests, "candles": fetched,
                   "retries": counters.get("retries", 0) - retries_before, "error": str(exc),
                   "duration_s": round(time.monotonic() - t0, 3)})

    try:
        span = _stored_span(store, symbol, timeframe)
    except DataError as exc:
        failed(exc)
        raise
    missing = [(start_ms, end_ms)]
    if span is not None:
        missing = _subtract(missing, (span[0], span[1] + max(width, 1)))
    staging = _Staging(store, symbol, timeframe)
    for cut in staging.covered:
        missing = _subtract(missing, cut)
    label = f"{symbol} {timeframe}"
    slots = sum((b - a) // max(width, 60_000) for a, b in missing)
    bar = _Progress(label, slots, progress)
    try:
        for lo, hi in missing:
            cursor = lo
            while cursor < hi:
                page = client.page(symbol, timeframe, cursor, hi)
                requests += 1
                if page.num_rows == 0:
                    staging.add(page, cursor, hi)
                    bar.page((hi - cursor) // max(width, 60_000), fetched, requests, hi)
                    break
                last = page.column("timestamp")[-1].value
                nxt = last + 1
                if width and last + width >= hi:
                    nxt = hi  # no grid time is left in [last + 1, hi): the range is complete
                staging.add(page, cursor, nxt)
                fetched += page.num_rows
                bar.page((nxt - cursor) // max(width, 60_000), fetched, requests, nxt)
                cursor = nxt
    except DataError as exc:  # the store side failed (a damaged or unwritable file): logged like an exchange failure
        bar.close()
        failed(exc)
        raise
    except (ExchangeError, KeyboardInterrupt) as exc:
        bar.close()
        try:
            staged = staging.candles()
        except DataError:
            staged = _empty()
        upto = from_ms(staged.column("timestamp")[-1].value).isoformat() if staged.num_rows else None
        failed(exc, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        if isinstance(exc, KeyboardInterrupt):
            raise
        kept = (f"{staged.num_rows} candles up to {upto} are kept in {staging.dir}" if staged.num_rows
                else "nothing was kept")
        from .exchange import BadCandles, RequestRefused

        if isinstance(exc, BadCandles):  # the exchange keeps sending it: rerunning the same range cannot help
            raise BadCandles(f"{label}: {exc}; {kept}, not yet in the store; fetch a range that excludes that "
                             "candle") from None
        if isinstance(exc, RequestRefused):  # rerunning the same command gets the same answer
            raise RequestRefused(f"{label}: {exc}" + (f"; {kept}, not yet in the store" if staged.num_rows
                                                      else "")) from None
        raise ExchangeError(f"{label}: {exc}; {kept}, not yet in the store; run the same command again to resume") \
            from None
    bar.close()
    # Only the requested range: pages an earlier, wider fetch staged outside it are dropped with the staging
    # folder, never published (the store must not hold candles around a stretch nobody fetched).
    try:
        staged = staging.candles(start_ms, end_ms)
    except DataError as exc:
        failed(exc)
        raise
    if span is None and staged.num_rows == 0:
        staging.clear()
        log.write({**record, "status": "empty", "requests": requests, "candles": 0,
                   "retries": counters.get("retries", 0) - retries_before,
                   "duration_s": round(time.monotonic() - t0, 3)})
        raise DataError(f"the exchange returned no {label} candles in [{from_ms(start_ms).isoformat()}, "
                        f"{from_ms(end_ms).isoformat()}): unknown symbol, or no trades in that range")
    try:
        if staged.num_rows:
            existing = _read_stored(store, symbol, timeframe) if span else _empty()
            meta, new = publish(store, symbol, timeframe, _merge(existing, staged), source="bitfinex")
        else:  # nothing new: the stored dataset stays as it is
            meta, new = _current_or_publish(store, symbol, timeframe), False
    except GenesisError as exc:
        failed(exc)
        raise
    staging.clear()
    result = FetchResult(symbol, timeframe, "bitfinex", fetched, requests, counters.get("retries", 0) - retries_before,
                         meta.version, new, meta.num_candles, time.monotonic() - t0)
    log.write({**record, "status": "ok", "requests": requests, "candles": fetched, "retries": result.retries,
               "version": meta.version, "duration_s": round(result.duration_s, 3)})
    return result


def _read_stored(store: CandleStore, symbol: str, timeframe: str) -> pa.Table:
    """The whole stored file; one that cannot be read raises :class:`DataError` saying what to do."""
    path = store.path(symbol, timeframe)
    try:
        return read(Dataset(symbol, timeframe, path))
    except DataError as exc:
        if str(exc).startswith(f"cannot read {path}"):
            raise _damaged(path, symbol, timeframe, exc) from None
        raise


def _current_or_publish(store: CandleStore, symbol: str, timeframe: str):
    """The current version's metadata; a stored file without metadata (written before versions) is published."""
    from .datasets import current, publish

    meta = current(store, symbol, timeframe)
    if meta is None:
        meta, _ = publish(store, symbol, timeframe, _read_stored(store, symbol, timeframe), source="store")
    return meta


def run(store: CandleStore, datasets: dict[str, list[str]], start: datetime, end: datetime, *,
        exchange: ExchangeConfig | None = None, transport: Any = None, progress: bool = False,
        on_result: Callable[[FetchResult], None] | None = None) -> list[FetchResult]:
    """Fetch every ``symbol -> [timeframes]`` in ``[start, end)`` with one rate-limited client.

    A dataset that fails (the exchange refuses it, retries run out, no candles) does not stop the
    others: they are all fetched and published, then :class:`FetchFailed` lists every failure. A
    timeframe resampled from a source that failed fails too. Ctrl-C stops at once.
    """
    from .exchange import BitfinexClient, RateLimiter, RetryPolicy

    if start >= end:
        raise DataError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    plan: list[tuple[str, str, str]] = []
    for symbol, timeframes in datasets.items():
        check_symbol(symbol)
        for tf in timeframes:
            check_timeframe(tf)
            plan.append((symbol, tf, native_source(tf)))
    _check_writable(store)
    exchange = exchange or ExchangeConfig()
    log = FetchLog(store)
    counters = {"retries": 0}

    def on_event(event: dict) -> None:
        counters["retries"] += event.get("event") == "retry"
        log.write({"symbol": current[0], "timeframe": current[1], **event})

    def warn(message: str) -> None:
        print(f"Note: {message}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            log.write({"event": "warning", "message": message})

    current = ["", ""]
    start_ms, end_ms = to_ms(start), to_ms(end)
    now_ms = to_ms(datetime.now(UTC))
    # A timeframe built locally gets whole buckets: its source is fetched from the first bucket's start to
    # the last bucket's end (the union over every timeframe built from it, and the source's own request).
    built = {(s, t): bucket_range(t, start_ms, end_ms, now_ms) for s, t, src in plan if t != src}
    source_range: dict[tuple[str, str], tuple[int, int]] = {}
    for symbol, tf, source_tf in plan:
        lo, hi = built.get((symbol, tf), (start_ms, end_ms))
        a, b = source_range.get((symbol, source_tf), (lo, hi))
        source_range[(symbol, source_tf)] = (min(a, lo), max(b, hi))
    results: list[FetchResult] = []
    failures: list[tuple[str, str, GenesisError]] = []
    done: dict[tuple[str, str], FetchResult | GenesisError] = {}
    requested = {(s, t) for s, t, _ in plan}

    def success(res: FetchResult) -> None:
        results.append(res)
        if on_result:
            on_result(res)

    limiter = RateLimiter(exchange.rate_limit, window_s=exchange.rate_window_s, margin=exchange.rate_margin,
                          path=window_path(store, exchange.base_url), on_warning=warn)
    with contextlib.closing(limiter), BitfinexClient(exchange.base_url, limiter=limiter,
                        retry=RetryPolicy(max_attempts=exchange.max_attempts), timeout_s=exchange.timeout_s,
                        transport=transport, on_event=on_event) as client:
        for symbol, tf, source_tf in sorted(plan, key=lambda p: (p[0], timeframe_ms(p[2]), p[1] != p[2])):
            if (symbol, source_tf) not in done:
                current[:] = [symbol, source_tf]
                try:
                    with dataset_lock(store, symbol, source_tf, warn):
                        done[(symbol, source_tf)] = fetch_dataset(client, store, symbol, source_tf,
                                                                  *source_range[(symbol, source_tf)], log=log,
                                                                  progress=progress, counters=counters)
                except GenesisError as exc:  # this dataset failed; the others still run
                    done[(symbol, source_tf)] = exc
                    if (symbol, source_tf) in requested:
                        failures.append((symbol, source_tf, exc))
                else:
                    if (symbol, source_tf) in requested:
                        success(done[(symbol, source_tf)])
            if source_tf == tf:
                continue
            source = done[(symbol, source_tf)]
            if isinstance(source, GenesisError):
                why = "failed" if (symbol, source_tf) in requested else f"failed: {source}"
                failures.append((symbol, tf, DataError(f"{symbol} {tf} not built: fetching its source "
                                                       f"{symbol} {source_tf} {why}")))
                continue
            try:
                with dataset_lock(store, symbol, tf, warn):
                    res = _resample(store, symbol, tf, source_tf, log, *built[(symbol, tf)])
                success(res)
            except GenesisError as exc:
                failures.append((symbol, tf, exc))
    if failures:
        raise FetchFailed(failures, results, len(plan))
    return results


class FetchFailed(GenesisError):
    """Some datasets of a fetch failed; every other one was still fetched and published.

    ``failures`` is ``[(symbol, timeframe, error), ...]`` in the order they happened, ``results`` the
    datasets that succeeded. The message is one line; :meth:`lines` gives one line per failure.
    """

    def __init__(self, failures: list[tuple[str, str, GenesisError]], results: list[FetchResult],
                 total: int) -> None:
        self.failures = list(failures)
        self.results = list(results)
        self.total = total
        if len(self.failures) == 1:
            message = self.lines()[0]
        else:
            message = f"{len(self.failures)} of {total} datasets failed: " + "; ".join(self.lines())
        super().__init__(message)

    def lines(self) -> list[str]:
        """One line per failed dataset, each naming it."""
        out = []
        for symbol, tf, exc in self.failures:
            text = " ".join(str(exc).split())
            out.append(text if f"{symbol} {tf}" in text else f"{symbol} {tf}: {text}")
        return out


def window_path(store: CandleStore, base_url: str) -> Path:
    """The file holding the request window shared by every fetch from ``base_url`` into ``store``:
    ``<data_dir>/metadata/rate_window/<host>[_<port>].json``."""
    netloc = urlsplit(base_url).netloc or base_url
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", netloc).strip("._") or "exchange"
    return store.metadata_dir / "rate_window" / f"{name}.json"


def _resample(store: CandleStore, symbol: str, timeframe: str, source_tf: str, log: FetchLog, lo_ms: int,
              hi_ms: int) -> FetchResult:
    """Build ``timeframe`` from the stored ``source_tf``: the buckets opening in ``[lo_ms, hi_ms)`` (whole
    buckets, :func:`bucket_range`) replace those of the stored ``timeframe``; its other buckets stay."""
    from .datasets import publish
    from .store import resample

    t0 = time.monotonic()
    table = resample(store.path(symbol, source_tf), timeframe, from_ms(lo_ms), from_ms(hi_ms))
    kept = _stored_outside(store, symbol, timeframe, lo_ms, hi_ms)
    if kept.num_rows:
        table = _merge(kept, table)
    meta, new = publish(store, symbol, timeframe, table, source=f"resampled:{source_tf}")
    res = FetchResult(symbol, timeframe, f"resampled:{source_tf}", 0, 0, 0, meta.version, new, meta.num_candles,
                      time.monotonic() - t0)
    log.write({"event": "resample", "symbol": symbol, "timeframe": timeframe, "source": source_tf,
               "candles": meta.num_candles, "version": meta.version, "duration_s": round(res.duration_s, 3)})
    return res


def _stored_outside(store: CandleStore, symbol: str, timeframe: str, lo_ms: int, hi_ms: int) -> pa.Table:
    """The stored candles of a locally built dataset opening outside ``[lo_ms, hi_ms)``. A file off the
    timeframe's grid (``1W`` from before weeks opened on Mondays) contributes nothing: it is rebuilt."""
    from .store import check_alignment

    path = store.path(symbol, timeframe)
    if not path.is_file():
        return _empty()
    try:
        table = conform(pq.read_table(path), where=str(path))
    except (OSError, pa.ArrowException, DataError) as exc:
        raise _damaged(path, symbol, timeframe, exc) from None
    try:
        check_alignment(table, timeframe, where=str(path))
    except DataError:
        return _empty()
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    keep = (ts < lo_ms) | (ts >= hi_ms)
    return table.filter(pa.array(keep)) if not keep.all() else table


def _check_writable(store: CandleStore) -> None:
    """Fail early, in one line, when the data directory cannot be written."""
    probe = store.metadata_dir / f".write-test-{time.monotonic_ns()}"
    try:
        store.metadata_dir.mkdir(parents=True, exist_ok=True)
        store.candles_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"the data directory {store.root} is not writable: {exc.strerror or exc}") from None

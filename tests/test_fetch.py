"""genesis-fw fetch against a real local HTTP server that speaks Bitfinex's wire format and misbehaves.

The fetched store must equal the server's source candles exactly under every fault, resume after an
interruption (including kill -9) without downloading finished pages again, and ask only for what is
missing on a later run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from bitfinex_server import BitfinexServer
from conftest import run_cli

from genesis_fw.config import ExchangeConfig
from genesis_fw.data import fetch
from genesis_fw.data.datasets import current
from genesis_fw.data.exchange import RequestRefused
from genesis_fw.data.store import CandleStore, Dataset, read, resample
from genesis_fw.data.timeframes import from_ms, to_ms
from genesis_fw.errors import DataError, ExchangeError

START = datetime(2019, 4, 1, tzinfo=UTC)
MID = datetime(2019, 5, 1, tzinfo=UTC)
END = datetime(2019, 6, 1, tzinfo=UTC)


def fast_exchange(server: BitfinexServer, **kw) -> ExchangeConfig:
    """A quick client for the local server. The request timeout is generous so that a good answer on a
    busy machine never times out (that would use up a scripted fault early); tests of timeouts pass
    a short ``timeout_s`` against a server that sleeps longer."""
    return ExchangeConfig(base_url=server.url, rate_limit=6000, max_attempts=kw.pop("max_attempts", 8),
                          timeout_s=kw.pop("timeout_s", 5.0))


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Real retries with real sleeps, but backoff capped at 50 ms so the suite stays quick."""
    from genesis_fw.data import exchange

    original = exchange.RetryPolicy

    def policy(max_attempts: int = 8, base_delay_s: float = 0.01, max_delay_s: float = 0.05):
        return original(max_attempts=max_attempts, base_delay_s=base_delay_s, max_delay_s=max_delay_s)

    monkeypatch.setattr(exchange, "RetryPolicy", policy)


def expected(server: BitfinexServer, symbol: str, tf: str, start: datetime, end: datetime) -> np.ndarray:
    mts, values = server.candles(symbol, tf)
    keep = (mts >= to_ms(start)) & (mts < to_ms(end))
    # wire order OPEN, CLOSE, HIGH, LOW, VOLUME -> store order OPEN, HIGH, LOW, CLOSE, VOLUME
    v = values[keep]
    return np.column_stack([mts[keep].astype(float), v[:, 0], v[:, 2], v[:, 3], v[:, 1], v[:, 4]])


def stored(store: CandleStore, symbol: str, tf: str) -> np.ndarray:
    t = read(Dataset(symbol, tf, store.path(symbol, tf)))
    return np.column_stack([t.column("timestamp").cast("int64").to_numpy().astype(float)] +
                           [t.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")])


def requested_starts(server: BitfinexServer) -> list[int]:
    from urllib.parse import parse_qs

    return [int(parse_qs(e.query)["start"][0]) for e in server.log if e.status == 200]


def test_fetch_equals_the_source_and_records_a_version(data_dir):
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        results = fetch.run(store, {"tBTCUSD": ["1m"], "tETHUSD": ["1m"]}, START, END, exchange=fast_exchange(server))
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, END))
        assert np.array_equal(stored(store, "tETHUSD", "1m"), expected(server, "tETHUSD", "1m", START, END))
        n_btc = expected(server, "tBTCUSD", "1m", START, END).shape[0]
        # pages are full: ceil(n / 10000) pages, plus at most one request that finds the range empty
        pages = [r for r in results if r.symbol == "tBTCUSD"][0].requests
        assert -(-n_btc // 10_000) <= pages <= -(-n_btc // 10_000) + 1
    meta = current(store, "tBTCUSD", "1m")
    assert meta.version == 1 and meta.source == "bitfinex" and meta.num_candles == n_btc
    assert not (data_dir / "metadata" / "staging" / "tBTCUSD_1m").exists()
    log = [json.loads(line) for line in (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()]
    runs = [r for r in log if r.get("event") == "fetch"]
    assert {(r["symbol"], r["status"]) for r in runs} == {("tBTCUSD", "ok"), ("tETHUSD", "ok")}
    assert all({"time", "range", "requests", "candles", "retries", "duration_s"} <= set(r) for r in runs)


@pytest.mark.parametrize("faults", [
    ("429", "11010", "503"),
    ("timeout", "reset", "disconnect"),
    ("truncated", "html", "bad_rows", "partial"),
    ("unsorted", "duplicate", "out_of_range", "overfull", "string_rows", "partial"),
])
def test_every_fault_still_gives_exactly_the_source(data_dir, faults):
    store = CandleStore.open(data_dir)
    with BitfinexServer(timeout_sleep_s=3.0) as server:
        script = []
        for fault in faults:
            script += [None, fault]
        server.inject(*script)
        fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server, timeout_s=1.0))
        assert server.pending_faults == 0, "every injected fault was served"
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, END))
    log = [json.loads(line) for line in (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()]
    retries = [r for r in log if r.get("event") == "retry"]
    assert len(retries) >= len([f for f in faults if f != "partial"])
    assert all(r["symbol"] == "tBTCUSD" and r["timeframe"] == "1m" for r in retries)


def test_a_server_failing_every_few_requests_needs_no_rerun(data_dir):
    """Two months of 1m from a server answering every 2nd request with HTTP 500 ERR_UNK / ERR_READY."""
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        server.misbehave(every=2, faults=("10000", "11000"))
        (result,) = fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server))
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, END))
        faults = [e for e in server.log if e.fault in ("10000", "11000")]
    assert len(faults) >= 8 and all(e.status == 500 for e in faults)
    assert result.retries == len(faults) and current(store, "tBTCUSD", "1m").version == 1


def test_a_request_error_fails_at_once_without_retries(data_dir):
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        server.inject("10020")
        with pytest.raises(fetch.FetchFailed, match="limit: invalid") as err:
            fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server))
        assert len(server.log) == 1 and "\n" not in str(err.value)
    (failure,) = err.value.failures
    assert isinstance(failure[2], RequestRefused) and "run the same command again" not in str(err.value)
    log = [json.loads(line) for line in (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["failed", "fetch"] and log[0]["attempt"] == 1


def test_incremental_run_asks_only_for_what_is_missing(data_dir):
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        fetch.run(store, {"tBTCUSD": ["1m"]}, MID, END, exchange=fast_exchange(server))
        first_last = stored(store, "tBTCUSD", "1m")[-1, 0]
        server.log.clear()
        fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server))
        starts = requested_starts(server)
        # Only before the first stored candle: nothing at or after MID is asked for again.
        assert starts and all(s < to_ms(MID) for s in starts)
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, END))
        assert stored(store, "tBTCUSD", "1m")[-1, 0] == first_last
        server.log.clear()
        again = fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server))
        assert server.log == [] and again[0].requests == 0 and not again[0].new_version
    assert current(store, "tBTCUSD", "1m").version == 2


def test_4h_is_fetched_as_1h_and_resampled(data_dir):
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        results = fetch.run(store, {"tBTCUSD": ["1h", "4h"]}, START, END, exchange=fast_exchange(server))
        assert all("4h" not in e.path for e in server.log)
    assert [(r.timeframe, r.source) for r in results] == [("1h", "bitfinex"), ("4h", "resampled:1h")]
    assert current(store, "tBTCUSD", "4h").source == "resampled:1h"
    direct = resample(store.path("tBTCUSD", "1h"), "4h")
    assert read(Dataset("tBTCUSD", "4h", store.path("tBTCUSD", "4h"))).equals(direct)


def test_weeks_and_months_are_built_from_1d_on_monday_weeks(data_dir):
    """The server offers 1W, 14D and 1M too, but their alignment is the exchange's: fetch asks for 1D only and
    builds Monday weeks and calendar months from it, equal to pandas' on the server's 1m source."""
    import pandas as pd

    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        assert {"1W", "14D", "1M"} <= set(server.timeframes)
        results = fetch.run(store, {"tBTCUSD": ["1W", "14D", "1M"]}, START, END, exchange=fast_exchange(server))
        assert server.log and all(e.path == "/v2/candles/trade:1D:tBTCUSD/hist" for e in server.log)
    assert [(r.timeframe, r.source) for r in results] == [("1W", "resampled:1D"), ("14D", "resampled:1D"),
                                                          ("1M", "resampled:1D")]
    daily = store.path("tBTCUSD", "1D")
    for tf, rule, kw in [("1W", "W-MON", {"label": "left", "closed": "left"}),
                         ("14D", "14D", {"origin": pd.Timestamp("1970-01-05")}),
                         ("1M", "MS", {})]:
        # whole buckets: 1W through Sunday 06-02, 14D through 06-02 (slot of 05-20), 1M through 05-31
        lo, hi = (from_ms(t) for t in fetch.bucket_range(tf, to_ms(START), to_ms(END), to_ms(datetime.now(UTC))))
        minutes = read(Dataset("tBTCUSD", "1m", CandleStore.sample().path("tBTCUSD", "1m")), lo, hi)
        df = minutes.to_pandas().set_index("timestamp")
        df.index = df.index.tz_convert(None)  # naive UTC: pandas honours ``origin`` for day widths only there
        got = read(Dataset("tBTCUSD", tf, store.path("tBTCUSD", tf)))
        assert current(store, "tBTCUSD", tf).source == "resampled:1D"
        assert got.equals(resample(daily, tf, lo, hi))
        ref = df.resample(rule, **kw).agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                           "volume": "sum"})
        ts = got.column("timestamp").cast("int64").to_numpy()
        assert np.array_equal(ts, ref.index.as_unit("ms").asi8), tf
        for col in ("open", "high", "low", "close"):
            assert np.array_equal(got.column(col).to_numpy(), ref[col].to_numpy()), (tf, col)
        assert np.allclose(got.column("volume").to_numpy(), ref["volume"].to_numpy(), rtol=1e-12)
    weeks = read(Dataset("tBTCUSD", "1W", store.path("tBTCUSD", "1W"))).column("timestamp").to_pylist()
    assert weeks[0] == START and {w.weekday() for w in weeks} == {0} and len(weeks) == 9  # Apr 1 .. May 27


def test_exhausted_retries_keep_progress_and_the_next_run_resumes(data_dir):
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        server.inject(None, None, "503", "503", "503")  # two good pages, then the exchange is down
        with pytest.raises(fetch.FetchFailed) as err:
            fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server, max_attempts=3))
        assert type(err.value.failures[0][2]) is ExchangeError
        message = str(err.value)
        assert "\n" not in message and "run the same command again to resume" in message
        assert "20000 candles up to 2019-04-" in message and not store.has("tBTCUSD", "1m")
        done = requested_starts(server)
        server.log.clear()
        fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server))
        assert not set(requested_starts(server)) & set(done), "finished pages were downloaded again"
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, END))
    lines = (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()
    statuses = [r["status"] for r in map(json.loads, lines) if r.get("event") == "fetch"]
    assert statuses == ["failed", "ok"]


def test_kill_9_mid_fetch_then_resume(data_dir):
    with BitfinexServer(latency_s=0.25) as server:
        cmd = [sys.executable, "-m", "genesis_fw", "fetch", "--symbol", "tBTCUSD", "--timeframe", "1m",
               "--start", "2019-04-01", "--end", "2019-07-01", "--base-url", server.url, "--rate-limit", "6000",
               "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        staging = data_dir / "metadata" / "staging" / "tBTCUSD_1m"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(staging.glob("part-*.parquet"))) < 3:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        parts = len(list(staging.glob("part-*.parquet")))
        assert 3 <= parts < 13, "killed mid-fetch"
        assert not CandleStore.open(data_dir).has("tBTCUSD", "1m"), "nothing partial reaches the store"
        before = requested_starts(server)
        server.log.clear()
        server.latency_s = 0.0
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        again = requested_starts(server)
        # At most the page in flight when the process died is asked for twice.
        assert len(set(again) & set(before)) <= 1
        end = datetime(2019, 7, 1, tzinfo=UTC)
        assert np.array_equal(stored(CandleStore.open(data_dir), "tBTCUSD", "1m"),
                              expected(server, "tBTCUSD", "1m", START, end))


# -- one request budget for every fetch process sharing the store --------------------------------------------
LIMIT, WINDOW_S = 4, 2.0  # a strict server: 4 requests in any rolling 2 s, counted across connections


def strict_fetch(server: BitfinexServer, config, symbol: str, start: str, end: str) -> list[str]:
    """The ``genesis-fw fetch`` command line of one dataset, with the client's limit equal to the server's."""
    config.write_text(json.dumps({"exchange": {"base_url": server.url, "rate_limit": LIMIT, "rate_window_s": WINDOW_S,
                                               "max_attempts": 20}}))
    return [sys.executable, "-m", "genesis_fw", "fetch", "--config", str(config), "--symbol", symbol,
            "--timeframe", "1m", "--start", start, "--end", end, "--quiet"]


def refused(server: BitfinexServer) -> list:
    return [e for e in server.log if e.status == 429 or e.fault == "rate_limit"]


def test_consecutive_runs_and_a_kill_9_stay_under_a_strict_server_limit(data_dir, tmp_path):
    with BitfinexServer(rate_limit=LIMIT, window_s=WINDOW_S, latency_s=0.02) as server:
        server.candles("tBTCUSD", "1m")
        config = tmp_path / "exchange.json"
        first = subprocess.run(strict_fetch(server, config, "tBTCUSD", "2019-04-01", "2019-04-15"),
                               capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        cmd = strict_fetch(server, config, "tBTCUSD", "2019-04-15", "2019-06-01")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # right after the first run
        staging = data_dir / "metadata" / "staging" / "tBTCUSD_1m"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(staging.glob("part-*.parquet"))) < 2:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert 2 <= len(list(staging.glob("part-*.parquet"))) < 7, "killed mid-fetch"
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # at once after kill -9
        assert again.returncode == 0, again.stderr
        assert len(server.log) >= 8
        assert refused(server) == [], f"{len(refused(server))} of {len(server.log)} requests refused"
        end = datetime(2019, 6, 1, tzinfo=UTC)
        assert np.array_equal(stored(CandleStore.open(data_dir), "tBTCUSD", "1m"),
                              expected(server, "tBTCUSD", "1m", START, end))


def test_two_concurrent_fetches_share_one_request_budget(data_dir, tmp_path):
    sample = CandleStore.sample().path("tBTCUSD", "1m")
    with BitfinexServer({"tBTCUSD": sample, "tLTCUSD": sample}, rate_limit=LIMIT, window_s=WINDOW_S) as server:
        server.candles("tBTCUSD", "1m"), server.candles("tLTCUSD", "1m")
        procs = [subprocess.Popen(strict_fetch(server, tmp_path / f"{symbol}.json", symbol, "2019-04-01", "2019-05-01"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for symbol in ("tBTCUSD", "tLTCUSD")]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert len(server.log) >= 10
        assert refused(server) == [], f"{len(refused(server))} of {len(server.log)} requests refused"
        store = CandleStore.open(data_dir)
        for symbol in ("tBTCUSD", "tLTCUSD"):
            assert np.array_equal(stored(store, symbol, "1m"), expected(server, symbol, "1m", START, MID))


def test_an_unusable_request_window_location_is_a_note_not_a_traceback(data_dir):
    (data_dir / "metadata").mkdir()
    (data_dir / "metadata" / "rate_window").write_text("a file where the window's folder should be")
    with BitfinexServer() as server:
        proc = run_cli("fetch", "--symbol", "tBTCUSD", "--timeframe", "1h", "--start", "2019-04-01",
                       "--end", "2019-04-08", "--base-url", server.url, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Note: ") and "rate_window" in line and "this process only" in line
    assert "tBTCUSD 1h: 168 candles, version 1" in proc.stdout


def test_unknown_symbol_is_a_clear_error(data_dir):
    with BitfinexServer() as server:
        with pytest.raises(fetch.FetchFailed, match="returned no tNOPE 1m candles.*unknown symbol") as err:
            fetch.run(CandleStore.open(data_dir), {"tNOPE": ["1m"]}, START, END, exchange=fast_exchange(server))
    assert isinstance(err.value.failures[0][2], DataError)


@pytest.mark.parametrize("args,message", [
    (["--symbol", "tNOPE", "--timeframe", "1m", "--start", "2019-04-01", "--end", "2019-04-02"],
     "returned no tNOPE 1m candles"),
    (["--symbol", "tBTCUSD", "--timeframe", "1m", "--start", "2019-04-02", "--end", "2019-04-01"],
     "is not before end"),
    (["--symbol", "tBTCUSD", "--timeframe", "2m", "--start", "2019-04-01"], "unknown timeframe '2m'"),
    (["--symbol", "BTC USD", "--timeframe", "1m", "--start", "2019-04-01"], "invalid symbol 'BTC USD'"),
    (["--preset", "phase9"], "unknown preset 'phase9'"),
])
def test_cli_bad_input_is_one_line(data_dir, args, message):
    with BitfinexServer() as server:
        proc = run_cli("fetch", *args, "--base-url", server.url, "--quiet")
    assert proc.returncode in (1, 2), proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: ") and message in line


def test_cli_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with BitfinexServer() as server:
        proc = run_cli("--data-dir", str(blocker / "store"), "fetch", "--symbol", "tBTCUSD", "--timeframe", "1m",
                       "--start", "2019-04-01", "--end", "2019-04-02", "--base-url", server.url, "--quiet")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "is not writable" in line and not server.log


def test_cli_fetch_reports_and_reads_the_url_from_the_environment(data_dir):
    with BitfinexServer() as server:
        env = dict(os.environ, GENESIS_BITFINEX_URL=server.url)
        proc = run_cli("fetch", "--symbol", "tBTCUSD", "--timeframe", "1h,4h", "--start", "2019-04-01",
                       "--end", "2019-04-08", env=env)
        assert proc.returncode == 0, proc.stderr
        assert server.log, "the environment's URL was used"
    assert "tBTCUSD 1h: 168 candles, version 1" in proc.stdout
    assert "tBTCUSD 4h: 42 candles, version 1; from resampled:1h" in proc.stdout
    assert "requests" in proc.stderr or "requests" in proc.stdout  # plain progress lines when not a TTY


def test_cli_multi_dataset_fetch_finishes_the_others_and_reports_every_failure(data_dir):
    """tABCUSD is unknown (sorted first, so it fails first) and the server refuses 1D with ERR_PARAMS."""
    with BitfinexServer(timeframes=("1m", "1h")) as server:
        proc = run_cli("fetch", "--symbol", "tETHUSD,tABCUSD,tBTCUSD", "--timeframe", "1h,4h,1D",
                       "--start", "2019-04-01", "--end", "2019-04-03", "--base-url", server.url, "--quiet")
        assert sum(e.status == 500 for e in server.log) == 3, "each 1D asked once, not retried"
    assert proc.returncode == 1, proc.stderr
    store = CandleStore.open(data_dir)
    for symbol in ("tBTCUSD", "tETHUSD"):
        for tf, n in (("1h", 48), ("4h", 12)):
            assert current(store, symbol, tf).num_candles == n
            assert f"{symbol} {tf}: {n} candles, version 1" in proc.stdout
        assert not store.has(symbol, "1D")
    assert not any(store.has("tABCUSD", tf) for tf in ("1h", "4h", "1D"))
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("Error: ") for line in lines) and "Traceback" not in proc.stderr
    failed = ["tABCUSD 1h", "tABCUSD 4h", "tABCUSD 1D", "tBTCUSD 1D", "tETHUSD 1D"]
    assert len(lines) == len(failed)
    for label, line in zip(failed, lines, strict=True):
        assert label in line, (label, line)
    assert "returned no tABCUSD 1h candles" in lines[0] and "time_interval: invalid" in lines[2]


def test_a_failed_dataset_does_not_stop_the_others(data_dir):
    store = CandleStore.open(data_dir)
    seen: list = []
    with BitfinexServer() as server:
        with pytest.raises(fetch.FetchFailed) as err:
            fetch.run(store, {"tNOPE": ["4h"], "tBTCUSD": ["1h"]}, START, MID, exchange=fast_exchange(server),
                      on_result=seen.append)
    (failure,) = err.value.failures
    assert failure[:2] == ("tNOPE", "4h") and isinstance(failure[2], DataError)
    assert "tNOPE 4h" in str(err.value) and "returned no tNOPE 1h candles" in str(err.value)
    assert "\n" not in str(err.value)
    assert [(r.symbol, r.timeframe) for r in err.value.results] == [("tBTCUSD", "1h")] == \
        [(r.symbol, r.timeframe) for r in seen]
    assert current(store, "tBTCUSD", "1h").version == 1 and not store.has("tNOPE", "4h")


def test_preset_phase3_is_the_documented_collection():
    datasets, start, end = fetch.preset_range("phase3", now=datetime(2024, 10, 1, 12, 30, 15, tzinfo=UTC))
    assert datasets == {"tBTCUSD": ["1m", "5m", "15m", "1h", "4h"], "tETHUSD": ["1m", "5m", "1h"]}
    assert (start, end) == (datetime(2024, 4, 1, 12, 30, tzinfo=UTC), datetime(2024, 10, 1, 12, 30, tzinfo=UTC))


def test_a_narrower_rerun_publishes_only_its_own_range(data_dir):
    """Pages staged by an interrupted wider fetch never land outside the range a later run asks for."""
    store = CandleStore.open(data_dir)
    with BitfinexServer() as server:
        server.inject(None, None, "503", "503", "503")  # two pages (about 14 days) staged, then the exchange is down
        with pytest.raises(fetch.FetchFailed):
            fetch.run(store, {"tBTCUSD": ["1m"]}, START, END, exchange=fast_exchange(server, max_attempts=3))
        assert len(list((data_dir / "metadata" / "staging" / "tBTCUSD_1m").glob("part-*.parquet"))) == 2
        narrow = datetime(2019, 4, 4, tzinfo=UTC)
        fetch.run(store, {"tBTCUSD": ["1m"]}, START, narrow, exchange=fast_exchange(server))
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, narrow))
    assert not (data_dir / "metadata" / "staging" / "tBTCUSD_1m").exists()


def _damage(path, source=None) -> None:
    """The first 100 bytes of a real Parquet file: what a full disk or a cut copy leaves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((source or CandleStore.sample().path("tBTCUSD", "1m")).read_bytes()[:100])


@pytest.mark.parametrize("where", ["stored", "staged"])
def test_cli_a_damaged_file_is_one_line_and_the_other_datasets_still_run(data_dir, where):
    if where == "stored":
        bad = data_dir / "candles" / "tBTCUSD_1h.parquet"
    else:  # a staged page of an interrupted fetch, its interval recorded in the checkpoint
        staging = data_dir / "metadata" / "staging" / "tBTCUSD_1h"
        bad = staging / f"part-{to_ms(START):013d}-{to_ms(START) + 86_400_000:013d}.parquet"
        staging.mkdir(parents=True)
        (staging / "checkpoint.json").write_text(json.dumps({"covered": [[to_ms(START), to_ms(START) + 86_400_000]]}))
    _damage(bad)
    with BitfinexServer() as server:
        proc = run_cli("fetch", "--symbol", "tBTCUSD,tETHUSD", "--timeframe", "1h", "--start", "2019-04-01",
                       "--end", "2019-04-03", "--base-url", server.url, "--rate-limit", "6000", "--quiet")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: tBTCUSD 1h") and str(bad) in line and "damaged" in line, line
    assert "remove" in line, line
    assert "tETHUSD 1h: 48 candles, version 1" in proc.stdout
    assert current(CandleStore.open(data_dir), "tETHUSD", "1h").num_candles == 48
    log = [json.loads(x) for x in (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()]
    assert [(r["symbol"], r["status"]) for r in log if r.get("event") == "fetch"] == \
        [("tBTCUSD", "failed"), ("tETHUSD", "ok")]


def test_weeks_and_months_built_locally_hold_whole_buckets(data_dir):
    """A range starting on a Wednesday and ending on a Friday: 1D is fetched from the Monday (the 1st of the
    month, the 14D slot) to the end of the last bucket, so the first and last buckets hold whole weeks."""
    store = CandleStore.open(data_dir)
    start, end = datetime(2019, 4, 3, tzinfo=UTC), datetime(2019, 5, 10, tzinfo=UTC)
    with BitfinexServer() as server:
        fetch.run(store, {"tBTCUSD": ["1W", "14D", "1M"]}, start, end, exchange=fast_exchange(server))
        mts, values = server.candles("tBTCUSD", "1D")  # wire order OPEN, CLOSE, HIGH, LOW, VOLUME

    def day(when: str) -> int:
        return int(np.searchsorted(mts, to_ms(datetime.fromisoformat(when).replace(tzinfo=UTC))))

    def check(tf: str, bucket: str, first_day: str, end_day: str) -> None:
        table = read(Dataset("tBTCUSD", tf, store.path("tBTCUSD", tf)))
        ts = table.column("timestamp").cast("int64").to_numpy()
        i = int(np.flatnonzero(ts == to_ms(datetime.fromisoformat(bucket).replace(tzinfo=UTC)))[0])
        a, b = day(first_day), day(end_day)
        assert table.column("open")[i].as_py() == values[a, 0], (tf, bucket)
        assert table.column("close")[i].as_py() == values[b - 1, 1], (tf, bucket)
        assert table.column("high")[i].as_py() == values[a:b, 2].max(), (tf, bucket)
        assert table.column("volume")[i].as_py() == pytest.approx(values[a:b, 4].sum(), rel=1e-12), (tf, bucket)

    check("1W", "2019-04-01", "2019-04-01", "2019-04-08")  # Monday before the Wednesday start: the whole week
    check("1W", "2019-05-06", "2019-05-06", "2019-05-13")  # the week of the Friday end: all 7 days
    check("1M", "2019-04-01", "2019-04-01", "2019-05-01")
    check("1M", "2019-05-01", "2019-05-01", "2019-06-01")
    check("14D", "2019-05-06", "2019-05-06", "2019-05-20")
    weeks = read(Dataset("tBTCUSD", "1W", store.path("tBTCUSD", "1W"))).column("timestamp").to_pylist()
    assert weeks[0] == datetime(2019, 4, 1, tzinfo=UTC) and weeks[-1] == datetime(2019, 5, 6, tzinfo=UTC)
    months = read(Dataset("tBTCUSD", "1M", store.path("tBTCUSD", "1M"))).column("timestamp").to_pylist()
    assert months == [datetime(2019, 4, 1, tzinfo=UTC), datetime(2019, 5, 1, tzinfo=UTC)]  # no partial June


def test_the_source_range_of_a_local_build_covers_whole_buckets_but_not_the_future():
    ms = lambda s: to_ms(datetime.fromisoformat(s).replace(tzinfo=UTC))  # noqa: E731
    now = ms("2019-05-08T13:37")
    assert fetch.bucket_range("1W", ms("2019-04-03"), ms("2019-05-08"), now) == (ms("2019-04-01"), now)
    assert fetch.bucket_range("1W", ms("2019-04-03"), ms("2019-05-10"), now) == (ms("2019-04-01"), ms("2019-05-10"))
    assert fetch.bucket_range("1W", ms("2019-04-03"), ms("2019-05-01"), now) == (ms("2019-04-01"), ms("2019-05-06"))
    assert fetch.bucket_range("1M", ms("2019-01-15"), ms("2019-03-01"), now) == (ms("2019-01-01"), ms("2019-03-01"))
    assert fetch.bucket_range("1M", ms("2019-01-15"), ms("2019-03-02"), now) == (ms("2019-01-01"), ms("2019-04-01"))
    assert fetch.bucket_range("14D", ms("2019-04-03"), ms("2019-04-09"), now) == (ms("2019-03-25"), ms("2019-04-22"))
    assert fetch.bucket_range("4h", ms("2019-04-03T05:00"), ms("2019-04-03T09:00"), now) == \
        (ms("2019-04-03T04:00"), ms("2019-04-03T12:00"))


def test_cli_a_staging_folder_that_cannot_be_written_is_one_line_and_logged(data_dir):
    """A file where the staging folder of tBTCUSD 1h belongs: that dataset fails in one line, the other runs."""
    blocked = data_dir / "metadata" / "staging" / "tBTCUSD_1h"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    with BitfinexServer() as server:
        proc = run_cli("fetch", "--symbol", "tBTCUSD,tETHUSD", "--timeframe", "1h", "--start", "2019-04-01",
                       "--end", "2019-04-03", "--base-url", server.url, "--rate-limit", "6000", "--quiet")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: tBTCUSD 1h") and str(blocked) in line, line
    assert "tETHUSD 1h: 48 candles, version 1" in proc.stdout
    log = [json.loads(x) for x in (data_dir / "metadata" / "fetch_log.jsonl").read_text().splitlines()]
    assert [(r["symbol"], r["status"]) for r in log if r.get("event") == "fetch"] == \
        [("tBTCUSD", "failed"), ("tETHUSD", "ok")]


def test_two_concurrent_fetches_of_the_same_dataset_end_with_one_version(data_dir):
    """Two real processes fetch the same dataset into one store at the same time: the second waits for the
    first, then finds nothing to do -- one version, the source's candles, no error."""
    with BitfinexServer(latency_s=0.2) as server:
        server.candles("tBTCUSD", "1m")
        cmd = [sys.executable, "-m", "genesis_fw", "fetch", "--symbol", "tBTCUSD", "--timeframe", "1m,1W",
               "--start", "2019-04-01", "--end", "2019-05-01", "--base-url", server.url, "--rate-limit", "6000",
               "--quiet"]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
            assert "Traceback" not in err and "UNIQUE" not in err, err
        store = CandleStore.open(data_dir)
        assert np.array_equal(stored(store, "tBTCUSD", "1m"), expected(server, "tBTCUSD", "1m", START, MID))
    import sqlite3

    with sqlite3.connect(data_dir / "genesis.db") as con:
        rows = con.execute("SELECT timeframe, version FROM dataset_versions ORDER BY timeframe").fetchall()
    assert rows == [("1D", 1), ("1W", 1), ("1m", 1)], rows  # 1D: the source of 1W
    stdout = "".join(out for out, _ in outs)
    assert stdout.count("tBTCUSD 1m: ") == 2 and stdout.count("unchanged (version 1)") == 2, stdout

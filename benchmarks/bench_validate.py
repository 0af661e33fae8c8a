"""Validation speed and correctness on the full 2019 Bitfinex 1m years (tBTCUSD 512,727 rows, tETHUSD 455,968).

For each file: wall time of every check and of the whole ``validate()`` call (the first, cold call and the
median of ``--repeat`` warm calls), the findings, and gap / duplicate counts recomputed independently with
numpy (they must agree), plus the quality score and coverage.

    python benchmarks/bench_validate.py [--data-dir ../shared/data/bitfinex] [--repeat 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE.parent.parent / "shared" / "data" / "bitfinex"
FILES = {"tBTCUSD": "tBTCUSD_1m_2019.parquet", "tETHUSD": "tETHUSD_1m_2019.parquet"}
MINUTE = 60_000


def numpy_reference(path: Path) -> dict[str, int]:
    """Gaps, missing minutes, largest gap and duplicates straight from the timestamps, without DuckDB."""
    ts = pq.read_table(path, columns=["timestamp"]).column("timestamp").cast(pa.int64()).to_numpy()
    slots = np.unique(ts - ts % MINUTE)
    d = np.diff(slots)
    gaps = d[d > MINUTE]
    return {
        "gaps": int(gaps.size),
        "missing": int((gaps // MINUTE - 1).sum()),
        "largest_missing": int(gaps.max() // MINUTE - 1) if gaps.size else 0,
        "duplicates": int(ts.size - np.unique(ts).size),
        "expected": int((slots[-1] - slots[0]) // MINUTE + 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="Limit DuckDB threads (default: all cores).")
    args = ap.parse_args()
    import duckdb

    from genesis_fw.data import validate as v

    if args.threads:  # every validate() opens its own connection: limit each one
        real_connect = duckdb.connect

        def connect(*a, **kw):
            con = real_connect(*a, **kw)
            con.execute(f"SET threads = {int(args.threads)}")
            return con

        duckdb.connect = connect

    print(f"cores: {os.cpu_count()}, duckdb {duckdb.__version__}, threads: {args.threads or 'all'}, "
          f"repeat: {args.repeat}")
    ok = True
    for symbol, name in FILES.items():
        path = args.data_dir / name
        if not path.is_file():
            print(f"{symbol}: {path} not found, skipped")
            continue
        t0 = time.perf_counter()
        cold = v.validate(path, symbol, "1m")
        cold_s = time.perf_counter() - t0
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = v.validate(path, symbol, "1m")
            runs.append((r, time.perf_counter() - t0))
        report = runs[-1][0]
        ref = numpy_reference(path)
        print(f"\n{symbol} 1m 2019: {report.num_candles:,} rows ({path})")
        print(f"  {'step':<16}{'median s':>10}{'min s':>9}")
        for step in ("coverage", *v.CHECKS):
            times = [r.timings_s[step] for r, _ in runs]
            print(f"  {step:<16}{statistics.median(times):>10.3f}{min(times):>9.3f}")
        walls = [w for _, w in runs]
        print(f"  {'total (warm)':<16}{statistics.median(walls):>10.3f}{min(walls):>9.3f}   cold first call "
              f"{cold_s:.3f} s (includes hashing the candles and the first DuckDB connection)")
        g = report.gaps
        agree = (g["count"], g["missing"], g["largest_missing"], report.counts["duplicates"], report.expected_candles) \
            == (ref["gaps"], ref["missing"], ref["largest_missing"], ref["duplicates"], ref["expected"])
        ok &= agree and cold.quality_score == report.quality_score
        print(f"  gaps           {g['count']:,} (numpy {ref['gaps']:,}); missing {g['missing']:,} "
              f"(numpy {ref['missing']:,}); largest {g['largest_missing']} candles "
              f"{g['largest_from']} .. {g['largest_to']} (numpy {ref['largest_missing']})  "
              f"{'AGREE' if agree else 'DISAGREE'}")
        print(f"  duplicates     {report.counts['duplicates']} (numpy {ref['duplicates']})")
        print("  findings       " + ", ".join(f"{k} {n:,}" for k, n in report.counts.items() if k != "gaps"))
        print(f"  coverage       {report.coverage * 100:.3f} % ({report.num_candles:,} of "
              f"{report.expected_candles:,} minutes)")
        print(f"  quality score  {report.quality_score:.6f} (stable across runs: "
              f"{len({r.quality_score for r, _ in runs} | {cold.quality_score}) == 1})")
        for e in report.examples["outliers"]:
            print(f"    spike {e['timestamp']}  {e['prev_close']} -> {e['close']}  "
                  f"({e['log_return'] * 100:+.2f} %, back after {e['reverted_after']} bar(s))")
    print("\nall counts agree with numpy" if ok else "\nMISMATCH against numpy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

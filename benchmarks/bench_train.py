"""Training on the full 2019 tBTCUSD year at 1h and at 1m against the same work in plain scikit-learn / pandas.

Imports the 1m year into a temporary store, resamples it to 1h (a stored file, so both sides read the same
candles) and computes the features of both (``genesis-fw features``: done beforehand, not timed). Then,
in the same run, alternately and ``--repeat`` times each, a fresh process runs one side after its imports:

* ours: :func:`genesis_fw.ml.training.train` with ``write=False`` (examples from the cached feature file
  and labels, the purged split, GridSearchCV over purged folds of logreg's default grid, the refit, the
  calibration choice, the scores of every part);
* the peer (benchmarks/_train_peer.py): the same recipe in plain pandas / scikit-learn.

Reported per side: wall time of the work and the process's peak RSS (medians of the timed runs), the
peak Python-heap memory of the work (``tracemalloc``, which numpy and scikit-learn report their buffers
to, measured in one extra run of each side because tracing slows Python code down several-fold), the
ratios ours / peer (target within 1.5x), and what each found (rows, best C, calibration, test log loss).

    python benchmarks/bench_train.py [--data-dir ../shared/data/bitfinex] [--repeat 3] [--timeframes 1h,1m]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE.parent.parent / "shared" / "data" / "bitfinex"
HORIZON = 20


def worker(side: str, store: str, timeframe: str, mode: str) -> None:
    """One measured run in this process (``mode`` "time" or "memory"); prints a JSON line."""
    import resource
    import time
    import tracemalloc

    sys.path.insert(0, str(HERE))
    import _train_peer as peer  # noqa: F401  (imports outside the timed work, as for ours)
    import sklearn.linear_model  # noqa: F401

    from genesis_fw.config import RuntimeConfig
    from genesis_fw.data.store import CandleStore
    from genesis_fw.data.timeframes import timeframe_ms
    from genesis_fw.ml import training

    cfg = RuntimeConfig.load(None, {"symbol": "tBTCUSD", "timeframe": timeframe, "train.horizon": str(HORIZON)})
    if mode == "memory":
        tracemalloc.start()
    t0 = time.perf_counter()
    if side == "ours":
        res = training.train(cfg, CandleStore.open(store), write=False)
        d = res.doc
        found = {"rows": len(res.examples.y), **d["training_data"]["split"]["rows"],
                 "best_C": d["grid_search"]["best_params"]["C"], "calibration": d["calibration"]["method"],
                 "cv_log_loss": d["calibration"].get("cv_log_loss"), "test_log_loss": d["metrics"]["test"]["log_loss"]}
    else:
        found = peer.run(f"{store}/candles/tBTCUSD_{timeframe}.parquet",
                         f"{store}/features/tBTCUSD_{timeframe}.parquet", timeframe_ms(timeframe), HORIZON)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory() if mode == "memory" else (0, 0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"elapsed": elapsed, "peak": peak, "rss": rss, "found": found}))


def measure(side: str, store: Path, timeframe: str, mode: str = "time") -> dict:
    r = subprocess.run([sys.executable, __file__, "--worker", side, str(store), timeframe, mode],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{side} {timeframe} failed: {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeframes", default="1h,1m")
    args = ap.parse_args()
    src = args.data_dir / "tBTCUSD_1m_2019.parquet"
    if not src.is_file():
        print(f"{src} not found")
        return 1
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        cli = [sys.executable, "-m", "genesis_fw", "--data-dir", str(store)]
        subprocess.run([*cli, "import", str(src), "--symbol", "tBTCUSD", "--timeframe", "1m"], check=True,
                       capture_output=True)
        subprocess.run([*cli, "resample", "--symbol", "tBTCUSD", "--to", "1h"], check=True, capture_output=True)
        for tf in args.timeframes.split(","):
            subprocess.run([*cli, "features", "--symbol", "tBTCUSD", "--timeframe", tf], check=True,
                           capture_output=True)
            runs: dict[str, list[dict]] = {"ours": [], "peer": []}
            for _ in range(args.repeat):
                for side in ("ours", "peer"):
                    runs[side].append(measure(side, store, tf))
            heap = {side: measure(side, store, tf, "memory")["peak"] for side in ("ours", "peer")}
            print(f"tBTCUSD {tf} 2019, horizon {HORIZON}, logreg grid C=0.001..10 x 5 purged folds, "
                  f"calibration none/platt/isotonic x 5 folds; repeat {args.repeat}")
            figures = {}
            for side in ("ours", "peer"):
                rs = runs[side]
                figures[side] = {"elapsed": med(r["elapsed"] for r in rs), "rss": med(r["rss"] for r in rs),
                                 "peak": heap[side]}
                f = figures[side]
                print(f"  {side:<5} {f['elapsed']:7.2f} s   peak heap {f['peak'] / 2**20:8.1f} MiB   "
                      f"peak RSS {f['rss'] / 2**20:8.1f} MiB   found {json.dumps(rs[-1]['found'])}")
            o, p = figures["ours"], figures["peer"]
            print(f"  ratio ours/peer: time {o['elapsed'] / p['elapsed']:.2f}x, "
                  f"peak heap {o['peak'] / p['peak']:.2f}x, peak RSS {o['rss'] / p['rss']:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

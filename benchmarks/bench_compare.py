"""``compare`` of two 1h models over the 2019 tBTCUSD year with K=5 walk-forward windows: time, and the part
spent retraining vs testing.

Imports the 1m year into a temporary store, resamples it to 1h (a stored file) and computes its features
(``genesis-fw features``), then trains two logreg models on it into a temporary models folder (not timed):
A with C fixed at 0.01 and no calibration, B with C fixed at 1 and Platt calibration, both horizon 20.
Then, ``--repeat`` times in a fresh process each, :func:`genesis_fw.selection.comparison.compare` of A
(baseline) against B with ``walk_forward=5`` and the backtests, and prints the wall time of the whole
comparison and its parts (medians): reading examples, scoring and tests, backtests, walk-forward
retraining (the refits of the model and its calibration on each window's past) and walk-forward
testing (predicting and scoring each window).

    python benchmarks/bench_compare.py [--data-dir ../shared/data/bitfinex] [--repeat 3] [--windows 5]
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
MODELS = (("A", {"model.C": "0.01", "train.calibration": "none"}),
          ("B", {"model.C": "1", "train.calibration": "platt"}))


def worker(store: str, models: str, windows: str) -> None:
    """One timed comparison in this process; prints a JSON line."""
    import time

    from genesis_fw.config import RuntimeConfig
    from genesis_fw.data.store import CandleStore
    from genesis_fw.ml import model_file
    from genesis_fw.selection import comparison

    loaded = [model_file.load(n, Path(models)) for n in ("tBTCUSD_1h_v1", "tBTCUSD_1h_v2")]
    cfg = RuntimeConfig.load(None, {})
    t0 = time.perf_counter()
    res = comparison.compare(loaded, CandleStore.open(store), cfg, walk_forward=int(windows))
    elapsed = time.perf_counter() - t0
    wf = res["walk_forward"]
    print(json.dumps({"elapsed": elapsed, "timing": res["timing"], "wf": wf["timing"], "rows": res["period"]["rows"],
                      "wins": wf["wins"], "pair": {k: res["pairs"][0][k] for k in ("log_loss_difference", "dm")},
                      "window_rows": [w["rows"] for w in wf["windows"]]}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--windows", type=int, default=5)
    args = ap.parse_args()
    src = args.data_dir / "tBTCUSD_1m_2019.parquet"
    if not src.is_file():
        print(f"{src} not found")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        store, models = Path(tmp) / "store", Path(tmp) / "models"
        cli = [sys.executable, "-m", "genesis_fw", "--data-dir", str(store), "--models-dir", str(models)]
        subprocess.run([*cli, "import", str(src), "--symbol", "tBTCUSD", "--timeframe", "1m"], check=True,
                       capture_output=True)
        subprocess.run([*cli, "resample", "--symbol", "tBTCUSD", "--to", "1h"], check=True, capture_output=True)
        subprocess.run([*cli, "features", "--symbol", "tBTCUSD", "--timeframe", "1h"], check=True, capture_output=True)
        for _, overrides in MODELS:
            subprocess.run([*cli, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "train.folds=3",
                            *(f"{k}={v}" for k, v in overrides.items())], check=True, capture_output=True)
        runs = []
        for _ in range(args.repeat):
            r = subprocess.run([sys.executable, __file__, "--worker", str(store), str(models), str(args.windows)],
                               capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"compare failed: {r.stderr}")
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = statistics.median
    last = runs[-1]
    print(f"compare tBTCUSD_1h_v1 (logreg C=0.01, no calibration) vs tBTCUSD_1h_v2 (logreg C=1, Platt), 2019 1h, "
          f"horizon 20, {args.windows} walk-forward windows; repeat {args.repeat} (medians)")
    print(f"  total                 {med(r['elapsed'] for r in runs):7.2f} s")
    for key, label in (("examples_s", "examples"), ("scoring_s", "scores and tests"), ("backtest_s", "backtests")):
        print(f"  {label:<21} {med(r['timing'][key] for r in runs):7.2f} s")
    print(f"  walk-forward retrain  {med(r['wf']['retrain_s'] for r in runs):7.3f} s")
    print(f"  walk-forward test     {med(r['wf']['test_s'] for r in runs):7.3f} s")
    print(f"  test-part rows {last['rows']:,}; window rows {last['window_rows']}; wins of v2 {last['wins']}; "
          f"mean log-loss difference {last['pair']['log_loss_difference']:.6f}, "
          f"DM p {last['pair']['dm']['p_value']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

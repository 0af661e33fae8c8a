"""`genesis-fw features` on the full 2019 tBTCUSD 1m year (512,727 rows) against a plain pandas + TA-Lib peer.

Imports the year into a temporary store, then measures in the same run (median of ``--repeat``):

* ours, whole process, cold: ``genesis-fw features --symbol tBTCUSD --timeframe 1m`` with no feature file
  (numba's on-disk kernel cache is warm after the first run, as for any user after their first run);
* ours, whole process, cached: the same command again (prints "cached", writes nothing);
* the peer (benchmarks/_features_peer.py) in-process (compute only) and as a whole process
  (read Parquet, compute, write Parquet);

with each process's CPU time (user + system, all threads; ours overlaps numba's loading, DuckDB and the
reading on two threads, so with a free core for each its wall time can be below its CPU time) and the
machine's load average, and checks that the two feature files agree (TA-Lib seeds EMA/RSI differently,
so only after the warm-up, which both drop). Targets: ours cold within 1.5x of the peer's whole process,
cached under 0.3 s.

    python benchmarks/bench_features.py [--data-dir ../shared/data/bitfinex] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE.parent.parent / "shared" / "data" / "bitfinex"
sys.path.insert(0, str(HERE))


CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], label: str = "") -> tuple[float, str]:
    """Wall-clock seconds and stdout of ``cmd``; its CPU seconds (user + system, all its threads) are
    appended to ``CPU[label]``."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr}")
    if label:
        CPU.setdefault(label, []).append(_children_cpu() - cpu0)
    return elapsed, r.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    src = args.data_dir / "tBTCUSD_1m_2019.parquet"
    if not src.is_file():
        print(f"{src} not found")
        return 1
    import _features_peer as peer

    from genesis_fw.config import FeaturesConfig
    from genesis_fw.ml import features

    warmup = features.warmup_bars(FeaturesConfig())
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        cli = [sys.executable, "-m", "genesis_fw", "--data-dir", str(store)]
        subprocess.run([*cli, "import", str(src), "--symbol", "tBTCUSD", "--timeframe", "1m"], check=True,
                       capture_output=True)
        out = store / "features" / "tBTCUSD_1m.parquet"
        cmd = [*cli, "features", "--symbol", "tBTCUSD", "--timeframe", "1m"]
        cold, cached, peer_proc, peer_inproc = [], [], [], []
        first = None
        for i in range(args.repeat + 1):
            out.unlink(missing_ok=True)
            out.with_suffix(".json").unlink(missing_ok=True)
            s, text = timed(cmd, "cold" if i else "")
            if i == 0:
                first = s  # may compile numba kernels if their cache is empty
            else:
                cold.append(s)
            assert text.startswith("Wrote"), text
            s, text = timed(cmd, "cached")
            assert text.startswith("cached"), text
            cached.append(s)
            peer_out = Path(tmp) / "peer.parquet"
            s, _ = timed([sys.executable, str(HERE / "_features_peer.py"), str(store / "candles" /
                          "tBTCUSD_1m.parquet"), str(peer_out), str(warmup)], "peer")
            peer_proc.append(s)
        df = pd.read_parquet(store / "candles" / "tBTCUSD_1m.parquet")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            peer.compute(df)
            peer_inproc.append(time.perf_counter() - t0)
        ours = pd.read_parquet(out)
        theirs = pd.read_parquet(peer_out)
        assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
        worst = {c: float(np.nanmax(np.abs(ours[c].to_numpy() - theirs[c].to_numpy())))
                 for c in ours.columns[1:]}
    med = statistics.median
    load = os.getloadavg()
    print(f"rows: {len(df):,} candles, {len(ours):,} feature rows, {len(ours.columns) - 1} features, "
          f"warm-up {warmup}; repeat {args.repeat}")
    print(f"load average at the end (1, 5, 15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} "
          "CPUs: other work on the machine slows the figures")
    print("                                      wall s    CPU s (user + system, all threads)")
    print(f"ours  whole process, first run     {first:7.3f}")
    print(f"ours  whole process, cold          {med(cold):7.3f}  {med(CPU['cold']):7.3f}")
    print(f"ours  whole process, cached        {med(cached):7.3f}  {med(CPU['cached']):7.3f}")
    print(f"peer  pandas + TA-Lib in-process   {med(peer_inproc):7.3f}")
    print(f"peer  pandas + TA-Lib process      {med(peer_proc):7.3f}  {med(CPU['peer']):7.3f}")
    print(f"ratio ours cold / peer process     {med(cold) / med(peer_proc):7.2f}x (target <= 1.5x)")
    print(f"cached under 0.3 s                 {'yes' if med(cached) < 0.3 else 'NO'}")
    print("largest absolute difference ours vs peer: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backtest speed and memory: genesis-fw against backtesting.py, vectorbt and a hand-written numba floor.

Data: the full 2019 tBTCUSD 1m year from ../shared/data/bitfinex (512,727 bars) and the same data
resampled to 1h. Strategy: ema_rsi with default parameters, zero costs, next-open fills.

Prints, per dataset: bars per second of genesis-fw's per-bar and fast paths (in-process, warm,
median of several runs), the same strategy in backtesting.py and vectorbt (warm and, for vectorbt,
a new process including its JIT warm-up), a hand-written numba loop (the floor), ratios, and the
wall time and peak RSS of whole `genesis-fw backtest --no-report` processes on 512k bars.

    python benchmarks/bench_backtest.py [--data PATH] [--repeat N] [--skip-vectorbt-cold]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "bitfinex" / "tBTCUSD_1m_2019.parquet"


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up (JIT, caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def numba_floor():
    """ema_rsi signals and a next-open long/short position loop in one numba function."""
    from numba import njit

    @njit(cache=True)
    def run(o, c, fast, slow, period, upper, lower):
        n = c.shape[0]
        af, as_, ar = 2.0 / (fast + 1), 2.0 / (slow + 1), 1.0 / period
        f = c[0]
        s = c[0]
        g = np.nan
        lo = np.nan
        pf = ps = 0.0
        side = 0
        pending = 0
        cash = 1.0
        units = 0.0
        for i in range(n):
            if pending != 0 and pending != side:
                cash += units * o[i]
                units = pending * cash / o[i]
                cash -= units * o[i]
                side = pending
            pending = 0
            if i > 0:
                d = c[i] - c[i - 1]
                gain = d if d > 0 else 0.0
                loss = -d if d < 0 else 0.0
                if np.isnan(g):
                    g, lo = gain, loss
                else:
                    g = ar * gain + (1 - ar) * g
                    lo = ar * loss + (1 - ar) * lo
                pf, ps = f, s
                f = af * c[i] + (1 - af) * f
                s = as_ * c[i] + (1 - as_) * s
            r = 100.0 if lo == 0 else 100.0 - 100.0 / (1.0 + g / lo)
            if i >= slow and i < n - 1:
                if f > s and pf <= ps and r < upper:
                    pending = 1
                elif f < s and pf >= ps and r > lower:
                    pending = -1
        return cash + units * c[n - 1]

    return run


def vectorbt_run(bars, targets):
    import pandas as pd
    import vectorbt as vbt
    from _references import bars_frame

    df = bars_frame(bars)
    sig = pd.Series(targets, index=df.index).shift(1)  # decided at close, filled at next open
    entries = (sig == 1).to_numpy()
    exits = (sig == -1).to_numpy()
    return vbt.Portfolio.from_signals(df.Close, entries=entries, exits=exits, short_entries=exits,
                                      short_exits=entries, price=df.Open, fees=0.0, init_cash=1e6, freq="1min")


VBT_COLD = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np, vectorbt as vbt, pandas as pd
t1 = time.perf_counter()
sys.path.insert(0, {here!r})
from genesis_fw.data.store import Dataset, read, resample
from genesis_fw.strategy import Bars
from genesis_fw_strategies.ema_rsi import EmaRsi
from pathlib import Path
import bench_backtest as b
table = read(Dataset("tBTCUSD", "1m", Path({data!r})))
bars = Bars.from_table(table)
s = EmaRsi(); s.init(bars); t = s.targets(bars)
t2 = time.perf_counter()
b.vectorbt_run(bars, t)
t3 = time.perf_counter()
b.vectorbt_run(bars, t)
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first_run": t3 - t2, "warm_run": t4 - t3}}))
"""

RSS_WRAPPER = """
import resource, sys
from genesis_fw.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="genesis-fw", standalone_mode=False)
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def whole_process(data: Path, repeat: int) -> tuple[float, float, float]:
    """Median/min wall time and peak RSS (MB) of `genesis-fw backtest --no-report` on 512k bars."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        (store / "candles").mkdir(parents=True)
        shutil.copy(data, store / "candles" / "tBTCUSD_1m.parquet")
        cmd = [str(Path(sys.executable).with_name("genesis-fw")), "--data-dir", str(store), "backtest",
               "strategy=ema_rsi", "commission=0", "--no-report", "--output", str(Path(tmp) / "bt.html")]
        subprocess.run(cmd, check=True, capture_output=True)  # warm the numba cache and the OS file cache
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        rss = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd[1:]], check=True, capture_output=True,
                             text=True).stderr
        kb = int(next(line.split()[1] for line in rss.splitlines() if line.startswith("MAXRSS_KB")))
    return statistics.median(times), min(times), kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-vectorbt-cold", action="store_true")
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"no data at {args.data}; pass --data PATH to the 2019 tBTCUSD 1m Parquet file")

    from genesis_fw.backtest.engine import decide_per_bar
    from genesis_fw.backtest.positions import track
    from genesis_fw.data.store import Dataset, read, resample
    from genesis_fw.strategy import Bars
    from genesis_fw_strategies.ema_rsi import EmaRsi

    t = time.perf_counter()
    import backtesting  # noqa: F401
    bt_import = time.perf_counter() - t
    from _references import backtesting_py_trades

    datasets = {
        "1m": Bars.from_table(read(Dataset("tBTCUSD", "1m", args.data))),
        "1h": Bars.from_table(resample(args.data, "1h")),
    }
    floor = numba_floor()
    report = {}
    for tf, bars in datasets.items():
        n = len(bars)
        zeros = np.zeros(1)

        def engine(per_bar: bool, bars=bars, n=n):
            s = EmaRsi()
            s.init(bars)
            tg = decide_per_bar(s, n) if per_bar else s.targets(bars)
            return track(bars.open, bars.high, bars.low, bars.close, tg, 1e6, 0.0, 0.0, 1.0, 0.0, 0.0)

        rep = max(1, args.repeat)
        per_bar = median_time(lambda: engine(True), rep)
        fast = median_time(lambda: engine(False), rep)
        nb = median_time(lambda b=bars: floor(b.open, b.close, 12, 26, 14, 70.0, 30.0), rep)
        bt = median_time(lambda b=bars: backtesting_py_trades(b), 1 if n > 100_000 else rep)
        s = EmaRsi()
        s.init(bars)
        targets = s.targets(bars)
        try:
            vbt_warm = median_time(lambda b=bars, tg=targets: vectorbt_run(b, tg), rep)
        except ImportError:
            vbt_warm = None
        del zeros
        report[tf] = {"bars": n, "per_bar_s": per_bar, "fast_s": fast, "numba_floor_s": nb,
                      "backtesting_py_s": bt, "vectorbt_warm_s": vbt_warm}

    print(f"ema_rsi, zero costs, {args.data.name}; medians of {args.repeat} warm runs (2 cores)\n")
    print(f"{'':4} {'bars':>8} {'per-bar s':>10} {'fast s':>8} {'numba s':>8} {'bt.py s':>8} {'vbt s':>7}"
          f" {'per-bar bar/s':>14} {'fast bar/s':>12} {'bt.py/per-bar':>14} {'bt.py/fast':>11}"
          f" {'fast/numba':>11} {'vbt/fast':>9}")
    for tf, r in report.items():
        vbt = r["vectorbt_warm_s"]
        print(f"{tf:4} {r['bars']:>8,} {r['per_bar_s']:>10.3f} {r['fast_s']:>8.3f} {r['numba_floor_s']:>8.3f}"
              f" {r['backtesting_py_s']:>8.2f} {vbt if vbt is not None else float('nan'):>7.3f}"
              f" {r['bars'] / r['per_bar_s']:>14,.0f} {r['bars'] / r['fast_s']:>12,.0f}"
              f" {r['backtesting_py_s'] / r['per_bar_s']:>13.1f}x {r['backtesting_py_s'] / r['fast_s']:>10.1f}x"
              f" {r['fast_s'] / r['numba_floor_s']:>10.2f}x"
              f" {(vbt / r['fast_s']) if vbt else float('nan'):>8.2f}x")
    r = report["1m"]
    print(f"\nper-bar path: {r['per_bar_s'] / r['bars'] * 1e6:.2f} us per bar all in (1m);"
          f" backtesting.py import {bt_import:.2f} s (not included above)")

    wall, wall_min, rss = whole_process(args.data, args.repeat)
    print(f"whole `genesis-fw backtest --no-report` process, 512k bars: median {wall:.2f} s (min {wall_min:.2f} s),"
          f" peak RSS {rss:.0f} MB  [targets: < 1.5 s, < 1024 MB]")

    if not args.skip_vectorbt_cold:
        try:
            import vectorbt  # noqa: F401
        except ImportError:
            print("vectorbt not installed: pip install vectorbt for the cold-process figure")
            return
        code = VBT_COLD.format(here=str(HERE), data=str(args.data))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE)
        if out.returncode == 0:
            v = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"vectorbt in a new process (1m): import {v['import']:.2f} s, first run {v['first_run']:.2f} s"
                  f" (JIT warm-up), warm run {v['warm_run']:.2f} s")
        else:
            print("vectorbt cold run failed:", out.stderr.strip().splitlines()[-1:])


if __name__ == "__main__":
    main()

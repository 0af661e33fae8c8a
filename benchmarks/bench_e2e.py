"""``genesis-fw e2e`` offline on the bundled sample (1h) and on the 2019 tBTCUSD year at 1h and at 1m:
per-step wall time, CPU time and peak memory, cold and cached, and the whole process's wall time.

Each case gets a fresh temporary store, a temporary copy of ``config/models/`` as its models folder (so
the shipped baselines are the champions) and a temporary audit log. For the year cases the 2019 1m file
of ``--data-dir`` is imported into the store with ``genesis-fw import`` first (set-up, not timed); the 1h
case reads that 1m file resampled, as e2e does when the store holds no 1h file. Then, each as a new
``genesis-fw`` process like a user typing the command:

* cold: ``genesis-fw e2e --symbol tBTCUSD --timeframe TF --offline --output RUN`` into an empty run folder;
* cached: the same command again, nothing changed (every step should say "cached").

Reported per run: the steps of ``RUN/summary.json`` (status, wall s, CPU s, peak RSS MiB of the step), the
process's wall time measured here (Python start-up, imports and the hashing of the inputs included), its
CPU time and peak RSS (``wait4``), which step dominates, and the targets: the cached rerun of the 1m year
under 3 s of process wall time, the cold 1h year under 60 s. ``--profile`` adds one more cold run of each
case and its cached rerun under cProfile (a fresh run folder and models copy; their times are not the
reported ones) and prints the functions that took the most time, to say why the dominant step (and the
cached rerun) costs what it does.

    python benchmarks/bench_e2e.py [--data-dir ../shared/data/bitfinex] [--cases sample,1h,1m] [--profile]

Run it with the virtualenv's Python: the ``genesis-fw`` executable beside it is the one measured. Figures
measured with it, and what the profile showed: docs/WORKFLOW.md, "Performance".
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import genesis_fw_executable  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DIR = ROOT.parent / "shared" / "data" / "bitfinex"
CASES = {"sample": ("1h", False), "1h": ("1h", True), "1m": ("1m", True)}
CACHED_1M_TARGET_S = 3.0
COLD_1H_TARGET_S = 60.0


def run_process(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` as a new process (output to ``log``): wall s, CPU s (user + system) and peak RSS MiB."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{log.read_text()[-4000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


class Case:
    """A temporary store, models folder and audit log for one case."""

    def __init__(self, tmp: Path, name: str, src: Path | None) -> None:
        self.tmp = tmp / name
        self.store, self.models, self.audit = self.tmp / "store", self.tmp / "models", self.tmp / "audit.jsonl"
        self.timeframe, _ = CASES[name]
        self.tmp.mkdir(parents=True)
        shutil.copytree(ROOT / "config" / "models", self.models)
        self.global_opts = ["--data-dir", str(self.store), "--models-dir", str(self.models),
                            "--audit-log", str(self.audit)]
        if src is not None:
            run_process([str(genesis_fw_executable()), *self.global_opts, "import", str(src), "--symbol", "tBTCUSD",
                         "--timeframe", "1m"], self.tmp / "import.log")

    def e2e_args(self, run: Path) -> list[str]:
        return [*self.global_opts, "e2e", "--symbol", "tBTCUSD", "--timeframe", self.timeframe, "--offline",
                "--output", str(run)]

    def run(self, run: Path, label: str) -> dict:
        proc = run_process([str(genesis_fw_executable()), *self.e2e_args(run)], self.tmp / f"{label}.log")
        summary = json.loads((run / "summary.json").read_text())
        if not summary["ok"]:
            sys.exit(f"e2e {label} did not finish: {summary['error']}")
        return {"process": proc, "summary": summary}

    def profile(self) -> tuple[pstats.Stats, pstats.Stats]:
        """One more cold run and its cached rerun under cProfile, with a fresh models copy and run folder."""
        shutil.rmtree(self.models)
        shutil.copytree(ROOT / "config" / "models", self.models)
        self.audit.unlink(missing_ok=True)
        stats = []
        for label in ("cold", "cached"):
            out = self.tmp / f"{label}.prof"
            run_process([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "genesis_fw",
                         *self.e2e_args(self.tmp / "run_profiled")], self.tmp / f"profile_{label}.log")
            stats.append(pstats.Stats(str(out)))
        return stats[0], stats[1]


def print_run(label: str, r: dict) -> None:
    s, p = r["summary"], r["process"]
    print(f"  {label}: process wall {p['wall_s']:.2f} s, CPU {p['cpu_s']:.2f} s, peak RSS {p['peak_mib']:.0f} MiB; "
          f"steps in-process wall {s['wall_s']:.2f} s")
    print(f"    {'step':<10} {'status':<8} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9}  detail")
    for step in s["steps"]:
        def num(v: float | None, width: int, digits: int) -> str:
            return ("-" if v is None else f"{v:.{digits}f}").rjust(width)
        print(f"    {step['name']:<10} {step['status']:<8} {num(step['wall_s'], 8, 2)} {num(step['cpu_s'], 8, 2)} "
              f"{num(step['peak_mib'], 9, 0)}  {step['detail'][:90]}")


def dominant(summary: dict) -> tuple[str, float, float]:
    """The step with the most wall time, its seconds and its share of the steps' total."""
    done = [s for s in summary["steps"] if s["wall_s"]]
    if not done:
        return "-", 0.0, 0.0
    top = max(done, key=lambda s: s["wall_s"])
    total = sum(s["wall_s"] for s in done)
    return top["name"], top["wall_s"], top["wall_s"] / total


def print_profile(stats: pstats.Stats, top: int = 14) -> None:
    """The functions with the most cumulative and the most own time (genesis_fw, sklearn, numpy, duckdb...),
    and the time spent importing modules."""
    rows = []
    imports = [v[3] for (f, _, func), v in stats.stats.items()  # type: ignore[attr-defined]
               if func == "_find_and_load" and "importlib._bootstrap" in f]
    print(f"    cProfile: {stats.total_tt:.2f} s in all, {max(imports, default=0.0):.2f} s of it "  # type: ignore[attr-defined]
          "importing modules")
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        rows.append((cumtime, tottime, ncalls, f"{short}:{line}({func})"))
    print(f"    cProfile, most cumulative time (functions of genesis_fw only, top {top}):")
    for cum, tot, n, where in sorted((r for r in rows if "genesis_fw/" in r[3]), reverse=True)[:top]:
        print(f"      {cum:8.2f} s cum {tot:8.2f} s own {n:>8} calls  {where}")
    print(f"    cProfile, most own time (any function, top {top}):")
    for cum, tot, n, where in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        print(f"      {tot:8.2f} s own {cum:8.2f} s cum {n:>8} calls  {where}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--cases", default="sample,1h,1m", help="comma-separated: sample, 1h, 1m")
    ap.add_argument("--profile", action="store_true", help="one more cold run of each case under cProfile")
    args = ap.parse_args()
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    src = args.data_dir / "tBTCUSD_1m_2019.parquet"
    if any(CASES[c][1] for c in cases) and not src.is_file():
        print(f"{src} not found")
        return 1
    load = os.getloadavg()
    print(f"genesis-fw e2e --offline, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            tf, year = CASES[name]
            case = Case(Path(tmp), name, src if year else None)
            what = "bundled sample" if not year else "2019 tBTCUSD year"
            print(f"\n{name}: {what}, e2e at {tf}")
            run = case.tmp / "run"
            cold = case.run(run, "cold")
            cached = case.run(run, "cached")
            print_run("cold", cold)
            print_run("cached", cached)
            step, secs, share = dominant(cold["summary"])
            print(f"  dominant step (cold): {step}, {secs:.2f} s = {share * 100:.0f} % of the steps' wall time")
            not_cached = [s["name"] for s in cached["summary"]["steps"] if s["status"] not in ("cached", "skipped")]
            if not_cached:
                print(f"  NOT CACHED on the rerun: {', '.join(not_cached)}")
            if name == "1m":
                t = cached["process"]["wall_s"]
                verdicts.append(f"cached rerun of the 1m year: {t:.2f} s (target < {CACHED_1M_TARGET_S:g} s) "
                                f"{'met' if t < CACHED_1M_TARGET_S else 'MISSED'}")
            if name == "1h":
                t = cold["process"]["wall_s"]
                verdicts.append(f"cold 1h year: {t:.2f} s (target < {COLD_1H_TARGET_S:g} s) "
                                f"{'met' if t < COLD_1H_TARGET_S else 'MISSED'}")
            if args.profile:
                cold_stats, cached_stats = case.profile()
                print("  profiled cold run:")
                print_profile(cold_stats)
                print("  profiled cached rerun:")
                print_profile(cached_stats, top=8)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for v in verdicts:
        print(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())

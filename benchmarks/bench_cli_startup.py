"""Wall time of starting the ``genesis-fw`` CLI as a new process, against the 0.3 s target.

Measures ``genesis-fw --help`` and ``genesis-fw plugins`` (each a fresh process, like a user typing
the command) and ``python -c pass`` as the floor set by the interpreter itself. Run it with the
virtualenv's Python so that the ``genesis-fw`` executable beside it is the one measured::

    .venv/bin/python benchmarks/bench_cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import genesis_fw_executable  # noqa: E402

TARGET_S = 0.3


def time_runs(cmd: list[str], runs: int) -> list[float]:
    """Seconds per run of ``cmd`` as a new process (after one unmeasured warm-up run)."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr}")
        if i:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs per command (default: 15)")
    args = parser.parse_args()

    exe = str(genesis_fw_executable())
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("genesis-fw --help", [exe, "--help"]),
        ("genesis-fw plugins", [exe, "plugins"]),
    ]
    print(f"{args.runs} runs each, new process per run; target {TARGET_S:.1f} s; executable {exe}")
    print(f"{'command':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'median/target':>14}")
    for label, cmd in commands:
        times = time_runs(cmd, args.runs)
        median = statistics.median(times)
        print(f"{label:<20} {median:>9.3f} {min(times):>7.3f} {max(times):>7.3f} {median / TARGET_S:>13.2f}x")


if __name__ == "__main__":
    main()

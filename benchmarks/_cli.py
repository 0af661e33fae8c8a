"""Shared by the benchmarks that time ``genesis-fw`` as a real process (bench_cli_startup.py, bench_e2e.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def genesis_fw_executable() -> Path:
    """The ``genesis-fw`` console script of this Python environment; exits with a message when missing."""
    exe = Path(sys.executable).parent / ("genesis-fw.exe" if os.name == "nt" else "genesis-fw")
    if not exe.is_file():
        sys.exit(f"genesis-fw not found next to {sys.executable}; install the package into this environment")
    return exe

"""What a step cost: wall time, CPU time and peak memory.

Units: seconds for times, MiB (2**20 bytes) for memory. CPU time is the process's user + system time over
all its threads (DuckDB, numba and BLAS threads included), so it can exceed the wall time.

Peak memory is the peak resident set size *during the step*: on Linux the process's high-water mark
(``VmHWM``) is reset before the step (``/proc/self/clear_refs``, value 5) and read after it, which counts
every allocator (NumPy, Arrow, DuckDB). Where that reset is not allowed, the peak since the process
started is reported instead and ``peak_scope`` says ``process`` rather than ``step``.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


@attrs.define
class Cost:
    """The cost of one step: ``wall_s`` and ``cpu_s`` in seconds, ``peak_mib`` the peak RSS in MiB."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mib: float | None = None
    peak_scope: str = "step"


def _hwm_kib() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_hwm() -> bool:
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def _process_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 1024)


@contextlib.contextmanager
def measure() -> Iterator[Cost]:
    """Measure the body: the yielded :class:`Cost` is filled in when the body ends (also when it raises)."""
    cost = Cost()
    step_scope = _reset_hwm() and _hwm_kib() is not None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield cost
    finally:
        cost.wall_s = time.perf_counter() - wall
        cost.cpu_s = time.process_time() - cpu
        kib = _hwm_kib() if step_scope else None
        if kib is not None:
            cost.peak_mib, cost.peak_scope = kib / 1024, "step"
        else:
            cost.peak_mib, cost.peak_scope = _process_peak_mib(), "process"

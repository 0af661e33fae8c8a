"""A request budget: at most ``limit`` requests in any rolling window, kept in memory or shared through a file.

Two rules keep the exchange from ever counting more than ``limit`` requests in a window, even though
its clock and ours are not the same:

* **A request holds its slot until a full window after it ended** (its answer arrived, or the
  attempt was given up), not after it was sent: the exchange saw it somewhere in between, so the
  next request in that slot reaches the exchange at least a window later. A slot is taken the moment
  the request is granted and counts as in flight until :meth:`RateLimiter.slot` ends it.
* **A safety margin** (``margin``, a fraction, default :data:`DEFAULT_MARGIN` = 5 %) lengthens the
  window: 30 per minute is run as 30 per 63 s, for rounding and bucketing on the exchange's side.

With ``path``, the window lives in a small JSON file (atomically replaced) guarded by an OS file lock
(``fcntl.flock`` on ``<path>.lock``), so every process using the same file -- concurrent ``fetch``
processes on one store, or a rerun right after one was killed -- shares one budget. Times in the
file are wall-clock seconds since the epoch (UTC). A request still in flight from a process that no
longer exists (``kill -9``) is taken to have ended when that is noticed. When the file cannot be used
(read-only or missing folder, no ``fcntl``) the limiter says so once through ``on_warning`` and goes
on with an in-memory window for this process only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._util import write_text_atomic

#: Default safety margin: the window is run ``1 + DEFAULT_MARGIN`` times as long as configured.
DEFAULT_MARGIN = 0.05
#: A request in flight this long (seconds) is taken as ended even if its process still seems alive
#: (a reused process id, or a process on another host sharing the store).
ABANDONED_AFTER_S = 600.0
#: How often (seconds) a limiter waiting on a shared window reads it again.
POLL_S = 0.05

_HOST = socket.gethostname()


class RateLimiter:
    """At most ``per_minute`` requests in any rolling window of ``window_s`` seconds (default 60), the window
    padded by ``margin`` (a fraction) and counted from when each request ended.

    :meth:`slot` is the normal use (``with limiter.slot(): send()``); :meth:`acquire` grants a request
    that ends at once. A request is granted as soon as the budget allows, never later (in memory;
    shared, within :data:`POLL_S`). Thread-safe; callers queue on a lock.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Any] = time.sleep, window_s: float = 60.0, margin: float = DEFAULT_MARGIN,
                 path: str | os.PathLike[str] | None = None, on_warning: Callable[[str], None] | None = None) -> None:
        if int(per_minute) < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute!r}")
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        if not 0 <= margin <= 1:
            raise ValueError(f"margin must be a fraction in [0, 1], got {margin!r}")
        self.per_minute = int(per_minute)
        self.window_s = float(window_s)
        self.margin = float(margin)
        #: The window actually enforced, in seconds.
        self.effective_window_s = self.window_s * (1.0 + self.margin)
        self.path = Path(path) if path is not None else None
        # a shared window needs a clock every process reads alike: wall time
        self._clock = clock if clock is not None else (time.time if path is not None else time.monotonic)
        self._sleep = sleep
        self._on_warning = on_warning
        self._lock = threading.Lock()  # callers queue here
        self._mem_lock = threading.Lock()  # guards the in-memory window (never held while sleeping)
        self._entries: list[dict[str, Any]] = []
        self._lock_fd: int | None = None
        if self.path is not None:
            try:
                import fcntl  # noqa: F401 - POSIX only

                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            except (OSError, ImportError) as exc:
                self._fall_back(exc)

    @property
    def shared(self) -> bool:
        """Whether the window is shared through the file (False after falling back to memory)."""
        return self._lock_fd is not None

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- public ------------------------------------------------------------------------------------
    def acquire(self) -> float:
        """Block until a request may be sent, count it as sent and ended now; return the seconds waited."""
        waited, rid = self._grant()
        self._end(rid)
        return waited

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Hold a slot for one request: wait for the budget, yield the seconds waited, end it on exit."""
        waited, rid = self._grant()
        try:
            yield waited
        finally:
            self._end(rid)

    # -- internals ---------------------------------------------------------------------------------
    def _grant(self) -> tuple[float, str]:
        with self._lock:
            t0 = self._clock()
            while True:
                with self._window() as entries:
                    now = self._clock()
                    expiry = [self._expiry(e, now) for e in entries]
                    entries[:] = [e for e, x in zip(entries, expiry, strict=True) if x > now]
                    # 1 ns slack so float rounding of "end + window" can never stall the loop
                    live = sorted(x for x in expiry if x > now + 1e-9)
                    if len(live) < self.per_minute:
                        rid = uuid.uuid4().hex
                        entries.append({"id": rid, "t": now, "end": None, "pid": os.getpid(), "host": _HOST})
                        return now - t0, rid
                    free_at = live[len(live) - self.per_minute]
                wait = free_at - now
                if self.shared or math.isinf(wait):  # other processes (or threads) may change the window
                    wait = min(wait, POLL_S)
                self._sleep(wait)

    def _end(self, rid: str) -> None:
        with self._window() as entries:
            now = self._clock()
            for e in entries:
                if e.get("id") == rid:
                    e["end"] = max(now, e["t"])
                    break

    def _expiry(self, e: dict[str, Any], now: float) -> float:
        """When entry ``e`` stops counting (may mark a dead process's request as ended now)."""
        end = e.get("end")
        t = float(e["t"])
        if max(t, float(end) if end is not None else t) > now + self.effective_window_s:
            # from the future: the wall clock was set back; count it as ended now rather than for hours
            e["t"] = e["end"] = now
            return now + self.effective_window_s
        if end is not None:
            return float(end) + self.effective_window_s
        if now - t > ABANDONED_AFTER_S:
            return t + ABANDONED_AFTER_S + self.effective_window_s
        if e.get("host") == _HOST and not _alive(int(e.get("pid", 0))):
            e["end"] = now
            return now + self.effective_window_s
        return math.inf

    @contextlib.contextmanager
    def _window(self) -> Iterator[list[dict[str, Any]]]:
        """The window's entries, locked; changes are saved when the block ends without an error."""
        if self._lock_fd is None:
            with self._mem_lock:
                yield self._entries
            return
        import fcntl

        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            self._fall_back(exc)
            with self._mem_lock:
                yield self._entries
            return
        try:
            entries = self._load()
            before = json.dumps(entries, sort_keys=True)
            yield entries
            after = json.dumps(entries, sort_keys=True)
            if after != before:
                try:
                    write_text_atomic(self.path, '{"requests": ' + after + "}\n")
                except OSError as exc:
                    self._entries = entries
                    self._fall_back(exc)
                    return
            self._entries = entries  # what memory falls back to if the file fails later
        finally:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            # unreadable: the requests it held are unknown, so count a full budget as just sent
            now = self._clock()
            return [{"id": f"unknown-{i}", "t": now, "end": now, "pid": 0, "host": ""}
                    for i in range(self.per_minute)]
        entries = data.get("requests") if isinstance(data, dict) else None
        good = []
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and isinstance(e.get("t"), int | float) and \
                    (e.get("end") is None or isinstance(e.get("end"), int | float)):
                good.append(e)
        return good

    def _fall_back(self, exc: BaseException) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
        self._lock_fd = None
        if self._on_warning is not None:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self._on_warning(f"cannot share the request window at {self.path} ({why}); "
                             "limiting requests for this process only")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (a zombie does not)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True

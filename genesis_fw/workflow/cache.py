"""The step cache of an e2e run folder: ``state.json`` records, per step, the SHA-256 key of its inputs, what
it produced and the SHA-256 of every file it produced.

A step is *cached* when its key is the recorded one and every recorded file is still there with the
recorded SHA-256; anything else (a changed input, a missing or edited output) makes it run again, and
since each step's inputs include its upstream steps' outputs (their files' hashes), exactly the steps
downstream of a change run again. ``state.json`` is rewritten atomically after every step, so a run
killed at any moment keeps every step it finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .._util import strict_json, write_text_atomic
from ..errors import OutputError

STATE_FILE = "state.json"
#: Bumped when the meaning of a step's record changes: older records are then ignored (run again).
STATE_VERSION = 1


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def key_of(step: str, inputs: dict[str, Any]) -> str:
    """The cache key of ``step`` with ``inputs`` (JSON-ready): SHA-256 of their canonical JSON."""
    text = json.dumps({"step": step, "inputs": inputs}, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


class StepCache:
    """The records of one run folder's ``state.json``."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / STATE_FILE
        self.steps: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        if self.path.is_file():
            try:
                doc = strict_json(self.path.read_text(encoding="utf-8"), where=str(self.path), error=ValueError,
                                  what="state file")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self.notes.append(f"ignoring the unreadable step cache {self.path} ({exc}): every step runs")
                return
            if isinstance(doc, dict) and doc.get("version") == STATE_VERSION and isinstance(doc.get("steps"), dict):
                self.steps = doc["steps"]
            else:
                self.notes.append(f"ignoring the step cache {self.path} of another format: every step runs")

    def hit(self, step: str, key: str) -> dict[str, Any] | None:
        """The record of ``step`` when it is cached under ``key`` (its files intact), else None."""
        rec = self.steps.get(step)
        if not isinstance(rec, dict) or rec.get("key") != key:
            return None
        for name, sha in (rec.get("files") or {}).items():
            try:
                if file_sha256(Path(name)) != sha:
                    return None
            except OSError:
                return None
        return rec

    def record(self, step: str, key: str, inputs: dict[str, Any], outputs: dict[str, Any],
               files: list[Path]) -> dict[str, Any]:
        """Record ``step`` as done under ``key`` with its ``outputs`` and the hashes of ``files``; saved at once."""
        rec = {"key": key, "inputs": inputs, "outputs": outputs,
               "files": {str(Path(f).resolve()): file_sha256(Path(f)) for f in files}}
        self.steps[step] = rec
        self.save()
        return rec

    def forget(self, step: str) -> None:
        if self.steps.pop(step, None) is not None:
            self.save()

    def save(self) -> None:
        text = json.dumps({"version": STATE_VERSION, "steps": self.steps}, indent=1, sort_keys=True,
                          allow_nan=False) + "\n"
        try:
            write_text_atomic(self.path, text)
        except OSError as exc:
            raise OutputError(f"cannot write the step cache {self.path}: {exc.strerror or exc}") from exc

"""Private helpers shared by several stages."""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close.
    A choice that differs only in case is the closest (``c`` -> ``C``)."""
    choices = list(choices)
    same = [c for c in choices if c.lower() == name.lower()]
    match = same or difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def one_line(exc: BaseException, max_lines: int = 3) -> str:
    """The first lines of an exception's message joined into one line (DuckDB errors span several)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:max_lines]) if lines else type(exc).__name__


def choices_text(choices: Iterable[str]) -> str:
    """Comma-separated, sorted list of names for error messages; ``(none)`` when empty."""
    names = sorted(choices)
    return ", ".join(names) if names else "(none)"


def temp_beside(target: str | os.PathLike[str]) -> Path:
    """Create an empty temporary file in ``target``'s folder (created when missing) and return it.

    Its name is ``.<target name>.<random>.tmp`` and its mode the one a plain ``open()`` would give
    (or the existing target's), so renaming it over ``target`` changes nothing but the content.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file owner-only; give it the mode a plain open() would (or the old file's).
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        os.chmod(tmp, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it over ``target`` atomically.

    The temporary file lives in the same directory (so the rename cannot cross file systems) and
    is fsynced before the rename. If the body raises, the temporary file is removed and ``target``
    keeps its previous content untouched.
    """
    target = Path(target)
    tmp = temp_beside(target)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class StagedFiles:
    """Several files written to temporary names beside their targets, then moved into place together.

    Use through :func:`staged_files`: :meth:`temp` gives the path to write each file to; once every
    file is whole, :meth:`place` renames them over their targets. Until then no target is touched.
    Each existing target is first hard-linked to a backup name, so a failure after :meth:`place`
    (inside the ``with`` block) puts the previous files back and removes the new ones. On a file
    system without hard links a replaced target cannot be restored and is removed instead.
    """

    def __init__(self) -> None:
        self._temps: dict[Path, Path] = {}
        self._backups: dict[Path, Path | None] = {}
        self._placed: list[Path] = []

    def temp(self, target: str | os.PathLike[str]) -> Path:
        """A new empty temp file beside ``target``, to be moved over it by :meth:`place`."""
        target = Path(target)
        if target in self._temps:
            raise ValueError(f"{target} is staged twice")
        self._temps[target] = temp_beside(target)
        return self._temps[target]

    def place(self) -> None:
        """Fsync every temp file, then rename each over its target (all or, on error, none)."""
        for tmp in self._temps.values():
            _fsync(tmp)
        try:
            for target, tmp in self._temps.items():
                self._backups[target] = self._backup(target)
                os.replace(tmp, target)
                self._placed.append(target)
        except BaseException:
            self.undo()
            raise

    @staticmethod
    def _backup(target: Path) -> Path | None:
        if not target.exists():
            return None
        backup = target.with_name(f".{target.name}.{secrets.token_hex(6)}.old")
        try:
            os.link(target, backup)
        except OSError:
            return None
        return backup

    def undo(self) -> None:
        """Put back what :meth:`place` replaced: the previous file where there was one, else nothing."""
        while self._placed:
            target = self._placed.pop()
            backup = self._backups.pop(target, None)
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Remove leftover temp and backup files (never a target)."""
        for path in [*self._temps.values(), *(b for b in self._backups.values() if b is not None)]:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_files() -> Iterator[StagedFiles]:
    """A :class:`StagedFiles`: when the body raises, placed files are undone; temps never outlive it."""
    staged = StagedFiles()
    try:
        yield staged
    except BaseException:
        staged.undo()
        raise
    finally:
        staged.cleanup()


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` through :func:`atomic_path`."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_writable(target: str | os.PathLike[str]) -> None:
    """Raise :class:`OutputError` unless a file can be created (or replaced) at ``target``.

    Refused: ``target`` is a folder; an existing ancestor of it is a file; the nearest existing
    folder on its path is not writable. Missing folders in between are created by the writer.
    """
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder; give a file name")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {target}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: the folder {ancestor} is not writable")


def output_error(target: str | os.PathLike[str], exc: OSError) -> OutputError:
    """A one-line :class:`OutputError` for an ``OSError`` raised while writing ``target``."""
    return OutputError(f"cannot write {target}: {exc.strerror or exc}")


def arrow_to_numpy(col: Any, dtype: str) -> Any:
    """An Arrow array or chunked array as a numpy array, like its ``to_numpy()`` (same values and dtype),
    without a copy for one null-free chunk of ``dtype`` (``"float64"`` or ``"int64"``; a timestamp
    column cast to int64 first).

    pyarrow's own ``to_numpy`` imports pandas on first use, about 0.1-0.3 s that a short command such
    as ``genesis-fw features`` would otherwise pay for nothing; other types and columns with nulls
    still go through it.
    """
    import numpy as np
    import pyarrow as pa

    want = np.dtype(dtype)
    arrow_type = {"float64": pa.float64(), "int64": pa.int64()}[want.name]
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if col.type != arrow_type or any(c.null_count for c in chunks):
        return col.to_numpy()
    parts = [np.frombuffer(c.buffers()[1], dtype=want, count=len(c), offset=c.offset * want.itemsize)
             for c in chunks]
    if len(parts) == 1:
        parts[0].flags.writeable = False  # a view of Arrow's memory, read-only as to_numpy makes it
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=want)


def json_error_text(exc: json.JSONDecodeError) -> str:
    """``exc``'s message with its position, e.g. "Unterminated string starting at line 1 column 9"
    (the message may already end in "at")."""
    where = f"line {exc.lineno} column {exc.colno}"
    return f"{exc.msg} {where}" if exc.msg.endswith(" at") else f"{exc.msg} at {where}"


def strict_json(text: str, *, where: str, error: type[Exception], what: str,
                max_int_digits: int | None = None) -> Any:
    """``text`` parsed as strict JSON, for files a user may have edited (model files, registry.json).

    Refused, each as one line ``error(f"{where}: ...")``: NaN or Infinity, a number too large for a float
    (``1e999``), an integer of more than ``max_int_digits`` digits (when given), a duplicate key, a syntax
    error (with its line and column) and nesting too deep for the parser. ``what`` names the file kind in
    the messages ("a model file")."""

    def constant(name: str) -> Any:
        raise error(f"{where}: holds {name}; {what} has finite numbers only")

    def number(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise error(f"{where}: the number {token[:40]} is too large for a float")
        return value

    def integer(token: str) -> int:
        digits = len(token.lstrip("-"))
        if max_int_digits is not None and digits > max_int_digits:
            raise error(f"{where}: an integer of {digits} digits; {what}'s integers have at most "
                        f"{max_int_digits} digits")
        return int(token)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise error(f"{where}: duplicate key {key!r}; the file was edited or corrupted")
            out[key] = value
        return out

    try:
        return json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer,
                          object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON (truncated or edited?): {json_error_text(exc)}") from None
    except RecursionError:
        raise error(f"{where}: arrays or objects nested too deeply for {what}") from None
    except ValueError as exc:   # e.g. an integer beyond Python's conversion limit
        raise error(f"{where}: not valid as {what}: {one_line(exc)}"[:300]) from None

"""Private helpers shared by several stages."""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import OutputError


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def one_line(exc: BaseException, max_lines: int = 3) -> str:
    """The first lines of an exception's message joined into one line (DuckDB errors span several)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:max_lines]) if lines else type(exc).__name__


def choices_text(choices: Iterable[str]) -> str:
    """Comma-separated, sorted list of names for error messages; ``(none)`` when empty."""
    names = sorted(choices)
    return ", ".join(names) if names else "(none)"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it over ``target`` atomically.

    The temporary file lives in the same directory (so the rename cannot cross file systems) and
    is fsynced before the rename. If the body raises, the temporary file is removed and ``target``
    keeps its previous content untouched.
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
    os.chmod(tmp, mode)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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

"""Run a real process with a folder genuinely read-only, also when the tests run as root.

Permission bits do not stop root, so ``chmod -R a-w`` alone proves nothing there. As root, the
command runs in a private mount namespace where the folder is bind-mounted read-only onto itself
(``unshare --mount`` + ``mount -o remount,bind,ro``): the kernel refuses every write with EROFS, as on
a read-only shared mount, and nothing outlives the process. As another user, the permission bits are
removed for the test and restored afterwards. Either way the mechanism is first proved by a write that
must fail; where neither works the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import pytest

_MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _in_read_only_namespace(folder: Path) -> Callable[[list[str]], list[str]]:
    def wrap(argv: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_RO, str(folder), *argv]
    return wrap


@contextmanager
def _without_write_bits(folder: Path) -> Iterator[Callable[[list[str]], list[str]]]:
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in reversed(paths):
        p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield list
    finally:
        for p in paths:
            p.chmod(modes[p])


@contextmanager
def read_only(folder: Path) -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """Yield ``run(*argv, cwd=None)``: runs ``argv`` (a full command line) while ``folder`` is read-only."""
    folder = Path(folder).resolve()
    if os.geteuid() == 0:
        if shutil.which("unshare") is None or shutil.which("mount") is None:
            pytest.skip("running as root without unshare/mount: no way to make a folder read-only for root")
        mechanism: AbstractContextManager = nullcontext(_in_read_only_namespace(folder))
    else:
        mechanism = _without_write_bits(folder)
    with mechanism as wrap:
        def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
            return subprocess.run(wrap(list(argv)), capture_output=True, text=True, cwd=cwd, timeout=300)

        ready = run("true")
        if ready.returncode != 0:
            pytest.skip(f"cannot make {folder} read-only here (private read-only bind mount failed: "
                        f"{ready.stderr.strip()})")
        probe = folder / ".write-probe"
        attempt = run(sys.executable, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x')",
                      str(probe))
        if attempt.returncode == 0 or probe.exists():
            probe.unlink(missing_ok=True)
            pytest.skip(f"writes into {folder} still succeed under the read-only mechanism; nothing to test")
        yield run


def genesis(*args: str) -> list[str]:
    """The command line of ``genesis-fw ARGS`` for :func:`read_only`'s ``run``."""
    return [sys.executable, "-m", "genesis_fw", *args]

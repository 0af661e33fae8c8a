"""The pre-commit hook that validates model files: its entry, run as pre-commit runs it (the command with
the changed files that match its pattern appended), passes the shipped files and fails on a bad one."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _hook(hook_id: str) -> dict:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [h for repo in config["repos"] for h in repo["hooks"] if h["id"] == hook_id]
    assert len(hooks) == 1
    return hooks[0]


def _run(hook: dict, files: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The hook's entry on the ``files`` (paths relative to ``cwd``) its ``files``/``exclude`` patterns select."""
    chosen = [f for f in files if re.search(hook["files"], f) and not re.search(hook.get("exclude", "$^"), f)]
    argv = shlex.split(hook["entry"])
    assert argv[0] == "genesis-fw"
    return subprocess.run([sys.executable, "-m", "genesis_fw", *argv[1:], *chosen], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _copy_models(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config" / "models", tmp_path / "config" / "models",
                    ignore=shutil.ignore_patterns("registry.db*", ".*"))
    return tmp_path


def test_the_hook_selects_model_files_and_registry_json_only() -> None:
    hook = _hook("genesis-fw-models-validate")
    pick = [f for f in ["config/models/tBTCUSD_1h_v1.json", "config/models/registry.json", "config/runtime.seed.json",
                        "config/models/.versions.json", "docs/x.json", "config/models/sub/a.json"]
            if re.search(hook["files"], f) and not re.search(hook.get("exclude", "$^"), f)]
    assert pick == ["config/models/tBTCUSD_1h_v1.json", "config/models/registry.json"]


def test_the_hook_passes_the_shipped_files_and_fails_on_a_bad_one(tmp_path: Path) -> None:
    hook = _hook("genesis-fw-models-validate")
    root = _copy_models(tmp_path)
    files = sorted(str(p.relative_to(root)) for p in (root / "config" / "models").glob("*.json"))
    good = _run(hook, files, root)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.count("OK ") == len(files) == 3

    bad = root / "config" / "models" / "tBTCUSD_1h_v1.json"
    doc = json.loads(bad.read_text(encoding="utf-8"))
    doc["horizon"] = 5   # an edit the content hash does not cover any more
    bad.write_text(json.dumps(doc), encoding="utf-8")
    proc = _run(hook, files, root)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "tBTCUSD_1h_v1.json" in errors[0], proc.stderr


def test_the_ruff_hook_runs_the_linter_the_ci_runs() -> None:
    assert shlex.split(_hook("ruff")["entry"]) == ["ruff", "check"]

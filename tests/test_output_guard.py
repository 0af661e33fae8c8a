"""``--output`` of compare, evaluate and backtest never overwrites models or the model registry: model
files (inside the models folder or not), anything inside the models folder, the registry's own files and the
audit log mirror, named by the page or by a file written beside it. Real processes, real files; every
refusal is one line, before any work, and leaves the target's bytes as they were."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_env, cli_ok, one_line_error, run_cli

from genesis_fw.ml import model_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "models"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty store (the bundled sample stands in), the shipped models folder with a second 1h model
    (a copy of v1, so compare has two), a registry.db made by registering it, and an audit log mirror."""
    (tmp_path / "store").mkdir()
    shutil.copytree(SHIPPED, tmp_path / "models")
    doc = model_file.load(tmp_path / "models" / "tBTCUSD_1h_v1.json").doc
    doc["description"] = "copy of v1"
    path = model_file.write_new(doc, tmp_path / "models")
    cli_ok(run_cli("models", "register", str(path), cwd=tmp_path, env=_env(tmp_path)))
    assert (tmp_path / "models" / "registry.db").is_file()
    assert (tmp_path / "logs" / "audit.jsonl").is_file()
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(tmp_path / "models" / "tBTCUSD_1h_v1.json", tmp_path / "elsewhere" / "mine.json")
    return tmp_path


def _env(tmp: Path) -> dict[str, str]:
    env = cli_env(tmp)
    env["GENESIS_AUDIT_LOG"] = str(tmp / "logs" / "audit.jsonl")
    return env


def _commands(target: str) -> list[list[str]]:
    return [["compare", "tBTCUSD_1h_v1", "tBTCUSD_1h_v2", "--no-backtest", "--output", target],
            ["evaluate", "tBTCUSD_1h_v1", "--output", target],
            ["backtest", "--timeframe", "1h", "strategy=ema_rsi", "--output", target]]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("target", "expected"), [
    ("models/tBTCUSD_1h_v2.json", "models folder"),       # a registered model file itself
    ("models/tBTCUSD_1h_v2.html", "models folder"),       # its JSON beside the page is the model file
    ("models/registry.db", "models folder"),
    ("models/registry.json", "models folder"),
    ("models/page.html", "models folder"),                # anything inside the models folder
    ("elsewhere/mine.html", "is a model file"),           # a model file outside it, beside the page
    ("elsewhere/mine.json", "is a model file"),
    ("other/registry.db-wal", "registry file"),           # another registry's files
    ("other/.registry.lock", "registry file"),
    ("other/.versions.json", "registry file"),
    ("logs/audit.jsonl", "audit log mirror"),            # the mirror ($GENESIS_AUDIT_LOG)
])
def test_outputs_never_overwrite_models_or_the_registry(work: Path, target: str, expected: str) -> None:
    before = _digest(work)
    for args in _commands(target):
        one_line_error(run_cli(*args, cwd=work, env=_env(work)), expected)
    assert _digest(work) == before
    assert not (work / "results").exists()


def test_the_models_folder_and_audit_log_options_are_honoured(work: Path) -> None:
    other = work / "other_models"
    shutil.copytree(work / "models", other)
    env = _env(work)
    del env["GENESIS_AUDIT_LOG"]
    (work / "cfg.json").write_text(json.dumps({"registry": {"audit_log": "cfg_logs/mirror.jsonl"}}), encoding="utf-8")
    (work / "cfg_logs").mkdir()
    (work / "cfg_logs" / "mirror.jsonl").write_text("{}\n", encoding="utf-8")
    before = _digest(work)
    cases = [
        (["--models-dir", str(other), "evaluate", "tBTCUSD_1h_v1", "--output", "other_models/x.html"], "models folder"),
        (["--audit-log", "opt/audit.jsonl", "evaluate", "tBTCUSD_1h_v1", "--output", "opt/audit.jsonl"],
         "audit log mirror"),
        (["--audit-log", "opt/audit.jsonl", "backtest", "--timeframe", "1h", "strategy=ema_rsi", "--output",
          "opt/audit.jsonl"], "audit log mirror"),
        (["compare", "tBTCUSD_1h_v1", "tBTCUSD_1h_v2", "--no-backtest", "--config", "cfg.json", "--output",
          "cfg_logs/mirror.jsonl"], "audit log mirror"),
        (["backtest", "--timeframe", "1h", "strategy=ema_rsi", "--config", "cfg.json", "--output",
          "cfg_logs/mirror.jsonl"], "audit log mirror"),
    ]
    for args, expected in cases:
        one_line_error(run_cli(*args, cwd=work, env=env), expected)
    assert _digest(work) == before


def test_an_ordinary_output_is_still_written(work: Path) -> None:
    proc = cli_ok(run_cli("evaluate", "tBTCUSD_1h_v1", "--output", "out/v1.html", cwd=work, env=_env(work)))
    assert (work / "out" / "v1.json").is_file() and (work / "out" / "v1.html").is_file(), proc.stdout

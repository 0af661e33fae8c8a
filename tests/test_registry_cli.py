"""``genesis-fw models ...`` as real processes: crashes (SIGKILL at each point of a change), many
processes changing one registry at once, tampered files refused by promotion and backtests, validate,
audit --verify and where the audit log goes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from conftest import cli_ok, one_line_error, run_cli
from readonly import genesis, read_only
from registry_sample import SHIPPED, make, tamper

from genesis_fw.registry import registry_file as rf
from genesis_fw.registry.registry import CRASH_POINTS, Registry

#: These commands may print notes other than "Note: ..." lines (repairs, warnings) before their error.
_one_line_error = partial(one_line_error, notes_only=False)




def _models(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("--models-dir", str(folder), "models", *args, env=env)


def _champions(folder: Path) -> dict[tuple[str, str], list[str]]:
    conn = sqlite3.connect(folder / "registry.db")
    try:
        rows = conn.execute("SELECT symbol, timeframe, name FROM models WHERE status = 'champion'").fetchall()
    finally:
        conn.close()
    out: dict[tuple[str, str], list[str]] = {}
    for symbol, timeframe, name in rows:
        out.setdefault((symbol, timeframe), []).append(name)
    return out


def _assert_everywhere_the_same(folder: Path, audit_log: Path) -> None:
    """registry.json == the catalog's last state, the mirror == the catalog's entries, `audit --verify` OK."""
    conn = sqlite3.connect(folder / "registry.db")
    try:
        rows = conn.execute("SELECT seq, sha256, state_after, entry FROM model_events ORDER BY seq").fetchall()
        models = [dict(zip(("name", "symbol", "timeframe", "version", "file", "sha256", "status", "model_type",
                                "horizon", "baseline", "metrics", "registered_at"), r, strict=True))
                  for r in conn.execute("SELECT name, symbol, timeframe, version, file, sha256, status, model_type, "
                                        "horizon, baseline, metrics, registered_at FROM models")]
        stacks: dict[tuple[str, str], list[str]] = {}
        for s, t, n in conn.execute("SELECT symbol, timeframe, name FROM champion_stack ORDER BY position"):
            stacks.setdefault((s, t), []).append(n)
    finally:
        conn.close()
    doc = json.loads((folder / "registry.json").read_text())
    assert doc["event"] == {"seq": rows[-1][0], "sha256": rows[-1][1]}
    assert doc["markets"] == json.loads(rows[-1][2]) == rf.markets(models, stacks)
    assert audit_log.read_text().splitlines() == [r[3] for r in rows]
    proc = cli_ok(_models(folder, "audit", "--verify"))
    assert "Audit log OK" in proc.stdout


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """tBTCUSD 1h: v1 champion, v2 and v3 challengers (registered in-process), v4 and v5 files not registered."""
    d = tmp_path / "models"
    for v in (1, 2, 3, 4, 5):
        make(d, "1h", v)
    reg = Registry.open(d)
    for v in (1, 2, 3):
        reg.register(f"tBTCUSD_1h_v{v}", reason="setup")
    reg.promote("tBTCUSD_1h_v1", reason="setup")
    return d


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_promote_killed_at_any_point_is_everywhere_nowhere_or_repaired_by_the_next_command(folder, point):
    audit_log = Path(os.environ["GENESIS_AUDIT_LOG"])
    env = {**os.environ, "GENESIS_REGISTRY_CRASH_AT": point}
    proc = _models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "crash test", env=env)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    listed = cli_ok(_models(folder, "list"))
    applied = point != "before_commit"
    champion = "tBTCUSD_1h_v2" if applied else "tBTCUSD_1h_v1"
    assert [ln.split()[0] for ln in listed.stdout.splitlines() if " champion " in ln] == [champion]
    repaired = [ln for ln in listed.stderr.splitlines() if ln.startswith("repaired: ")]
    if point == "after_commit":  # mirror and registry.json behind; a read repairs registry.json, never the mirror
        assert len(repaired) == 1 and "registry.json" in repaired[0], listed.stderr
        assert "lacks entry 5; the next change appends them" in listed.stderr, listed.stderr
        assert "lacked entry 5; appended" in cli_ok(_models(folder, "repair")).stdout
    elif point == "after_mirror":  # registry.json behind
        assert len(repaired) == 1 and "shows event 4, the catalog is at event 5" in repaired[0], listed.stderr
    else:  # nothing to repair: nowhere, or everywhere
        assert repaired == [], listed.stderr
    _assert_everywhere_the_same(folder, audit_log)
    assert _models(folder, "list").stderr == ""  # repaired once, and said once


def test_a_change_after_a_crash_repairs_first_and_says_so(folder):
    audit_log = Path(os.environ["GENESIS_AUDIT_LOG"])
    env = {**os.environ, "GENESIS_REGISTRY_CRASH_AT": "after_commit"}
    assert _models(folder, "retire", "tBTCUSD_1h_v3", "--reason", "x", env=env).returncode == -signal.SIGKILL
    proc = cli_ok(_models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "next"))
    assert "repaired: " in proc.stderr and "Promoted tBTCUSD_1h_v2" in proc.stdout
    _assert_everywhere_the_same(folder, audit_log)


_WORKER = """
import os, sys, time
from genesis_fw.cli import main
ready, go = sys.argv[1], sys.argv[2]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
sys.argv = ["genesis-fw", *sys.argv[3:]]
main()
"""


def test_many_processes_changing_one_registry_at_once_leave_it_consistent(folder, tmp_path):
    audit_log = Path(os.environ["GENESIS_AUDIT_LOG"])
    make(folder, "1m", 1)
    make(folder, "1m", 2)
    base = ["--models-dir", str(folder), "models"]
    jobs = [["promote", "tBTCUSD_1h_v2", "--reason", "p2"], ["promote", "tBTCUSD_1h_v3", "--reason", "p3"],
            ["rollback", "tBTCUSD", "1h", "--reason", "r1"], ["rollback", "tBTCUSD", "1h", "--reason", "r2"],
            ["register", "tBTCUSD_1h_v4"], ["register", "tBTCUSD_1h_v5"],
            ["promote", "tBTCUSD_1h_v4", "--reason", "p4"],
            ["register", "tBTCUSD_1m_v1"], ["register", "tBTCUSD_1m_v2"],
            ["promote", "tBTCUSD_1m_v1", "--reason", "m1"],
            ["retire", "tBTCUSD_1h_v3", "--reason", "t3"], ["rollback", "tBTCUSD", "1m", "--reason", "r3"]]
    go = tmp_path / "go"
    procs = []
    for i, job in enumerate(jobs):
        argv = [sys.executable, "-c", _WORKER, str(tmp_path / f"ready{i}"), str(go), *base, *job]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(len(jobs))):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()  # every worker has imported the CLI and waits: they start together
    applied = 0
    for job, p in zip(jobs, procs, strict=True):
        out, err = p.communicate(timeout=300)
        assert "Traceback" not in err, err
        if p.returncode == 0:
            applied += 1
            assert out.strip(), job
        else:  # refused: one clear line (e.g. nothing to roll back yet, promoted before registered)
            assert p.returncode == 1 and [ln for ln in err.splitlines() if ln.startswith("Error: ")] == \
                [err.strip().splitlines()[-1]], (job, err)
    assert applied >= 4
    setup_entries = 4
    history = Registry.open(folder).history()
    assert len(history) == setup_entries + applied
    assert all(len(names) == 1 for names in _champions(folder).values())
    _assert_everywhere_the_same(folder, audit_log)


def test_a_tampered_registered_model_is_refused_by_backtests_and_promotion(folder, data_dir):
    make(folder, "1m", 1)
    reg = Registry.open(folder)
    reg.register("tBTCUSD_1m_v1", reason="x")
    args = ("backtest", "strategy=ml_model", "strategy.model=tBTCUSD_1m_v1", "--symbol", "tBTCUSD", "--timeframe",
            "1m", "--start", "2019-04-01", "--end", "2019-04-02", "--no-report", "--output",
            str(data_dir.parent / "bt" / "bt.html"))
    cli_ok(run_cli("--models-dir", str(folder), *args))
    tamper(folder / "tBTCUSD_1m_v1.json")
    _one_line_error(run_cli("--models-dir", str(folder), *args), "tBTCUSD_1m_v1.json: tampered or replaced since it "
                    "was registered")
    _one_line_error(_models(folder, "promote", "tBTCUSD_1m_v1", "--reason", "x"), "tampered or replaced")
    _one_line_error(_models(folder, "validate", str(folder / "tBTCUSD_1m_v1.json")), "tampered")


def test_validate_checks_model_files_and_registry_json(folder, tmp_path):
    good = [str(folder / "tBTCUSD_1h_v1.json"), str(folder / "tBTCUSD_1h_v4.json"), str(folder / "registry.json"),
            str(SHIPPED / "registry.json")]
    proc = cli_ok(run_cli("models", "validate", *good))
    assert [ln.split()[0] for ln in proc.stdout.splitlines()] == ["OK"] * 4
    assert "registry state, 1 markets" in proc.stdout
    broken = tmp_path / "tBTCUSD_1h_v7.json"
    broken.write_text((folder / "tBTCUSD_1h_v4.json").read_text()[:-30])
    proc = run_cli("models", "validate", good[0], str(broken), good[1])
    _one_line_error(proc, f"{broken}: not valid JSON")
    assert proc.stdout.count("OK ") == 1  # stopped at the first bad one
    bad_json = tmp_path / "registry.json"
    bad_json.write_text('{"schema_version": 1}')
    _one_line_error(run_cli("models", "validate", str(bad_json)), f"{bad_json}: ")


def test_list_show_history_and_errors(folder):
    cli_ok(_models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "because"))
    listed = cli_ok(_models(folder, "list")).stdout
    assert "tBTCUSD_1h_v2" in listed and "tBTCUSD_1h_v1" not in listed
    assert "tBTCUSD_1h_v1          retired" in cli_ok(_models(folder, "list", "--all")).stdout
    shown = cli_ok(_models(folder, "show", "tBTCUSD_1h_v2")).stdout
    assert "status:      champion" in shown and "rollback to: tBTCUSD_1h_v1" in shown
    assert "matches the registry" in shown
    history = cli_ok(_models(folder, "history", "tBTCUSD", "1h")).stdout.splitlines()
    assert "promote tBTCUSD 1h tBTCUSD_1h_v1 -> tBTCUSD_1h_v2: because" in history[-1]
    _one_line_error(_models(folder, "show", "tBTCUSD_1h_v22"), "did you mean 'tBTCUSD_1h_v2'")
    assert "tBTCUSD_1h_v1 is the champion again" in cli_ok(_models(folder, "rollback", "tBTCUSD", "1h", "--reason",
                                                                "x")).stdout
    _one_line_error(_models(folder, "rollback", "tBTCUSD", "1h", "--reason", "x"), "no previous champion")
    _one_line_error(_models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "x"), "is retired")


def test_audit_verify_points_at_the_first_broken_link(folder):
    audit_log = Path(os.environ["GENESIS_AUDIT_LOG"])
    lines = audit_log.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["reason"] = "edited"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    audit_log.write_text("\n".join(lines) + "\n")
    proc = _models(folder, "audit", "--verify")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "2" in proc.stderr.splitlines()[-1], proc.stderr


def test_repair_rebuilds_a_hand_edited_registry_json(folder):
    doc = json.loads((folder / "registry.json").read_text())
    doc["markets"][0]["champion"] = None
    (folder / "registry.json").write_text(json.dumps(doc))
    _one_line_error(_models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "x"), "genesis-fw models repair")
    _one_line_error(_models(folder, "list"), "edited by hand")
    proc = cli_ok(_models(folder, "repair"))
    assert proc.stdout.startswith("repaired: ") and "rewrote" in proc.stdout
    assert "nothing to repair" in cli_ok(_models(folder, "repair")).stdout
    _assert_everywhere_the_same(folder, Path(os.environ["GENESIS_AUDIT_LOG"]))


def test_read_commands_on_the_shipped_folder_work_without_writing(tmp_path):
    before = {p.name: p.read_bytes() for p in SHIPPED.iterdir() if p.is_file()}
    proc = cli_ok(run_cli("--models-dir", str(SHIPPED), "models", "list"))
    assert "tBTCUSD_1h_v1" in proc.stdout and "tBTCUSD_1m_v1" in proc.stdout and proc.stderr == ""
    assert {p.name: p.read_bytes() for p in SHIPPED.iterdir() if p.is_file()} == before


def test_read_commands_in_a_read_only_folder_say_what_is_stale(folder):
    reg = Registry.open(folder)
    before = (folder / "registry.json").read_bytes()
    reg.promote("tBTCUSD_1h_v2", reason="x")
    (folder / "registry.json").write_bytes(before)  # as if a crash stopped the change before its rewrite
    with read_only(folder) as run:
        proc = run(*genesis("--models-dir", str(folder), "models", "list"))
    assert proc.returncode == 0, proc.stderr
    assert [ln.split()[0] for ln in proc.stdout.splitlines() if " champion " in ln] == ["tBTCUSD_1h_v2"]
    stale = [ln for ln in proc.stderr.splitlines() if ln.startswith("stale: ")]
    assert len(stale) == 1 and "shows event 4, the catalog is at event 5" in stale[0] and "not repaired" in stale[0]
    assert (folder / "registry.json").read_bytes() == before


def test_the_audit_log_option_beats_the_environment_and_the_config(folder, tmp_path):
    flag = tmp_path / "flag.jsonl"
    cli_ok(run_cli("--models-dir", str(folder), "--audit-log", str(flag), "models", "register", "tBTCUSD_1h_v4"))
    assert len(flag.read_text().splitlines()) == 5  # the whole chain: caught up, then the new entry
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"registry": {"audit_log": str(tmp_path / "from_config.jsonl")}}))
    env = {k: v for k, v in os.environ.items() if k != "GENESIS_AUDIT_LOG"}
    cli_ok(run_cli("--models-dir", str(folder), "models", "--config", str(cfg), "register", "tBTCUSD_1h_v5", env=env))
    assert len((tmp_path / "from_config.jsonl").read_text().splitlines()) == 6


def _train(tmp: Path, models: Path) -> subprocess.CompletedProcess:
    (tmp / "store").mkdir(exist_ok=True)
    env = {**os.environ, "GENESIS_DATA_DIR": str(tmp / "store"), "GENESIS_MODELS_DIR": str(models)}
    return run_cli("train", "--symbol", "tBTCUSD", "--timeframe", "1h", "--horizon", "10", "model.C=0.01",
                   "train.folds=3", "train.calibration=none", cwd=tmp, env=env)


def test_train_registers_its_model_as_a_challenger_with_its_test_metrics(tmp_path):
    models = tmp_path / "models"
    proc = cli_ok(_train(tmp_path, models))
    registered = [ln for ln in proc.stdout.splitlines() if ln.startswith("Registered ")]
    assert registered == ["Registered tBTCUSD_1h_v1 as a challenger of tBTCUSD 1h (audit entry 1)"], proc.stdout
    reg = Registry.open(models)
    entry = reg.get("tBTCUSD_1h_v1")
    assert entry.status == "challenger" and set(entry.metrics) >= {"log_loss", "brier", "auc", "ece", "n", "verdict"}
    verdict = [ln for ln in proc.stdout.splitlines() if ln.startswith("Verdict: ")][0].removeprefix("Verdict: ")
    evidence = reg.history()[0]["evidence"]
    assert evidence["verdict"] == verdict == entry.metrics["verdict"]
    assert evidence["test_metrics"]["log_loss"] == entry.metrics["log_loss"]


def test_train_keeps_the_file_and_says_how_to_register_it_when_registering_fails(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "registry.json").write_text('{"schema_version": 1}')  # a broken registry state
    proc = _train(tmp_path, models)
    line = _one_line_error(proc, "tBTCUSD_1h_v1.json was written but not registered",
                           f"register it with: genesis-fw --models-dir {models} models register tBTCUSD_1h_v1.json")
    assert "registry.json" in line
    assert (models / "tBTCUSD_1h_v1.json").is_file() and "Wrote " in proc.stdout

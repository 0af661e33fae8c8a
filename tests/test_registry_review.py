"""The registry's answers to a review: a champion that changed under `champion select`, a committed
registry.json without its catalog, forged audit columns, misnamed files, notes of a failing command,
read commands and the audit log mirror, a strict `validate` of registry.json, tampered and missing files
in `list`, `evaluate` and backtests, `repair` and a disagreeing mirror, horizons, the documented SQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from functools import partial
from pathlib import Path

import pytest
from conftest import one_line_error, run_cli
from registry_sample import SHIPPED, champion_v1, four_versions, make, tamper

from genesis_fw.errors import ModelFileError, RegistryError
from genesis_fw.ml import model_file
from genesis_fw.registry.registry import Registry

#: These commands may print notes other than "Note: ..." lines (repairs, warnings) before their error.
_one_line_error = partial(one_line_error, notes_only=False)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return four_versions(tmp_path / "models")


@pytest.fixture
def reg(folder: Path) -> Registry:
    return champion_v1(folder)


def _models(folder: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_cli("--models-dir", str(folder), "models", *args, **kw)



def _events(folder: Path) -> int:
    conn = sqlite3.connect(folder / "registry.db")
    try:
        return conn.execute("SELECT count(*) FROM model_events").fetchone()[0]
    finally:
        conn.close()


# 1 -------------------------------------------------------------------------------------------------

def test_promote_and_keep_refuse_when_the_champion_is_no_longer_the_one_compared(reg: Registry, folder: Path):
    """champion select compared against v1; another process promotes v2 before select applies its
    decision: promote(v3, expected_champion=v1) and keep(expected_champion=v1) are refused, nothing logged."""
    proc = _models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "another process")
    assert proc.returncode == 0, proc.stderr
    before = _events(folder)
    with pytest.raises(RegistryError, match="the champion of tBTCUSD 1h changed to tBTCUSD_1h_v2 while") as exc:
        reg.promote("tBTCUSD_1h_v3", reason="select", expected_champion="tBTCUSD_1h_v1")
    assert "run champion select again" in str(exc.value)
    with pytest.raises(RegistryError, match="changed to tBTCUSD_1h_v2 while"):
        reg.keep("tBTCUSD", "1h", reason="select", evidence={}, expected_champion="tBTCUSD_1h_v1")
    assert _events(folder) == before
    assert Registry.open(folder).champion("tBTCUSD", "1h").name == "tBTCUSD_1h_v2"
    # the expected champion (or None for a market without one) passes; from_model is the one replaced
    change = reg.promote("tBTCUSD_1h_v3", reason="select", expected_champion="tBTCUSD_1h_v2")
    assert change.from_model == "tBTCUSD_1h_v2"
    make(folder, "1m", 1)
    reg.register("tBTCUSD_1m_v1", reason="x")
    with pytest.raises(RegistryError, match="changed to none while"):
        reg.keep("tBTCUSD", "1m", reason="select", evidence={}, expected_champion="tBTCUSD_1m_v9")
    assert reg.keep("tBTCUSD", "1m", reason="select", evidence={}, expected_champion=None).from_model is None


# 2 -------------------------------------------------------------------------------------------------

def test_a_committed_registry_json_with_an_event_and_no_catalog_is_adopted(reg: Registry, tmp_path: Path):
    clone = tmp_path / "clone"
    clone.mkdir()
    for p in reg.dir.glob("*.json"):
        shutil.copy2(p, clone / p.name)
    doc = json.loads((clone / "registry.json").read_text())
    assert doc["event"] is not None
    proc = _models(clone, "list")
    assert proc.returncode == 0, proc.stderr
    assert "tBTCUSD_1h_v1" in proc.stdout and not (clone / "registry.db").exists()
    new = Registry.open(clone)
    change = new.register("tBTCUSD_1h_v4", reason="after clone")
    assert any(f"records event {doc['event']['seq']} of registry {doc['registry_id']} whose catalog is not here: "
               "adopted its state as a new registry" in n for n in change.notes), change.notes
    assert new.champion("tBTCUSD", "1h").name == "tBTCUSD_1h_v1"
    assert new.verify().ok
    assert _models(clone, "repair").returncode == 0
    # adoption checks each file's SHA-256
    clone2 = tmp_path / "clone2"
    clone2.mkdir()
    for p in reg.dir.glob("*.json"):
        shutil.copy2(p, clone2 / p.name)
    tamper(clone2 / "tBTCUSD_1h_v2.json")
    with pytest.raises(RegistryError, match="cannot adopt .*tampered or replaced"):
        Registry.open(clone2).register("tBTCUSD_1h_v4", reason="x")


# 3 -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("column", "value"), [("reason", "forged reason"), ("to_model", "tBTCUSD_1h_v9"),
                                                ("user", "mallory"), ("evidence", "{}")])
def test_verify_checks_the_structured_columns_against_the_entry(reg: Registry, folder: Path, column: str, value: str):
    conn = sqlite3.connect(folder / "registry.db")
    try:
        conn.execute("DROP TRIGGER model_events_no_update")
        conn.execute(f"UPDATE model_events SET {column} = ? WHERE seq = 2", (value,))
        conn.commit()
    finally:
        conn.close()
    report = Registry.open(folder).verify()
    assert not report.ok
    assert any("entry 2" in p and column in p for p in report.problems), report.problems
    _one_line_error(_models(folder, "audit", "--verify"), "entry 2", column)


# 4 -------------------------------------------------------------------------------------------------

def test_register_refuses_a_file_not_named_after_its_model(folder: Path):
    shutil.copy2(folder / "tBTCUSD_1h_v2.json", folder / "weird.json")
    err = _one_line_error(_models(folder, "register", str(folder / "weird.json")), "weird.json", "tBTCUSD_1h_v2.json")
    assert "tBTCUSD_1h_v2" in err
    assert not (folder / "registry.db").exists() or _events(folder) == 0


# 5 -------------------------------------------------------------------------------------------------

def test_a_failing_command_prints_the_adoption_before_its_error(tmp_path: Path):
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED, shipped)
    proc = _models(shipped, "rollback", "tBTCUSD", "1h", "--reason", "x")
    _one_line_error(proc, "no previous champion")
    lines = proc.stderr.splitlines()
    adopted = [i for i, line in enumerate(lines) if "adopted" in line]
    error = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    assert adopted and adopted[0] < error[0], proc.stderr


# 6 -------------------------------------------------------------------------------------------------

def test_read_commands_never_create_or_write_the_mirror(reg: Registry, folder: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GENESIS_AUDIT_LOG"}
    n = _events(folder)
    for args in (["list"], ["show", "tBTCUSD_1h_v1"], ["history"]):
        proc = _models(folder, *args, cwd=elsewhere, env=env)
        assert proc.returncode == 0, proc.stderr
        assert f"lacks entries 1..{n}; the next change appends them" in proc.stderr, proc.stderr
        assert not (elsewhere / "logs").exists()
    proc = _models(folder, "audit", "--verify", cwd=elsewhere, env=env)
    assert not (elsewhere / "logs").exists()
    # a change with another mirror than the one recorded says so (and still writes the configured one)
    proc = _models(folder, "retire", "tBTCUSD_1h_v3", "--reason", "x", cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "recorded" in line]
    assert len(warnings) == 1 and str(reg.audit_log.resolve()) in warnings[0], proc.stderr
    assert (elsewhere / "logs" / "champion_selection.jsonl").exists()


# 7 -------------------------------------------------------------------------------------------------

def test_validate_registry_json_checks_it_against_the_catalog_and_the_files(reg: Registry, folder: Path):
    path = folder / "registry.json"
    assert _models(folder, "validate", str(path)).returncode == 0
    doc = json.loads(path.read_text())
    doc["markets"][0]["challengers"][0]["metrics"] = {"log_loss": 0.1}
    original = path.read_text()
    path.write_text(json.dumps(doc, indent=2))
    _one_line_error(_models(folder, "validate", str(path)), "registry.json", "matches no state")
    path.write_text(original)
    (folder / "tBTCUSD_1h_v1.json").unlink()
    _one_line_error(_models(folder, "validate", str(path)), "tBTCUSD_1h_v1.json", "missing")
    make(folder, "1h", 1)
    tamper(folder / "tBTCUSD_1h_v2.json")
    _one_line_error(_models(folder, "validate", str(path)), "tBTCUSD_1h_v2.json", "SHA-256")


def test_validate_an_event_null_registry_json_checks_its_files(tmp_path: Path):
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED, shipped)
    assert _models(shipped, "validate", str(shipped / "registry.json")).returncode == 0
    (shipped / "tBTCUSD_1h_v1.json").unlink()
    _one_line_error(_models(shipped, "validate", str(shipped / "registry.json")), "tBTCUSD_1h_v1.json", "missing")


# 8 -------------------------------------------------------------------------------------------------

def test_list_marks_changed_and_missing_files(reg: Registry, folder: Path):
    tamper(folder / "tBTCUSD_1h_v2.json")
    (folder / "tBTCUSD_1h_v3.json").unlink()
    proc = _models(folder, "list")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "file" in proc.stdout.splitlines()[0]
    assert " ok " in rows["tBTCUSD_1h_v1"] + " "
    assert "CHANGED" in rows["tBTCUSD_1h_v2"] and "MISSING" in rows["tBTCUSD_1h_v3"]
    assert any(line.startswith("Warning") and "tBTCUSD_1h_v2" in line and "tBTCUSD_1h_v3" in line
               for line in proc.stderr.splitlines()), proc.stderr


def test_a_backtest_of_a_registered_model_whose_file_is_missing_says_so(folder: Path, btc_store: Path):
    make(folder, "1m", 1)
    Registry.open(folder).register("tBTCUSD_1m_v1", reason="x")
    (folder / "tBTCUSD_1m_v1.json").unlink()
    proc = run_cli("--models-dir", str(folder), "backtest", "strategy=ml_model", "strategy.model=tBTCUSD_1m_v1",
                   "--symbol", "tBTCUSD", "--timeframe", "1m", "--start", "2019-04-01", "--end", "2019-04-02",
                   "--no-report", "--output", str(btc_store.parent / "bt" / "bt.html"))
    _one_line_error(proc, "tBTCUSD_1m_v1", "registered", "missing")


# 9 -------------------------------------------------------------------------------------------------

def test_evaluate_refuses_a_tampered_registered_model(folder: Path, btc_store: Path):
    make(folder, "1m", 1)
    Registry.open(folder).register("tBTCUSD_1m_v1", reason="x")
    tamper(folder / "tBTCUSD_1m_v1.json")
    proc = run_cli("--models-dir", str(folder), "evaluate", "tBTCUSD_1m_v1", "--start", "2019-04-01",
                   "--end", "2019-04-02", "--no-report")
    _one_line_error(proc, "tampered or replaced since it was registered")


# 10 ------------------------------------------------------------------------------------------------

def test_repair_exits_1_when_the_mirror_disagrees(reg: Registry, folder: Path):
    lines = reg.audit_log.read_text().splitlines()
    lines[1] = lines[1].replace("test", "TEST", 1)
    reg.audit_log.write_text("\n".join(lines) + "\n")
    proc = _models(folder, "repair")
    _one_line_error(proc, "disagrees")


# 11 ------------------------------------------------------------------------------------------------

def test_promoting_a_model_of_another_horizon_warns(reg: Registry, folder: Path):
    doc = json.loads((folder / "tBTCUSD_1h_v4.json").read_text())
    doc["horizon"] = doc["horizon"] + 5
    (folder / "tBTCUSD_1h_v4.json").write_text(model_file.dumps(model_file.seal(doc)))
    assert _models(folder, "register", "tBTCUSD_1h_v4").returncode == 0
    proc = _models(folder, "promote", "tBTCUSD_1h_v4", "--reason", "x")
    assert proc.returncode == 0, proc.stderr
    warn = [line for line in proc.stderr.splitlines() if "horizon" in line]
    assert len(warn) == 1 and "champion select" in warn[0], proc.stderr
    proc = _models(folder, "promote", "tBTCUSD_1h_v2", "--reason", "x")  # same horizon as v1, v4 -> v2 differs
    assert "horizon" in proc.stderr
    proc = _models(folder, "promote", "tBTCUSD_1h_v3", "--reason", "x")  # same horizon: no warning
    assert "horizon" not in proc.stderr, proc.stderr


# 12 ------------------------------------------------------------------------------------------------

def _documented_queries() -> list[str]:
    found = []
    for doc in (REPO / "README.md", REPO / "docs" / "CHAMPION_SELECTION.md", REPO / "docs" / "CLI.md"):
        found += [m[1] for m in re.findall(r"(['`\"])(SELECT seq, [^\n]*?FROM model_events[^\n]*?)\1", doc.read_text())]
    return found


def test_the_documented_model_events_queries_run(reg: Registry, folder: Path, btc_store: Path):
    queries = _documented_queries()
    assert len(queries) >= 3, queries
    for query in set(queries):
        proc = run_cli("--models-dir", str(folder), "sql", query, "--format", "json")
        assert proc.returncode == 0, (query, proc.stderr)
        assert len(json.loads(proc.stdout)) == _events(folder)


# 13 ------------------------------------------------------------------------------------------------

def test_hashes_are_shown_far_enough_to_differ():
    from genesis_fw.registry.registry import short_pair

    a, b = "ab" * 32, "ab" * 8 + "cd" + "ab" * 23
    sa, sb = short_pair(a, b)
    assert sa != sb and a.startswith(sa) and b.startswith(sb) and len(sa) == len(sb) >= 12
    assert short_pair(a, "ff" + a[2:]) == (a[:12], "ff" + a[2:12])


def test_a_json_parse_error_does_not_say_at_twice(folder: Path):
    (folder / "registry.json").write_text('{"schema_version": 1, "registry_id": "x')
    with pytest.raises(RegistryError) as exc:
        Registry.open(folder).entries()
    assert "not valid JSON" in str(exc.value) and "at at" not in str(exc.value)
    (folder / "tBTCUSD_1h_v1.json").write_text('{"name": "x')
    with pytest.raises(ModelFileError) as exc2:
        model_file.load(folder / "tBTCUSD_1h_v1.json")
    assert "not valid JSON" in str(exc2.value) and "at at" not in str(exc2.value)


def test_a_symlink_outside_the_models_folder_suggests_copying_its_target(folder: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    target = make(outside, "1h", 5)
    link = folder / "tBTCUSD_1h_v5.json"
    link.symlink_to(target)
    with pytest.raises((RegistryError, ModelFileError)) as exc:
        Registry.open(folder).register(link, reason="x")
    assert f"cp {target} " in str(exc.value) or f"cp {target.resolve()} " in str(exc.value), str(exc.value)


def test_registry_json_is_parsed_as_strictly_as_a_model_file(folder: Path):
    """A number that overflows to infinity is refused in registry.json as in model files (one shared parser)."""
    (folder / "registry.json").write_text('{"schema_version": 1, "updated_at": 1e999}')
    with pytest.raises(RegistryError) as exc:
        Registry.open(folder).entries()
    assert "1e999 is too large for a float" in str(exc.value)

"""The model registry's API on real folders: registry.db, registry.json, the audit log mirror.

Model files are versions of the shipped baselines (tests/registry_sample.py). Each test has its own
models folder and audit log ($GENESIS_AUDIT_LOG, set per test by conftest).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from registry_sample import SHIPPED, champion_v1, four_versions, make, tamper

from genesis_fw.errors import ModelFileError, RegistryError
from genesis_fw.ml import model_file
from genesis_fw.registry import registry_file as rf
from genesis_fw.registry.registry import Registry, check_registered


def _catalog_state(folder: Path) -> tuple[list[str], dict]:
    """(the catalog's entry lines, the state after its last entry) read straight from registry.db."""
    conn = sqlite3.connect(folder / "registry.db")
    try:
        rows = conn.execute("SELECT entry, state_after, seq, sha256 FROM model_events ORDER BY seq").fetchall()
    finally:
        conn.close()
    last = {"markets": json.loads(rows[-1][1]), "event": {"seq": rows[-1][2], "sha256": rows[-1][3]}}
    return [r[0] for r in rows], last


def assert_consistent(reg: Registry) -> None:
    """registry.json shows the catalog's last state, the mirror has exactly the catalog's lines, the
    chain verifies."""
    lines, last = _catalog_state(reg.dir)
    doc = json.loads(reg.json_path.read_text())
    assert doc["event"] == last["event"] and doc["markets"] == last["markets"]
    assert reg.audit_log.read_text().splitlines() == lines
    report = reg.verify()
    assert report.ok, report.problems + report.mirror_problems


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return four_versions(tmp_path / "models")


@pytest.fixture
def reg(folder: Path) -> Registry:
    return champion_v1(folder)


def _status(reg: Registry) -> dict[str, str]:
    return {e.name: e.status for e in Registry.open(reg.dir).entries()}


def test_promote_retires_the_old_champion_and_rollback_goes_back_never_forward(reg: Registry):
    v1_bytes = (reg.dir / "tBTCUSD_1h_v1.json").read_bytes()
    change = reg.promote("tBTCUSD_1h_v2", reason="better")
    assert (change.from_model, change.to_model) == ("tBTCUSD_1h_v1", "tBTCUSD_1h_v2")
    assert _status(reg) == {"tBTCUSD_1h_v1": "retired", "tBTCUSD_1h_v2": "champion", "tBTCUSD_1h_v3": "challenger"}
    assert (reg.dir / "tBTCUSD_1h_v1.json").read_bytes() == v1_bytes  # the retired file is untouched
    reg.promote("tBTCUSD_1h_v3", reason="better still")
    doc = json.loads(reg.json_path.read_text())
    assert doc["markets"][0]["champion"]["name"] == "tBTCUSD_1h_v3"
    assert doc["markets"][0]["rollback_to"] == "tBTCUSD_1h_v2"
    assert_consistent(reg)

    first = reg.rollback("tBTCUSD", "1h", reason="v3 misbehaves")
    assert (first.from_model, first.to_model) == ("tBTCUSD_1h_v3", "tBTCUSD_1h_v2")
    second = reg.rollback("tBTCUSD", "1h", reason="v2 too")
    assert (second.from_model, second.to_model) == ("tBTCUSD_1h_v2", "tBTCUSD_1h_v1")  # further back, not to v3
    assert _status(reg) == {"tBTCUSD_1h_v1": "champion", "tBTCUSD_1h_v2": "retired", "tBTCUSD_1h_v3": "retired"}
    with pytest.raises(RegistryError, match="no previous champion of tBTCUSD 1h to roll back to: tBTCUSD_1h_v1"):
        reg.rollback("tBTCUSD", "1h", reason="again")
    assert [e["action"] for e in reg.history()] == ["register"] * 3 + ["promote"] * 3 + ["rollback"] * 2
    assert [(e["from"], e["to"]) for e in reg.history("tBTCUSD", "1h")][-2:] == [
        ("tBTCUSD_1h_v3", "tBTCUSD_1h_v2"), ("tBTCUSD_1h_v2", "tBTCUSD_1h_v1")]
    assert_consistent(reg)


def test_each_change_is_logged_with_its_evidence(reg: Registry):
    reg.promote("tBTCUSD_1h_v2", reason="the user's reason", evidence={"comparison": {"p_value": 0.01}})
    entry = reg.history()[-1]
    assert entry["action"] == "promote" and entry["reason"] == "the user's reason"
    assert entry["evidence"]["comparison"] == {"p_value": 0.01}
    assert set(entry["evidence"]["metrics"]) == {"tBTCUSD_1h_v1", "tBTCUSD_1h_v2"}
    assert entry["state_after"] == json.loads(reg.json_path.read_text())["markets"]
    register = reg.history()[0]
    assert register["action"] == "register" and "metrics" in register["evidence"]
    assert register["user"] and register["host"] and register["prev_sha256"] == "0" * 64


def test_bad_requests_are_one_line_errors(reg: Registry, folder: Path, tmp_path: Path):
    with pytest.raises(RegistryError, match=r"no model 'tBTCUSD_1h_v22'.*did you mean 'tBTCUSD_1h_v2'"):
        reg.promote("tBTCUSD_1h_v22", reason="x")
    with pytest.raises(RegistryError, match="did you mean 'tBTCUSD_1h_v3'"):
        reg.get("tbtcusd_1h_v3")
    reg.promote("tBTCUSD_1h_v2", reason="x")
    with pytest.raises(RegistryError, match=r"tBTCUSD_1h_v1 is retired: .*models rollback tBTCUSD 1h.*models "
                                            r"register tBTCUSD_1h_v1"):
        reg.promote("tBTCUSD_1h_v1", reason="x")
    with pytest.raises(RegistryError, match="already the champion"):
        reg.promote("tBTCUSD_1h_v2", reason="x")
    with pytest.raises(RegistryError, match="tETHUSD 1h has no champion to roll back"):
        reg.rollback("tETHUSD", "1h", reason="x")
    with pytest.raises(RegistryError, match="is the champion of tBTCUSD 1h: promote another model"):
        reg.retire("tBTCUSD_1h_v2", reason="x")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("tBTCUSD_1h_v3", reason="x")
    outside = make(tmp_path / "elsewhere", "1h", 9)
    with pytest.raises(RegistryError, match="is not in the models folder"):
        reg.register(outside, reason="x")
    (folder / "tBTCUSD_1h_v3.json").unlink()
    with pytest.raises(RegistryError, match=r"tBTCUSD_1h_v3: its file .* is missing"):
        reg.promote("tBTCUSD_1h_v3", reason="x")
    seqs = [e["seq"] for e in reg.history()]
    assert seqs == list(range(1, len(seqs) + 1))  # refused requests logged nothing
    assert_consistent(reg)


def test_a_tampered_file_is_refused_for_promotion_and_by_check_registered(reg: Registry, folder: Path):
    tamper(folder / "tBTCUSD_1h_v2.json")
    loaded = model_file.load(folder / "tBTCUSD_1h_v2.json")  # still a valid, loadable model file
    with pytest.raises(RegistryError, match=r"tampered or replaced since it was registered \(SHA-256 [0-9a-f]{12} now, "
                                            r"[0-9a-f]{12} in the registry\)"):
        reg.promote("tBTCUSD_1h_v2", reason="x")
    with pytest.raises(ModelFileError, match="tampered or replaced since it was registered"):
        check_registered(loaded)
    with pytest.raises(RegistryError, match="tampered"):
        reg.load_checked("tBTCUSD_1h_v2")
    check_registered(model_file.load(folder / "tBTCUSD_1h_v3.json"))  # untouched: fine
    check_registered(model_file.load(folder / "tBTCUSD_1h_v4.json"))  # unregistered: not checked
    assert reg.load_checked("tBTCUSD_1h_v3").name == "tBTCUSD_1h_v3"


def test_a_model_file_replaced_by_another_markets_model_is_refused(reg: Registry, folder: Path, tmp_path: Path):
    other = make(tmp_path / "other", "1h", 2, symbol="tETHUSD")
    shutil.copy(other, folder / "tBTCUSD_1h_v2.json")
    with pytest.raises(ModelFileError, match="tETHUSD_1h_v2"):  # names itself so; a tETHUSD model
        reg.promote("tBTCUSD_1h_v2", reason="x")


def test_retire_and_register_again(reg: Registry):
    reg.retire("tBTCUSD_1h_v3", reason="no longer interesting")
    assert "tBTCUSD_1h_v3" not in [e.name for e in reg.entries(include_retired=False)]
    assert reg.challengers("tBTCUSD", "1h") == [reg.get("tBTCUSD_1h_v2")]
    reg.register("tBTCUSD_1h_v3", reason="interesting again")
    assert reg.get("tBTCUSD_1h_v3").status == "challenger"
    assert reg.champion("tBTCUSD", "1h").name == "tBTCUSD_1h_v1"
    keep = reg.keep("tBTCUSD", "1h", reason="no challenger passed", evidence={"gates": {}})
    assert keep.action == "keep" and reg.champion("tBTCUSD", "1h").name == "tBTCUSD_1h_v1"
    assert_consistent(reg)


def test_registration_validates_the_model_file(folder: Path):
    bad = folder / "tBTCUSD_1h_v5.json"
    doc = json.loads((folder / "tBTCUSD_1h_v4.json").read_text())
    doc["name"], doc["version"] = "tBTCUSD_1h_v5", 5
    bad.write_text(json.dumps(doc))  # not resealed: its content hash is wrong
    with pytest.raises(ModelFileError, match="content hash differs"):
        Registry.open(folder).register(bad, reason="x")
    assert not (folder / "registry.db").exists() or not Registry.open(folder).entries()


def test_a_registry_json_edited_by_hand_is_refused_until_repaired(reg: Registry):
    doc = json.loads(reg.json_path.read_text())
    doc["markets"][0]["champion"]["sha256"] = "0" * 64  # still valid against the schema
    reg.json_path.write_text(json.dumps(doc))
    for call in (lambda r: r.promote("tBTCUSD_1h_v2", reason="x"), lambda r: r.entries()):
        with pytest.raises(RegistryError, match=r"matches no state of the registry catalog \(edited by hand\?\); "
                                                r"rebuild it from the catalog with `genesis-fw models repair`"):
            call(Registry.open(reg.dir))
    reg.json_path.write_text('{"schema_version": 1, "markets": "x"}')  # invalid against the schema
    with pytest.raises(RegistryError, match="registry.json: .*genesis-fw models repair"):
        Registry.open(reg.dir).entries()
    notes = Registry.open(reg.dir).repair()
    assert len(notes) == 1 and notes[0].startswith("repaired: ") and "rewrote" in notes[0]
    assert Registry.open(reg.dir).history()[-1]["action"] == "repair"
    assert_consistent(reg)
    assert Registry.open(reg.dir).repair()[0].startswith("nothing to repair")
    Registry.open(reg.dir).promote("tBTCUSD_1h_v2", reason="works again")


def test_a_registry_json_left_behind_is_repaired_by_the_next_read_and_said(reg: Registry):
    before = reg.json_path.read_bytes()
    reg.promote("tBTCUSD_1h_v2", reason="x")
    reg.json_path.write_bytes(before)  # as if the process died before rewriting it
    lines = reg.audit_log.read_text().splitlines()
    reg.audit_log.write_text("\n".join(lines[:-1]) + "\n")  # ... and before appending to the mirror
    fresh = Registry.open(reg.dir)
    assert fresh.champion("tBTCUSD", "1h").name == "tBTCUSD_1h_v2"
    assert any("registry.json shows event" in n and n.startswith("repaired: ") for n in fresh.notes), fresh.notes
    # a read never writes the mirror: it says what the mirror lacks, and the next change appends it
    assert any("lacks entry 5; the next change appends them" in n and n.startswith("stale: ")
               for n in fresh.notes), fresh.notes
    assert any("lacked entry 5; appended" in n for n in Registry.open(reg.dir).retire("tBTCUSD_1h_v3",
                                                                                         reason="x").notes)
    assert_consistent(reg)


def test_the_shipped_registry_json_validates_and_names_the_shipped_files():
    doc = rf.load(SHIPPED / "registry.json")
    assert doc["event"] is None and doc["registry_id"] is None
    champions = {(m["symbol"], m["timeframe"]): m["champion"] for m in doc["markets"]}
    assert set(champions) == {("tBTCUSD", "1m"), ("tBTCUSD", "1h")}
    for (symbol, timeframe), entry in champions.items():
        assert entry["name"] == f"{symbol}_{timeframe}_v1"
        assert entry["sha256"] == hashlib.sha256((SHIPPED / entry["file"]).read_bytes()).hexdigest()
    import jsonschema

    jsonschema.Draft202012Validator(rf.schema()).validate(doc)


def test_a_folder_with_an_event_null_registry_json_is_adopted_by_the_first_change(tmp_path: Path):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("tBTCUSD_1m_v1.json", "tBTCUSD_1h_v1.json", "registry.json"):
        shutil.copy(SHIPPED / name, folder / name)
    shipped = (folder / "registry.json").read_bytes()
    reader = Registry.open(folder)
    assert {e.name: e.status for e in reader.entries()} == {"tBTCUSD_1h_v1": "champion", "tBTCUSD_1m_v1": "champion"}
    assert reader.history() == [] and reader.notes == []
    assert not (folder / "registry.db").exists() and (folder / "registry.json").read_bytes() == shipped
    make(folder, "1h", 2)
    reg = Registry.open(folder)
    change = reg.register("tBTCUSD_1h_v2", reason="x")
    assert any(n.startswith("adopted ") for n in change.notes)
    assert [e["action"] for e in reg.history()] == ["adopt", "register"]
    reg.promote("tBTCUSD_1h_v2", reason="x")
    assert reg.rollback("tBTCUSD", "1h", reason="x").to_model == "tBTCUSD_1h_v1"  # the adopted champion
    assert_consistent(reg)


def test_adoption_refuses_a_file_whose_sha256_differs_from_the_json(tmp_path: Path):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("tBTCUSD_1m_v1.json", "tBTCUSD_1h_v1.json", "registry.json"):
        shutil.copy(SHIPPED / name, folder / name)
    tamper(folder / "tBTCUSD_1h_v1.json")
    make(folder, "1h", 2)
    with pytest.raises(RegistryError, match=r"cannot adopt .*registry.json: .*tBTCUSD_1h_v1.json: tampered"):
        Registry.open(folder).register("tBTCUSD_1h_v2", reason="x")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["markets"].reverse(), "not sorted"),
    (lambda d: d["markets"][0].update(champion=d["markets"][1]["champion"]), "is listed under"),
    (lambda d: d["markets"][0]["champion"].update(status="challenger"), "listed as champion"),
    (lambda d: d.update(extra=1), "Additional properties"),
    (lambda d: d["markets"][0]["champion"].update(sha256="xyz"), "sha256"),
])
def test_registry_json_schema_and_rules(edit, message):
    doc = json.loads((SHIPPED / "registry.json").read_text())
    edit(doc)
    with pytest.raises(RegistryError, match=message):
        rf.validate(doc, where="registry.json")

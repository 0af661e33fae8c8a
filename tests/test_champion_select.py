"""``genesis-fw champion select`` end to end: a real registry in a temp models folder with the shipped v1
baseline as champion, a challenger trained on the bundled sample (1h), and constructed challengers whose
answer is known. Real processes for the CLI; the registry, registry.json and the audit log are real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from genesis_fw.data.store import CandleStore
from genesis_fw.ml import calibration, dataset, model_file
from genesis_fw.ml.model_evaluation import label_config, part_rows

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "models"
#: Gates that do not depend on walk-forward retraining (the constructed challengers below are fitted on the
#: test period, so retraining them on the past removes exactly what makes them strong).
NO_WF = "champion.walk_forward=0"


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GENESIS_DATA_DIR"] = str(work / "store")
    env["GENESIS_MODELS_DIR"] = str(work / "models")
    env["GENESIS_AUDIT_LOG"] = str(work / "logs" / "champion_selection.jsonl")
    return env


def _cli(work: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=work, env=_env(work))


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def fitted_on_test(source: Path, models: Path, store: CandleStore) -> Path:
    """A TEST FIXTURE, not a skilful model: ``source``'s document with a logistic regression and an isotonic
    calibration fitted on the very labels of ``source``'s test part. It has seen the answers, so on that
    period its log loss is far below any honest model's and its calibration error near 0. Written as the
    next version in ``models``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    loaded = model_file.load(source)
    doc = loaded.doc
    td = doc["training_data"]
    ex = dataset.build(store, loaded.symbol, loaded.timeframe, loaded.features_config(), label_config(loaded),
                       start=td["start"], end=None)
    rows = part_rows(ex, td["split"]["boundaries"], "test")
    X, y = ex.X[rows], ex.y[rows].astype(np.int64)
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(C=10.0, max_iter=5000).fit(scaler.transform(X), y)
    doc["state"] = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": clf.coef_[0].tolist(),
                    "intercept": float(clf.intercept_[0])}
    doc["calibration"] = calibration.fit("isotonic", clf.predict_proba(scaler.transform(X))[:, 1], y)
    doc["description"] = "Test fixture fitted on its own test period's labels: not a skilful model."
    return model_file.write_new(doc, models)


def copy_of(source: Path, models: Path) -> Path:
    """The next version of ``source``'s market with exactly ``source``'s predictions."""
    doc = model_file.load(source).doc
    doc["description"] = "Test fixture: a copy of " + doc["name"]
    return model_file.write_new(doc, models)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder: an empty store (the bundled sample stands in), a models folder with the shipped
    registry (v1 baselines champions), and tBTCUSD_1h_v2 trained on the sample (registered as a challenger
    by train)."""
    work = tmp_path_factory.mktemp("champion")
    (work / "store").mkdir()
    shutil.copytree(SHIPPED, work / "models")
    _ok(_cli(work, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "model.C=0.1", "train.folds=2"))
    assert (work / "models" / "tBTCUSD_1h_v2.json").is_file()
    return work


@pytest.fixture
def work(prepared: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared folder (each test changes its registry)."""
    w = tmp_path / "w"
    shutil.copytree(prepared, w)
    return w


def _store(work: Path) -> CandleStore:
    return CandleStore.open(work / "store")


def _register(work: Path, path: Path) -> None:
    _ok(_cli(work, "models", "register", str(path)))


def _select(work: Path, *args: str) -> subprocess.CompletedProcess:
    return _cli(work, "champion", "select", "tBTCUSD", "1h", *args)


def _json(proc: subprocess.CompletedProcess) -> dict:
    _ok(proc)
    return json.loads(proc.stdout)


def _audit(work: Path) -> list[dict]:
    path = work / "logs" / "champion_selection.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _registry_json(work: Path) -> dict:
    return json.loads((work / "models" / "registry.json").read_text(encoding="utf-8"))


def _market(work: Path, timeframe: str = "1h") -> dict:
    return next(m for m in _registry_json(work)["markets"] if m["symbol"] == "tBTCUSD" and m["timeframe"] == timeframe)


def _snapshot(work: Path) -> dict[str, str]:
    """SHA-256 of every file of the models folder and the audit log folder."""
    out = {}
    for folder in (work / "models", work / "logs"):
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    out[str(p.relative_to(work))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_identical_challenger_fails_the_significance_gate(work: Path) -> None:
    _register(work, copy_of(SHIPPED / "tBTCUSD_1h_v1.json", work / "models"))
    result = _json(_select(work, NO_WF, "--dry-run", "--format", "json"))
    row = next(r for r in result["challengers"] if r["name"] == "tBTCUSD_1h_v3")
    sig = next(g for g in row["gates"] if g["gate"] == "significance")
    assert sig["passed"] is False and sig["value"] >= 0.05
    pair = next(p for p in result["comparison"]["pairs"] if p["candidate"] == "tBTCUSD_1h_v3")
    assert pair["log_loss_difference"] == 0.0
    assert "significance" in row["failed"] and not row["eligible"]


def test_strong_challenger_is_promoted_with_its_evidence(work: Path) -> None:
    strong = fitted_on_test(work / "models" / "tBTCUSD_1h_v2.json", work / "models", _store(work))
    _register(work, strong)
    before = len(_audit(work))
    proc = _ok(_select(work, NO_WF))
    assert f"Promoted {strong.stem} (was tBTCUSD_1h_v1)" in proc.stdout, proc.stdout
    market = _market(work)
    assert market["champion"]["name"] == strong.stem
    entries = _audit(work)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry["action"], entry["from"], entry["to"]) == ("promote", "tBTCUSD_1h_v1", strong.stem)
    assert entry["reason"].startswith("champion select: ")
    ev = entry["evidence"]
    assert ev["comparison"]["models"][0]["name"] == "tBTCUSD_1h_v1"
    gates = next(r for r in ev["challengers"] if r["name"] == strong.stem)["gates"]
    assert {g["gate"] for g in gates} >= {"significance", "calibration", "walk_forward", "sharpe"}
    assert all({"value", "threshold", "passed", "detail"} <= set(g) for g in gates)
    _ok(_cli(work, "models", "audit", "--verify"))


def test_dry_run_prints_the_decision_and_changes_nothing(work: Path) -> None:
    _register(work, fitted_on_test(work / "models" / "tBTCUSD_1h_v2.json", work / "models", _store(work)))
    before = _snapshot(work)
    proc = _ok(_select(work, NO_WF, "--dry-run"))
    assert "Dry run: would promote tBTCUSD_1h_v3" in proc.stdout, proc.stdout
    assert _snapshot(work) == before


def test_keep_names_the_failed_gates_and_logs_the_decision(work: Path) -> None:
    _register(work, copy_of(SHIPPED / "tBTCUSD_1h_v1.json", work / "models"))
    before = len(_audit(work))
    proc = _ok(_select(work, NO_WF))
    assert "tBTCUSD_1h_v3 fails significance: p " in proc.stdout, proc.stdout
    assert "Kept tBTCUSD_1h_v1" in proc.stdout
    assert _market(work)["champion"]["name"] == "tBTCUSD_1h_v1"
    entry = _audit(work)[-1]
    assert len(_audit(work)) == before + 1
    assert entry["action"] == "keep" and entry["reason"].startswith("champion select: no challenger passes")
    assert any(r["failed"] for r in entry["evidence"]["challengers"])


def test_no_challengers_is_one_line_and_logs_nothing(work: Path) -> None:
    before = _snapshot(work)
    proc = _ok(_cli(work, "champion", "select", "tBTCUSD", "1m"))
    assert proc.stdout == "No challengers for tBTCUSD 1m: nothing to select, nothing logged\n"
    assert _snapshot(work) == before


def test_gates_come_from_the_config_file_and_overrides(work: Path) -> None:
    _register(work, copy_of(SHIPPED / "tBTCUSD_1h_v1.json", work / "models"))
    (work / "gates.json").write_text(json.dumps({"champion": {"max_ece": 0.2, "walk_forward": 0}}), encoding="utf-8")
    result = _json(_select(work, "--config", str(work / "gates.json"), "champion.alpha=0.01", "--dry-run",
                           "--format", "json"))
    assert result["gates_config"] == {"alpha": 0.01, "max_ece": 0.2, "walk_forward": 0, "min_walk_forward_share": 0.6,
                                      "sharpe_tolerance": 0.25, "require_skill": False}
    bad = _select(work, "champion.nope=1")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len([line for line in bad.stderr.splitlines() if line.startswith("Error: ")]) == 1
    other = _select(work, "commission=0.1")
    assert other.returncode != 0 and "champion.PARAM=VALUE" in other.stderr


def test_without_a_champion_challengers_are_tested_against_the_base_rate(tmp_path: Path) -> None:
    work = tmp_path / "fresh"
    (work / "store").mkdir(parents=True)
    (work / "models").mkdir()
    _ok(_cli(work, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "model.C=0.1", "train.folds=2"))
    trained = work / "models" / "tBTCUSD_1h_v1.json"
    strong = fitted_on_test(trained, work / "models", _store(work))
    _register(work, strong)
    result = _json(_select(work, "--format", "json"))
    assert result["champion"] is None and result["comparison"] is None
    for row in result["challengers"]:
        gates = {g["gate"]: g for g in row["gates"]}
        assert "constant" in gates["significance"]["detail"]  # tested against the best constant base rate
        assert gates["walk_forward"]["passed"] is None and gates["sharpe"]["passed"] is None  # skipped
        ev = result["evaluations"][row["name"]]
        assert gates["significance"]["value"] == ev["test"]["p_value"]
        assert row["log_loss"] == ev["scores"]["log_loss"]
    assert result["decision"]["action"] == "promote" and result["decision"]["winner"] == strong.stem
    assert _market(work)["champion"]["name"] == strong.stem
    assert _audit(work)[-1]["action"] == "promote"


def test_without_a_champion_only_challengers_on_the_same_rows_and_labels_are_ranked(tmp_path: Path) -> None:
    """v1 (horizon 20) and a fixture fitted on v1's test labels (v2, the lowest log loss of all) against
    the newest, v3 of horizon 10: their log losses are of other labels, so v1 and v2 fail comparable and
    v2 is not promoted."""
    work = tmp_path / "fresh"
    (work / "store").mkdir(parents=True)
    (work / "models").mkdir()
    _ok(_cli(work, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "model.C=0.1", "train.folds=2"))
    _register(work, fitted_on_test(work / "models" / "tBTCUSD_1h_v1.json", work / "models", _store(work)))
    _ok(_cli(work, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "--horizon", "10", "model.C=0.1",
             "train.folds=2"))
    proc = _ok(_select(work, "--dry-run"))
    result = _json(_select(work, "--dry-run", "--format", "json"))
    rows = {r["name"]: r for r in result["challengers"]}
    for name in ("tBTCUSD_1h_v1", "tBTCUSD_1h_v2"):
        assert "comparable" in rows[name]["failed"], rows[name]
        detail = next(g for g in rows[name]["gates"] if g["gate"] == "comparable")["detail"]
        assert "tBTCUSD_1h_v3, the newest challenger" in detail and "horizon 10" in detail
    assert next(g for g in rows["tBTCUSD_1h_v3"]["gates"] if g["gate"] == "comparable")["passed"] is True
    assert result["decision"]["winner"] != "tBTCUSD_1h_v2"
    if result["decision"]["action"] == "keep":
        assert "Dry run: would leave tBTCUSD 1h without a champion; nothing changed" in proc.stdout, proc.stdout
        assert "keep none" not in proc.stdout


def test_a_challenger_on_other_labels_fails_comparable_and_the_others_are_still_compared(work: Path) -> None:
    _ok(_cli(work, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "--horizon", "10", "model.C=0.1",
             "train.folds=2"))
    result = _json(_select(work, NO_WF, "--dry-run", "--format", "json"))
    rows = {r["name"]: r for r in result["challengers"]}
    assert rows["tBTCUSD_1h_v3"]["failed"] == ["comparable"]
    detail = rows["tBTCUSD_1h_v3"]["gates"][0]["detail"]
    rule = model_file.load(work / "models" / "tBTCUSD_1h_v3.json").doc["label"]["rule"]
    assert f"horizon 10, {rule} rule" in detail and "{" not in detail, detail
    assert [m["name"] for m in result["comparison"]["models"]] == ["tBTCUSD_1h_v1", "tBTCUSD_1h_v2"]
    assert {g["gate"] for g in rows["tBTCUSD_1h_v2"]["gates"]} == {"comparable", "significance", "skill",
                                                                   "calibration", "walk_forward", "sharpe"}


def test_a_challenger_whose_test_part_does_not_overlap_fails_comparable_and_the_others_are_compared(work: Path):
    """v3 trained on the candles before 2019-05-20 (the newest challenger): v2's test part (the second half
    of June) does not overlap v3's, so v2 fails comparable and the champion is compared with v3."""
    _ok(_cli(work, "train", "--symbol", "tBTCUSD", "--timeframe", "1h", "--end", "2019-05-20", "model.C=0.1",
             "train.folds=2"))
    proc = _ok(_select(work, NO_WF, "--dry-run"))
    assert "--start" not in proc.stdout + proc.stderr
    assert "tBTCUSD_1h_v2 fails comparable: its test part 2019-06" in proc.stdout, proc.stdout
    assert "does not overlap" in proc.stdout and "tBTCUSD_1h_v3 (the newest challenger)" in proc.stdout
    result = _json(_select(work, NO_WF, "--dry-run", "--format", "json"))
    rows = {r["name"]: r for r in result["challengers"]}
    assert rows["tBTCUSD_1h_v2"]["failed"] == ["comparable"] and rows["tBTCUSD_1h_v2"]["log_loss"] is None
    assert [m["name"] for m in result["comparison"]["models"]] == ["tBTCUSD_1h_v1", "tBTCUSD_1h_v3"]
    assert rows["tBTCUSD_1h_v3"]["log_loss"] is not None


def test_a_missing_or_changed_challenger_file_fails_the_file_gate_and_the_others_are_compared(work: Path):
    for _ in range(2):
        _register(work, copy_of(SHIPPED / "tBTCUSD_1h_v1.json", work / "models"))
    (work / "models" / "tBTCUSD_1h_v3.json").unlink()
    v4 = work / "models" / "tBTCUSD_1h_v4.json"  # a valid model file, but not the bytes registered
    doc = json.loads(v4.read_text(encoding="utf-8"))
    doc["description"] = "changed after registration"
    v4.write_text(json.dumps(model_file.seal(doc), indent=2), encoding="utf-8")
    proc = _ok(_select(work, NO_WF, "--dry-run"))
    assert "tBTCUSD_1h_v3 fails file: missing" in proc.stdout, proc.stdout
    assert "tBTCUSD_1h_v4 fails file: changed since registered" in proc.stdout, proc.stdout
    result = _json(_select(work, NO_WF, "--dry-run", "--format", "json"))
    assert [m["name"] for m in result["comparison"]["models"]] == ["tBTCUSD_1h_v1", "tBTCUSD_1h_v2"]
    rows = {r["name"]: r for r in result["challengers"]}
    assert rows["tBTCUSD_1h_v3"]["failed"] == rows["tBTCUSD_1h_v4"]["failed"] == ["file"]


def test_an_invalid_market_is_a_one_line_error(work: Path) -> None:
    for args in (("tBTCUSD", "7x"), ("not a symbol", "1h")):
        proc = _cli(work, "champion", "select", *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        assert len([line for line in proc.stderr.splitlines() if line.startswith("Error: ")]) == 1, proc.stderr
        assert proc.stdout == ""


def test_the_skill_gate_is_shown_and_required_only_when_configured(work: Path) -> None:
    strong = fitted_on_test(work / "models" / "tBTCUSD_1h_v2.json", work / "models", _store(work))
    _register(work, strong)
    _register(work, copy_of(SHIPPED / "tBTCUSD_1h_v1.json", work / "models"))
    for required in (False, True):
        result = _json(_select(work, NO_WF, f"champion.require_skill={str(required).lower()}", "--dry-run",
                               "--format", "json"))
        assert result["gates_config"]["require_skill"] is required
        models = {m["name"]: m for m in result["comparison"]["models"]}
        for row in result["challengers"]:
            skill = next(g for g in row["gates"] if g["gate"] == "skill")
            vs = models[row["name"]]["vs_base_rate"]
            assert skill["value"] == vs["dm"]["p_value"]
            assert "over the base rate" in skill["detail"]
            if not required:
                assert skill["passed"] is None
        rows = {r["name"]: r for r in result["challengers"]}
        copy = rows["tBTCUSD_1h_v4"]
        assert ("skill" in copy["failed"]) is required
        assert next(g for g in rows[strong.stem]["gates"] if g["gate"] == "skill")["passed"] is (True if required
                                                                                                 else None)

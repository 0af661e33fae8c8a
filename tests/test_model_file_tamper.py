"""A model file changed after it was written is refused: its content hash, and its split dates.

A logistic model is trained in the test (``training.train`` on the bundled sample at 1h, one grid value)
and written with ``write_new``. Each edit a review found accepted before (a coefficient, a recorded
metric, the horizon, the test part moved back over validation and train) is then made by hand: ``load``
refuses it in one line, and ``genesis-fw evaluate`` exits 1 with one ``Error:`` line and writes nothing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore
from genesis_fw.errors import ModelFileError
from genesis_fw.ml import model_file, training

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "config" / "models").glob("tBTCUSD_*_v*.json"))  # the model files, not registry.json
CHANGED = "the file was changed after it was written (content hash differs)"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("tamper")
    cfg = RuntimeConfig.load(None, {"symbol": "tBTCUSD", "timeframe": "1h", "train.horizon": "10",
                                    "train.folds": "3", "model.C": ["0.01"], "train.calibration": "none"})
    result = training.train(cfg, CandleStore.open(tmp / "no-store"), models_dir=tmp / "models")
    return {"tmp": tmp, "path": result.path, "doc": json.loads(result.path.read_text(encoding="utf-8"))}


def _coef(doc: dict) -> None:
    doc["state"]["coef"][0] = 123


def _metric(doc: dict) -> None:
    doc["metrics"]["test"]["log_loss"] = 0.1


def _horizon(doc: dict) -> None:
    doc["horizon"] = 5


def _test_start_back(doc: dict) -> None:
    b = doc["training_data"]["split"]["boundaries"]
    b["test_start"] = b["train_start"]  # the "test" part now covers train and validation


EDITS = {"coef": (_coef, CHANGED), "metric": (_metric, CHANGED), "horizon": (_horizon, CHANGED),
         "test_start": (_test_start_back, "validation_label_end")}


def _edited(trained: dict, folder: Path, edit) -> Path:
    doc = copy.deepcopy(trained["doc"])
    edit(doc)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / trained["path"].name
    target.write_text(model_file.dumps(doc), encoding="utf-8")
    return target


def test_a_file_written_by_write_new_loads_and_carries_its_hash(trained):
    loaded = model_file.load(trained["path"])
    doc = loaded.doc
    assert doc["content_sha256"] == model_file.content_hash(doc)
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    import hashlib

    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert doc["content_sha256"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_the_shipped_baselines_load(path: Path):
    loaded = model_file.load(path)
    assert loaded.doc["content_sha256"] == model_file.content_hash(loaded.doc)


@pytest.mark.parametrize("case", list(EDITS))
def test_a_hand_edited_file_is_refused_on_load(trained, tmp_path: Path, case: str):
    edit, message = EDITS[case]
    path = _edited(trained, tmp_path / "models", edit)
    with pytest.raises(ModelFileError) as info:
        model_file.load(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path)), text
    assert message in text, text


@pytest.mark.parametrize("case", list(EDITS))
def test_a_hand_edited_file_is_refused_by_evaluate(trained, tmp_path: Path, case: str):
    edit, message = EDITS[case]
    models = tmp_path / "models"
    path = _edited(trained, models, edit)
    env = dict(os.environ)
    env.pop("GENESIS_DATA_DIR", None)
    env.pop("GENESIS_MODELS_DIR", None)
    proc: subprocess.CompletedProcess = run_cli("--models-dir", str(models), "evaluate", path.stem,
                                                cwd=tmp_path, env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "results").exists()
    assert not list(tmp_path.glob("**/*.html"))


def test_a_resealed_edit_loads_but_a_broken_split_is_still_refused(trained, tmp_path: Path):
    """``seal`` recomputes the hash (a deliberate change, e.g. in a test); the split checks still hold."""
    doc = copy.deepcopy(trained["doc"])
    doc["metrics"]["test"]["log_loss"] = 0.1
    path = tmp_path / trained["path"].name
    path.write_text(model_file.dumps(model_file.seal(doc)), encoding="utf-8")
    assert model_file.load(path).doc["metrics"]["test"]["log_loss"] == 0.1
    for key, value, pair in [("train_label_end", "validation_start", "train_label_end"),
                             ("validation_end", "test_start", "validation_end"),
                             ("test_end", "train_start", "test_end")]:
        bad = copy.deepcopy(trained["doc"])
        b = bad["training_data"]["split"]["boundaries"]
        b[key] = b[value]
        if key == "test_end":
            b["test_end"] = "2030-01-01T00:00:00Z"
            b["test_label_end"] = "2030-01-01T00:00:00Z"
        path.write_text(model_file.dumps(model_file.seal(bad)), encoding="utf-8")
        with pytest.raises(ModelFileError, match=pair) as info:
            model_file.load(path)
        assert "\n" not in str(info.value)


def test_write_new_refuses_a_broken_split_and_writes_nothing(trained, tmp_path: Path):
    doc = copy.deepcopy(trained["doc"])
    b = doc["training_data"]["split"]["boundaries"]
    b["validation_start"] = b["train_start"]
    with pytest.raises(ModelFileError, match="validation_start"):
        model_file.write_new(doc, tmp_path / "models")
    assert not list((tmp_path / "models").glob("*.json")) if (tmp_path / "models").exists() else True

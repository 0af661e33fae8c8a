"""Model files under hostile or careless input: every bad file is a one-line ModelFileError, write_new
refuses what load would refuse, the calibration block is checked in full, and a LoadedModel is frozen.

Real files in temporary folders (a real FIFO and /dev/zero for the not-a-file cases).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_model_file import _doc, _fitted

from genesis_fw.errors import ModelFileError
from genesis_fw.ml import model_file
from genesis_fw.ml.model_file import load, resolve, write_new


def _refused(ref, **kw) -> str:
    with pytest.raises(ModelFileError) as info:
        load(ref, **kw)
    text = str(info.value)
    assert "\n" not in text and len(text) < 1200, text
    return text


@pytest.fixture
def good(tmp_path) -> Path:
    return write_new(_doc(), tmp_path / "models")


def _text_edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _edit(path: Path, edit) -> Path:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


# ---------------------------------------------------------------------------------------------
# 1. Parser limits: a bad file is refused in one line, never a traceback


def test_deep_nesting_is_refused(good):
    text = good.read_text().rstrip()
    assert text.endswith("}")
    good.write_text(text[:-1] + ', "zz": ' + "[" * 200_000 + "]" * 200_000 + "}")
    assert "nest" in _refused(good)
    # Deep but within what the decoder manages: the depth bound refuses it too.
    good.write_text(text[:-1] + ', "zz": ' + "[" * 500 + "]" * 500 + "}")
    assert "nest" in _refused(good)


def test_overlong_integers_are_refused(good):
    doc = json.loads(good.read_text())
    doc["state"]["intercept"] = 0
    good.write_text(json.dumps(doc).replace('"intercept": 0', '"intercept": ' + "9" * 5000))
    assert "intercept" not in "" and "digits" in _refused(good)
    good.write_text(json.dumps(doc).replace('"intercept": 0', '"intercept": 1' + "0" * 400))
    assert "digits" in _refused(good)


def test_calibration_with_a_huge_integer_is_refused_on_load(good):
    _text_edit(good, '"calibration": {\n    "method": "none"\n  }',
               '"calibration": {"method": "platt", "a": 1' + "0" * 400 + ', "b": 0, "eps": 0.001}')
    _refused(good)


def test_oversized_files_and_non_files_are_refused_before_reading(good, monkeypatch, tmp_path):
    monkeypatch.setattr(model_file, "MAX_FILE_BYTES", 1000)
    assert "larger than" in _refused(good)
    monkeypatch.undo()
    assert "not a regular file" in _refused(Path("/dev/zero"))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(fifo)  # would block forever if opened


def test_write_new_refuses_deep_nesting_and_huge_integers(tmp_path):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    doc = _doc()
    doc["metrics"] = {"test": {"deep": deep}}
    with pytest.raises(ModelFileError, match="nest"):
        write_new(doc, tmp_path)
    doc = _doc()
    doc["state"]["intercept"] = 10**400
    with pytest.raises(ModelFileError, match="digits|too large"):
        write_new(doc, tmp_path)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# 2. The calibration block


BAD_CALIBRATIONS = [
    {"method": "isotonic", "x_thresholds": [0, 1], "y_thresholds": [-5, 7]},
    {"method": "isotonic", "x_thresholds": [0.0, 1.0], "y_thresholds": [-5.0, 7.0], "eps": 0.001},
    {"method": "isotonic", "x_thresholds": [0.9, 0.1], "y_thresholds": [0.2, 0.8], "eps": 0.001},
    {"method": "isotonic", "x_thresholds": [0.1, 0.9], "y_thresholds": [0.2], "eps": 0.001},
    {"method": "isotonic", "x_thresholds": [], "y_thresholds": [], "eps": 0.001},
    {"method": "isotonic", "x_thresholds": [0.1, 0.9], "y_thresholds": [0.0, 0.8], "eps": 0.001},
    {"method": "platt"},
    {"method": "platt", "a": 1.0, "b": 0.0},
    {"method": "platt", "a": 1.0, "b": 0.0, "eps": 0.9},
    {"method": "platt", "a": "1", "b": 0.0, "eps": 0.001},
    {"method": "platt", "a": 1.0, "b": 0.0, "eps": 0.001, "x_thresholds": [0.5]},
    {"method": "none", "a": 1.0},
    {"method": "none", "cv_log_loss": "low"},
    {"method": "none", "chosen_because": 3},
]


@pytest.mark.parametrize("calibration", BAD_CALIBRATIONS, ids=range(len(BAD_CALIBRATIONS)))
def test_bad_calibrations_are_refused_on_load_and_on_write(good, tmp_path, calibration):
    _edit(good, lambda d: d.update(calibration=calibration))
    assert "calibration" in _refused(good)
    doc = _doc()
    doc["calibration"] = copy.deepcopy(calibration)
    with pytest.raises(ModelFileError, match="calibration"):
        write_new(doc, tmp_path / "fresh")
    assert not (tmp_path / "fresh" / ".versions.json").exists()


def test_calibrations_written_by_choose_load_and_apply(tmp_path):
    from genesis_fw.ml import calibration

    model, X = _fitted()
    p = model.predict_proba(X)
    y = (np.random.default_rng(3).random(p.size) < p).astype(int)
    ts = np.arange(p.size, dtype=np.int64) * 3_600_000
    for method in calibration.METHODS:
        cal = calibration.choose(p, y, ts, ts + 20 * 3_600_000, "1h", methods=(method,))
        doc = _doc(model)
        doc["calibration"] = cal
        loaded = load(write_new(doc, tmp_path))
        assert loaded.doc["calibration"]["method"] == method
        assert np.array_equal(loaded.predict_proba(X), calibration.apply(cal, p))


# ---------------------------------------------------------------------------------------------
# 3. write_new refuses what load refuses, before a version number is used


@pytest.mark.parametrize("what", ["negative C", "reversed names", "short coef", "unknown feature param",
                                  "float horizon", "zero scale", "bad created_at"])
def test_write_new_refuses_what_load_refuses_without_using_a_version(tmp_path, what):
    edits = {
        "negative C": lambda d: d["params"].update(C=-1.0),
        "reversed names": lambda d: d["features"]["names"].reverse(),
        "short coef": lambda d: d["state"]["coef"].pop(),
        "unknown feature param": lambda d: d["features"]["params"].update(bogus=3),
        "float horizon": lambda d: d.update(horizon=20.0),
        "zero scale": lambda d: d["state"]["scale"].__setitem__(0, 0.0),
        "bad created_at": lambda d: d.update(created_at="9999-99-99T99:99:99Z"),
    }
    doc = _doc()
    edits[what](doc)
    with pytest.raises(ModelFileError):
        write_new(doc, tmp_path)
    assert not (tmp_path / ".versions.json").exists()
    assert write_new(_doc(), tmp_path).name == "tBTCUSD_1h_v1.json"


# ---------------------------------------------------------------------------------------------
# 4. Schema strictness


def test_float_where_an_integer_is_meant_is_refused(good):
    _text_edit(good, '"horizon": 20', '"horizon": 20.0')
    assert "horizon" in _refused(good)


def test_zero_or_negative_scale_is_refused(good):
    for value in (0.0, -1.0):
        _edit(good, lambda d, v=value: d["state"]["scale"].__setitem__(0, v))
        assert "scale" in _refused(good)


@pytest.mark.parametrize("stamp", ["9999-99-99T99:99:99Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z"])
def test_created_at_must_be_a_real_time(good, stamp):
    _edit(good, lambda d: d.update(created_at=stamp))
    assert "created_at" in _refused(good)


# ---------------------------------------------------------------------------------------------
# 5. Messages


def test_suggestions_sort_by_version_number_and_show_the_nearest(tmp_path):
    for _ in range(60):
        write_new(_doc(), tmp_path)
    with pytest.raises(ModelFileError) as info:
        resolve("tBTCUSD_1h_v99", tmp_path)
    text = str(info.value)
    assert "tBTCUSD_1h_v60" in text and "did you mean 'tBTCUSD_1h_v9'" not in text, text
    listed = text.split("models there: ")[1]
    numbers = [int(part.split("_v")[1].rstrip(")., ").split()[0]) for part in listed.split(", ")
               if "_v" in part]
    assert numbers == sorted(numbers) and numbers[-1] == 60, text
    with pytest.raises(ModelFileError) as info:
        resolve("tBTCUSD_1h_v30", tmp_path / "nowhere")
    (tmp_path / "tBTCUSD_1h_v30.json").unlink()
    with pytest.raises(ModelFileError) as info:
        resolve("tBTCUSD_1h_v30", tmp_path)
    listed = str(info.value).split("models there: ")[1]
    assert "tBTCUSD_1h_v29" in listed and "tBTCUSD_1h_v31" in listed and "tBTCUSD_1h_v1," not in listed


def test_case_insensitive_suggestion(tmp_path):
    write_new(_doc(), tmp_path)
    with pytest.raises(ModelFileError, match="did you mean 'tBTCUSD_1h_v1'"):
        resolve("tbtcusd_1h_v1", tmp_path)


def test_a_bare_file_name_is_also_looked_up_in_the_models_folder(tmp_path, monkeypatch):
    path = write_new(_doc(), tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    assert resolve("tBTCUSD_1h_v1.json", tmp_path / "models") == path
    assert load("tBTCUSD_1h_v1.json", tmp_path / "models").path == path


def test_a_models_folder_that_is_a_file(tmp_path):
    folder = tmp_path / "models"
    folder.write_text("x")
    with pytest.raises(ModelFileError, match="is a file, not a folder"):
        write_new(_doc(), folder)
    with pytest.raises(ModelFileError, match="is a file, not a folder"):
        resolve("tBTCUSD_1h_v1", folder)


def test_a_models_folder_that_is_not_writable(tmp_path):
    import shutil
    import subprocess

    folder = tmp_path / "models"
    folder.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits; an immutable folder refuses even root
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without chattr +i")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = None
    try:
        with pytest.raises(ModelFileError, match="not writable") as info:
            write_new(_doc(), folder)
        assert "\n" not in str(info.value)
    finally:
        if undo:
            subprocess.run(undo, check=True)
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# 6. A LoadedModel predicts from what was loaded, whatever its caller does to the document


def test_loaded_model_is_frozen(tmp_path):
    from genesis_fw.ml import calibration

    model, X = _fitted()
    p = model.predict_proba(X)
    y = (X[:, 0] > 0).astype(int)
    doc = _doc(model)
    doc["calibration"] = calibration.fit("platt", p, y)
    loaded = load(write_new(doc, tmp_path))
    want = loaded.predict_proba(X)
    on_file = json.loads(loaded.path.read_text())
    edited = loaded.doc
    edited["calibration"]["a"] = 100.0
    edited["features"]["names"].append("x")
    loaded.doc["calibration"]["b"] = -100.0
    assert loaded.doc == on_file
    assert np.array_equal(loaded.predict_proba(X), want)
    assert loaded.feature_names == on_file["features"]["names"]
    # The document given to the constructor is copied too.
    source = copy.deepcopy(on_file)
    again = model_file.LoadedModel(doc=source, path=loaded.path, sha256=loaded.sha256, model=loaded.model)
    source["calibration"]["a"] = 100.0
    assert np.array_equal(again.predict_proba(X), want)

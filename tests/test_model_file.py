"""Model files: plain JSON validated by a JSON Schema, never-reused version numbers, exact reloads.

Real files in a temporary models folder; real processes for the concurrent writers and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_cli

from genesis_fw import plugins
from genesis_fw.config import FeaturesConfig
from genesis_fw.errors import ModelFileError
from genesis_fw.ml import baselines, features, model_file
from genesis_fw.ml.model_file import load, resolve, validate, write_new

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "models"


def _fitted(seed: int = 0, n_features: int | None = None):
    cfg = FeaturesConfig()
    k = n_features or len(features.names(cfg))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, k))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
    model = plugins.instantiate("model", "logreg", {"C": 0.5})
    model.fit(X, y)
    return model, X


def _doc(model=None, *, symbol: str = "tBTCUSD", timeframe: str = "1h") -> dict:
    """A complete model document around a fitted logreg, as training would write it."""
    model = model if model is not None else _fitted()[0]
    cfg = FeaturesConfig()
    return {
        "schema_version": model_file.SCHEMA_VERSION,
        "name": "",
        "version": 0,
        "model_type": "logreg",
        "model_type_version": type(model).state_version,
        "params": attrs.asdict(model.params),
        "state": model.to_state(),
        "symbol": symbol,
        "timeframe": timeframe,
        "horizon": 20,
        "label": {"rule": "endpoint", "dead_zone_bps": 0.0, "keep_ties": False},
        "features": {"names": features.names(cfg), "definitions_hash": features.definitions_hash(cfg),
                     "params": attrs.asdict(cfg)},
        "calibration": {"method": "none"},
        "training_data": None,
        "grid_search": None,
        "metrics": {},
        "libraries": {"numpy": np.__version__},
        "created_at": "2026-01-02T03:04:05Z",
        "description": "a test model",
        "baseline": False,
    }


def _error(path: Path, **kw) -> str:
    with pytest.raises(ModelFileError) as info:
        load(path, **kw)
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    return text


# ---------------------------------------------------------------------------------------------
# Round trip and naming


def test_write_new_then_load_predicts_bit_for_bit(tmp_path):
    model, X = _fitted()
    doc = _doc(model)
    path = write_new(doc, tmp_path)
    assert path == tmp_path / "tBTCUSD_1h_v1.json" and doc["name"] == "tBTCUSD_1h_v1" and doc["version"] == 1
    loaded = load("tBTCUSD_1h_v1", tmp_path, symbol="tBTCUSD", timeframe="1h")
    assert loaded.path == path and loaded.name == "tBTCUSD_1h_v1"
    assert (loaded.symbol, loaded.timeframe, loaded.horizon) == ("tBTCUSD", "1h", 20)
    assert loaded.feature_names == features.names(FeaturesConfig())
    assert loaded.features_config() == FeaturesConfig()
    import hashlib

    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    X_new = np.random.default_rng(7).normal(size=(500, X.shape[1])) * 3
    for data in (X, X_new):
        assert np.array_equal(loaded.predict_raw(data), model.predict_proba(data))
        assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))  # calibration "none"
    # The file is plain, strict JSON (no NaN, no Python objects).
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))["state"] == model.to_state()
    # Loading by path works too, from anywhere.
    assert load(path).name == "tBTCUSD_1h_v1"


def test_versions_are_never_reused_even_after_a_delete(tmp_path):
    paths = [write_new(_doc(), tmp_path) for _ in range(3)]
    assert [p.name for p in paths] == [f"tBTCUSD_1h_v{n}.json" for n in (1, 2, 3)]
    paths[1].unlink()
    paths[2].unlink()
    assert write_new(_doc(), tmp_path).name == "tBTCUSD_1h_v4.json"
    # Versions count per symbol and timeframe.
    assert write_new(_doc(timeframe="1m"), tmp_path).name == "tBTCUSD_1m_v1.json"
    # A missing high-water mark (e.g. a fresh clone with shipped files) still starts above every file.
    (tmp_path / ".versions.json").unlink()
    assert write_new(_doc(), tmp_path).name == "tBTCUSD_1h_v5.json"


def test_concurrent_writers_get_distinct_versions(tmp_path):
    """8 processes writing the same symbol/timeframe at once: 8 x 3 distinct N, no file lost."""
    doc_file = tmp_path / "doc.json"
    doc_file.write_text(json.dumps(_doc()))
    models = tmp_path / "models"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import json, os, time
        from genesis_fw.ml.model_file import write_new
        doc = json.loads(open({str(doc_file)!r}).read())
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        for _ in range(3):
            print(write_new(dict(doc), __import__("pathlib").Path({str(models)!r})).name, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    go.touch()
    names = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        names += out.split()
    assert len(names) == 24 and len(set(names)) == 24
    assert sorted(names) == sorted(f"tBTCUSD_1h_v{n}.json" for n in range(1, 25))
    assert sorted(p.name for p in models.glob("tBTCUSD_*.json")) == sorted(names)
    for name in names:
        assert load(models / name).doc["version"] == int(name.split("_v")[1].removesuffix(".json"))
    assert not list(models.glob(".*.tmp"))


def test_write_new_never_overwrites_and_refuses_an_invalid_doc(tmp_path):
    first = write_new(_doc(), tmp_path)
    before = first.read_bytes()
    bad = _doc()
    bad["state"]["coef"] = ["not a number"] * len(bad["state"]["coef"])
    with pytest.raises(ModelFileError, match="state"):
        write_new(bad, tmp_path)
    nan = _doc()
    nan["state"]["intercept"] = float("nan")
    with pytest.raises(ModelFileError, match="NaN"):
        write_new(nan, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [first.name]
    assert first.read_bytes() == before
    assert write_new(_doc(), tmp_path).name == "tBTCUSD_1h_v2.json"


def test_resolve_names_and_paths_with_suggestions(tmp_path, monkeypatch):
    path = write_new(_doc(), tmp_path)
    assert resolve("tBTCUSD_1h_v1", tmp_path) == path
    assert resolve(str(path)) == path
    with pytest.raises(ModelFileError, match=r"no model 'tBTCUSD_1h_v9' in .*did you mean 'tBTCUSD_1h_v1'"):
        resolve("tBTCUSD_1h_v9", tmp_path)
    with pytest.raises(ModelFileError, match=r"did you mean 'tBTCUSD_1h_v1'"):
        resolve("tBTCUSD_1H_v1", tmp_path)
    with pytest.raises(ModelFileError, match="no model file"):
        resolve(str(tmp_path / "nope.json"))
    # The default folder follows $GENESIS_MODELS_DIR, else config/models relative to the working directory.
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(tmp_path))
    assert model_file.default_models_dir() == tmp_path and resolve("tBTCUSD_1h_v1") == path
    monkeypatch.delenv("GENESIS_MODELS_DIR")
    assert model_file.default_models_dir() == Path("config/models")


# ---------------------------------------------------------------------------------------------
# Bad files: each a one-line ModelFileError naming the file


@pytest.fixture
def good(tmp_path) -> Path:
    return write_new(_doc(), tmp_path / "models")


def _rewrite(path: Path, edit) -> Path:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


def test_truncated_file(good):
    good.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    assert "not valid JSON" in _error(good)


def test_edited_coefficient_count(good):
    _rewrite(good, lambda d: d["state"]["coef"].pop())
    assert "coef" in _error(good)
    # Consistently edited (every vector one shorter): the model no longer takes the file's features.
    def shorter(d):  # coef is one short already
        for k in ("mean", "scale"):
            d["state"][k].pop()
    _rewrite(good, shorter)
    assert "15 features" in _error(good)


def test_other_schema_version(good):
    _rewrite(good, lambda d: d.update(schema_version=2))
    assert "schema version 2" in _error(good) and "reads schema version 1" in _error(good)


def test_other_state_version(good):
    _rewrite(good, lambda d: d.update(model_type_version=7))
    text = _error(good)
    assert "logreg state version 7" in text and "installed logreg reads state version 1" in text


def test_missing_field(good):
    _rewrite(good, lambda d: d.pop("horizon"))
    assert "'horizon' is a required property" in _error(good)
    _rewrite(good, lambda d: (d.update(horizon=20), d["label"].pop("rule")))
    assert "label: 'rule' is a required property" in _error(good)


def test_wrong_type(good):
    _rewrite(good, lambda d: d.update(horizon="20"))
    assert "horizon" in _error(good) and "integer" in _error(good)


def test_unknown_model_type(good):
    _rewrite(good, lambda d: d.update(model_type="logregg"))
    assert "unknown model 'logregg'" in _error(good) and "did you mean 'logreg'" in _error(good)


def test_other_symbol_or_timeframe(good):
    load(good, symbol="tBTCUSD", timeframe="1h")
    assert "tBTCUSD 1h" in _error(good, symbol="tETHUSD") and "tETHUSD" in _error(good, symbol="tETHUSD")
    assert "a model for tBTCUSD 1h, not for tBTCUSD 1m as asked" in _error(good, timeframe="1m")


def test_valid_json_but_a_list(good):
    good.write_text(json.dumps([_doc()]))
    assert "not a JSON object" in _error(good)


def test_injected_extra_key(good):
    _rewrite(good, lambda d: d.update(loader="os.system"))
    assert "'loader' was unexpected" in _error(good)
    _rewrite(good, lambda d: (d.pop("loader"), d["state"].update(hook="x")))
    assert "hook" in _error(good)


def test_renamed_file_is_refused(good):
    other = good.with_name("tBTCUSD_1h_v5.json")
    good.rename(other)
    assert "names itself tBTCUSD_1h_v1" in _error(other)


def test_non_finite_numbers_and_duplicate_keys(good):
    good.write_text(good.read_text().replace('"horizon": 20', '"horizon": 20, "horizon": 20'))
    assert "duplicate key 'horizon'" in _error(good)
    _rewrite(good, lambda d: None)
    text = good.read_text()
    good.write_text(text.replace('"intercept": ', '"intercept": NaN, "x": ', 1))
    assert "NaN" in _error(good)
    good.write_text(text.replace('"intercept": ', '"intercept": 1e999, "x": ', 1))
    assert "1e999 is too large for a float" in _error(good)


def test_a_damaged_high_water_mark_is_refused_not_guessed(tmp_path):
    write_new(_doc(), tmp_path)
    (tmp_path / ".versions.json").write_text('{"tBTCUSD_1h": "two"}')
    with pytest.raises(ModelFileError, match=r"\.versions\.json: expected an object of version numbers"):
        write_new(_doc(), tmp_path)
    (tmp_path / ".versions.json").write_text('{"tBTCUSD_1h": ')
    with pytest.raises(ModelFileError, match="unreadable high-water mark"):
        write_new(_doc(), tmp_path)
    assert sorted(p.name for p in tmp_path.glob("tBTCUSD_*.json")) == ["tBTCUSD_1h_v1.json"]


def test_loading_executes_nothing_from_the_file(good, tmp_path):
    """A string that would run code if evaluated is only data: the schema refuses it, nothing runs."""
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    _rewrite(good, lambda d: d["state"].update(intercept=payload))
    assert "intercept" in _error(good)
    _rewrite(good, lambda d: (d["state"].update(intercept=0.0), d.update(model_type=payload)))
    _error(good)
    assert not marker.exists()
    # The load path imports no deserialiser of code and calls no evaluator.
    import ast

    tree = ast.parse((REPO / "genesis_fw" / "ml" / "model_file.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"pickle", "marshal", "shelve", "dill", "joblib", "cloudpickle", "importlib"}
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}


# ---------------------------------------------------------------------------------------------
# The shipped version-1 baselines


def test_shipped_baselines_are_what_the_script_writes(tmp_path):
    written = baselines.write(tmp_path)
    assert sorted(p.name for p in written) == ["tBTCUSD_1h_v1.json", "tBTCUSD_1m_v1.json"]
    for path in written:
        shipped = SHIPPED / path.name
        assert shipped.read_bytes() == path.read_bytes(), (
            f"{shipped} is stale: regenerate it with `python -m genesis_fw.ml.baselines config/models`")
        loaded = load(shipped, symbol="tBTCUSD")
        doc = loaded.doc
        assert doc["baseline"] is True and doc["version"] == 1 and doc["model_type"] == "logreg"
        assert doc["horizon"] == 20 and doc["label"]["rule"] == "endpoint"
        assert doc["calibration"] == {"method": "none"}
        assert doc["training_data"] is None and doc["grid_search"] is None and doc["metrics"] == {}
        assert "placeholder" in doc["description"] and "no claimed skill" in doc["description"]
        cfg = FeaturesConfig()
        assert loaded.feature_names == features.names(cfg)
        assert doc["features"]["definitions_hash"] == features.definitions_hash(cfg)
        # One small positive weight on a short-term momentum feature, zero elsewhere.
        coef = dict(zip(loaded.feature_names, doc["state"]["coef"], strict=True))
        assert coef.pop("log_return_5") > 0 and set(coef.values()) == {0.0}
        X = np.zeros((3, len(cfg.ema_spans) + 11))
        X[:, loaded.feature_names.index("log_return_5")] = [-0.01, 0.0, 0.01]
        p = loaded.predict_proba(X)
        assert p[0] < 0.5 == p[1] < p[2]


def test_first_write_after_the_baselines_is_v2_on_a_fresh_clone(tmp_path):
    models = tmp_path / "models"
    baselines.write(models)
    assert not (models / ".versions.json").exists()
    assert write_new(_doc(), models).name == "tBTCUSD_1h_v2.json"
    assert write_new(_doc(timeframe="1m"), models).name == "tBTCUSD_1m_v2.json"
    assert write_new(_doc(symbol="tETHUSD"), models).name == "tETHUSD_1h_v1.json"


def test_validate_names_where(tmp_path):
    doc = _doc()
    doc.update(name="tBTCUSD_1h_v1", version=1)
    validate(model_file.seal(doc), where="here")
    doc["horizon"] = 0
    with pytest.raises(ModelFileError, match=r"^here: horizon: 0 is less than the minimum of 1$"):
        validate(doc, where="here")


# ---------------------------------------------------------------------------------------------
# --models-dir and GENESIS_MODELS_DIR


def test_models_dir_option_and_envvar_reach_the_resolution(tmp_path, monkeypatch):
    """The global option sets ctx.obj and $GENESIS_MODELS_DIR, so every resolver sees the same folder."""
    from genesis_fw.cli import cli

    path = write_new(_doc(), tmp_path / "mine")
    monkeypatch.chdir(tmp_path)  # so the default config/models is an empty folder, not the repo's

    @cli.command("_probe")
    @click.pass_context
    def probe(ctx):
        click.echo(f"{ctx.find_root().obj['models_dir']}|{model_file.default_models_dir()}|"
                   f"{resolve('tBTCUSD_1h_v1')}")

    try:
        monkeypatch.delenv("GENESIS_MODELS_DIR", raising=False)
        out = CliRunner().invoke(cli, ["--models-dir", str(tmp_path / "mine"), "_probe"])
        assert out.exit_code == 0, out.output
        assert out.output.strip() == f"{tmp_path / 'mine'}|{tmp_path / 'mine'}|{path}"
        assert os.environ["GENESIS_MODELS_DIR"] == str(tmp_path / "mine")
        monkeypatch.setenv("GENESIS_MODELS_DIR", str(tmp_path / "mine"))
        out = CliRunner().invoke(cli, ["_probe"])
        assert out.exit_code == 0 and out.output.strip().endswith(f"|{path}"), out.output
        monkeypatch.delenv("GENESIS_MODELS_DIR")
        out = CliRunner().invoke(cli, ["_probe"])
        assert out.exit_code == 1 and "no model 'tBTCUSD_1h_v1' in config/models" in out.output, out.output
    finally:
        cli.commands.pop("_probe", None)
        os.environ.pop("GENESIS_MODELS_DIR", None)


def test_models_dir_in_a_real_cli_process(tmp_path):
    env = dict(os.environ)
    env.pop("GENESIS_MODELS_DIR", None)
    help_text = run_cli("--help", cwd=tmp_path, env=env).stdout
    assert "--models-dir" in help_text and "GENESIS_MODELS_DIR" in help_text
    proc = run_cli("--models-dir", str(tmp_path / "m"), "plugins", "--kind", "model", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "logreg" in proc.stdout, proc.stderr
    env["GENESIS_MODELS_DIR"] = str(tmp_path / "m")
    proc = run_cli("plugins", "--kind", "model", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr


def test_schema_is_valid_and_knows_every_timeframe():
    from jsonschema import Draft202012Validator

    from genesis_fw.data.timeframes import TIMEFRAMES

    schema = model_file.schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["timeframe"]["enum"] == list(TIMEFRAMES)
    assert schema["properties"]["schema_version"]["const"] == model_file.SCHEMA_VERSION


def test_the_shipped_models_folder_never_gives_a_registered_version_again(tmp_path):
    """The shipped folder's high-water marks: with the registered v1 file deleted, the next model is still v2
    (a new v1 would take the registered name, and the registry would call it tampered)."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(Path(__file__).resolve().parents[1] / "config" / "models", models)
    (models / "tBTCUSD_1h_v1.json").unlink()
    assert write_new(_doc(), models).name == "tBTCUSD_1h_v2.json"

"""The `lgbm` model type (LightGBM): contract, bit-for-bit JSON round trip, non-linear skill, and
what happens when LightGBM is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import jsonschema
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from genesis_fw.config import FeaturesConfig, make_params
from genesis_fw.data.store import resample
from genesis_fw.errors import ConfigError
from genesis_fw.ml import features
from genesis_fw.ml.labels import labels_for_table
from genesis_fw.model import NotFittedError
from genesis_fw.plugins import load
from genesis_fw.testing import check_model

SAMPLE = Path(__file__).resolve().parents[1] / "genesis_fw" / "sample" / "tBTCUSD_1m.parquet"
MISSING = "model type lgbm needs LightGBM: pip install 'genesis-fw[lightgbm]'"


@pytest.fixture(scope="module")
def Lgbm() -> type:
    return load("model", "lgbm")  # through its entry point, as the CLI finds it


@pytest.fixture(scope="module")
def sample_xy() -> tuple[np.ndarray, np.ndarray]:
    """The default features and 10-bar labels of the bundled sample resampled to 1h (real candles)."""
    candles = resample(SAMPLE, "1h")
    cfg = FeaturesConfig()
    feats = features.build(candles, cfg)
    labels = labels_for_table(candles, "1h", 10)
    keep = labels.index >= feats.warmup_dropped
    rows = labels.index[keep] - feats.warmup_dropped
    X = np.column_stack([feats.table.column(n).to_numpy() for n in features.names(cfg)])[rows]
    return X, labels.price_up[keep].astype(int)


def _json_round_trip(cls: type, model) -> object:
    """What a model file does: params and state through JSON text, then ``from_state``."""
    doc = json.loads(json.dumps({"params": attrs.asdict(model.params), "state": model.to_state()}))
    return cls.from_state(cls.Params(**doc["params"]), doc["state"])


def test_contract(Lgbm):
    check_model(Lgbm)
    check_model(Lgbm, Lgbm.Params(n_estimators=20, num_leaves=3, subsample=0.8, colsample=0.5, seed=7))
    with pytest.raises(NotFittedError):
        Lgbm().to_state()


def test_loaded_model_predicts_bit_for_bit_what_the_fitted_one_did(Lgbm, sample_xy):
    X, y = sample_xy
    assert len(X) > 1000 and 0.3 < y.mean() < 0.7
    params = Lgbm.Params(n_estimators=60, subsample=0.8, colsample=0.7)
    model = Lgbm(params).fit(X, y)
    state = model.to_state()
    jsonschema.validate(state, Lgbm.state_schema)
    loaded = _json_round_trip(Lgbm, model)
    assert loaded.to_state() == state
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(500, X.shape[1])) * X.std(axis=0) + X.mean(axis=0)
    for data in (X, noise):
        p_fit, p_load = model.predict_proba(data), loaded.predict_proba(data)
        assert p_fit.dtype == np.float64 and p_fit.shape == (len(data),)
        assert np.array_equal(p_fit, p_load)
    # It learned something from the features (not a constant), and the same fit again is the same model.
    assert np.unique(model.predict_proba(X)).size > 50
    assert Lgbm(params).fit(X, y).to_state() == state


def test_learns_a_pattern_logistic_regression_cannot(Lgbm):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(4000, 3))
    y = ((X[:, 0] * X[:, 1] > 0) ^ (rng.random(4000) < 0.1)).astype(int)  # XOR of the signs, 10 % flipped
    train, test = slice(0, 3000), slice(3000, None)
    auc_lgbm = roc_auc_score(y[test], Lgbm().fit(X[train], y[train]).predict_proba(X[test]))
    auc_logreg = roc_auc_score(y[test], load("model", "logreg")().fit(X[train], y[train]).predict_proba(X[test]))
    assert auc_lgbm > 0.85 and auc_logreg < 0.6, (auc_lgbm, auc_logreg)


def test_grid_values_and_command_line_strings_make_params(Lgbm):
    assert Lgbm.grid and all(len(values) >= 2 for values in Lgbm.grid.values())
    for name, values in Lgbm.grid.items():
        for value in values:
            assert getattr(Lgbm.Params(**{name: value}), name) == value
            assert getattr(make_params(Lgbm.Params, {name: str(value)}, owner="model"), name) == value
    p = Lgbm.Params(num_leaves=np.int64(7), learning_rate=np.float64(0.1))  # values as numpy hands them out
    assert p.num_leaves == 7
    for bad in ({"num_leaves": 1}, {"learning_rate": 0}, {"subsample": 1.5}, {"colsample": 0}, {"num_threads": 0},
                {"n_estimators": 0}, {"reg_lambda": -1}, {"min_child_samples": 0}, {"num_leaves": 7.5},
                {"seed": True}):
        with pytest.raises((ValueError, TypeError)):
            Lgbm.Params(**bad)
    with pytest.raises(ConfigError, match="num_leaves"):
        make_params(Lgbm.Params, {"num_leaves": "1"}, owner="model")


def test_bad_state_is_refused(Lgbm, sample_xy):
    X, y = sample_xy
    state = Lgbm(Lgbm.Params(n_estimators=5)).fit(X, y).to_state()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**state, "booster": "import os"}, Lgbm.state_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"booster": state["booster"]}, Lgbm.state_schema)
    with pytest.raises(ValueError, match="not a valid LightGBM model"):
        Lgbm.from_state(Lgbm.Params(), {**state, "booster": "tree\nversion=v4\nnum_class=1\ngarbage"})
    with pytest.raises(ValueError, match="features"):
        Lgbm.from_state(Lgbm.Params(), {**state, "n_features": X.shape[1] + 1})
    loaded = Lgbm.from_state(Lgbm.Params(), state)
    with pytest.raises(ValueError, match=f"expected X of shape \\(n, {X.shape[1]}\\)"):
        loaded.predict_proba(X[:, :-1])


def _without_lightgbm(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import lightgbm (``sys.modules['lightgbm'] = None`` at start-up)."""
    hide = tmp_path / "hide_lightgbm"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['lightgbm'] = None\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hide), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_without_lightgbm_listed_but_fit_and_load_say_how_to_install(tmp_path):
    env = _without_lightgbm(tmp_path)
    listing = subprocess.run([sys.executable, "-m", "genesis_fw", "plugins", "--kind", "model"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "lgbm" in listing.stdout and "num_leaves: int = " in listing.stdout and "BROKEN" not in listing.stdout
    code = """
        import json
        import numpy as np
        from genesis_fw.errors import GenesisError
        from genesis_fw.plugins import load

        Lgbm = load("model", "lgbm")
        out = {}
        for what, call in (("fit", lambda: Lgbm().fit(np.zeros((10, 2)), np.arange(10) % 2)),
                           ("load", lambda: Lgbm.from_state(Lgbm.Params(), {"booster": "tree\\n", "n_features": 2}))):
            try:
                call()
                out[what] = "no error"
            except GenesisError as exc:
                out[what] = str(exc)
        try:
            import lightgbm  # noqa: F401
            out["importable"] = True
        except ImportError:
            out["importable"] = False
        print(json.dumps(out))
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"fit": MISSING, "load": MISSING, "importable": False}


def test_listing_plugins_does_not_import_lightgbm():
    code = """
        import json, sys
        from click.testing import CliRunner
        from genesis_fw.cli import cli

        result = CliRunner().invoke(cli, ["plugins", "--kind", "model"])
        print(json.dumps({"exit": result.exit_code, "listed": "lgbm" in result.output,
                          "module": "genesis_fw_models.lgbm" in sys.modules, "lightgbm": "lightgbm" in sys.modules}))
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"exit": 0, "listed": True, "module": True,
                                                                "lightgbm": False}

"""The `lgbm` model type (LightGBM): contract, bit-for-bit JSON round trip, non-linear skill, and
what happens when LightGBM is not installed."""

from __future__ import annotations

import json
import os
import re
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
    with pytest.raises(ValueError, match="no header followed by a blank line and Tree=0"):
        Lgbm.from_state(Lgbm.Params(), {**state, "booster": "tree\nversion=v4\nnum_class=1\ngarbage"})
    with pytest.raises(ValueError, match=f"max_feature_idx={X.shape[1] - 1}, expected {X.shape[1]}"):
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


# --- Hand-edited or hostile booster text -------------------------------------------------------------------------
# The booster string of a model file reaches LightGBM's C++ parser, which trusts it: an out-of-range feature index
# segfaults, a child cycle never returns, stale tree_sizes abort the process. Each case below is an edit of a real
# fitted booster and must be a one-line ValueError from from_state. Each runs in its own subprocess with a timeout,
# so a crash or a hang fails the test instead of killing pytest.

_LOAD_CODE = """
import json, sys
import numpy as np
from genesis_fw.plugins import load

Lgbm = load("model", "lgbm")
state = json.loads(open(sys.argv[1]).read())
try:
    model = Lgbm.from_state(Lgbm.Params(), state)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    p = model.predict_proba(np.random.default_rng(0).normal(size=(50, state["n_features"])) * 3)
    print(json.dumps({"loaded": [float(v) for v in p]}))
"""


def _trees_resized(text: str) -> str:
    """``text`` with its ``tree_sizes`` line recomputed from the Tree= blocks as they now are (what LightGBM
    would have written), so an edit reaches the tree checks instead of failing on stale sizes."""
    head, sep, rest = text.partition("\n\nTree=")
    body, end, tail = ("Tree=" + rest).partition("end of trees\n")
    blocks = ["Tree=" + b for b in body.split("Tree=")[1:]]
    sizes = " ".join(str(len(b.encode())) for b in blocks)
    head = "\n".join(f"tree_sizes={sizes}" if line.startswith("tree_sizes=") else line for line in head.split("\n"))
    return head + sep + body[len("Tree="):] + end + tail


def _edit_tree0(text: str, key: str, value: str) -> str:
    """Set ``key`` of the first tree to ``value`` (sizes left stale)."""
    start = text.index("\nTree=0\n")
    at = text.index(f"\n{key}=", start) + 1
    stop = text.index("\n", at)
    return text[:at] + f"{key}={value}" + text[stop:]


def _set_list0(text: str, key: str, index: int, value: str) -> str:
    start = text.index("\nTree=0\n")
    at = text.index(f"\n{key}=", start) + 1
    stop = text.index("\n", at)
    values = text[at + len(key) + 1:stop].split(" ")
    values[index] = value
    return _edit_tree0(text, key, " ".join(values))


@pytest.fixture(scope="module")
def real_booster(Lgbm) -> dict:
    """A real fitted booster's state: 4 features, 8 trees of up to 7 leaves, nothing hand-made."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    y = ((X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(size=3000)) > 0).astype(int)
    return Lgbm(Lgbm.Params(n_estimators=8, num_leaves=7, min_child_samples=20)).fit(X, y).to_state()


def _hostile_cases(text: str) -> dict[str, tuple[str, str]]:
    """name -> (edited booster text, pattern the error message must match)."""
    r = _trees_resized
    assert "\ndecision_type=2 " in text  # numerical splits, default-left, as this booster was trained
    return {
        "split_feature_out_of_range": (r(_set_list0(text, "split_feature", 0, "999999")), r"Tree=0.*split_feature"),
        "child_cycle": (r(_set_list0(_set_list0(text, "left_child", 0, "0"), "right_child", 0, "0")),
                        r"Tree=0.*(node 0|reached)"),
        "child_out_of_range": (r(_set_list0(text, "right_child", 0, "-99999")), r"Tree=0.*right_child"),
        "tree_sizes_stale": (_set_list0(text, "leaf_value", 0, "0.25"), r"tree_sizes"),
        "tree_sizes_missing": ("\n".join(x for x in text.split("\n") if not x.startswith("tree_sizes=")),
                               r"tree_sizes"),
        "num_class_huge": (text.replace("\nnum_class=1\n", "\nnum_class=100000000\n"), r"num_class"),
        "num_leaves_huge": (r(_edit_tree0(text, "num_leaves", "2000000000")), r"Tree=0.*num_leaves"),
        "leaf_value_not_finite": (r(_set_list0(text, "leaf_value", 0, "nan")), r"Tree=0.*leaf_value"),
        "threshold_overflows": (r(_set_list0(text, "threshold", 0, "1e999")), r"Tree=0.*threshold"),
        "objective_regression": (text.replace("\nobjective=binary sigmoid:1\n", "\nobjective=regression\n"),
                                 r"objective"),
        "categorical_split": (r(_set_list0(text, "decision_type", 0, "1")), r"Tree=0.*decision_type"),
        "unknown_header_line": (text.replace("\nlabel_index=0\n", "\nlabel_index=0\nlinear_tree=1\n"), r"linear_tree"),
        "parameter_line_without_colon": (text.replace("\n[boosting: gbdt]\n", "\n[boosting gbdt]\n"),
                                         r"parameters"),
        "nul_byte": (text.replace("\nversion=v4\n", "\nversion=v4\x00\n"), r"character"),
    }


def test_hostile_booster_texts_are_one_line_errors_not_crashes(real_booster, tmp_path):
    cases = _hostile_cases(real_booster["booster"])
    procs = {}
    for name, (text, _) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**real_booster, "booster": text}))
        procs[name] = subprocess.Popen([sys.executable, "-c", _LOAD_CODE, str(path)], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    problems = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            problems[name] = "did not finish within 120 s (hang)"
            continue
        if proc.returncode != 0:
            problems[name] = f"exit code {proc.returncode}: {err.strip()[-300:]}"
            continue
        got = json.loads(out.strip().splitlines()[-1])
        pattern = cases[name][1]
        if got.get("error") != "ValueError" or "\n" in got["message"] or not re.search(pattern, got["message"]):
            problems[name] = f"expected a one-line ValueError matching {pattern!r}, got {got}"
    assert not problems, problems


def test_genuine_booster_text_is_accepted_and_predicts_what_lightgbm_does(Lgbm, real_booster):
    import lightgbm

    X = np.random.default_rng(5).normal(size=(400, 4)) * 2
    model = Lgbm.from_state(Lgbm.Params(), real_booster)
    assert model.to_state() == real_booster  # stored text kept byte for byte
    direct = lightgbm.Booster(model_str=real_booster["booster"]).predict(X)
    assert np.array_equal(model.predict_proba(X), direct)
    # A booster whose trees could not split (one leaf each, empty arrays) is genuine too.
    one_leaf = Lgbm(Lgbm.Params(n_estimators=3, min_child_samples=900)).fit(X[:, :2], np.arange(400) % 2)
    assert "\nnum_leaves=1\n" in one_leaf.to_state()["booster"]
    assert np.array_equal(Lgbm.from_state(Lgbm.Params(), one_leaf.to_state()).predict_proba(X[:, :2]),
                          one_leaf.predict_proba(X[:, :2]))


def test_model_file_with_a_hostile_booster_is_a_model_file_error(real_booster, tmp_path):
    root = Path(__file__).resolve().parents[1]
    doc = json.loads((root / "config" / "models" / "tBTCUSD_1h_v1.json").read_text())
    k = len(doc["features"]["names"])
    code = """
import json, sys
import numpy as np
from genesis_fw.errors import ModelFileError
from genesis_fw.ml import model_file
from genesis_fw.plugins import load

Lgbm = load("model", "lgbm")
doc = json.loads(open(sys.argv[1]).read())
X = np.random.default_rng(4).normal(size=(2000, int(sys.argv[3])))
state = Lgbm(Lgbm.Params(n_estimators=3)).fit(X, (X[:, 0] > 0).astype(int)).to_state()
text = state["booster"]
start = text.index("\\nTree=0\\n")
at = text.index("\\nsplit_feature=", start) + len("\\nsplit_feature=")
doc.update(model_type="lgbm", model_type_version=Lgbm.state_version, params={},
           state={"booster": text[:at] + "99" + text[at + 1:], "n_features": state["n_features"]})
open(sys.argv[2], "w").write(json.dumps(doc))
try:
    model_file.load(sys.argv[2])
    print("loaded")
except ModelFileError as exc:
    print("refused:", exc)
"""
    target = tmp_path / "tBTCUSD_1h_v1.json"
    src = tmp_path / "base.json"
    src.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(target), str(k)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"refused: {target}: the lgbm state cannot be loaded: ValueError: "), last
    assert "tree_sizes" in last or "split_feature" in last


_FUZZ_TOKENS = ["0", "1", "-1", "2", "3", "6", "7", "8", "10", "12", "999999", "-99999", "2147483648", "0.5", "-0.5",
                "1e308", "-1e308", "1e-320", "nan", "inf", "-inf", "", "x", "1 2", "=", "[", "]", ":", "Tree=1"]
_FUZZ_LOAD = """
import json, sys
import numpy as np
from genesis_fw.plugins import load

Lgbm = load("model", "lgbm")
X = np.random.default_rng(0).normal(size=(300, 4)) * 3
X[::7, 1] = np.nan  # missing values and exact zeros reach every missing-value rule a decision_type may name
X[::5, 2] = 0.0
out = []
for state in json.loads(open(sys.argv[1]).read()):
    try:
        p = Lgbm.from_state(Lgbm.Params(), state).predict_proba(X)
        out.append(bool(p.shape == (300,) and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))))
    except Exception as exc:
        out.append(f"{type(exc).__name__}: {exc}")
print(json.dumps(out))
"""


def test_single_line_edits_are_refused_or_load_and_predict_probabilities(real_booster, tmp_path):
    """Random one-line edits of a real booster (a token, a whole line, a line deleted or doubled; tree_sizes
    recomputed or not): the check refuses them with ValueError (in-process: it is plain Python), or LightGBM
    loads them and predicts finite probabilities in [0, 1]. What the check accepts goes to LightGBM in one
    subprocess with a timeout, so a crash or hang there fails the test."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from genesis_fw_models._lgbm_text import check

    text = real_booster["booster"]
    lines = text.split("\n")
    model_lines = text[:text.index("end of trees\n")].count("\n")  # header and trees
    token = st.one_of(st.sampled_from(_FUZZ_TOKENS), st.integers(-20, 20).map(str), st.floats().map(repr))
    accepted: list[str] = []
    refused: list[str] = []

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(i=st.one_of(st.integers(0, model_lines - 1), st.integers(0, len(lines) - 1)),
           kind=st.sampled_from(["token", "token", "token", "line", "delete", "double"]),
           j=st.integers(0, 200), new=token, resize=st.booleans())
    def edit(i: int, kind: str, j: int, new: str, resize: bool) -> None:
        line = lines[i]
        if kind == "token":
            key, eq, rest = line.partition("=")
            tokens = rest.split(" ") if eq else line.split(" ")
            tokens[j % len(tokens)] = new
            line = key + eq + " ".join(tokens) if eq else " ".join(tokens)
        replacement = {"token": [line], "line": [new], "delete": [], "double": [line, line]}[kind]
        edited = lines[:i] + replacement + lines[i + 1:]
        candidate = "\n".join(edited)
        if resize:
            try:
                candidate = _trees_resized(candidate)
            except ValueError:  # the edit broke the layout _trees_resized relies on: keep it as edited
                pass
        if candidate == text:
            return
        try:
            check(candidate, 4)
        except ValueError as exc:
            assert "\n" not in str(exc)
            refused.append(candidate)
        else:
            accepted.append(candidate)

    edit()
    print(f"{len(refused)} edits refused, {len(accepted)} accepted")
    assert len(refused) > 50 and len(accepted) > 20, (len(refused), len(accepted))
    cases = tmp_path / "accepted.json"
    cases.write_text(json.dumps([{**real_booster, "booster": t} for t in accepted]))
    proc = subprocess.run([sys.executable, "-c", _FUZZ_LOAD, str(cases)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit code {proc.returncode}: {proc.stderr[-500:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = [(r, t) for r, t in zip(results, accepted, strict=True) if r is not True]
    assert not bad, bad[:3]

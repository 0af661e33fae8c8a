"""``genesis-fw train`` end to end on the bundled sample (real Bitfinex candles) and its pieces.

The CLI runs as real processes; the model files are real JSON files in a temporary models folder.
Most runs use 1h bars of the sample (about 1,600 labelled bars at horizon 10) and small grids, so
each takes a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, cli_ok, one_line_error, run_cli

from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore, locate, read
from genesis_fw.data.timeframes import parse_time
from genesis_fw.data.timeframes import to_ms as _to_ms
from genesis_fw.ml import dataset, training
from genesis_fw.ml.labels import labels_for_table
from genesis_fw.ml.splits import PurgedKFold, split_labels

#: These commands may print notes other than "Note: ..." lines (repairs, warnings) before their error.
_one_line_error = partial(one_line_error, notes_only=False)

BASE = ("--symbol", "tBTCUSD", "--timeframe", "1h", "--horizon", "10")


def to_ms(iso: str) -> int:
    return _to_ms(parse_time(iso, what="boundary"))


def _env(tmp: Path, models: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["GENESIS_DATA_DIR"] = str(tmp / "store")
    env["GENESIS_MODELS_DIR"] = str(models or tmp / "models")
    (tmp / "store").mkdir(exist_ok=True)
    return env


def _train(tmp: Path, *args: str, models: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli("train", *args, cwd=tmp, env=_env(tmp, models))




def _written(proc: subprocess.CompletedProcess) -> Path:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("Wrote ")]
    assert len(lines) == 1, proc.stdout
    return Path(lines[0].removeprefix("Wrote "))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess, dict]:
    """One CLI run with the default grid: (working folder, the process, the model file's JSON)."""
    tmp = tmp_path_factory.mktemp("train")
    proc = cli_ok(_train(tmp, *BASE, "train.folds=4"))
    path = _written(proc)
    assert path == Path(tmp / "models" / "tBTCUSD_1h_v1.json")
    return tmp, proc, json.loads(path.read_text(encoding="utf-8"))


def _candles_1h():
    ds, _ = locate(CandleStore.sample(), "tBTCUSD", "1h")
    return read(ds)


def _examples_by_dates(doc: dict, features_path: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """X and y of one part picked by the recorded boundaries, rebuilt from the feature file and labels
    computed here, independently of the training code."""
    candles = _candles_1h()
    labels = labels_for_table(candles, "1h", doc["horizon"])
    table = pq.read_table(features_path)
    feat_ts = table.column("timestamp").cast("int64").to_numpy()
    b = doc["training_data"]["split"]["boundaries"]
    lo, hi = to_ms(b[f"{part}_start"]), to_ms(b[f"{part}_end"])
    in_part = (labels.timestamp_ms >= lo) & (labels.timestamp_ms <= hi)
    ts = labels.timestamp_ms[in_part]
    y = labels.price_up[in_part]
    rows = np.searchsorted(feat_ts, ts)
    assert (feat_ts[rows] == ts).all()
    X = np.column_stack([table.column(n).to_numpy()[rows] for n in doc["features"]["names"]])
    if part != "test":  # an earlier part lost the labels whose horizon reaches the next part
        nxt = "validation" if part == "train" else "test"
        keep = labels.end_ms[in_part] < to_ms(b[f"{nxt}_start"])
        X, y = X[keep], y[keep]
    return X, y


def test_cli_prints_every_step_and_writes_the_model_file(trained) -> None:
    tmp, proc, doc = trained
    out = proc.stdout
    assert out.startswith("Data: tBTCUSD 1h (resampled from 1m, bundled sample), version n/a, 2,182 candles")
    assert "Labels: horizon 10 x 1h, rule endpoint" in out and "end_of_data 10" in out and "warmup" in out
    for part in ("train", "validation", "test"):
        rows = doc["training_data"]["split"]["rows"][part]
        assert f"  {part:<10} {rows:>8,} rows" in out
    assert "Grid search: logreg, 5 candidates x 4 purged folds" in out
    assert f"Best: C={doc['grid_search']['best_params']['C']}" in out
    cal = doc["calibration"]
    assert f"Calibration, chosen within the validation part: {cal['method']}; {cal['chosen_because']}" in out
    assert set(cal["cv_log_loss"]) == {"none", "platt", "isotonic"}
    assert "Test part (" in out and "  log_loss" in out and "skill vs train_rate" in out
    assert f"Verdict: {doc['description'].split('; ', 1)[1]}" in out
    assert out.rstrip().endswith(f"Wrote {tmp / 'models' / 'tBTCUSD_1h_v1.json'}\n"
                                 "Registered tBTCUSD_1h_v1 as a challenger of tBTCUSD 1h (audit entry 1)")
    # The document: what the spec lists, filled in from this run.
    assert (doc["symbol"], doc["timeframe"], doc["horizon"], doc["model_type"]) == ("tBTCUSD", "1h", 10, "logreg")
    assert doc["name"] == "tBTCUSD_1h_v1" and doc["version"] == 1 and doc["baseline"] is False
    meta = json.loads((tmp / "store" / "features" / "tBTCUSD_1h.json").read_text())
    assert doc["training_data"]["sha256"] == meta["sha256"]
    assert doc["features"]["names"] == meta["features"]
    assert doc["features"]["definitions_hash"] == meta["definitions_hash"]
    assert doc["grid_search"]["folds"] == 4 and len(doc["grid_search"]["results"]) == 5
    assert set(doc["metrics"]) == {"train", "validation", "test"}


def test_stored_test_metrics_equal_a_recomputation_on_the_test_rows(trained) -> None:
    from genesis_fw.ml import evaluation, model_file

    tmp, _, doc = trained
    loaded = model_file.load("tBTCUSD_1h_v1", tmp / "models", symbol="tBTCUSD", timeframe="1h")
    assert loaded.doc == doc and loaded.feature_names == doc["features"]["names"]
    X, y = _examples_by_dates(doc, tmp / "store" / "features" / "tBTCUSD_1h.parquet", "test")
    assert len(y) == doc["metrics"]["test"]["n"] == doc["training_data"]["split"]["rows"]["test"]
    assert evaluation.scores(y, loaded.predict_proba(X)) == doc["metrics"]["test"]
    for part in ("train", "validation"):
        Xp, yp = _examples_by_dates(doc, tmp / "store" / "features" / "tBTCUSD_1h.parquet", part)
        assert evaluation.scores(yp, loaded.predict_proba(Xp)) == doc["metrics"][part]


def test_recorded_split_dates_are_the_real_boundaries(trained) -> None:
    tmp, _, doc = trained
    split = doc["training_data"]["split"]
    b, h = split["boundaries"], doc["horizon"] * 3_600_000
    candles = _candles_1h()
    labels = labels_for_table(candles, "1h", doc["horizon"])
    feat_ts = pq.read_table(tmp / "store" / "features" / "tBTCUSD_1h.parquet").column("timestamp").cast("int64")
    usable = labels.timestamp_ms[np.isin(labels.timestamp_ms, feat_ts.to_numpy())]
    # The first labelled bar with features starts training; the last one ends the test part.
    assert to_ms(b["train_start"]) == usable[0] and to_ms(b["test_end"]) == usable[-1]
    for part, nxt in (("train", "validation"), ("validation", "test")):
        # No label of a part reaches the next part, and the recorded label end is a real bar + h.
        assert to_ms(b[f"{part}_label_end"]) < to_ms(b[f"{nxt}_start"])
        assert to_ms(b[f"{part}_label_end"]) - h <= to_ms(b[f"{part}_end"])
        # The next part starts at the labelled bar right after the cut (nothing skipped at its start).
        cut = np.flatnonzero(usable == to_ms(b[f"{nxt}_start"]))[0]
        assert usable[cut - 1] <= to_ms(b[f"{part}_end"]) + split["purged"][part] * 3_600_000 + h
    for part in ("train", "validation", "test"):
        X, y = _examples_by_dates(doc, tmp / "store" / "features" / "tBTCUSD_1h.parquet", part)
        assert len(y) == split["rows"][part]


def test_grid_search_equals_plain_scikit_learn_with_the_same_folds() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from models.logreg import LogReg

    cfg = RuntimeConfig.load(None, {"timeframe": "1h", "train.horizon": "10"})
    ex = dataset.build(CandleStore.sample(), "tBTCUSD", "1h", cfg.features, cfg.train)
    split = split_labels(ex.labels)
    tr = split.train
    cv = PurgedKFold.from_labels(ex.labels, rows=tr, n_splits=5)
    grid = {"C": [0.001, 0.01, 0.1, 1.0, 10.0]}
    ours, best = training.grid_search(LogReg, grid, ex.X[tr], ex.y[tr], cv)
    folds = list(cv.split(ex.X[tr]))
    plain = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                         {"logisticregression__C": grid["C"]}, scoring="neg_log_loss", cv=folds, refit=False)
    plain.fit(ex.X[tr], ex.y[tr])
    assert [r["params"]["C"] for r in ours] == grid["C"]
    np.testing.assert_allclose([r["mean_log_loss"] for r in ours], -plain.cv_results_["mean_test_score"], rtol=1e-9)
    np.testing.assert_allclose([r["std_log_loss"] for r in ours], plain.cv_results_["std_test_score"],
                               rtol=1e-6, atol=1e-12)
    assert best == {"C": plain.best_params_["logisticregression__C"]}
    assert [r["rank"] for r in ours] == plain.cv_results_["rank_test_score"].tolist()


def test_edge_rule() -> None:
    grid = {"C": [0.001, 0.01, 0.1, 1.0, 10.0], "max_iter": [100, 200, 300], "two": [1.0, 2.0]}
    on_edge, warnings = training.edge_warnings(grid, {"C": 0.001, "max_iter": 300, "two": 1.0})
    assert on_edge == ["C", "max_iter"]
    assert warnings == [
        "best C=0.001 is the smallest value tried; the optimum may lie beyond: try model.C=0.0001,0.001,0.01",
        "best max_iter=300 is the largest value tried; the optimum may lie beyond: try model.max_iter=200,300,450",
    ]
    assert training.edge_warnings(grid, {"C": 0.01, "max_iter": 200, "two": 2.0}) == ([], [])
    # An unordered grid is judged by value, not by position; arithmetic steps cross zero plainly.
    assert training.edge_warnings({"a": [0.0, -1.0, 1.0]}, {"a": 1.0})[0] == ["a"]
    assert "try model.a=-2,-1,0" in training.edge_warnings({"a": [0.0, -1.0, 1.0]}, {"a": -1.0})[1][0]


def test_edge_warning_on_stderr_only_when_the_best_is_on_the_edge(trained, tmp_path: Path) -> None:
    _, proc, doc = trained
    results = doc["grid_search"]["results"]
    best = doc["grid_search"]["best_params"]["C"]
    # On this sample (as on the 2019 year) log loss falls steadily as C shrinks: the best is the smallest.
    assert best == min(r["params"]["C"] for r in results) == 0.001
    assert doc["grid_search"]["on_edge"] == ["C"]
    assert ("Warning: best C=0.001 is the smallest value tried; the optimum may lie beyond: "
            "try model.C=0.0001,0.001,0.01") in proc.stderr
    assert "Warning" not in proc.stdout
    # The same best out of two candidates is no edge case (the rule needs three or more), nor is a
    # best inside the grid (tests/test_train.py::test_edge_rule; real data puts logreg's best on the edge).
    run = cli_ok(_train(tmp_path, *BASE, "train.folds=4", "model.C=0.001,0.01"))
    doc2 = json.loads(_written(run).read_text())
    assert doc2["grid_search"]["best_params"]["C"] == 0.001 and doc2["grid_search"]["on_edge"] == []
    assert "Warning" not in run.stderr


def test_a_single_value_fixes_the_parameter(tmp_path: Path) -> None:
    proc = cli_ok(_train(tmp_path, *BASE, "model=logreg", "model.C=0.1", "train.folds=3"))
    doc = json.loads(_written(proc).read_text())
    assert doc["grid_search"]["grid"] == {"C": [0.1]} and len(doc["grid_search"]["results"]) == 1
    assert doc["params"]["C"] == 0.1 and doc["grid_search"]["on_edge"] == []
    assert "Warning" not in proc.stderr


def test_two_concurrent_trains_write_different_versions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    cli_ok(_train(tmp_path, "--symbol", "tBTCUSD", "--timeframe", "1h", "model.C=0.1", "train.folds=2"))  # features
    env = _env(tmp_path, models)
    cmd = [sys.executable, "-m", "genesis_fw", "train", *BASE, "model.C=0.1", "train.folds=2"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    written = sorted(Path(line.removeprefix("Wrote ")).name for out, _ in outs for line in out.splitlines()
                     if line.startswith("Wrote "))
    assert written == ["tBTCUSD_1h_v2.json", "tBTCUSD_1h_v3.json"]
    assert sorted(p.name for p in models.glob("tBTCUSD_*.json")) == [
        "tBTCUSD_1h_v1.json", "tBTCUSD_1h_v2.json", "tBTCUSD_1h_v3.json"]


@pytest.mark.parametrize(("args", "expected"), [
    (("--horizon", "0"), "horizon must be >= 1"),
    (("--horizon", "-5"), "horizon must be >= 1"),
    (("--horizon", "2.5"), "expected integer"),
    (("--horizon", "ten"), "expected integer"),
    (("--horizon", "10", "--start", "2019-06-01", "--end", "2019-06-03"), "too few rows: 48 candles"),
    (("--horizon", "40", "--start", "2019-04-01", "--end", "2019-04-27"), "too few labelled rows (16)"),
    (("--horizon", "40", "--start", "2019-04-01", "--end", "2019-05-03"), "the validation part is empty"),
    (("--horizon", "40", "--start", "2019-04-01", "--end", "2019-05-10"), "fold 2 of 5 of the training part"),
    (("--horizon", "10", "model=logregg"), "did you mean 'logreg'"),
    (("--horizon", "10", "features.rsi_perod=7"), "did you mean 'rsi_period'"),
    (("--horizon", "10", "model.C=0.1,-1"), "'C' must be > 0"),
    (("--horizon", "10", "model.cc=1"), "unknown parameter"),
    (("--horizon", "10", "strategy.fast=3"), "train takes model=NAME"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    proc = _train(tmp_path, "--symbol", "tBTCUSD", "--timeframe", "1h", *args)
    _one_line_error(proc, expected)
    assert not (tmp_path / "models").exists()


def test_train_reads_a_read_only_store_and_computes_features_in_memory(tmp_path: Path) -> None:
    from readonly import genesis, read_only

    store = tmp_path / "store"
    cli_ok(run_cli("--data-dir", str(store), "import", str(BTC_2D), "--symbol", "tBTCUSD", "--timeframe", "1m"))
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    models = tmp_path / "models"
    with read_only(store) as run:
        proc = run("env", f"GENESIS_MODELS_DIR={models}", *genesis(
            "--data-dir", str(store), "train", "--symbol", "tBTCUSD", "--timeframe", "1m", "--horizon", "10",
            "model.C=0.1", "train.folds=3"), cwd=tmp_path)
    cli_ok(proc)
    assert "(features computed in memory)" in proc.stdout and "version v1" in proc.stdout
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    doc = json.loads((models / "tBTCUSD_1m_v1.json").read_text())
    assert doc["training_data"]["dataset_version"] == 1


def test_dataset_drops_warmup_and_unlabelled_bars_never_fills(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "candles").mkdir(parents=True)
    shutil.copy(BTC_2D, store / "candles" / "tBTCUSD_1m.parquet")
    cfg = RuntimeConfig.load(None, {"train.horizon": "20"})
    ex = dataset.build(CandleStore.open(store), "tBTCUSD", "1m", cfg.features, cfg.train)
    candles = pq.read_table(BTC_2D)
    drops = ex.drop_report()
    assert sum(drops.values()) + len(ex.y) == candles.num_rows
    assert drops["warmup"] > 0 and drops["end_of_data"] > 0 and np.isfinite(ex.X).all()
    assert len(ex.labels) == len(ex.y) == ex.X.shape[0] and ex.X.shape[1] == len(ex.feature_names)
    assert ex.identity["dataset_version"] is None and ex.identity["candles"] == candles.num_rows
    # Computed, and cached only when saved (train does so once it succeeded).
    assert ex.features_cached is False and not (store / "features").exists()
    assert dataset.build(CandleStore.open(store), "tBTCUSD", "1m", cfg.features, cfg.train).features_cached is False
    assert ex.save_features() is True
    again = dataset.build(CandleStore.open(store), "tBTCUSD", "1m", cfg.features, cfg.train)
    assert again.features_cached is True and again.save_features() is False
    assert np.array_equal(again.X, ex.X) and again.identity == ex.identity


def test_the_lgbm_model_type_trains_through_the_cli(tmp_path: Path) -> None:
    proc = cli_ok(_train(tmp_path, *BASE, "model=lgbm", "model.num_leaves=7,15", "model.learning_rate=0.05",
                      "train.folds=3"))
    doc = json.loads(_written(proc).read_text())
    assert doc["model_type"] == "lgbm" and doc["params"]["num_leaves"] in (7, 15)
    assert doc["grid_search"]["grid"]["num_leaves"] == [7, 15] and len(doc["grid_search"]["results"]) == 2
    assert isinstance(doc["state"], dict)
    assert doc["metrics"]["test"]["n"] == doc["training_data"]["split"]["rows"]["test"]
    assert "Grid search: lgbm, 2 candidates x 3 purged folds" in proc.stdout


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugins/genesis-fw-example installed by real pip into a folder of its own."""
    from test_plugins import _install

    return _install("genesis-fw-example", tmp_path_factory.mktemp("example-dist"))


def _train_with_example(tmp: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    env = _env(tmp)
    env["PYTHONPATH"] = str(site)
    return run_cli("train", *args, cwd=tmp, env=env)


def test_a_third_party_model_type_trains_through_the_cli(tmp_path: Path, example_site: Path) -> None:
    from genesis_fw.ml import model_file

    proc = cli_ok(_train_with_example(tmp_path, example_site, *BASE, "model=up_rate", "train.folds=3"))
    path = _written(proc)
    assert "Grid search: up_rate, 3 candidates x 3 purged folds" in proc.stdout
    doc = json.loads(path.read_text())
    assert doc["model_type"] == "up_rate" and doc["grid_search"]["grid"] == {"prior": [0.0, 1.0, 10.0]}
    X, y = _examples_by_dates(doc, tmp_path / "store" / "features" / "tBTCUSD_1h.parquet", "train")
    prior = doc["params"]["prior"]
    assert doc["state"]["rate"] == pytest.approx((y.sum() + prior) / (len(y) + 2 * prior), rel=1e-12)
    # Loading needs the plugin: in a process where it is installed, the file loads and predicts the rate.
    code = ("import sys; from genesis_fw.ml import model_file; m = model_file.load(sys.argv[1]); "
            "print(m.predict_raw([[0.0] * len(m.feature_names)])[0])")
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(example_site)
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == doc["state"]["rate"]
    with pytest.raises(Exception, match="up_rate"):
        model_file.load(path)  # not installed in this process: a clear refusal, not a crash


def test_config_shows_the_model_grid_and_the_train_section(tmp_path: Path) -> None:
    proc = cli_ok(run_cli("config", "model.C=0.01,0.1", "train.horizon=10", cwd=tmp_path))
    resolved = json.loads(proc.stdout)
    assert resolved["model"] == {"name": "logreg", "params": {"C": [0.01, 0.1], "max_iter": 1000}}
    assert resolved["train"]["horizon"] == 10 and resolved["train"]["fractions"] == [0.6, 0.2, 0.2]
    proc = cli_ok(run_cli("config", "model.max_iter=50", cwd=tmp_path))
    assert json.loads(proc.stdout)["model"]["params"] == {"C": [0.001, 0.01, 0.1, 1.0, 10.0], "max_iter": 50}
    _one_line_error(run_cli("config", "model.C=0.1,0", cwd=tmp_path), "'C' must be > 0")

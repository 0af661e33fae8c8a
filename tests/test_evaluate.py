"""``genesis-fw evaluate MODEL`` on real candles (the bundled sample, imported into a temporary store).

A logistic model is trained in the test (``training.train``, Platt calibration forced so that the
calibrated and raw probabilities differ) into a temporary models folder; ``evaluate`` runs as a real
process. Every figure it prints and saves is compared with ``sklearn.metrics`` on rows rebuilt here
independently (``features.build`` + ``labels.labels_for_table`` + the recorded split dates).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import PAGE_STATE, Chromium, Page, needs_chromium, problems
from conftest import cli_env as _env
from conftest import cli_ok as _ok
from conftest import one_line_error as _one_line_error
from conftest import run_cli
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from genesis_fw.config import FeaturesConfig, RuntimeConfig
from genesis_fw.data.store import CandleStore, resample
from genesis_fw.data.timeframes import parse_time, to_ms
from genesis_fw.ml import evaluation, features, model_file, training
from genesis_fw.ml.labels import labels_for_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "genesis_fw" / "sample" / "tBTCUSD_1m.parquet"
SHIPPED_1H = ROOT / "config" / "models" / "tBTCUSD_1h_v1.json"
HORIZON = 10


def _ms(iso: str) -> int:
    return to_ms(parse_time(iso))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample imported into a store, a model trained on its 1h bars, and ``evaluate`` runs of it."""
    tmp = tmp_path_factory.mktemp("evaluate")
    (tmp / "store").mkdir()
    _ok(run_cli("import", str(SAMPLE), "--symbol", "tBTCUSD", "--timeframe", "1m", cwd=tmp, env=_env(tmp)))
    cfg = RuntimeConfig.load(None, {"symbol": "tBTCUSD", "timeframe": "1h", "train.horizon": str(HORIZON),
                                    "train.folds": "3", "model.C": ["0.001", "0.01"], "train.calibration": "platt"})
    result = training.train(cfg, CandleStore.open(tmp / "store"), models_dir=tmp / "models")
    assert result.doc["calibration"]["method"] == "platt"
    text = _ok(run_cli("evaluate", result.doc["name"], cwd=tmp, env=_env(tmp)))
    js = _ok(run_cli("evaluate", str(result.path), "--format", "json", "--output", str(tmp / "out" / "ev.html"),
                     cwd=tmp, env=_env(tmp)))
    return {"tmp": tmp, "train": result, "path": result.path, "doc": result.doc, "text": text, "json": js}


def _independent_all(candles_1m: Path, horizon: int) -> tuple[np.ndarray, ...]:
    """``X``, ``y``, bar open and label end times (ms) of every labelled 1h bar with features, rebuilt
    without genesis_fw.ml.dataset: features.build and labels.labels_for_table on the whole data."""
    table = resample(candles_1m, "1h")
    cfg = FeaturesConfig()
    feats = features.build(table, cfg)
    first = feats.warmup_dropped
    labels = labels_for_table(table, "1h", horizon)
    X_all = np.column_stack([feats.table.column(n).to_numpy() for n in features.names(cfg)])
    keep = labels.index >= first
    X = X_all[labels.index[keep] - first]
    finite = np.isfinite(X).all(axis=1)
    return (X[finite], labels.price_up[keep][finite].astype(np.int64), labels.timestamp_ms[keep][finite],
            labels.end_ms[keep][finite])


def _independent_rows(store: Path, doc: dict[str, Any], part: str) -> tuple[np.ndarray, np.ndarray]:
    """``X``, ``y`` of ``part``: :func:`_independent_all` cut at the recorded boundary dates."""
    assert features.names(FeaturesConfig()) == doc["features"]["names"]
    X, y, ts, end = _independent_all(store / "candles" / "tBTCUSD_1m.parquet", doc["horizon"])
    b = doc["training_data"]["split"]["boundaries"]
    rows = (ts >= _ms(b[f"{part}_start"])) & (ts <= _ms(b[f"{part}_end"])) & (end <= _ms(b[f"{part}_label_end"]))
    assert rows.sum() == doc["training_data"]["split"]["rows"][part]
    return X[rows], y[rows]


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error from sklearn's calibration_curve (uniform bins) and the bin counts."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p), minlength=bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / y.size * np.abs(prob_pred - prob_true)))


def _sk_scores(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    yhat = (p >= 0.5).astype(int)
    return {"n": y.size, "up_rate": y.mean(), "log_loss": skm.log_loss(y, p, labels=[0, 1]),
            "brier": skm.brier_score_loss(y, p), "roc_auc": skm.roc_auc_score(y, p),
            "pr_auc": skm.average_precision_score(y, p), "precision": skm.precision_score(y, yhat),
            "recall": skm.recall_score(y, yhat), "accuracy": skm.accuracy_score(y, yhat),
            "confusion": skm.confusion_matrix(y, yhat, labels=[0, 1]).tolist(), "ece": _ece(y, p)}


def _assert_scores(got: dict[str, Any], want: dict[str, Any], rel: float = 0.0) -> None:
    for key, value in want.items():
        if key in ("n", "confusion"):
            assert got[key] == value, key
        elif rel:
            assert got[key] == pytest.approx(value, rel=rel, abs=1e-15), key
        else:
            assert got[key] == float(value), key


def test_every_saved_figure_equals_sklearn_on_independently_rebuilt_rows(trained):
    tmp, doc = trained["tmp"], trained["doc"]
    result = json.loads(trained["json"].stdout)
    assert json.loads((tmp / "out" / "ev.json").read_text(encoding="utf-8")) == result
    assert result["split"] == "test"
    X, y = _independent_rows(tmp / "store", doc, "test")
    loaded = model_file.load(trained["path"])
    p_raw = loaded.predict_raw(X)
    # the stored logistic state, applied here by hand: the raw probabilities are the model's
    st = doc["state"]
    by_hand = 1 / (1 + np.exp(-(((X - st["mean"]) / st["scale"]) @ np.asarray(st["coef"]) + st["intercept"])))
    np.testing.assert_allclose(p_raw, by_hand, rtol=1e-12)
    cal = doc["calibration"]
    eps = cal["eps"]
    q = np.clip(p_raw, eps, 1 - eps)
    p_cal = loaded.predict_proba(X)
    np.testing.assert_allclose(p_cal, 1 / (1 + np.exp(-(cal["a"] * np.log(q / (1 - q)) + cal["b"]))), rtol=1e-12)
    assert not np.allclose(p_cal, p_raw)
    _assert_scores(result["raw_scores"], _sk_scores(y, p_raw))
    _assert_scores(result["scores"], _sk_scores(y, p_cal))
    # baselines at the training and validation parts' up-rates, from rows rebuilt here too
    _, y_tr = _independent_rows(tmp / "store", doc, "train")
    _, y_va = _independent_rows(tmp / "store", doc, "validation")
    rates = {"train_rate": y_tr.mean(), "validation_rate": y_va.mean()}
    assert result["baseline_rates"] == rates
    for name, rate in rates.items():
        _assert_scores(result["baselines"][name], {k: v for k, v in _sk_scores(y, np.full(y.size, rate)).items()
                                                   if k not in ("roc_auc",)})
        assert result["baselines"][name]["roc_auc"] == 0.5
        for key in ("log_loss", "brier"):
            assert result["skill"][name][f"{key}_skill"] == pytest.approx(
                1 - result["scores"][key] / result["baselines"][name][key], rel=1e-15)
    # reliability before and after calibration, per bin as sklearn's calibration_curve has it
    for kind, p in (("raw", p_raw), ("calibrated", p_cal)):
        rel = result["reliability"][kind]
        full = [b for b in rel["bins"] if b["count"]]
        prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
        np.testing.assert_allclose([b["observed_rate"] for b in full], prob_true, rtol=1e-12)
        np.testing.assert_allclose([b["mean_predicted"] for b in full], prob_pred, rtol=1e-12)
        assert sum(b["count"] for b in rel["bins"]) == y.size
    assert result["training_data_unchanged"] is True
    assert result["notes"] == []
    # the significance test behind the verdict, on these rows against the best baseline
    best = min(rates, key=lambda k: result["baselines"][k]["log_loss"])
    assert result["test"] == {**evaluation.loss_difference_test(y, p_cal, np.full(y.size, rates[best]), HORIZON),
                              "baseline": best}


def test_test_split_scores_and_baselines_equal_what_train_recorded(trained):
    result = json.loads(trained["json"].stdout)
    doc, train = trained["doc"], trained["train"]
    assert result["scores"] == doc["metrics"]["test"]
    assert result["recorded_scores"] == doc["metrics"]["test"]
    recorded = train.evaluation["test"]
    assert result["raw_scores"] == recorded["raw"]
    assert result["baselines"] == recorded["baselines"]
    assert result["skill"] == recorded["skill"]
    assert result["baseline_rates"] == {"train_rate": doc["metrics"]["train"]["up_rate"],
                                        "validation_rate": doc["metrics"]["validation"]["up_rate"]}
    assert result["verdict"] == train.verdict


@pytest.mark.parametrize("part", ["train", "validation"])
def test_other_splits_equal_what_train_recorded(trained, part: str):
    tmp = trained["tmp"]
    proc = _ok(run_cli("evaluate", trained["doc"]["name"], "--split", part, "--format", "json", "--no-report",
                       cwd=tmp, env=_env(tmp)))
    result = json.loads(proc.stdout)
    assert result["split"] == part
    assert result["scores"] == trained["doc"]["metrics"][part]
    assert result["baselines"] == trained["train"].evaluation[part]["baselines"]
    fitted = "the model was fitted" if part == "train" else "the model's calibration was fitted"
    assert [n for n in result["notes"] if "in-sample" in n] == [
        f"the {part} part is where {fitted}: its scores are in-sample, not an out-of-sample estimate; only "
        "the test part is out of sample"]
    assert "in-sample" in proc.stderr
    assert not [n for n in json.loads(trained["json"].stdout)["notes"] if "in-sample" in n]  # test: out of sample
    assert (tmp / "results" / f"evaluate_{trained['doc']['name']}_{part}.json").is_file()
    assert not (tmp / "results" / f"evaluate_{trained['doc']['name']}_{part}.html").exists()


def _table(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if "raw model" in line)
    columns = re.split(r"\s{2,}", lines[head].strip())
    rows = {}
    for line in lines[head + 1:head + 9]:
        label, *cells = re.split(r"\s{2,}", line.strip())
        rows[label] = cells
    return columns, rows


def test_printed_table_matches_the_saved_figures(trained):
    tmp, name = trained["tmp"], trained["doc"]["name"]
    out = trained["text"].stdout
    saved = json.loads((tmp / "results" / f"evaluate_{name}_test.json").read_text(encoding="utf-8"))
    columns, rows = _table(out)
    assert columns == ["model (platt)", "raw model", "train_rate", "validation_rate"]
    sources = [saved["scores"], saved["raw_scores"], saved["baselines"]["train_rate"],
               saved["baselines"]["validation_rate"]]
    keys = {"log loss": "log_loss", "Brier": "brier", "ROC-AUC": "roc_auc", "PR-AUC": "pr_auc",
            "precision": "precision", "recall": "recall", "ECE": "ece", "n": "n"}
    assert list(rows) == list(keys)
    for label, key in keys.items():
        for cell, scores in zip(rows[label], sources, strict=True):
            assert cell == (f"{scores[key]:,}" if key == "n" else f"{scores[key]:.4f}"), (label, cell)
    for name_, sk in saved["skill"].items():
        assert (f"vs {name_:<16} log loss {sk['log_loss_skill'] * 100:.2f} %, Brier {sk['brier_skill'] * 100:.2f} %"
                in out)
    (tn, fp), (fn, tp) = saved["scores"]["confusion"]
    assert re.search(rf"actual down\s+{tn:,}\s+{fp:,}\n", out) and re.search(rf"actual up\s+{fn:,}\s+{tp:,}\n", out)
    assert f"Verdict: {saved['verdict']}" in out
    test = saved["test"]
    assert (f"Significance against {test['baseline']} (Diebold-Mariano on the per-row log-loss differences, HAC lag "
            f"{test['lag']} rows): mean difference {test['mean_difference']:.6f} nats, p {test['p_value']:.4g} "
            f"(uniform kernel, Harvey-Leybourne-Newbold t test)") in out
    assert (test["horizon"], test["lag"]) == (HORIZON, HORIZON - 1)
    assert f"Wrote results/evaluate_{name}_test.html, results/evaluate_{name}_test.json" in out


@needs_chromium
def test_page_in_chromium_shows_the_evaluation(trained, chromium: Chromium):
    tmp, name = trained["tmp"], trained["doc"]["name"]
    page_path = tmp / "results" / f"evaluate_{name}_test.html"
    saved = json.loads(page_path.with_suffix(".json").read_text(encoding="utf-8"))
    html = page_path.read_text(encoding="utf-8")
    assert Page(html).tags["script"] == 0
    url = page_path.as_uri()
    session, events = chromium.open(url)
    state = chromium.evaluate(PAGE_STATE, session)
    assert problems(events, url) == []
    assert state["title"] == f"Evaluation of {name}"
    (img,) = state["images"]
    assert img["complete"] and img["naturalWidth"] > 0
    assert state["resources"] == []
    shown = chromium.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('tr[data-metric]')).map(
        r => [r.dataset.metric, Object.fromEntries(Array.from(r.querySelectorAll('td')).map(
            c => [c.dataset.column, c.textContent.trim()]))]))""", session)
    for column, scores in (("model", saved["scores"]), ("raw", saved["raw_scores"]),
                           ("train_rate", saved["baselines"]["train_rate"])):
        assert shown["log_loss"][column] == f"{scores['log_loss']:.4f}"
        assert shown["roc_auc"][column] == f"{scores['roc_auc']:.4f}"
    verdict = chromium.evaluate("document.getElementById('verdict-text').textContent", session)
    assert " ".join(verdict.split()) == saved["verdict"]
    body = chromium.evaluate("document.body.textContent", session)
    assert saved["dataset"]["sha256"] in body and trained["doc"]["training_data"]["sha256"] in body


def test_shipped_v1_baseline_evaluates_on_the_sample(tmp_path: Path):
    """A hand-set model has no split: all the sample's labelled bars, against 0.5 and their own up-rate."""
    (tmp_path / "empty").mkdir()
    env = _env(tmp_path, store=tmp_path / "empty")
    proc = _ok(run_cli("evaluate", str(SHIPPED_1H), "--split", "test", "--format", "json", cwd=tmp_path, env=env))
    result = json.loads(proc.stdout)
    assert "bundled sample" in proc.stderr
    assert "no training data, so no test part: --split is ignored" in proc.stderr
    assert "hand-set baseline without training data" in proc.stderr and "optimistic" in proc.stderr
    doc = json.loads(SHIPPED_1H.read_text(encoding="utf-8"))
    X, y, _, _ = _independent_all(SAMPLE, doc["horizon"])
    p = model_file.load(SHIPPED_1H).predict_raw(X)
    assert result["split"] == "period" and result["rows"] == y.size
    _assert_scores(result["scores"], _sk_scores(y, p))
    assert result["baseline_rates"] == {"rate_0.5": 0.5, "in_sample_rate": y.mean()}
    _assert_scores(result["baselines"]["in_sample_rate"],
                   {"log_loss": skm.log_loss(y, np.full(y.size, y.mean())), "n": y.size})
    assert result["verdict"].startswith("no skill")
    start, end = result["period"]["start"][:10].replace("-", ""), result["period"]["end"][:10].replace("-", "")
    assert (tmp_path / "results" / f"evaluate_tBTCUSD_1h_v1_{start}_{end}.html").is_file()
    # "no skill" is a finding (exit 0) unless --require-skill asks; the files are written either way
    strict = run_cli("evaluate", str(SHIPPED_1H), "--start", "2019-05-01", "--require-skill", "--no-report",
                     cwd=tmp_path, env=env)
    _one_line_error(strict, "tBTCUSD_1h_v1 has no skill", "--require-skill")
    assert "Verdict: no skill" in strict.stdout
    assert len(list((tmp_path / "results").glob("evaluate_tBTCUSD_1h_v1_*.json"))) == 2


def _copy_model(trained, tmp: Path, edit) -> Path:
    """A copy of the trained file changed by ``edit`` and resealed (a model that could have been
    trained so), except where the edit itself is refused by the file checks."""
    doc = json.loads(trained["path"].read_text(encoding="utf-8"))
    edit(doc)
    target = tmp / f"{doc['name']}.json"
    target.write_text(json.dumps(model_file.seal(doc), indent=2), encoding="utf-8")
    return target


def _assert_nothing_written(tmp: Path) -> None:
    assert not (tmp / "results").exists()
    assert not list(tmp.glob("**/*.html"))


def test_bad_inputs_are_one_line_errors_and_write_nothing(trained, tmp_path: Path):
    store = trained["tmp"] / "store"
    env = _env(trained["tmp"], store=store)

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli("evaluate", *args, cwd=tmp_path, env=env)

    name = trained["doc"]["name"]
    _one_line_error(run(name[:-1] + "9"), "no model", f"did you mean '{name}'")
    text = trained["path"].read_text(encoding="utf-8")
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / f"{name}.json"
    cut.write_text(text[: len(text) // 2], encoding="utf-8")
    _one_line_error(run(str(cut)), "not valid JSON")

    def tamper(doc: dict) -> None:
        doc["state"]["coef"] = "1; import os"

    (tmp_path / "tampered").mkdir()
    _one_line_error(run(str(_copy_model(trained, tmp_path / "tampered", tamper))), "state")

    def other_definitions(doc: dict) -> None:
        doc["features"]["definitions_hash"] = "0" * 64

    (tmp_path / "defs").mkdir()
    _one_line_error(run(str(_copy_model(trained, tmp_path / "defs", other_definitions))),
                    "definitions hash 000000000000 in the file", "cannot be computed here")

    def eth(doc: dict) -> None:
        doc["symbol"], doc["name"] = "tETHUSD", doc["name"].replace("tBTCUSD", "tETHUSD")

    (tmp_path / "eth").mkdir()
    _one_line_error(run(str(_copy_model(trained, tmp_path / "eth", eth))), "no tETHUSD candles")

    def later(doc: dict) -> None:
        b = doc["training_data"]["split"]["boundaries"]
        b["test_start"], b["test_end"], b["test_label_end"] = ("2030-01-01T00:00:00Z",) * 3

    (tmp_path / "later").mkdir()
    _one_line_error(run(str(_copy_model(trained, tmp_path / "later", later))), "test_end", "before the data's end")
    _one_line_error(run(name, "--split", "test", "--start", "2019-06-01"), "--split or --start/--end, not both")
    _one_line_error(run(name, "--output", str(store / "candles" / "evaluation.html")), "inside the store")
    _assert_nothing_written(tmp_path)


def test_period_of_a_trained_model_notes_in_sample_overlap(trained, tmp_path: Path):
    env = _env(trained["tmp"], store=trained["tmp"] / "store")
    proc = _ok(run_cli("evaluate", trained["doc"]["name"], "--start", "2019-05-01", "--end", "2019-06-01",
                       "--format", "json", "--no-report", cwd=tmp_path, env=env))
    result = json.loads(proc.stdout)
    # no bar of the period is lost to the features' warm-up: they are computed from the first candle
    assert result["split"] == "period" and result["period"]["start"] == "2019-05-01T00:00:00Z"
    assert "in-sample, not an out-of-sample estimate" in proc.stderr
    X, y, ts, end = _independent_all(trained["tmp"] / "store" / "candles" / "tBTCUSD_1m.parquet", HORIZON)
    rows = (ts >= _ms("2019-05-01")) & (end < _ms("2019-06-01"))
    assert result["rows"] == rows.sum()
    loaded = model_file.load(trained["path"])
    _assert_scores(result["raw_scores"], _sk_scores(y[rows], loaded.predict_raw(X[rows])))
    _assert_scores(result["scores"], _sk_scores(y[rows], loaded.predict_proba(X[rows])))
    assert result["baseline_rates"] == json.loads(trained["json"].stdout)["baseline_rates"]


def test_changed_candles_are_noted_and_scored_at_the_recorded_dates(trained, tmp_path: Path):
    """The same sample with one volume in the test part changed: a note says the data changed since
    training; the test part is still picked by its recorded dates."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(SAMPLE)
    ts = table.column("timestamp").cast("int64").to_numpy()
    b = trained["doc"]["training_data"]["split"]["boundaries"]
    i = int(np.searchsorted(ts, _ms(b["test_start"]) + 3_600_000 * 5))
    volume = table.column("volume").to_numpy().copy()
    volume[i] = volume[i] * 2 + 1
    changed = tmp_path / "changed.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("volume"), "volume", pa.array(volume)), changed)
    (tmp_path / "store").mkdir()
    env = _env(tmp_path)
    env["GENESIS_MODELS_DIR"] = str(trained["tmp"] / "models")
    _ok(run_cli("import", str(changed), "--symbol", "tBTCUSD", "--timeframe", "1m", cwd=tmp_path, env=env))
    proc = _ok(run_cli("evaluate", trained["doc"]["name"], "--format", "json", cwd=tmp_path, env=env))
    result = json.loads(proc.stdout)
    assert "changed since training" in proc.stderr and trained["doc"]["training_data"]["sha256"][:12] in proc.stderr
    assert result["training_data_unchanged"] is False
    assert result["period"]["start"] == b["test_start"] and result["rows"] > 0
    assert any("changed since training" in v for v in result["data"].values())


def test_a_model_trained_on_the_bundled_sample_evaluates_without_a_spurious_version_note(tmp_path):
    """Training records "bundled sample" for data without a version; evaluating on the same sample must
    not report the dataset as changed."""
    env = _env(tmp_path, store=tmp_path / "no-store")
    env.pop("GENESIS_DATA_DIR")
    cfg = RuntimeConfig.load(None, {"symbol": "tBTCUSD", "timeframe": "1h", "train.horizon": str(HORIZON),
                                    "train.folds": "3", "model.C": ["0.01"], "train.calibration": "none"})
    result = training.train(cfg, CandleStore.open(tmp_path / "no-store"), models_dir=tmp_path / "models")
    assert result.doc["training_data"]["dataset_version"] == "bundled sample"
    proc = _ok(run_cli("evaluate", result.doc["name"], "--no-report", cwd=tmp_path, env=env))
    assert "dataset is at" not in proc.stderr and "changed" not in proc.stderr, proc.stderr

"""``genesis-fw compare`` on real candles: the shipped placeholder baseline tBTCUSD_1h_v1 against a model
trained on the bundled sample (1h, resampled from its real 1m candles), an identical copy of that model,
the terminal table, JSON and HTML page, the backtests, the walk-forward refits and the bad input.

Scores are checked against ``sklearn.metrics`` on rows rebuilt here independently, the backtests against
a separate ``genesis-fw backtest`` run of the same period, and the walk-forward refits for lookahead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from browser import PAGE_STATE, Chromium, Page, decode_png, needs_chromium, problems
from conftest import cli_env as _env
from conftest import cli_ok as _ok
from conftest import one_line_error as _one_line_error
from conftest import run_cli
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from genesis_fw.config import FeaturesConfig, RuntimeConfig
from genesis_fw.data.store import CandleStore, resample
from genesis_fw.data.timeframes import parse_time, to_ms
from genesis_fw.errors import ModelFileError
from genesis_fw.ml import calibration, evaluation, features, model_file, training
from genesis_fw.ml.labels import add_bars, labels_for_table
from genesis_fw.selection import comparison
from genesis_fw.selection.comparison_report import BACKTEST_ROWS, PAIR_ROWS, SCORE_ROWS, cell, pair_value

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "genesis_fw" / "sample" / "tBTCUSD_1m.parquet"
SHIPPED_1H = ROOT / "config" / "models" / "tBTCUSD_1h_v1.json"
K = 3


def _ms(iso: str) -> int:
    return to_ms(parse_time(iso))


def _copy_as(doc: dict[str, Any], folder: Path, **changes: Any) -> dict[str, Any]:
    """A new version in ``folder`` of the model document ``doc`` with ``changes`` (a valid, sealed file)."""
    new = json.loads(json.dumps(doc))
    new.update(name=None, version=None, **changes)
    new.pop("content_sha256", None)
    path = model_file.write_new(new, folder)
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample imported into a store; the shipped v1 baseline copied into a models folder; v2 trained
    there (Platt calibration, so the walk-forward refits a calibration too); v3 an exact copy of v2; and
    one ``compare`` run of v1 against v2 through the CLI."""
    tmp = tmp_path_factory.mktemp("compare")
    (tmp / "store").mkdir()
    (tmp / "models").mkdir()
    shutil.copy(SHIPPED_1H, tmp / "models")
    _ok(run_cli("import", str(SAMPLE), "--symbol", "tBTCUSD", "--timeframe", "1m", cwd=tmp, env=_env(tmp)))
    cfg = RuntimeConfig.load(None, {"symbol": "tBTCUSD", "timeframe": "1h", "train.folds": "3",
                                    "model.C": ["0.001", "0.01"], "train.calibration": "platt"})
    result = training.train(cfg, CandleStore.open(tmp / "store"), models_dir=tmp / "models")
    assert result.doc["name"] == "tBTCUSD_1h_v2" and result.doc["calibration"]["method"] == "platt"
    copy = _copy_as(result.doc, tmp / "models")
    assert copy["name"] == "tBTCUSD_1h_v3"
    proc = _ok(run_cli("compare", "tBTCUSD_1h_v1", "tBTCUSD_1h_v2", "--walk-forward", str(K), cwd=tmp, env=_env(tmp)))
    return {"tmp": tmp, "doc": result.doc, "proc": proc}


def _cli_result(setup: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    (summary,) = (setup["tmp"] / "results").glob("compare_tBTCUSD_1h_v1_tBTCUSD_1h_v2_*.json")
    return json.loads(summary.read_text(encoding="utf-8")), summary


def _api(setup: dict[str, Any], names: list[str], **options: Any) -> dict[str, Any]:
    models = [model_file.load(n, setup["tmp"] / "models") for n in names]
    cfg = RuntimeConfig.load(None, options.pop("overrides", {}))
    return comparison.compare(models, CandleStore.open(setup["tmp"] / "store"), cfg, **options)


def test_seed_case_works_out_of_the_box(setup):
    """The shipped placeholder v1 against a trained model: table, JSON and page, on v2's test part."""
    result, summary = _cli_result(setup)
    assert summary.with_suffix(".html").is_file()
    doc = setup["doc"]
    b = doc["training_data"]["split"]["boundaries"]
    period = result["period"]
    assert period["how"] == "the test part of tBTCUSD_1h_v2"
    assert (period["first_bar"], period["last_bar"]) == (b["test_start"], b["test_end"])
    assert period["rows"] == doc["training_data"]["split"]["rows"]["test"]
    assert [m["name"] for m in result["models"]] == ["tBTCUSD_1h_v1", "tBTCUSD_1h_v2"]
    assert [m["baseline"] for m in result["models"]] == [True, False]
    assert any("tBTCUSD_1h_v1 is a hand-set baseline" in n for n in result["notes"])
    (pair,) = result["pairs"]
    assert pair["baseline"] == "tBTCUSD_1h_v1" and pair["candidate"] == "tBTCUSD_1h_v2"
    dm = pair["dm"]
    assert (dm["horizon"], dm["lag"], dm["kernel"]) == (doc["horizon"], doc["horizon"] - 1, "uniform")
    assert pair["bootstrap"]["low"] <= pair["log_loss_difference"] <= pair["bootstrap"]["high"]
    assert pair["sharpe"] is not None
    assert result["walk_forward"]["k"] == K and len(result["walk_forward"]["windows"]) == K
    out = setup["proc"].stdout
    for m in result["models"]:
        assert m["name"] in out
        assert cell(m["scores"]["log_loss"], "p4") in out
        assert cell(m["backtest"]["sharpe"], "p2") in out
    assert f"{result['walk_forward']['wins']['tBTCUSD_1h_v2']} of {K}" in out
    assert "Wrote " in out


def _independent_rows(setup: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``X``, ``y`` of v2's test part, rebuilt with features.build and labels_for_table on the 1h candles."""
    doc = setup["doc"]
    table = resample(setup["tmp"] / "store" / "candles" / "tBTCUSD_1m.parquet", "1h")
    cfg = FeaturesConfig()
    feats = features.build(table, cfg)
    first = feats.warmup_dropped
    labels = labels_for_table(table, "1h", doc["horizon"])
    X_all = np.column_stack([feats.table.column(n).to_numpy() for n in features.names(cfg)])
    keep = labels.index >= first
    X = X_all[labels.index[keep] - first]
    y = labels.price_up[keep].astype(np.int64)
    ts, end = labels.timestamp_ms[keep], labels.end_ms[keep]
    b = doc["training_data"]["split"]["boundaries"]
    rows = (ts >= _ms(b["test_start"])) & (ts <= _ms(b["test_end"])) & (end <= _ms(b["test_label_end"]))
    return X[rows], y[rows]


def test_scores_equal_sklearn_on_independently_rebuilt_rows(setup):
    result, _ = _cli_result(setup)
    X, y = _independent_rows(setup)
    for m in result["models"]:
        p = model_file.load(Path(m["path"])).predict_proba(X)
        s = m["scores"]
        assert s["n"] == y.size
        assert s["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
        assert s["brier"] == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
        assert s["auc"] == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    base, cand = result["models"]
    assert result["pairs"][0]["log_loss_difference"] == pytest.approx(
        cand["scores"]["log_loss"] - base["scores"]["log_loss"], rel=1e-9)


def test_models_are_judged_against_the_constant_predictors_too(setup):
    """0.5 and v2's validation-part up-rate are scored as rows of their own on the same bars, and each model
    has its Diebold-Mariano test against the best of them, in the JSON, the table and the page."""
    result, summary = _cli_result(setup)
    doc = setup["doc"]
    X, y = _independent_rows(setup)
    table = resample(setup["tmp"] / "store" / "candles" / "tBTCUSD_1m.parquet", "1h")
    labels = labels_for_table(table, "1h", doc["horizon"])
    b = doc["training_data"]["split"]["boundaries"]
    val = ((labels.timestamp_ms >= _ms(b["validation_start"])) & (labels.timestamp_ms <= _ms(b["validation_end"]))
           & (labels.end_ms <= _ms(b["validation_label_end"])))
    rate = float(labels.price_up[val].mean())
    tr = ((labels.timestamp_ms >= _ms(b["train_start"])) & (labels.timestamp_ms <= _ms(b["train_end"]))
          & (labels.end_ms <= _ms(b["train_label_end"])))
    consts = {c["name"]: c for c in result["constants"]}
    # the same yardsticks as train's and evaluate's verdicts: the train and validation up-rates (and 0.5)
    assert set(consts) == {"constant 0.5", "train rate of tBTCUSD_1h_v2", "validation rate of tBTCUSD_1h_v2"}
    assert consts["validation rate of tBTCUSD_1h_v2"]["rate"] == pytest.approx(rate, rel=1e-12)
    assert consts["train rate of tBTCUSD_1h_v2"]["rate"] == pytest.approx(float(labels.price_up[tr].mean()),
                                                                          rel=1e-12)
    for c in consts.values():
        assert c["scores"]["log_loss"] == pytest.approx(skm.log_loss(y, np.full(y.size, c["rate"]), labels=[0, 1]),
                                                        rel=1e-9)
    best = min(consts.values(), key=lambda c: c["scores"]["log_loss"])
    for m in result["models"]:
        vs = m["vs_base_rate"]
        assert vs["constant"] == best["name"]
        p = model_file.load(Path(m["path"])).predict_proba(X)
        want = evaluation.loss_difference_test(y, p, np.full(y.size, best["rate"]), doc["horizon"])
        assert vs["dm"] == pytest.approx(want)
        assert f"{m['name']} vs the best constant ({best['name']}" in setup["proc"].stdout
    assert "over the base rate" in setup["proc"].stdout
    page = Page(summary.with_suffix(".html").read_text(encoding="utf-8"))
    row = next(r for r in page.rows if r["attrs"].get("data-metric") == "log_loss")
    shown = {a["data-constant"]: t for t, a in row["cells"][1:] if "data-constant" in a}
    assert shown == {n: cell(c["scores"]["log_loss"], "p4") for n, c in consts.items()}


def test_identical_models_show_no_significant_difference(setup):
    result = _api(setup, ["tBTCUSD_1h_v2", "tBTCUSD_1h_v3"], walk_forward=K)
    a, b = result["models"]
    assert a["scores"] == b["scores"]
    (pair,) = result["pairs"]
    assert pair["log_loss_difference"] == 0.0
    assert pair["dm"]["p_value"] >= 0.5
    assert pair["bootstrap"]["low"] <= 0.0 <= pair["bootstrap"]["high"]
    assert {k: v for k, v in a["backtest"].items() if k != "strategy_params"} == \
        {k: v for k, v in b["backtest"].items() if k != "strategy_params"}
    assert pair["sharpe"]["difference"] == 0.0
    assert pair["sharpe"]["low"] <= 0.0 <= pair["sharpe"]["high"]
    assert result["walk_forward"]["wins"] == {"tBTCUSD_1h_v3": 0}
    for w in result["walk_forward"]["windows"]:
        assert w["log_loss"]["tBTCUSD_1h_v2"] == w["log_loss"]["tBTCUSD_1h_v3"]


def test_backtests_equal_a_separate_backtest_run_of_the_period(setup):
    """Each model's backtest figures are those of ``genesis-fw backtest strategy=ml_model`` over the
    period's start/end with the same costs; the Sharpe ratio of the bootstrap is the backtest's."""
    tmp = setup["tmp"]
    costs = ["commission=0.001", "slippage=3", "strategy.threshold_long=0.6"]
    proc = _ok(run_cli("compare", "tBTCUSD_1h_v1", "tBTCUSD_1h_v2", *costs, "--output", str(tmp / "c" / "cmp.html"),
                       "--no-report", "--format", "json", cwd=tmp, env=_env(tmp)))
    result = json.loads((tmp / "c" / "cmp.json").read_text(encoding="utf-8"))
    assert json.loads(proc.stdout) == result
    assert not (tmp / "c" / "cmp.html").exists()
    period = result["period"]
    assert result["costs"]["commission"] == 0.001 and result["costs"]["slippage_bps"] == 3.0
    for m in result["models"]:
        out = tmp / "bt" / f"{m['name']}.html"
        _ok(run_cli("backtest", "--timeframe", "1h", "strategy=ml_model", f"strategy.model={m['name']}",
                    *costs, "--start", period["start"], "--end", period["end"], "--output", str(out), "--no-report",
                    cwd=tmp, env=_env(tmp)))
        run = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        assert m["backtest"]["strategy_params"]["threshold_long"] == 0.6
        for key in ("sharpe", "total_return", "max_drawdown", "num_trades", "final_equity"):
            assert m["backtest"][key] == run["metrics"][key], (m["name"], key)
    (pair,) = result["pairs"]
    assert pair["sharpe"]["sharpe_a"] == pytest.approx(result["models"][0]["backtest"]["sharpe"], rel=1e-9)
    assert pair["sharpe"]["sharpe_b"] == pytest.approx(result["models"][1]["backtest"]["sharpe"], rel=1e-9)


def test_a_period_overlapping_the_training_part_is_noted(setup):
    result = _api(setup, ["tBTCUSD_1h_v1", "tBTCUSD_1h_v2"], start="2019-04-10", end="2019-05-01", backtest=False)
    v1, v2 = result["models"]
    assert v1["in_sample"] is None
    assert v2["in_sample"] is not None and "in-sample" in v2["in_sample"]
    assert "not an out-of-sample estimate" in v2["in_sample"] and "optimistic" not in v2["in_sample"]
    assert v2["in_sample"] in result["notes"]
    assert result["period"]["start"] == "2019-04-10" and result["period"]["how"].startswith("given")
    assert all(m["backtest"] is None for m in result["models"]) and result["pairs"][0]["sharpe"] is None


# -- walk-forward: no lookahead ----------------------------------------------------------------------------


def test_walk_forward_refits_see_only_the_past(setup):
    """Every refit of window k is fitted (model and calibration) on rows whose label ends before the
    window's first bar minus the embargo; a logistic regression fitted independently on exactly those
    rows gives the same probabilities, and the window's log loss in the result is theirs."""
    result, _ = _cli_result(setup)
    tmp, doc = setup["tmp"], setup["doc"]
    v1, v2 = (model_file.load(n, tmp / "models") for n in ("tBTCUSD_1h_v1", "tBTCUSD_1h_v2"))
    sh = comparison.shared_examples([v1, v2], CandleStore.open(tmp / "store"))
    windows = comparison.walk_forward_windows(sh.y.size, K, 0.6)
    emb = doc["training_data"]["split"]["embargo"]
    for rows, w in zip(windows, result["walk_forward"]["windows"], strict=True):
        first = int(sh.start_ms[rows[0]])
        assert w["start"] == parse_time(w["start"]).strftime("%Y-%m-%dT%H:%M:%SZ") and _ms(w["start"]) == first
        r = comparison.refit(v2, sh.X[1], sh.y, sh.start_ms, sh.end_ms, first)
        limit = int(add_bars(first, -emb, "1h"))
        assert r.fit_rows.size and r.calibration_rows.size
        assert sh.end_ms[r.fit_rows].max() < limit and sh.end_ms[r.calibration_rows].max() < limit
        assert sh.end_ms[r.fit_rows].max() < sh.start_ms[r.calibration_rows[0]]  # purged before the calibration
        assert w["fit_rows"]["tBTCUSD_1h_v2"] == r.fit_rows.size
        # the same fit from those rows alone
        Xf, yf = sh.X[1][r.fit_rows], sh.y[r.fit_rows]
        scaler = StandardScaler().fit(Xf)
        lr = LogisticRegression(C=doc["params"]["C"], max_iter=doc["params"]["max_iter"]).fit(scaler.transform(Xf), yf)
        raw = r.model.predict_proba(sh.X[1][rows])
        assert raw == pytest.approx(lr.predict_proba(scaler.transform(sh.X[1][rows]))[:, 1], abs=1e-9)
        p = r.predict_proba(sh.X[1][rows])
        assert w["log_loss"]["tBTCUSD_1h_v2"] == pytest.approx(skm.log_loss(sh.y[rows], p, labels=[0, 1]), rel=1e-12)
        assert w["log_loss"]["tBTCUSD_1h_v1"] == pytest.approx(
            skm.log_loss(sh.y[rows], v1.predict_proba(sh.X[0][rows]), labels=[0, 1]), rel=1e-12)
        assert w["fit_rows"]["tBTCUSD_1h_v1"] is None  # the hand-set baseline is used as it is
    assert result["walk_forward"]["wins"]["tBTCUSD_1h_v2"] == sum(
        w["log_loss"]["tBTCUSD_1h_v2"] < w["log_loss"]["tBTCUSD_1h_v1"] for w in result["walk_forward"]["windows"])
    assert set(result["walk_forward"]["timing"]) == {"retrain_s", "test_s"}


def test_walk_forward_window_does_not_change_without_the_later_candles(setup, tmp_path: Path):
    """Window k's refit and log loss are the same when every candle after the window's last label end is
    removed from the store."""
    result, _ = _cli_result(setup)
    tmp = setup["tmp"]
    v2 = model_file.load("tBTCUSD_1h_v2", tmp / "models")
    w = result["walk_forward"]["windows"][0]
    cut = int(add_bars(_ms(w["last_label_end"]), 1, "1h"))  # the end of the window's last label candle
    table = pq.read_table(tmp / "store" / "candles" / "tBTCUSD_1m.parquet")
    ts = table.column("timestamp").cast("int64").to_numpy()
    assert (ts >= cut).sum() > 1000
    (tmp_path / "short" / "candles").mkdir(parents=True)
    pq.write_table(table.filter(ts < cut), tmp_path / "short" / "candles" / "tBTCUSD_1m.parquet")
    got = {}
    for store in (tmp / "store", tmp_path / "short"):
        sh = comparison.shared_examples([v2], CandleStore.open(store))
        rows = np.flatnonzero((sh.start_ms >= _ms(w["start"])) & (sh.start_ms <= _ms(w["end"])))
        assert rows.size == w["rows"]
        r = comparison.refit(v2, sh.X[0], sh.y, sh.start_ms, sh.end_ms, _ms(w["start"]))
        p = r.predict_proba(sh.X[0][rows])
        got[store] = (sh.start_ms[r.fit_rows].tolist(), p, skm.log_loss(sh.y[rows], p, labels=[0, 1]), r.calibration)
    full, short = got.values()
    assert full[0] == short[0]
    np.testing.assert_array_equal(full[1], short[1])
    assert full[2] == short[2] == pytest.approx(w["log_loss"]["tBTCUSD_1h_v2"], rel=1e-12)
    assert full[3] == short[3] and full[3]["method"] == w["calibration"]["tBTCUSD_1h_v2"]


def test_walk_forward_refits_choose_the_calibration_on_the_past_only(setup, tmp_path: Path):
    """A model whose training chose its calibration among several methods (on its validation part, which
    lies after the first windows' start) has that choice made again in each refit, on the refit's own
    calibration rows (the past of the window) by calibration.choose; and window k's whole refit, the chosen
    method included, is the same when every candle after the window is removed."""
    store = CandleStore.open(setup["tmp"] / "store")
    (tmp_path / "models").mkdir()
    cfg = RuntimeConfig.load(None, {"symbol": "tBTCUSD", "timeframe": "1h", "train.folds": "2", "model.C": "0.01"})
    doc = training.train(cfg, store, models_dir=tmp_path / "models").doc
    loaded = model_file.load(doc["name"], tmp_path / "models")
    methods = list(doc["calibration"]["cv_log_loss"])  # the methods training chose among
    assert len(methods) == 3
    emb = doc["training_data"]["split"]["embargo"]
    sh = comparison.shared_examples([loaded], store)
    windows = comparison.walk_forward_windows(sh.y.size, K, 0.6)
    assert _ms(doc["training_data"]["split"]["boundaries"]["validation_end"]) > int(sh.start_ms[windows[0][0]])
    table = pq.read_table(setup["tmp"] / "store" / "candles" / "tBTCUSD_1m.parquet")
    ts = table.column("timestamp").cast("int64").to_numpy()
    for k, rows in enumerate(windows):
        first = int(sh.start_ms[rows[0]])
        r = comparison.refit(loaded, sh.X[0], sh.y, sh.start_ms, sh.end_ms, first)
        cal = r.calibration_rows
        assert cal.size  # the past keeps rows to choose the calibration on, whatever the file's method
        raw = r.model.predict_proba(sh.X[0][cal])
        expected = calibration.choose(raw, sh.y[cal], sh.start_ms[cal], sh.end_ms[cal], "1h",
                                      methods=methods, n_splits=5, embargo=emb)
        assert r.calibration == expected
        assert set(r.calibration["cv_log_loss"]) == set(doc["calibration"]["cv_log_loss"])
        # without the candles after the window's last label: the same rows, method and probabilities
        cut = int(add_bars(int(sh.end_ms[rows].max()), 1, "1h"))
        short = tmp_path / f"short{k}"
        (short / "candles").mkdir(parents=True)
        pq.write_table(table.filter(ts < cut), short / "candles" / "tBTCUSD_1m.parquet")
        sh2 = comparison.shared_examples([loaded], CandleStore.open(short))
        rows2 = np.flatnonzero((sh2.start_ms >= first) & (sh2.start_ms <= int(sh.start_ms[rows[-1]])))
        assert rows2.size == rows.size
        r2 = comparison.refit(loaded, sh2.X[0], sh2.y, sh2.start_ms, sh2.end_ms, first)
        assert r2.calibration == r.calibration
        np.testing.assert_array_equal(sh2.start_ms[r2.fit_rows], sh.start_ms[r.fit_rows])
        np.testing.assert_array_equal(r2.predict_proba(sh2.X[0][rows2]), r.predict_proba(sh.X[0][rows]))


# -- bad input -----------------------------------------------------------------------------------------------


def test_bad_input_is_a_one_line_error(setup):
    tmp, doc = setup["tmp"], setup["doc"]
    env = _env(tmp)
    other_horizon = _copy_as(doc, tmp / "models", horizon=10, training_data=None, metrics={}, grid_search=None,
                             description="horizon 10", baseline=True)
    eth = _copy_as(doc, tmp / "models", symbol="tETHUSD", training_data=None, metrics={}, grid_search=None,
                   description="eth", baseline=True)
    dead = _copy_as(doc, tmp / "models", label={**doc["label"], "dead_zone_bps": 5.0})
    cases = [
        (["tBTCUSD_1h_v2", other_horizon["name"]], ["predicts 20 bars ahead", "10 bars", "one horizon"]),
        (["tBTCUSD_1h_v2", eth["name"]], ["tETHUSD 1h", "one symbol and timeframe"]),
        (["tBTCUSD_1h_v2", dead["name"]], ["other label definitions"]),
        (["tBTCUSD_1h_v2"], ["at least two models"]),
        (["tBTCUSD_1h_v2", "tBTCUSD_1h_v2"], ["given twice"]),
        (["tBTCUSD_1h_v2", "tBTCUSD_1h_v99"], ["tBTCUSD_1h_v99", "did you mean"]),
        (["tBTCUSD_1h_v1", "tBTCUSD_1h_v2", "model.C=1"], ["does not take 'model.C'"]),
        (["tBTCUSD_1h_v1", "tBTCUSD_1h_v2", "--start", "2030-01-01"], ["no labelled"]),
    ]
    for args, expected in cases:
        _one_line_error(run_cli("compare", *args, cwd=tmp, env=env), *expected)
    proc = run_cli("--debug", "compare", "tBTCUSD_1h_v2", cwd=tmp, env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


# -- the page --------------------------------------------------------------------------------------------------


def _expected_cells(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "scores": {key: {m["name"]: cell(m["scores"].get(key), kind) for m in result["models"]}
                   for key, _, kind in SCORE_ROWS}
        | {"vs_base_rate.p_value": {m["name"]: cell(m["vs_base_rate"]["dm"]["p_value"], "p")
                                   for m in result["models"]}},
        "backtests": {key: {m["name"]: cell(m["backtest"].get(key), kind) for m in result["models"]}
                      for key, _, kind in BACKTEST_ROWS},
        "pairs": {p["candidate"]: {".".join(path): cell(pair_value(p, path), kind) for path, _, kind in PAIR_ROWS}
                  for p in result["pairs"]},
        "windows": {str(i): {n: cell(x, "p4") for n, x in w["log_loss"].items()}
                    for i, w in enumerate(result["walk_forward"]["windows"], start=1)},
    }


def test_page_holds_the_numbers_of_the_json(setup):
    result, summary = _cli_result(setup)
    page = Page(summary.with_suffix(".html").read_text(encoding="utf-8"))
    want = _expected_cells(result)
    got_scores = {r["attrs"]["data-metric"]: {a["data-model"]: t for t, a in r["cells"][1:] if "data-model" in a}
                  for r in page.rows if "data-metric" in r["attrs"]}
    assert got_scores == want["scores"]
    got_pairs = {r["attrs"]["data-stat"]: r["cells"][1][0] for r in page.rows if "data-stat" in r["attrs"]}
    assert got_pairs == want["pairs"]["tBTCUSD_1h_v2"]
    assert len(page.imgs) == 2 and page.tags["script"] == 0
    for img in page.imgs:
        chart = decode_png(img["src"])
        assert chart.size == (int(img["width"]), int(img["height"]))


@needs_chromium
def test_page_renders_in_chromium_with_the_numbers_of_the_json(setup, chromium: Chromium):
    result, summary = _cli_result(setup)
    url = summary.with_suffix(".html").as_uri()
    session, events = chromium.open(url)
    state = chromium.evaluate(PAGE_STATE, session)
    assert problems(events, url) == []
    assert state["title"] == "Comparison of tBTCUSD_1h_v1, tBTCUSD_1h_v2"
    assert state["sections"] == ["Scores", "Significance", "Backtests", "Calibration curves", "Equity curves",
                                 "Walk-forward"]
    assert len(state["images"]) == 2
    for img in state["images"]:
        assert img["scheme"] == "data:image/png;base64" and img["complete"] and img["naturalWidth"] > 0, img
        assert img["shownWidth"] > 600
    assert state["scripts"] == 0 and state["resources"] == []
    assert state["pageWidth"] <= state["viewportWidth"]
    shown = chromium.evaluate("""(() => {
      const cells = (sel, key) => Object.fromEntries(Array.from(document.querySelectorAll(sel)).map(
        r => [r.dataset[key], Object.fromEntries(Array.from(r.querySelectorAll('td[data-model]')).map(
          c => [c.dataset.model, c.textContent.trim()]))]));
      return {scores: cells('tr[data-metric]', 'metric'), backtests: cells('tr[data-bt]', 'bt'),
              windows: cells('tr[data-window]', 'window'),
              pairs: Object.fromEntries(Array.from(document.querySelectorAll('tr[data-stat]')).map(
                r => [r.dataset.stat, r.querySelector('td').textContent.trim()]))};
    })()""", session)
    want = _expected_cells(result)
    assert shown["scores"] == want["scores"]
    assert shown["backtests"] == want["backtests"]
    assert shown["windows"] == want["windows"]
    assert shown["pairs"] == want["pairs"]["tBTCUSD_1h_v2"]
    for section in (want["scores"], want["backtests"]):  # the shown text is the JSON's number
        for row in section.values():
            assert all(t != "n/a" for t in row.values())
    assert float(shown["scores"]["log_loss"]["tBTCUSD_1h_v2"]) == pytest.approx(
        result["models"][1]["scores"]["log_loss"], abs=5e-5)
    chromium.send("Emulation.setDeviceMetricsOverride",
                  {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
    assert chromium.evaluate(PAGE_STATE, session)["pageWidth"] <= 420


def test_backtests_never_in_the_market_have_no_sharpe_statistics(setup):
    """Thresholds no probability reaches: flat backtests, whose Sharpe ratio is undefined, give no Sharpe
    bootstrap or PSR (a note says why) and a JSON without NaN."""
    overrides = {"strategy": "ml_model", "strategy.threshold_long": "1", "strategy.threshold_short": "0"}
    result = _api(setup, ["tBTCUSD_1h_v1", "tBTCUSD_1h_v2"], overrides=overrides)
    for m in result["models"]:
        assert m["backtest"]["num_trades"] == 0 and m["backtest"]["sharpe"] is None and m["backtest"]["psr"] is None
    assert result["pairs"][0]["sharpe"] is None
    assert sum("no Sharpe ratio" in n for n in result["notes"]) == 2
    json.dumps(result, allow_nan=False)


def test_a_tampered_registered_model_is_refused(setup, tmp_path: Path):
    """A model file registered in its folder's registry and replaced since (another SHA-256, though a valid
    model file) is refused before anything is compared."""
    from genesis_fw.registry.registry import Registry

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("tBTCUSD_1h_v1", "tBTCUSD_1h_v2"):
        shutil.copy(setup["tmp"] / "models" / f"{name}.json", folder)
    Registry.open(folder).register("tBTCUSD_1h_v2", reason="test")
    target = folder / "tBTCUSD_1h_v2.json"
    doc = json.loads(target.read_text(encoding="utf-8"))
    doc["description"] += " (edited)"
    target.write_text(model_file.dumps(model_file.seal(doc)), encoding="utf-8")
    models = [model_file.load(folder / f"{n}.json") for n in ("tBTCUSD_1h_v1", "tBTCUSD_1h_v2")]
    with pytest.raises(ModelFileError, match="tampered or replaced since it was registered"):
        comparison.compare(models, CandleStore.open(setup["tmp"] / "store"), RuntimeConfig.load(None, {}),
                           backtest=False)

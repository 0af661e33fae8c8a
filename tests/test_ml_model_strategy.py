"""The ml_model strategy: a real model file drives a backtest through the generic runner.

Models are trained here on real candles (the bundled sample, tBTCUSD 1m 2019-04) with the real
pipeline pieces (features, labels, purged split, LogReg) and written with ``model_file.write_new``
into a temporary models folder; the shipped v1 baselines are used as they are.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pytest
from conftest import run_cli

from genesis_fw import __version__
from genesis_fw.backtest.engine import run
from genesis_fw.config import FeaturesConfig, RuntimeConfig
from genesis_fw.data.hashing import bars_sha256
from genesis_fw.data.store import CandleStore, read
from genesis_fw.data.timeframes import parse_time, to_ms
from genesis_fw.errors import ConfigError, ModelFileError
from genesis_fw.ml import features, model_file
from genesis_fw.ml.labels import forward_labels
from genesis_fw.ml.splits import chronological_split
from genesis_fw.strategy import FLAT, LONG, SHORT, Bars
from genesis_fw.testing import check_strategy, sample_bars
from genesis_fw_models.logreg import LogReg
from genesis_fw_strategies.ml_model import MlModel, MlModelParams

REPO = Path(__file__).resolve().parents[1]
BASELINE_1M = REPO / "config" / "models" / "tBTCUSD_1m_v1.json"
#: Rows of the bundled sample the test models are trained on (2019-04-01 .. about 04-14).
TRAIN_ROWS = 20_000
HORIZON = 10


def _sample_table(rows: int = TRAIN_ROWS) -> pa.Table:
    return read(CandleStore.sample().find("tBTCUSD", "1m")).slice(0, rows)


def model_doc(cfg: FeaturesConfig | None = None, *, symbol: str = "tBTCUSD", timeframe: str = "1m") -> dict:
    """A real LogReg trained on the sample's features and labels, as a model file document."""
    cfg = cfg or FeaturesConfig()
    table = _sample_table()
    built = features.build(table, cfg)
    names = features.names(cfg)
    X_all = np.column_stack([built.table.column(n).to_numpy() for n in names])
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    labels = forward_labels(ts, table.column("open").to_numpy(), table.column("close").to_numpy(), "1m", HORIZON)
    keep = labels.index >= built.warmup_dropped
    X, y = X_all[labels.index[keep] - built.warmup_dropped], labels.price_up[keep].astype(int)
    split = chronological_split(labels.timestamp_ms[keep], labels.end_ms[keep], "1m", horizon=HORIZON)
    model = LogReg(LogReg.Params(C=0.1)).fit(X[split.train], y[split.train])
    return {
        "schema_version": model_file.SCHEMA_VERSION,
        "name": "", "version": 0,
        "model_type": "logreg", "model_type_version": LogReg.state_version,
        "params": attrs.asdict(model.params), "state": model.to_state(),
        "symbol": symbol, "timeframe": timeframe, "horizon": HORIZON,
        "label": {"rule": "endpoint", "dead_zone_bps": 0.0, "keep_ties": False},
        "features": {"names": names, "definitions_hash": features.definitions_hash(cfg),
                     "params": json.loads(json.dumps(attrs.asdict(cfg)))},
        "calibration": {"method": "none"},
        "training_data": {
            "dataset": "tBTCUSD 1m (bundled sample)", "dataset_version": "sample",
            "sha256": bars_sha256(Bars.from_table(table)),
            "start": "2019-04-01T00:00:00Z", "end": datetime.fromtimestamp(ts[-1] / 1000 + 60, UTC)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "split": {"fractions": list(split.fractions), "embargo": split.embargo, "boundaries": split.boundaries,
                      "purged": split.purged, "rows": {k: int(v.size) for k, v in split.parts().items()}},
            "label_drops": {k: int(v) for k, v in labels.drops.items()},
        },
        "grid_search": None,
        "metrics": {},
        "libraries": {"genesis-fw": __version__},
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "description": "test model",
        "baseline": False,
    }


@pytest.fixture(scope="module")
def trained_doc() -> dict:
    return model_doc()


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(d))
    return d


@pytest.fixture
def trained(models_dir, trained_doc) -> Path:
    """The trained model written into the temporary models folder (``tBTCUSD_1m_v1`` there)."""
    return model_file.write_new(json.loads(json.dumps(trained_doc)), models_dir)


def _name(path: Path) -> str:
    return Path(path).stem


# -- the contract -------------------------------------------------------------------------------------


def test_check_strategy_passes_with_a_trained_model(trained):
    check_strategy(MlModel, sample_bars(4000), MlModelParams(model=_name(trained), threshold_long=0.52,
                                                            threshold_short=0.48))


def test_check_strategy_passes_with_the_shipped_1m_baseline():
    check_strategy(MlModel, sample_bars(4000), MlModelParams(model=str(BASELINE_1M)))


def test_decisions_are_the_thresholds_on_independently_built_features(trained):
    table = _sample_table(6000)
    bars = Bars.from_table(table)
    params = MlModelParams(model=str(trained), threshold_long=0.51, threshold_short=0.49)
    s = MlModel(params)
    s.init(bars)
    decided = s.targets(bars)
    loaded = model_file.load(trained)
    cfg = loaded.features_config()
    built = features.build(table, cfg)  # warm-up dropped, checked finite: an independent route to the features
    p = loaded.predict_proba(np.column_stack([built.table.column(n).to_numpy() for n in loaded.feature_names]))
    expected = np.where(p >= 0.51, LONG, np.where(p <= 0.49, SHORT, FLAT))
    w = built.warmup_dropped
    assert w == features.warmup_bars(cfg) == s.history_bars() > 100
    assert np.array_equal(decided[w:], expected)
    assert np.all(decided[:w] == FLAT)  # no decision while the features warm up
    assert {LONG, SHORT, FLAT} <= set(np.unique(expected))  # the comparison means something
    np.testing.assert_allclose(s.probabilities()[w:], p, rtol=1e-12, atol=0)


def test_threshold_rules():
    with pytest.raises(ValueError, match="0 <= threshold_short <= threshold_long <= 1"):
        MlModelParams(threshold_long=0.4, threshold_short=0.6)
    with pytest.raises(ValueError, match="threshold_short <= threshold_long"):
        MlModelParams(threshold_long=1.2)
    with pytest.raises(ValueError, match="threshold_short <= threshold_long"):
        MlModelParams(threshold_short=float("nan"))


def test_equal_thresholds_are_always_in_the_market(trained):
    bars = sample_bars(3000)
    s = MlModel(MlModelParams(model=_name(trained), threshold_long=0.5, threshold_short=0.5))
    s.init(bars)
    t = s.targets(bars)
    w = s.history_bars()
    assert not np.any(t[w:] == FLAT) and set(np.unique(t[w:])) == {LONG, SHORT}


def test_the_model_is_loaded_once_per_file_content(trained):
    s = MlModel(MlModelParams(model=_name(trained)))
    first = s.loaded()
    assert s.loaded() is first  # bind, history_bars, init and periods share one load
    doc = json.loads(Path(trained).read_text())
    doc["description"] = "changed"
    Path(trained).write_text(json.dumps(model_file.seal(doc)))  # a deliberate change: resealed
    again = s.loaded()
    assert again is not first and again.doc["description"] == "changed"


# -- in backtests -------------------------------------------------------------------------------------


def _backtest(*args: str, out: Path, cwd: Path | None = None, before: tuple[str, ...] = ()):
    return run_cli(*before, "backtest", "strategy=ml_model", *args, "--no-report", "--output", str(out), cwd=cwd)


def test_cli_backtest_with_a_trained_model_is_the_same_on_both_engine_paths(data_dir, trained, tmp_path,
                                                                             monkeypatch):
    monkeypatch.delenv("GENESIS_MODELS_DIR")  # the name is found through --models-dir alone
    runs = {}
    for engine in ("fast", "per-bar"):
        out = tmp_path / engine / "bt.html"
        proc = _backtest(f"strategy.model={_name(trained)}", "strategy.threshold_long=0.51",
                         "strategy.threshold_short=0.49", "--start", "2019-04-20", "--end", "2019-04-23",
                         "--engine", engine, out=out, before=("--models-dir", str(trained.parent)))
        assert proc.returncode == 0, proc.stderr
        runs[engine] = (json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".trades.csv").read_text(),
                        Path(f"{out.with_suffix('')}.equity.csv").read_text())
    (fast, fast_trades, fast_eq), (slow, slow_trades, slow_eq) = runs["fast"], runs["per-bar"]
    assert fast["path"] == "fast" and slow["path"] == "per_bar"
    assert fast["metrics"] == slow["metrics"] and fast_trades == slow_trades and fast_eq == slow_eq
    assert fast["metrics"]["num_trades"] > 10
    warmup = features.warmup_bars(FeaturesConfig())
    assert fast["history_bars"] == warmup and fast["dataset"]["first_bar"] == "2019-04-20T00:00:00+00:00"
    assert fast["params"] == {"model": _name(trained), "threshold_long": 0.51, "threshold_short": 0.49}


def test_the_shipped_1m_baseline_backtests_on_the_bundled_sample(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("GENESIS_MODELS_DIR", raising=False)
    out = tmp_path / "baseline.html"
    proc = _backtest("--start", "2019-05-01", "--end", "2019-05-08", out=out, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["params"]["model"] == "tBTCUSD_1m_v1" and summary["dataset"]["origin"] == "sample"
    assert summary["history_bars"] > 0 and summary["dataset"]["num_bars"] > 9000
    # The same decisions in process: the strategy, its history and the engine, independently of the CLI.
    res = run(RuntimeConfig.load(None, {"strategy": "ml_model", "strategy.model": str(BASELINE_1M),
                                        "start": "2019-05-01", "end": "2019-05-08"}), CandleStore.sample())
    assert res.metrics == summary["metrics"]


def test_period_runs_over_the_models_own_split_part(data_dir, trained, trained_doc, tmp_path):
    bounds = trained_doc["training_data"]["split"]["boundaries"]
    for part in ("test", "validation"):
        out = tmp_path / f"{part}.html"
        proc = _backtest(f"strategy.model={_name(trained)}", "--period", part, out=out)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(out.with_suffix(".json").read_text())
        first = parse_time(bounds[f"{part}_start"])
        last = parse_time(bounds[f"{part}_end"])
        assert parse_time(summary["config"]["start"]) == first
        assert to_ms(parse_time(summary["config"]["end"])) == to_ms(last) + 60_000  # the end of the last bar
        assert parse_time(summary["dataset"]["first_bar"]) == first
        assert parse_time(summary["dataset"]["last_bar"]) == last
        assert summary["history_bars"] == features.warmup_bars(FeaturesConfig())
        in_sample = [n for n in summary["notes"] if "in-sample" in n]
        if part == "test":  # the part the model never saw: no warning
            assert in_sample == [] and "in-sample" not in proc.stderr
        else:  # the model was calibrated on the validation part: the run says so
            assert in_sample == [n for n in summary["notes"] if "overlap the model's validation part" in n] != []
            assert "in-sample and optimistic" in proc.stderr


def test_a_run_over_the_training_part_says_it_is_in_sample(data_dir, trained, trained_doc, tmp_path):
    bounds = trained_doc["training_data"]["split"]["boundaries"]
    out = tmp_path / "span.html"
    proc = _backtest(f"strategy.model={_name(trained)}", "--start", bounds["train_end"][:10],
                     "--end", bounds["test_start"][:10], out=out)
    assert proc.returncode == 0, proc.stderr
    notes = json.loads(out.with_suffix(".json").read_text())["notes"]
    assert any("overlap the model's train part" in n and "fitted" in n for n in notes), notes
    assert any("overlap the model's validation part" in n and "calibrated" in n for n in notes), notes


# -- bad input: one line, exit 1, nothing written -----------------------------------------------------


def _refused(proc, out: Path, store: Path, message: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], proc.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no results files
    db = store / "genesis.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # no run recorded


def _write(models_dir: Path, doc: dict) -> str:
    return _name(model_file.write_new(json.loads(json.dumps(doc)), models_dir))


def _write_by_hand(models_dir: Path, doc: dict, version: int = 90) -> str:
    """A file edited by hand: written directly, past the checks ``write_new`` makes."""
    doc = json.loads(json.dumps(doc))
    doc["version"] = version
    doc["name"] = name = f"{doc['symbol']}_{doc['timeframe']}_v{version}"
    (models_dir / f"{name}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return name


@pytest.mark.parametrize("case,message", [
    ("other_params", "was trained on other feature definitions"),
    ("tampered_hash", "was trained on other feature definitions"),
    ("other_names", "features.names do not match features.params"),
])
def test_a_model_of_other_feature_definitions_is_refused(btc_store, models_dir, trained_doc, tmp_path, case, message):
    doc = json.loads(json.dumps(trained_doc))
    if case == "other_params":  # RSI 7 with its names, but the definitions' hash is RSI 14's
        doc["features"]["params"]["rsi_period"] = 7
        doc["features"]["names"] = [n.replace("rsi_14", "rsi_7") for n in doc["features"]["names"]]
    elif case == "tampered_hash":
        doc["features"]["definitions_hash"] = "f" * 64
    else:  # a consistent hash and parameters, but the feature columns are not the ones they give
        doc["features"]["names"] = [n.replace("rsi_14", "rsi_7") for n in doc["features"]["names"]]
    name = _write_by_hand(models_dir, doc) if case == "other_names" else _write(models_dir, doc)
    out = tmp_path / "res" / "bt.html"
    proc = _backtest(f"strategy.model={name}", out=out)
    _refused(proc, out, btc_store, message)
    with pytest.raises(ModelFileError, match=message):
        MlModel(MlModelParams(model=name)).init(sample_bars(1000))


@pytest.mark.parametrize("args,message", [
    (["--symbol", "tETHUSD"], "was trained on tBTCUSD 1m, the backtest runs on tETHUSD 1m"),
    (["--timeframe", "5m"], "was trained on tBTCUSD 1m, the backtest runs on tBTCUSD 5m"),
])
def test_a_model_of_another_symbol_or_timeframe_is_refused(btc_store, trained, tmp_path, args, message):
    out = tmp_path / "res" / "bt.html"
    _refused(_backtest(f"strategy.model={_name(trained)}", *args, out=out), out, btc_store, message)


def test_a_missing_model_is_refused(btc_store, models_dir, tmp_path):
    out = tmp_path / "res" / "bt.html"
    _refused(_backtest("strategy.model=tBTCUSD_1m_v7", out=out), out, btc_store, "tBTCUSD_1m_v7")
    missing = tmp_path / "nowhere.json"
    _refused(_backtest(f"strategy.model={missing}", out=out), out, btc_store, "nowhere.json")


def test_period_needs_a_model_with_training_data(btc_store, tmp_path, monkeypatch):
    monkeypatch.delenv("GENESIS_MODELS_DIR", raising=False)
    out = tmp_path / "res" / "bt.html"
    proc = run_cli("backtest", "strategy=ml_model", "--period", "test", "--no-report", "--output", str(out), cwd=REPO)
    _refused(proc, out, btc_store, "has no training data")
    proc = run_cli("backtest", "--period", "test", "--no-report", "--output", str(out), cwd=REPO)
    _refused(proc, out, btc_store, "strategy 'ema_rsi' has no period 'test'")
    proc = run_cli("backtest", "strategy=ml_model", "--period", "test", "--start", "2019-04-01", "--no-report",
                   "--output", str(out), cwd=REPO)
    assert proc.returncode == 2 and "give --period or --start/--end" in proc.stderr


def test_bad_thresholds_are_a_config_error(data_dir, tmp_path):
    out = tmp_path / "res" / "bt.html"
    proc = _backtest("strategy.threshold_short=0.7", out=out)
    _refused(proc, out, data_dir, "need 0 <= threshold_short <= threshold_long <= 1, got 0.7 and 0.55")
    with pytest.raises(ConfigError):
        from genesis_fw.plugins import instantiate

        instantiate("strategy", "ml_model", {"threshold_long": "2"})

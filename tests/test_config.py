"""Typed run configuration (genesis_fw/config.py) and plugin parameter checking."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genesis_fw import plugins
from genesis_fw.config import (
    SEED_CONFIG,
    RuntimeConfig,
    StrategyConfig,
    coerce,
    parse_overrides,
    read_json_config,
)
from genesis_fw.errors import ConfigError, PluginError


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path, monkeypatch):
    """Run every test in an empty working directory, so no real config/runtime.seed.json leaks in."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# --- defaults and precedence ---------------------------------------------------------------------


def test_defaults():
    cfg = RuntimeConfig.load()
    assert cfg == RuntimeConfig()
    assert cfg.symbol == "tBTCUSD" and cfg.timeframe == "1m"
    assert cfg.start is None and cfg.end is None
    assert cfg.strategy == StrategyConfig("ema_rsi", {})
    assert (cfg.initial_cash, cfg.commission, cfg.slippage) == (10_000.0, 0.002, 0.0)
    assert (cfg.size, cfg.max_leverage, cfg.stop_loss, cfg.take_profit, cfg.output) == (1.0, 1.0, None, None, None)


def test_precedence_defaults_file_overrides(tmp_path):
    path = write_json(
        tmp_path / "run.json",
        {"symbol": "tETHUSD", "timeframe": "1h", "commission": 0.001, "slippage": 5,
         "strategy": {"name": "ema_rsi", "params": {"fast": 5, "slow": 30}}},
    )
    from_file = RuntimeConfig.load(path)
    assert from_file.symbol == "tETHUSD"  # file beats default
    assert from_file.timeframe == "1h"
    assert from_file.commission == 0.001
    assert from_file.slippage == 5.0 and isinstance(from_file.slippage, float)  # JSON int accepted for a number
    assert from_file.initial_cash == 10_000.0  # untouched default
    assert from_file.strategy.params == {"fast": 5, "slow": 30}

    cfg = RuntimeConfig.load(path, {"timeframe": "4h", "initial_cash": "2500.5", "strategy.fast": "8"})
    assert cfg.timeframe == "4h"  # override beats file
    assert cfg.initial_cash == 2500.5
    assert cfg.symbol == "tETHUSD"  # file value kept when not overridden
    assert cfg.commission == 0.001
    assert cfg.strategy.params == {"fast": "8", "slow": 30}  # a parameter override merges into the file's params
    assert cfg.strategy.name == "ema_rsi"


def test_from_file_equals_load(tmp_path):
    path = write_json(tmp_path / "c.json", {"size": 0.5})
    assert RuntimeConfig.from_file(path) == RuntimeConfig.load(path) == RuntimeConfig(size=0.5)


def test_strategy_override_sets_name():
    assert RuntimeConfig.load(overrides={"strategy": "my_strat"}).strategy == StrategyConfig("my_strat", {})
    assert RuntimeConfig.load(overrides={"strategy.name": "other"}).strategy.name == "other"


def test_strategy_param_overrides():
    cfg = RuntimeConfig.load(overrides={"strategy.fast": "10", "strategy.params.slow": "40", "strategy": "ema_rsi"})
    assert cfg.strategy.name == "ema_rsi"
    assert cfg.strategy.params == {"fast": "10", "slow": "40"}


def test_strategy_as_string_in_file(tmp_path):
    path = write_json(tmp_path / "c.json", {"strategy": "foo"})
    assert RuntimeConfig.load(path).strategy == StrategyConfig("foo", {})
    assert RuntimeConfig.load(path, {"strategy.fast": "3"}).strategy == StrategyConfig("foo", {"fast": "3"})


@pytest.mark.parametrize("key", ["strategy.a.b", "strategy.params.a.b"])
def test_strategy_params_are_one_level_deep(key):
    with pytest.raises(ConfigError, match="one level deep"):
        RuntimeConfig.load(overrides={key: "1"})


def test_override_of_a_non_object_key_with_a_dot(tmp_path):
    path = write_json(tmp_path / "c.json", {"symbol": "tBTCUSD"})
    with pytest.raises(ConfigError, match="'symbol' is not an object"):
        RuntimeConfig.load(path, {"symbol.x": "1"})
    with pytest.raises(ConfigError, match="config key 'symbol': expected string"):
        RuntimeConfig.load(overrides={"symbol.x": "1"})


def test_strategy_override_when_file_strategy_is_not_an_object(tmp_path):
    path = write_json(tmp_path / "c.json", {"strategy": 5})
    with pytest.raises(ConfigError, match="'strategy': expected an object"):
        RuntimeConfig.load(path, {"strategy.fast": "1"})
    with pytest.raises(ConfigError, match="'strategy': expected an object, got 5"):
        RuntimeConfig.load(path)


def test_string_overrides_are_parsed():
    cfg = RuntimeConfig.load(
        overrides={"commission": " 0.001 ", "slippage": "2", "stop_loss": "0.05", "take_profit": "none",
                   "start": "2019-04-01", "end": "null", "output": "out/report.html"}
    )
    assert cfg.commission == 0.001 and cfg.slippage == 2.0
    assert cfg.stop_loss == 0.05 and cfg.take_profit is None
    assert cfg.start == "2019-04-01" and cfg.end is None
    assert cfg.output == "out/report.html"


def test_to_dict_round_trips(tmp_path):
    cfg = RuntimeConfig.load(
        overrides={"symbol": "tETHUSD", "strategy.fast": "7", "stop_loss": "0.1", "size": "0.5", "start": "2019-04-01"}
    )
    data = cfg.to_dict()
    assert data["strategy"] == {"name": "ema_rsi", "params": {"fast": "7"}}
    path = write_json(tmp_path / "dump.json", data)
    assert RuntimeConfig.load(path) == cfg


# --- seed file in the working directory ----------------------------------------------------------


def test_seed_file_in_working_directory_is_used(_empty_cwd):
    write_json(_empty_cwd / "config" / "runtime.seed.json", {"symbol": "tLTCUSD", "strategy": {"params": {"fast": 3}}})
    assert SEED_CONFIG == Path("config") / "runtime.seed.json"
    cfg = RuntimeConfig.load()
    assert cfg.symbol == "tLTCUSD"
    assert cfg.strategy.params == {"fast": 3}
    assert RuntimeConfig.load(overrides={"symbol": "tXRPUSD"}).symbol == "tXRPUSD"  # overrides still win


def test_explicit_path_replaces_seed_file(_empty_cwd, tmp_path):
    write_json(_empty_cwd / "config" / "runtime.seed.json", {"symbol": "tLTCUSD", "commission": 0.005})
    path = write_json(tmp_path / "mine.json", {"timeframe": "1h"})
    cfg = RuntimeConfig.load(path)
    assert cfg.timeframe == "1h"
    assert cfg.symbol == "tBTCUSD" and cfg.commission == 0.002  # the seed file is not merged in


def test_broken_seed_file_is_reported(_empty_cwd):
    write_json(_empty_cwd / "config" / "runtime.seed.json", "{not json")
    with pytest.raises(ConfigError, match="runtime.seed.json is not valid JSON"):
        RuntimeConfig.load()


def test_without_seed_file_defaults_apply(_empty_cwd):
    (_empty_cwd / "config").mkdir()
    assert RuntimeConfig.load() == RuntimeConfig()


# --- unknown keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("comission", "commission"), ("timefrme", "timeframe"), ("symbl", "symbol"), ("stoploss", "stop_loss")],
)
def test_unknown_override_key_suggests(key, suggestion):
    with pytest.raises(ConfigError) as exc:
        RuntimeConfig.load(overrides={key: "1"})
    msg = str(exc.value)
    assert f"unknown config key {key!r}" in msg
    assert f"did you mean {suggestion!r}?" in msg
    assert "allowed: champion, commission, end, exchange, features, initial_cash" in msg


def test_unknown_key_in_file(tmp_path):
    path = write_json(tmp_path / "c.json", {"max_leverge": 2})
    with pytest.raises(ConfigError, match="unknown config key 'max_leverge' \\(did you mean 'max_leverage'\\?\\)"):
        RuntimeConfig.load(path)


def test_unknown_nested_strategy_key(tmp_path):
    path = write_json(tmp_path / "c.json", {"strategy": {"nme": "x"}})
    with pytest.raises(ConfigError, match="unknown config key 'strategy.nme' \\(did you mean 'name'\\?\\)"):
        RuntimeConfig.load(path)


def test_unknown_key_without_close_match():
    with pytest.raises(ConfigError) as exc:
        RuntimeConfig.load(overrides={"zzz": "1"})
    assert "did you mean" not in str(exc.value) and "unknown config key 'zzz'" in str(exc.value)


# --- wrong types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("commission", "abc", "expected number, got 'abc'"),
        ("initial_cash", "ten thousand", "expected number"),
        ("slippage", "true", "expected number"),
        ("stop_loss", "abc", "expected number or null"),
        ("initial_cash", "nan", "not a finite number"),
        ("size", "inf", "not a finite number"),
        ("initial_cash", "1e999", "not a finite number"),
    ],
)
def test_wrong_type_from_command_line(key, value, expected):
    with pytest.raises(ConfigError) as exc:
        RuntimeConfig.load(overrides={key: value})
    assert f"config key {key!r}" in str(exc.value)
    assert expected in str(exc.value)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"initial_cash": True}, "initial_cash", "expected number, got True"),
        ({"commission": False}, "commission", "expected number"),
        ({"commission": "abc"}, "commission", "expected number, got 'abc'"),
        ({"commission": [0.1]}, "commission", "expected number"),
        ({"commission": {"x": 1}}, "commission", "expected number"),
        ({"commission": None}, "commission", "expected number, got None"),
        ({"symbol": 5}, "symbol", "expected string, got 5"),
        ({"symbol": None}, "symbol", "expected string"),
        ({"start": 20190401}, "start", "expected string or null"),
        ({"take_profit": True}, "take_profit", "expected number or null"),
        ({"strategy": {"name": 3}}, "strategy.name", "expected string"),
        ({"strategy": {"params": [1, 2]}}, "strategy.params", "expected object"),
        ({"strategy": []}, "strategy", "expected an object"),
    ],
)
def test_wrong_type_in_file(tmp_path, data, key, expected):
    path = write_json(tmp_path / "c.json", data)
    with pytest.raises(ConfigError) as exc:
        RuntimeConfig.load(path)
    assert f"config key {key!r}" in str(exc.value)
    assert expected in str(exc.value)


def test_coerce_rules():
    assert coerce("10", int, key="k") == 10 and coerce(10, int, key="k") == 10
    assert coerce(10, float, key="k") == 10.0 and isinstance(coerce(10, float, key="k"), float)
    assert coerce("yes", bool, key="k") is True and coerce("OFF", bool, key="k") is False
    assert coerce(None, int | None, key="k") is None and coerce("None", float | None, key="k") is None
    assert coerce("2", int | None, key="k") == 2
    assert coerce({"a": 1}, dict, key="k") == {"a": 1}
    with pytest.raises(ConfigError, match="config key 'k': expected integer, got True"):
        coerce(True, int, key="k")
    with pytest.raises(ConfigError, match="expected integer, got 1.5"):
        coerce(1.5, int, key="k")
    with pytest.raises(ConfigError, match="expected integer, got '1.5'"):
        coerce("1.5", int, key="k")
    with pytest.raises(ConfigError, match="expected true/false, got 'maybe'"):
        coerce("maybe", bool, key="k")
    with pytest.raises(ConfigError, match="expected true/false, got 1"):
        coerce(1, bool, key="k")
    with pytest.raises(ConfigError, match="expected number, got True"):
        coerce(True, float, key="k")
    with pytest.raises(ConfigError, match="expected string, got 1"):
        coerce(1, str, key="k")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_coerce_float_text_round_trips(x):
    assert coerce(repr(x), float, key="k") == x
    assert coerce(x, float, key="k") == x


# --- invalid values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"size": "2"}, "size 2.0 exceeds max_leverage 1.0"),
        ({"size": "3", "max_leverage": "2"}, "exceeds max_leverage 2.0"),
        ({"size": "0"}, "size must be > 0"),
        ({"size": "-0.5"}, "size must be > 0"),
        ({"commission": "1"}, "commission must be < 1"),
        ({"commission": "1.5"}, "commission must be < 1"),
        ({"commission": "-0.001"}, "commission must be >= 0"),
        ({"initial_cash": "0"}, "initial_cash must be > 0"),
        ({"initial_cash": "-100"}, "initial_cash must be > 0"),
        ({"slippage": "-1"}, "slippage must be >= 0"),
        ({"slippage": "10000"}, "slippage must be < 10000"),
        ({"max_leverage": "0"}, "max_leverage must be > 0"),
        ({"stop_loss": "0"}, "stop_loss must be > 0"),
        ({"stop_loss": "1"}, "stop_loss must be < 1"),
        ({"take_profit": "-0.1"}, "take_profit must be > 0"),
    ],
)
def test_invalid_values(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        RuntimeConfig.load(overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"size": "2", "max_leverage": "2"},
        {"size": "0.001"},
        {"commission": "0"},
        {"commission": "0.999"},
        {"slippage": "9999.9"},
        {"stop_loss": "0.999"},
        {"take_profit": "5"},
    ],
)
def test_boundary_values_that_are_valid(overrides):
    cfg = RuntimeConfig.load(overrides=overrides)
    for key, value in overrides.items():
        assert getattr(cfg, key) == float(value)


def test_invalid_value_in_file(tmp_path):
    path = write_json(tmp_path / "c.json", {"size": 2.0, "max_leverage": 1.5})
    with pytest.raises(ConfigError, match="size 2.0 exceeds max_leverage 1.5"):
        RuntimeConfig.load(path)
    # and an override can make it valid again: the combination is checked, not the file alone
    assert RuntimeConfig.load(path, {"max_leverage": "2"}).size == 2.0


# --- the config file itself ----------------------------------------------------------------------


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*nope.json"):
        RuntimeConfig.load(tmp_path / "nope.json")


def test_config_path_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        RuntimeConfig.load(tmp_path)


@pytest.mark.parametrize("text", ["{", "{'symbol': 'tBTCUSD'}", '{"a": 1,}', "", "not json"])
def test_bad_json(tmp_path, text):
    path = write_json(tmp_path / "bad.json", text)
    with pytest.raises(ConfigError, match="bad.json is not valid JSON: .* at line 1"):
        RuntimeConfig.load(path)


def test_bad_json_reports_line(tmp_path):
    path = write_json(tmp_path / "bad.json", '{\n  "symbol": "tBTCUSD",\n  "size": ,\n}')
    with pytest.raises(ConfigError, match="at line 3"):
        read_json_config(path)


@pytest.mark.parametrize(
    ("text", "kind"), [("[1, 2]", "list"), ('"tBTCUSD"', "str"), ("3", "int"), ("null", "NoneType")]
)
def test_non_object_json(tmp_path, text, kind):
    path = write_json(tmp_path / "c.json", text)
    with pytest.raises(ConfigError, match=f"must hold a JSON object, not {kind}"):
        RuntimeConfig.load(path)


def test_invalid_utf8_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b'{"symbol": "\xff"}')
    with pytest.raises(ConfigError, match="c.json is not UTF-8 text"):
        RuntimeConfig.load(path)


# --- parse_overrides -----------------------------------------------------------------------------


def test_parse_overrides():
    assert parse_overrides(["strategy=ema_rsi", "strategy.fast=10", " size = 0.5 ", "output=a=b"]) == {
        "strategy": "ema_rsi",
        "strategy.fast": "10",
        "size": "0.5",
        "output": "a=b",
    }
    assert parse_overrides(["end="]) == {"end": ""}
    assert RuntimeConfig.load(overrides=parse_overrides(["end="])).end is None


@pytest.mark.parametrize("item", ["size", "=1", " =1", ""])
def test_parse_overrides_rejects_malformed(item):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides([item])


# --- plugin parameters ---------------------------------------------------------------------------


def test_instantiate_coerces_string_params():
    strat = plugins.instantiate("strategy", "ema_rsi", {"fast": "10"})
    p = strat.params
    assert p.fast == 10 and isinstance(p.fast, int)
    assert (p.slow, p.rsi_period, p.rsi_upper, p.rsi_lower) == (26, 14, 70.0, 30.0)
    strat = plugins.instantiate("strategy", "ema_rsi", {"fast": 5, "slow": "50", "rsi_upper": "80"})
    assert (strat.params.fast, strat.params.slow, strat.params.rsi_upper) == (5, 50, 80.0)
    assert attrs.asdict(plugins.instantiate("strategy", "ema_rsi").params) == {
        "fast": 12, "slow": 26, "rsi_period": 14, "rsi_upper": 70.0, "rsi_lower": 30.0,
    }


def test_instantiate_from_loaded_config():
    cfg = RuntimeConfig.load(overrides={"strategy": "ema_rsi", "strategy.fast": "9", "strategy.slow": "21"})
    strat = plugins.instantiate("strategy", cfg.strategy.name, cfg.strategy.params)
    assert (strat.params.fast, strat.params.slow) == (9, 21)


def test_instantiate_unknown_param_suggests():
    with pytest.raises(ConfigError) as exc:
        plugins.instantiate("strategy", "ema_rsi", {"fastt": "10"})
    msg = str(exc.value)
    assert "unknown parameter 'strategy.fastt' (did you mean 'fast'?)" in msg
    assert "allowed: fast, rsi_lower, rsi_period, rsi_upper, slow" in msg


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"fast": "30"}, "fast \\(30\\) must be smaller than slow \\(26\\)"),
        ({"fast": 26}, "fast \\(26\\) must be smaller than slow \\(26\\)"),
        ({"fast": "10", "slow": "5"}, "must be smaller than slow"),
        ({"fast": "0"}, "fast must be > 0"),
        ({"rsi_period": "-3"}, "rsi_period must be > 0"),
        ({"rsi_lower": "80"}, "need 0 <= rsi_lower < rsi_upper <= 100"),
        ({"fast": True}, "parameter 'strategy.fast': expected integer, got True"),
        ({"fast": "abc"}, "parameter 'strategy.fast': expected integer, got 'abc'"),
        ({"fast": 1.5}, "parameter 'strategy.fast': expected integer"),
        ({"rsi_upper": "high"}, "parameter 'strategy.rsi_upper': expected number"),
    ],
)
def test_instantiate_rejects_bad_params(params, expected):
    with pytest.raises(ConfigError, match=expected):
        plugins.instantiate("strategy", "ema_rsi", params)


def test_instantiate_unknown_plugin():
    with pytest.raises(PluginError, match="unknown strategy 'ema_rs' \\(did you mean 'ema_rsi'\\?\\)"):
        plugins.instantiate("strategy", "ema_rs", {})
    with pytest.raises(PluginError, match="unknown plugin kind 'strat'"):
        plugins.instantiate("strat", "ema_rsi", {})


# --- the features section --------------------------------------------------------------------------


def test_features_section_defaults_and_list_overrides(tmp_path):
    from genesis_fw.config import FeaturesConfig

    cfg = RuntimeConfig.load()
    assert cfg.features == FeaturesConfig()
    cfg = RuntimeConfig.load(None, {"features.ema_spans": "10, 20,50", "features.rsi_period": "7",
                                    "features.return_lags": "3"})
    assert cfg.features.ema_spans == (10, 20, 50) and cfg.features.rsi_period == 7
    assert cfg.features.return_lags == (3,)
    # A JSON list in a file works too, and the dict form loads back to an equal config.
    path = write_json(tmp_path / "c.json", {"features": {"ema_spans": [8, 16]}})
    assert RuntimeConfig.load(path).features.ema_spans == (8, 16)
    assert RuntimeConfig.load(write_json(tmp_path / "d.json", cfg.to_dict())) == cfg


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("features.ema_spans", "10,0", "ema_spans"),
    ("features.ema_spans", "10,-5", "ema_spans"),
    ("features.ema_spans", "", "ema_spans"),
    ("features.ema_spans", "10,10", "repeat"),
    ("features.ema_spans", "10,x", "expected list of integer"),
    ("features.rsi_period", "0", "rsi_period"),
    ("features.volatility_window", "1", "volatility_window"),
    ("features.emaspans", "10", "did you mean 'ema_spans'"),
])
def test_bad_features_values(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        RuntimeConfig.load(None, {key: value})


def test_bad_list_in_file(tmp_path):
    with pytest.raises(ConfigError, match="expected list of integer"):
        RuntimeConfig.load(write_json(tmp_path / "c.json", {"features": {"ema_spans": [10, "x"]}}))
    with pytest.raises(ConfigError, match="expected list of integer"):
        RuntimeConfig.load(write_json(tmp_path / "c.json", {"features": {"ema_spans": 10}}))


# --- the model and train sections ------------------------------------------------------------------


def test_model_and_train_sections_defaults():
    from genesis_fw.config import ModelConfig, TrainConfig

    cfg = RuntimeConfig.load()
    assert cfg.model == ModelConfig(name="logreg", params={})
    assert cfg.train == TrainConfig()
    assert (cfg.train.horizon, cfg.train.label_rule, cfg.train.folds, cfg.train.fractions) == (
        20, "endpoint", 5, (0.6, 0.2, 0.2))
    assert cfg.train.calibration == ("none", "platt", "isotonic") and cfg.train.n_jobs == 1


def test_model_overrides_single_value_and_list():
    cfg = RuntimeConfig.load(None, {"model": "logreg", "model.C": "0.01,0.1", "model.max_iter": "200",
                                    "train.embargo": "5", "train.horizon": "10"})
    assert cfg.model.name == "logreg"
    assert cfg.model.params == {"C": ["0.01", "0.1"], "max_iter": "200"}
    assert (cfg.train.embargo, cfg.train.horizon) == (5, 10)
    grid = plugins.model_grid(cfg.model)
    assert grid == {"C": [0.01, 0.1], "max_iter": [200]}
    assert RuntimeConfig.load(None, {"model.params.C": "3"}).model.params == {"C": "3"}


def test_model_grid_defaults_to_the_plugins_grid(tmp_path):
    from models.logreg import LogReg

    assert plugins.model_grid(RuntimeConfig.load().model) == {"C": list(LogReg.grid["C"])}
    # A JSON file may give a list or one value; "model": "logreg" is short for {"name": "logreg"}.
    path = write_json(tmp_path / "c.json", {"model": {"name": "logreg", "params": {"C": [1, 10], "max_iter": 50}}})
    assert plugins.model_grid(RuntimeConfig.load(path).model) == {"C": [1.0, 10.0], "max_iter": [50]}
    assert RuntimeConfig.load(write_json(tmp_path / "d.json", {"model": "logreg"})).model.name == "logreg"


def test_choosing_another_model_drops_the_files_params(tmp_path):
    path = write_json(tmp_path / "c.json", {"model": {"name": "logreg", "params": {"C": [1, 10]}}})
    assert RuntimeConfig.load(path, {"model": "lgbm"}).model.params == {}
    assert RuntimeConfig.load(path, {"model": "logreg"}).model.params == {"C": [1, 10]}
    assert RuntimeConfig.load(path, {"model": "lgbm", "model.x": "1"}).model.params == {"x": "1"}


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"model.c": "0.1"}, "did you mean 'C'"),
    ({"model.C": "0.1,0"}, "'C' must be > 0"),
    ({"model.max_iters": "5"}, "did you mean 'max_iter'"),
    ({"model.C": "0.1,abc"}, "expected number"),
    ({"model.max_iter": "1.5"}, "expected integer"),
    ({"model": "logregg"}, "did you mean 'logreg'"),
])
def test_bad_model_params(overrides, expected):
    with pytest.raises((ConfigError, PluginError), match=expected) as info:
        plugins.model_grid(RuntimeConfig.load(None, overrides).model)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("train.horizon", "0", "horizon must be >= 1"),
    ("train.horizon", "-3", "horizon must be >= 1"),
    ("train.horizon", "2.5", "expected integer"),
    ("train.label_rule", "strcit", "label_rule"),
    ("train.folds", "1", "folds must be >= 2"),
    ("train.fractions", "0.6,0.4", "fractions"),
    ("train.calibration", "none,platypus", "calibration"),
    ("train.embargo", "-1", "embargo must be >= 0"),
    ("train.n_jobs", "0", "n_jobs"),
    ("train.horizn", "5", "did you mean 'horizon'"),
])
def test_bad_train_values(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        RuntimeConfig.load(None, {key: value})

"""Plugin discovery through entry points, tested with real installed third-party distributions.

The packages under ``tests/plugins/`` are installed with real pip into throw-away ``--target``
folders (one per distribution, once per session); the CLI then runs as a real process with those
folders on ``PYTHONPATH``, where ``importlib.metadata`` discovers their entry points exactly as
it would for packages installed into site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import numpy as np
import pytest
from conftest import run_cli

from genesis_fw import __version__ as VERSION
from genesis_fw import plugins
from genesis_fw.errors import ConfigError, ModelFileError, PluginError
from genesis_fw.model import Model, NotFittedError
from genesis_fw.strategy import LONG, SHORT, Bars, Strategy
from genesis_fw.testing import check_model

PLUGINS = Path(__file__).parent / "plugins"
DISTS = {"example": "genesis-fw-example", "broken": "genesis-fw-broken", "dupe": "genesis-fw-dupe"}


# ---------------------------------------------------------------------------------------------
# Installing the test distributions


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


def _install(dist: str, tmp: Path) -> Path:
    """``pip install --no-deps --target`` of ``tests/plugins/<dist>``; returns the target folder.

    The source is copied first so that setuptools' build/ and *.egg-info never land in the repo.
    """
    src = tmp / "src" / dist
    shutil.copytree(PLUGINS / dist, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site" / dist
    # --no-build-isolation builds with the setuptools of this environment (dev extras: >= 70.1), offline.
    proc = _pip("install", "--no-deps", "--no-index", "--no-compile", "--no-build-isolation", "--target",
                str(target), str(src))
    assert proc.returncode == 0, f"pip could not install {dist}:\n{proc.stdout}\n{proc.stderr}"
    assert list(target.glob("*.dist-info/entry_points.txt")), f"{dist} installed without entry points"
    return target


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each test distribution installed by pip into its own folder: {"example": path, ...}."""
    tmp = tmp_path_factory.mktemp("plugin-dists")
    return {key: _install(dist, tmp) for key, dist in DISTS.items()}


def _env(sites: dict[str, Path], *keys: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GENESIS_DATA_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(str(sites[k]) for k in keys)
    return env


def _cli(sites: dict[str, Path], keys: tuple[str, ...], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``genesis-fw ARGS`` in ``cwd`` (no config/runtime.seed.json there) with the given dists installed."""
    return run_cli(*args, cwd=cwd, env=_env(sites, *keys))


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def _section(stdout: str, title: str) -> list[str]:
    """The lines of one section of ``genesis-fw plugins`` output (after the title line)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


# ---------------------------------------------------------------------------------------------
# The CLI with real installed distributions


def test_plugins_lists_third_party_and_builtin_plugins(sites, tmp_path):
    proc = _cli(sites, ("example",), "plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    strategies = _section(proc.stdout, "Strategies (3):")
    assert strategies == [
        "  buy_and_hold  genesis-fw-example 0.1.0  Enter at the close of the first bar (long or short) and hold to "
        "the end.",
        "      side: str = 'long'",
        f"  ema_rsi  genesis-fw {VERSION}  Go long when the fast EMA crosses above the slow one (RSI below upper), "
        "short on the cross below.",
        "      fast: int = 12",
        "      slow: int = 26",
        "      rsi_period: int = 14",
        "      rsi_upper: float = 70.0",
        "      rsi_lower: float = 30.0",
        f"  ml_model  genesis-fw {VERSION}  Long/short/flat on a trained model's calibrated up-probability "
        "(strategy.model=NAME or file).",
        "      model: str = 'tBTCUSD_1m_v1'",
        "      threshold_long: float = 0.55",
        "      threshold_short: float = 0.45",
    ]
    models = _section(proc.stdout, "Model types (4):")
    assert models[0] == "  always_half  genesis-fw-example 0.1.0  Predict probability 0.5 for every row; a no-skill " \
                        "baseline."
    assert models[1].startswith(f"  lgbm  genesis-fw {VERSION}  Gradient-boosted decision trees")
    assert any(line.startswith(f"  logreg  genesis-fw {VERSION}  Logistic regression") for line in models)
    assert "      C: float = 1.0" in models and "      max_iter: int = 1000" in models
    assert models[-2:] == ["  up_rate  genesis-fw-example 0.1.0  Predict the up-rate seen in training for every row "
                           "(with a pseudo-count prior).", "      prior: float = 1.0"]

    only = _cli(sites, ("example",), "plugins", "--kind", "model", cwd=tmp_path)
    assert only.returncode == 0 and "Strategies" not in only.stdout and "always_half" in only.stdout


def test_without_third_party_packages_only_builtins_are_listed(sites, tmp_path):
    proc = _cli(sites, (), "plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in _section(proc.stdout, "Strategies (2):") if not line.startswith("      ")] \
        == ["ema_rsi", "ml_model"]
    assert "buy_and_hold" not in proc.stdout and "always_half" not in proc.stdout


def test_broken_plugin_is_listed_and_does_not_break_anything_else(sites, tmp_path):
    keys = ("example", "broken")
    proc = _cli(sites, keys, "plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    strategies = _section(proc.stdout, "Strategies (4):")
    i = strategies.index("  broken  [BROKEN]  genesis-fw-broken 0.1.0")
    assert strategies[i + 1] == "      ModuleNotFoundError: No module named 'genesis_fw_missing_dependency'"
    assert any(line.startswith("  buy_and_hold  genesis-fw-example 0.1.0  ") for line in strategies)
    assert any(line.startswith(f"  ema_rsi  genesis-fw {VERSION}  ") for line in strategies)
    assert "always_half" in proc.stdout and "logreg" in proc.stdout

    default = _cli(sites, keys, "config", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout)["strategy"] == {
        "name": "ema_rsi", "params": {"fast": 12, "slow": 26, "rsi_period": 14, "rsi_upper": 70.0, "rsi_lower": 30.0}
    }
    other = _cli(sites, keys, "config", "strategy=buy_and_hold", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["strategy"] == {"name": "buy_and_hold", "params": {"side": "long"}}

    error = _one_line_error(_cli(sites, keys, "config", "strategy=broken", cwd=tmp_path))
    assert "'broken'" in error and "genesis-fw-broken 0.1.0" in error and "failed to import" in error
    assert "No module named 'genesis_fw_missing_dependency'" in error


def test_name_claimed_by_two_packages_fails_naming_both(sites, tmp_path):
    keys = ("example", "dupe")
    error = _one_line_error(_cli(sites, keys, "config", "strategy=buy_and_hold", cwd=tmp_path))
    assert "'buy_and_hold'" in error
    assert "genesis-fw-example 0.1.0" in error and "genesis-fw-dupe 0.1.0" in error
    assert "uninstall one" in error

    listing = _cli(sites, keys, "plugins", "--kind", "strategy", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    strategies = _section(listing.stdout, "Strategies (4):")
    assert "  buy_and_hold  [BROKEN]  genesis-fw-example 0.1.0" in strategies
    assert "  buy_and_hold  [BROKEN]  genesis-fw-dupe 0.1.0" in strategies
    assert any(line.startswith(f"  ema_rsi  genesis-fw {VERSION}  ") for line in strategies)

    # The conflict is about one name only.
    assert _cli(sites, keys, "config", "strategy=ema_rsi", cwd=tmp_path).returncode == 0


def test_unknown_name_lists_available_and_suggests_a_close_match(sites, tmp_path):
    error = _one_line_error(_cli(sites, ("example",), "config", "strategy=ema_rs", cwd=tmp_path))
    assert error == ("Error: unknown strategy 'ema_rs' (did you mean 'ema_rsi'?); available: buy_and_hold, ema_rsi, "
                     "ml_model")

    error = _one_line_error(_cli(sites, ("example",), "config", "strategy=buy_hold", cwd=tmp_path))
    assert "(did you mean 'buy_and_hold'?)" in error

    error = _one_line_error(_cli(sites, ("example",), "config", "strategy=zzz", cwd=tmp_path))
    assert error == "Error: unknown strategy 'zzz'; available: buy_and_hold, ema_rsi, ml_model"


def test_plugin_parameters_are_checked(sites, tmp_path):
    ok = _cli(sites, ("example",), "config", "strategy=buy_and_hold", "strategy.side=short", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["strategy"] == {"name": "buy_and_hold", "params": {"side": "short"}}

    error = _one_line_error(
        _cli(sites, ("example",), "config", "strategy=buy_and_hold", "strategy.side=sideways", cwd=tmp_path)
    )
    assert "side" in error and "'sideways'" in error and "long, short" in error

    error = _one_line_error(
        _cli(sites, ("example",), "config", "strategy=buy_and_hold", "strategy.sid=short", cwd=tmp_path)
    )
    assert "'strategy.sid'" in error and "(did you mean 'side'?)" in error and "allowed: side" in error


# ---------------------------------------------------------------------------------------------
# genesis_fw.plugins in-process (and in fresh interpreters where sys.modules matters)


def _fresh_python(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_names_reads_metadata_only(sites):
    out = _fresh_python(
        """
        import json, sys
        import genesis_fw.plugins as p

        watched = ["genesis_fw_models.logreg", "genesis_fw_strategies.ema_rsi", "genesis_fw_example.strategies",
                   "genesis_fw_example.models", "sklearn", "genesis_fw.model", "genesis_fw.strategy"]
        names = {"model": p.names("model"), "strategy": p.names("strategy")}
        before = [m for m in watched if m in sys.modules]
        p.load("model", "logreg")
        after_load = [m for m in watched if m in sys.modules]
        print(json.dumps({"names": names, "before": before, "after_load": after_load}))
        """,
        _env(sites, "example"),
    )
    assert out["names"] == {"model": ["always_half", "lgbm", "logreg", "up_rate"],
                            "strategy": ["buy_and_hold", "ema_rsi", "ml_model"]}
    assert out["before"] == []
    # The check above can see an import: loading the plugin does import its module (but not sklearn).
    assert "genesis_fw_models.logreg" in out["after_load"] and "sklearn" not in out["after_load"]


def test_plugins_command_does_not_import_sklearn(sites):
    out = _fresh_python(
        """
        import json, sys
        import numpy as np
        from click.testing import CliRunner
        from genesis_fw.cli import cli

        result = CliRunner().invoke(cli, ["plugins"])
        seen = {m: m in sys.modules for m in ("genesis_fw_models.logreg", "sklearn")}
        from genesis_fw.plugins import load
        load("model", "logreg")().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))
        print(json.dumps({"exit": result.exit_code, "output": result.output, "seen": seen,
                          "sklearn_after_fit": "sklearn" in sys.modules}))
        """,
        _env(sites),
    )
    assert out["exit"] == 0 and f"  logreg  genesis-fw {VERSION}  " in out["output"]
    assert out["seen"] == {"genesis_fw_models.logreg": True, "sklearn": False}
    assert out["sklearn_after_fit"] is True


def _fake_distribution(root: Path, entry_points: str) -> None:
    """A real installed distribution as far as importlib.metadata is concerned: a dist-info folder."""
    info = root / "genesis_fw_fake-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genesis-fw-fake\nVersion: 0.0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")


def test_load_rejects_entry_points_that_are_not_plugin_classes(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, """
        [genesis_fw.strategies]
        plain_class = collections:OrderedDict
        a_function = json:dumps
        missing_attr = json:NoSuchThing

        [genesis_fw.models]
        strategy_as_model = genesis_fw_strategies.ema_rsi:EmaRsi
        """)
    assert "plain_class" not in plugins.names("strategy")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.names("strategy") == ["a_function", "ema_rsi", "missing_attr", "ml_model", "plain_class"]

    with pytest.raises(PluginError) as exc:
        plugins.load("strategy", "plain_class")
    assert str(exc.value) == (
        "strategy 'plain_class' from genesis-fw-fake 0.0.1 points at collections:OrderedDict, which is not a "
        "subclass of genesis_fw.Strategy"
    )
    with pytest.raises(PluginError, match="json:dumps, which is not a subclass of genesis_fw.Strategy"):
        plugins.load("strategy", "a_function")
    with pytest.raises(PluginError, match=r"failed to import: AttributeError: .*NoSuchThing"):
        plugins.load("strategy", "missing_attr")
    with pytest.raises(PluginError, match="EmaRsi, which is not a subclass of genesis_fw.Model"):
        plugins.load("model", "strategy_as_model")

    described = {info.ref.name: info for info in plugins.describe("strategy")}
    assert "not a subclass of genesis_fw.Strategy" in described["plain_class"].error
    assert described["missing_attr"].error.startswith("AttributeError: ")
    assert described["ema_rsi"].error is None
    assert plugins.load("strategy", "ema_rsi").__name__ == "EmaRsi"
    with pytest.raises(PluginError, match="unknown plugin kind 'indicator'; known: model, strategy"):
        plugins.names("indicator")


def test_plugin_with_unresolvable_params_is_reported_not_fatal(sites, tmp_path):
    """A Params annotation that cannot be resolved (a type imported only for type checkers) makes
    that one plugin BROKEN; it used to crash ``genesis-fw plugins`` with a NameError traceback."""
    root = tmp_path / "site"
    _fake_distribution(root, """
        [genesis_fw.strategies]
        bad_params = genesis_fw_fake_bad_params:BadParamsStrategy
        """)
    (root / "genesis_fw_fake_bad_params.py").write_text(textwrap.dedent('''
        from __future__ import annotations

        from typing import TYPE_CHECKING

        import attrs

        from genesis_fw.strategy import Strategy

        if TYPE_CHECKING:
            from decimal import Decimal


        @attrs.frozen
        class BadParams:
            limit: Decimal = 1


        class BadParamsStrategy(Strategy):
            """Its Params cannot be resolved at run time."""

            Params = BadParams

            def next(self, i):
                return None
        '''), encoding="utf-8")
    env = _env(sites, "example")
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])
    listing = run_cli("plugins", "--kind", "strategy", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    strategies = _section(listing.stdout, "Strategies (4):")
    i = strategies.index("  bad_params  [BROKEN]  genesis-fw-fake 0.0.1")
    assert strategies[i + 1] == "      NameError: name 'Decimal' is not defined"
    assert any(line.startswith("  buy_and_hold  genesis-fw-example 0.1.0  ") for line in strategies)

    error = _one_line_error(run_cli("config", "strategy=bad_params", cwd=tmp_path, env=env))
    assert error == ("Error: strategy 'bad_params' from genesis-fw-fake 0.0.1 has an invalid Params class: "
                     "NameError: name 'Decimal' is not defined")


def test_example_plugins_follow_the_contract(sites, monkeypatch):
    monkeypatch.syspath_prepend(str(sites["example"]))
    cls = plugins.load("strategy", "buy_and_hold")
    assert issubclass(cls, Strategy) and cls.has_fast_path()
    assert plugins.params_of(cls) == (plugins.ParamInfo("side", "str", "long"),)
    assert attrs.has(cls.Params) and hash(cls.Params())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cls.Params().side = "short"
    with pytest.raises(ValueError, match="side must be one of long, short"):
        cls.Params(side="sideways")
    with pytest.raises(ConfigError, match="side must be one of long, short, got 'up'"):
        plugins.instantiate("strategy", "buy_and_hold", {"side": "up"})

    n = 6
    close = np.linspace(100.0, 105.0, n)
    bars = Bars(np.arange(n, dtype=np.int64) * 60_000, close, close + 1, close - 1, close, np.ones(n))
    for side, want in (("long", LONG), ("short", SHORT)):
        strategy = plugins.instantiate("strategy", "buy_and_hold", {"side": side})
        strategy.init(bars)
        per_bar = [strategy.next(i) for i in range(n)]
        assert per_bar == [want] + [None] * (n - 1)
        fast = strategy.targets(bars)
        assert fast.shape == (n,) and fast[0] == want and np.isnan(fast[1:]).all()
    assert len(cls().targets(bars.head(0))) == 0

    model_cls = plugins.load("model", "always_half")
    assert issubclass(model_cls, Model)
    check_model(model_cls)
    model = model_cls()
    with pytest.raises(NotFittedError):
        model.predict_proba(np.zeros((2, 1)))
    assert model.fit(np.zeros((3, 2)), np.array([0, 1, 1])) is model and model.fitted_ is True
    assert model.predict_proba(np.zeros((4, 2))).tolist() == [0.5] * 4

    # A model type with learned state: the training up-rate, smoothed by `prior` pseudo-counts each way.
    up_rate = plugins.load("model", "up_rate")
    assert plugins.params_of(up_rate) == (plugins.ParamInfo("prior", "float", 1.0),)
    assert set(up_rate.grid) == {"prior"} and up_rate.state_version == 1 and up_rate.state_schema
    check_model(up_rate)
    fitted = plugins.instantiate("model", "up_rate", {"prior": 1.0}).fit(np.zeros((8, 3)), np.array([1] * 6 + [0] * 2))
    assert fitted.predict_proba(np.ones((2, 3))).tolist() == [7 / 10] * 2
    assert fitted.to_state() == {"rate": 0.7, "n_features": 3}
    with pytest.raises(ValueError, match="3 features"):
        fitted.predict_proba(np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="prior"):
        plugins.instantiate("model", "up_rate", {"prior": -1})


def test_third_party_model_round_trips_through_a_model_file(sites, tmp_path, monkeypatch):
    """An installed package's model type is written and loaded like a built-in, from JSON only."""
    monkeypatch.syspath_prepend(str(sites["example"]))
    from genesis_fw.config import FeaturesConfig
    from genesis_fw.ml import features, model_file

    cfg = FeaturesConfig()
    k = len(features.names(cfg))
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(50, k)), rng.integers(0, 2, size=50)
    model = plugins.instantiate("model", "up_rate", {"prior": 2.0}).fit(X, y)
    doc = {
        "schema_version": 1, "name": "", "version": 0, "model_type": "up_rate", "model_type_version": 1,
        "params": {"prior": 2.0}, "state": model.to_state(), "symbol": "tETHUSD", "timeframe": "1h", "horizon": 10,
        "label": {"rule": "strict", "dead_zone_bps": 1.5, "keep_ties": False},
        "features": {"names": features.names(cfg), "definitions_hash": features.definitions_hash(cfg),
                     "params": attrs.asdict(cfg)},
        "calibration": {"method": "none"}, "training_data": None, "grid_search": None, "metrics": {},
        "libraries": {}, "created_at": "2026-01-01T00:00:00Z", "baseline": False,
    }
    path = model_file.write_new(doc, tmp_path)
    loaded = model_file.load("tETHUSD_1h_v1", tmp_path, symbol="tETHUSD", timeframe="1h")
    assert loaded.path == path and type(loaded.model).__name__ == "UpRate"
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    doc = json.loads(path.read_text())
    doc["state"]["rate"] = 1.5
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match=r"state\.rate: 1\.5 is greater than the maximum of 1"):
        model_file.load(path)


def test_third_party_strategy_runs_through_the_backtest_cli(sites, tmp_path):
    """The contract end to end: an installed package's strategy is backtested by the generic runner."""
    import pyarrow.parquet as pq

    from genesis_fw.data.store import CandleStore

    sample = pq.read_table(CandleStore.sample().path("tBTCUSD", "1m"))
    first_open = sample.column("open")[1].as_py()  # decided at bar 0's close, filled at bar 1's open
    last_close = sample.column("close")[-1].as_py()
    for engine in ("auto", "per-bar"):
        out = tmp_path / engine / "bh.html"
        proc = _cli(sites, ("example",), "backtest", "strategy=buy_and_hold", "strategy.side=long", "commission=0",
                    "--engine", engine, "--no-report", "--output", str(out), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "bundled sample" in proc.stderr
        summary = json.loads(out.with_suffix(".json").read_text())
        assert summary["strategy"] == "buy_and_hold" and summary["params"] == {"side": "long"}
        assert summary["path"] == ("fast" if engine == "auto" else "per_bar")
        assert summary["metrics"]["num_trades"] == 1
        assert summary["metrics"]["total_return"] == pytest.approx(last_close / first_open - 1, rel=1e-9)


def test_example_strategy_passes_the_contract_checks(sites, monkeypatch):
    from genesis_fw.testing import check_strategy, sample_bars

    monkeypatch.syspath_prepend(str(sites["example"]))
    from genesis_fw_example.strategies import BuyAndHold

    check_strategy(BuyAndHold, sample_bars(3000))
    check_strategy(BuyAndHold, sample_bars(3000), BuyAndHold.Params(side="short"))

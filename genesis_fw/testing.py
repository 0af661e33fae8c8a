"""Contract checks for plugin authors (like scikit-learn's ``check_estimator``).

Call them from your own tests::

    from genesis_fw.testing import check_strategy, sample_bars
    from my_pkg import MyStrategy

    def test_contract():
        check_strategy(MyStrategy, sample_bars())

Each check raises ``AssertionError`` with a message saying what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import numpy as np

from .strategy import Bars, Strategy


def sample_bars(n: int = 5_000) -> Bars:
    """The first ``n`` bars of the bundled sample (real Bitfinex tBTCUSD 1m candles, 2019-04)."""
    from .data.store import CandleStore, read

    dataset = CandleStore.sample().find("tBTCUSD", "1m")
    table = read(dataset).slice(0, n)
    return Bars.from_table(table)


def _decisions_per_bar(strategy: Strategy, bars: Bars) -> np.ndarray:
    from .backtest.engine import decide_per_bar

    strategy.init(bars)
    return decide_per_bar(strategy, len(bars))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def check_strategy(cls: type, bars: Bars | None = None, params: Any = None, *, prefixes: int = 4) -> None:
    """Check a strategy class against the contract in :mod:`genesis_fw.strategy`.

    * it subclasses :class:`Strategy`, has a frozen attrs ``Params`` whose defaults construct;
    * ``__init__`` does nothing but store params (two instances behave the same);
    * ``history_bars()`` is a whole number >= 0;
    * ``next`` returns only LONG/SHORT/FLAT/None, one decision per bar;
    * no lookahead: the decisions on the first ``k`` bars equal the first ``k`` decisions on all
      bars, for several ``k`` (a strategy that reads bar ``i + 1`` in ``next(i)`` or builds
      indicators from the future fails here);
    * if it has a fast path, ``targets`` equals the per-bar decisions exactly, also on prefixes.
    """
    from .backtest.engine import check_targets

    assert isinstance(cls, type) and issubclass(cls, Strategy), f"{cls!r} is not a genesis_fw.Strategy subclass"
    assert attrs.has(cls.Params), f"{cls.__name__}.Params must be an attrs class"
    params = params if params is not None else cls.Params()
    try:
        hash(params)
    except TypeError:
        raise AssertionError(f"{cls.__name__}.Params must be frozen (hashable)") from None
    history = cls(params).history_bars()
    assert isinstance(history, int) and not isinstance(history, bool) and history >= 0, (
        f"{cls.__name__}.history_bars() must return a whole number >= 0, got {history!r}")
    bars = bars if bars is not None else sample_bars()
    n = len(bars)
    full = _decisions_per_bar(cls(params), bars)
    again = _decisions_per_bar(cls(params), bars)
    assert _same(full, again), f"{cls.__name__}: two runs on the same bars gave different decisions"
    fast = None
    if cls.has_fast_path():
        s = cls(params)
        s.init(bars)
        fast = check_targets(s.targets(bars), n, where=f"{cls.__name__}.targets")
        diff = np.flatnonzero(~((fast == full) | (np.isnan(fast) & np.isnan(full))))
        assert diff.size == 0, (
            f"{cls.__name__}: targets() and next() disagree at {diff.size} bar(s), first at bar {diff[0]} "
            f"(targets {fast[diff[0]]}, next {full[diff[0]]})"
        )
    for k in np.linspace(n // 4, n - 1, prefixes).astype(int):
        head = bars.head(int(k))
        part = _decisions_per_bar(cls(params), head)
        diff = np.flatnonzero(~((part == full[:k]) | (np.isnan(part) & np.isnan(full[:k]))))
        assert diff.size == 0, (
            f"{cls.__name__} looks ahead: its decision at bar {diff[0]} changes when bars after {k - 1} are "
            "removed; a decision at bar i may use bars 0..i only"
        )
        if fast is not None:
            s = cls(params)
            s.init(head)
            part_fast = check_targets(s.targets(head), int(k), where=f"{cls.__name__}.targets")
            assert _same(part_fast, fast[:k]), f"{cls.__name__}.targets looks ahead (prefix of {k} bars differs)"


def check_model(cls: type, params: Any = None, *, seed: int = 0) -> None:
    """Check a model type against the contract in :mod:`genesis_fw.model`:

    * ``fit`` returns self, ``predict_proba`` before ``fit`` raises :class:`NotFittedError`,
      probabilities have shape ``(n,)`` and lie in [0, 1], fitting twice gives the same predictions;
    * ``state_version`` is an int >= 1, every ``grid`` key is a ``Params`` field and every candidate
      value builds a ``Params``; ``Params`` survives a trip through JSON (how a model file stores it);
    * the JSON round trip of a model file: ``to_state()`` is plain JSON (``json.dumps`` with
      ``allow_nan=False``), passes ``state_schema`` when the type declares one, and ``from_state`` of
      ``json.loads`` of it predicts bit for bit (``np.array_equal``) what the fitted model does, on
      the training rows and on new ones.
    """
    from .config import make_params
    from .errors import ConfigError
    from .model import Model, NotFittedError

    assert isinstance(cls, type) and issubclass(cls, Model), f"{cls!r} is not a genesis_fw.Model subclass"
    name = cls.__name__
    version = cls.state_version
    assert isinstance(version, int) and not isinstance(version, bool) and version >= 1, (
        f"{name}.state_version must be an int >= 1, got {version!r}")
    fields = {f.name for f in attrs.fields(cls.Params)} if attrs.has(cls.Params) else set()
    for key, values in cls.grid.items():
        assert key in fields, f"{name}.grid names {key!r}, which is not a field of {name}.Params ({sorted(fields)})"
        assert isinstance(values, tuple | list) and len(values) > 0, (
            f"{name}.grid[{key!r}] must be a non-empty tuple of candidate values")
        for value in values:
            try:
                cls.Params(**{key: value})
            except Exception as exc:
                raise AssertionError(f"{name}.grid[{key!r}] candidate {value!r} is refused by {name}.Params: "
                                     f"{exc}") from exc
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    model = cls(params)
    try:
        model.predict_proba(X)
    except NotFittedError:
        pass
    else:
        raise AssertionError(f"{name}.predict_proba before fit must raise NotFittedError")
    assert model.fit(X, y) is model, f"{name}.fit must return self"
    p = np.asarray(model.predict_proba(X))
    assert p.shape == (400,), f"{name}.predict_proba returned shape {p.shape}; expected (400,)"
    assert np.all((p >= 0) & (p <= 1)), f"{name}.predict_proba returned values outside [0, 1]"
    p2 = np.asarray(cls(params).fit(X, y).predict_proba(X))
    assert np.allclose(p, p2), f"{name}: fitting twice on the same data gave different predictions"

    if attrs.has(cls.Params):
        try:
            as_json = json.loads(json.dumps(attrs.asdict(model.params), allow_nan=False))
            again = make_params(cls.Params, as_json, owner=f"model {name}")
        except (TypeError, ValueError, ConfigError) as exc:
            raise AssertionError(f"{name}.Params does not survive a trip through JSON: {exc}") from exc
        assert again == model.params, f"{name}.Params changed through JSON: {model.params!r} -> {again!r}"
    state = model.to_state()
    assert isinstance(state, dict), f"{name}.to_state() must return a dict, got {type(state).__name__}"
    try:
        text = json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{name}.to_state() is not plain JSON (dicts, lists, str, int, finite float, bool, "
                             f"None): {exc}") from exc
    loaded_state = json.loads(text)
    if cls.state_schema is not None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match

        Draft202012Validator.check_schema(cls.state_schema)
        error = best_match(Draft202012Validator(cls.state_schema).iter_errors(loaded_state))
        assert error is None, f"{name}.to_state() does not pass its own state_schema: {error.message}"
    loaded = cls.from_state(model.params, loaded_state)
    X_new = rng.normal(size=(200, 3)) * 2.0
    for data, what in ((X, "the training rows"), (X_new, "new rows")):
        want, got = np.asarray(model.predict_proba(data)), np.asarray(loaded.predict_proba(data))
        assert got.shape == want.shape, f"{name}: from_state(to_state()) predicts shape {got.shape}, not {want.shape}"
        assert np.array_equal(got, want), (
            f"{name}: the model rebuilt by from_state(to_state()) through JSON does not predict bit for bit what "
            f"the fitted one does on {what} (largest difference {np.max(np.abs(got - want))})")

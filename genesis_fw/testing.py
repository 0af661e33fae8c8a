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


_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


def _not_plain_json(value: Any) -> str | None:
    """Where ``value`` holds something other than exactly dict/list/str/int/float/bool/None (a numpy
    scalar is a float subclass that ``json.dumps`` accepts, but it is not plain JSON)."""
    stack: list[tuple[Any, str]] = [(value, "state")]
    while stack:
        item, at = stack.pop()
        if type(item) not in _JSON_TYPES:
            kind = type(item)
            origin = "a numpy " if kind.__module__ == "numpy" else "a "
            return f"{origin}{kind.__name__} at {at}"
        if isinstance(item, dict):
            for key, sub in item.items():
                if type(key) is not str:
                    return f"a {type(key).__name__} key at {at}"
                stack.append((sub, f"{at}[{key!r}]"))
        elif isinstance(item, list):
            stack.extend((sub, f"{at}[{i}]") for i, sub in enumerate(item))
    return None


def check_model(cls: type, params: Any = None, *, seed: int = 0) -> None:
    """Check a model type against the contract in :mod:`genesis_fw.model`:

    * ``fit`` returns self, ``predict_proba`` before ``fit`` raises :class:`NotFittedError`,
      probabilities have shape ``(n,)`` and lie in [0, 1], ``fit`` and ``predict_proba`` leave ``X``
      unchanged, fitting twice gives bit-identical predictions (``np.array_equal``: a nondeterministic
      fit fails);
    * each row is predicted on its own: all rows at once, in chunks and one row at a time give
      bit-identical probabilities (a model that standardises with the statistics of the batch it is
      given fails: that is lookahead in the ``ml_model`` strategy's all-bars-at-once fast path);
    * ``state_version`` is an int >= 1, every ``grid`` key is a ``Params`` field and every candidate
      value builds a ``Params``; ``Params`` survives a trip through JSON (how a model file stores it);
    * the JSON round trip of a model file: ``to_state()`` holds only plain JSON types (dict with str
      keys, list, str, int, float, bool, None; no numpy scalars or arrays, no tuples), is finite
      (``json.dumps`` with ``allow_nan=False``), passes ``state_schema`` when the type declares one,
      and ``from_state`` of
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
    X_given, y_given = X.copy(), y.copy()
    assert model.fit(X_given, y_given) is model, f"{name}.fit must return self"
    assert np.array_equal(X_given, X) and np.array_equal(y_given, y), f"{name}.fit changes its input X or y"
    X_given = X.copy()
    p = np.asarray(model.predict_proba(X_given))
    assert np.array_equal(X_given, X), f"{name}.predict_proba changes its input X; it must leave X as it is"
    assert p.shape == (400,), f"{name}.predict_proba returned shape {p.shape}; expected (400,)"
    assert np.all((p >= 0) & (p <= 1)), f"{name}.predict_proba returned values outside [0, 1]"
    p2 = np.asarray(cls(params).fit(X.copy(), y.copy()).predict_proba(X.copy()))
    assert np.array_equal(p, p2), (
        f"{name}: fitting twice on the same data gave different predictions (largest difference "
        f"{np.max(np.abs(p - p2)) if p.shape == p2.shape else 'in shape'}); fit must be deterministic")
    for how, parts in (("in chunks of 37 rows", [X[i:i + 37] for i in range(0, len(X), 37)]),
                       ("one row at a time", [X[i:i + 1] for i in range(len(X))])):
        got = np.concatenate([np.asarray(model.predict_proba(part.copy())).reshape(-1) for part in parts])
        diff = np.flatnonzero(got != p) if got.shape == p.shape else np.array([0])
        assert diff.size == 0, (
            f"{name}.predict_proba {how} differs from predicting all rows at once (first at row {diff[0]}): a "
            "row's probability must not depend on the other rows of the batch (statistics of the batch are "
            "lookahead when the ml_model strategy predicts all bars at once)")

    if attrs.has(cls.Params):
        try:
            as_json = json.loads(json.dumps(attrs.asdict(model.params), allow_nan=False))
            again = make_params(cls.Params, as_json, owner=f"model {name}")
        except (TypeError, ValueError, ConfigError) as exc:
            raise AssertionError(f"{name}.Params does not survive a trip through JSON: {exc}") from exc
        assert again == model.params, f"{name}.Params changed through JSON: {model.params!r} -> {again!r}"
    state = model.to_state()
    assert isinstance(state, dict), f"{name}.to_state() must return a dict, got {type(state).__name__}"
    where = _not_plain_json(state)
    assert where is None, (
        f"{name}.to_state() is not plain JSON: it holds {where}; use plain Python values (float(x), int(x), "
        "array.tolist()), not numpy scalars, arrays or tuples")
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

"""Contract checks for plugin authors (like scikit-learn's ``check_estimator``).

Call them from your own tests::

    from genesis_fw.testing import check_strategy, sample_bars
    from my_pkg import MyStrategy

    def test_contract():
        check_strategy(MyStrategy, sample_bars())

Each check raises ``AssertionError`` with a message saying what is wrong.
"""

from __future__ import annotations

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
    """Check a model type against the contract in :mod:`genesis_fw.model`: ``fit`` returns self,
    ``predict_proba`` before ``fit`` raises, probabilities have shape ``(n,)`` and lie in [0, 1],
    and fitting twice on the same data gives the same predictions."""
    from .model import Model, NotFittedError

    assert isinstance(cls, type) and issubclass(cls, Model), f"{cls!r} is not a genesis_fw.Model subclass"
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    model = cls(params)
    try:
        model.predict_proba(X)
    except NotFittedError:
        pass
    else:
        raise AssertionError(f"{cls.__name__}.predict_proba before fit must raise NotFittedError")
    assert model.fit(X, y) is model, f"{cls.__name__}.fit must return self"
    p = np.asarray(model.predict_proba(X))
    assert p.shape == (400,), f"{cls.__name__}.predict_proba returned shape {p.shape}; expected (400,)"
    assert np.all((p >= 0) & (p <= 1)), f"{cls.__name__}.predict_proba returned values outside [0, 1]"
    p2 = np.asarray(cls(params).fit(X, y).predict_proba(X))
    assert np.allclose(p, p2), f"{cls.__name__}: fitting twice on the same data gave different predictions"

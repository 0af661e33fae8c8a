"""genesis_fw.testing.check_model: the contract of a model type, including its JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from genesis_fw import plugins
from genesis_fw.model import Model
from genesis_fw.testing import check_model


class _Lossy(Model):
    """Stores its weight as float32 in the state: the reloaded model predicts slightly differently."""

    def fit(self, X, y):
        self.w_ = float(np.mean(y)) / 3.0
        return self

    def predict_proba(self, X):
        self._check_fitted()
        return np.full(len(X), self.w_)

    def to_state(self):
        return {"w": float(np.float32(self.w_))}

    @classmethod
    def from_state(cls, params, state):
        m = cls(params)
        m.w_ = state["w"]
        return m


class _NumpyState(_Lossy):
    def to_state(self):
        return {"w": np.array([self.w_])}

    @classmethod
    def from_state(cls, params, state):
        m = cls(params)
        m.w_ = float(state["w"][0])
        return m


class _BadGrid(_Lossy):
    grid = {"alpha": (1, 2)}

    def to_state(self):
        return {"w": self.w_}


class _BadSchema(_BadGrid):
    grid = {}
    state_schema = {"type": "object", "required": ["weights"]}


class _BadVersion(_BadGrid):
    grid = {}
    state_version = 0


@pytest.mark.parametrize(("cls", "message"), [
    (_Lossy, "bit for bit"),
    (_NumpyState, "JSON"),
    (_BadGrid, "grid"),
    (_BadSchema, "state_schema"),
    (_BadVersion, "state_version"),
])
def test_check_model_checks_the_json_round_trip(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_model(cls)


def test_check_model_passes_logreg():
    check_model(plugins.load("model", "logreg"))


class _Linear(Model):
    """A plain, correct linear model; the mistakes below are variations of it."""

    def fit(self, X, y):
        self.w_ = np.linalg.lstsq(X, y - 0.5, rcond=None)[0]
        return self

    def predict_proba(self, X):
        self._check_fitted()
        return 1.0 / (1.0 + np.exp(-(X * self.w_).sum(axis=1)))

    def to_state(self):
        return {"w": [float(v) for v in self.w_]}

    @classmethod
    def from_state(cls, params, state):
        m = cls(params)
        m.w_ = np.asarray(state["w"], dtype=float)
        return m


class _BatchStatistics(_Linear):
    """Standardises X with the batch's own mean and std: lookahead in the ml_model fast path."""

    def predict_proba(self, X):
        self._check_fitted()
        Z = (X - X.mean(0)) / (X.std(0) + 1e-12)
        return 1.0 / (1.0 + np.exp(-(Z * self.w_).sum(axis=1)))


class _Nondeterministic(_Linear):
    def fit(self, X, y):
        super().fit(X, y)
        self.w_ = self.w_ + np.random.default_rng().normal(scale=1e-12, size=self.w_.size)
        return self


class _MutatesX(_Linear):
    def predict_proba(self, X):
        self._check_fitted()
        X[:, 0] = 0.0
        return super().predict_proba(X)


class _NumpyScalarState(_Linear):
    def to_state(self):
        return {"w": [np.float64(v) for v in self.w_]}


@pytest.mark.parametrize(("cls", "message"), [
    (_BatchStatistics, "one row at a time|in chunks"),
    (_Nondeterministic, "fitting twice"),
    (_MutatesX, "changes its input"),
    (_NumpyScalarState, "numpy"),
])
def test_check_model_catches_plausible_plugin_mistakes(cls, message):
    check_model(_Linear)  # the correct version passes
    with pytest.raises(AssertionError, match=message):
        check_model(cls)


class _CounterInInit(_Linear):
    """Sets a trailing-underscore attribute in __init__: not a sign of being fitted."""

    def __init__(self, params=None):
        super().__init__(params)
        self.n_seen_ = 0


def test_not_fitted_is_detected_even_with_state_set_in_init():
    from genesis_fw.model import NotFittedError

    with pytest.raises(NotFittedError):
        _CounterInInit().predict_proba(np.zeros((1, 3)))
    model = _CounterInInit().fit(np.eye(3), np.array([0, 1, 1]))
    assert model.predict_proba(np.zeros((1, 3))).shape == (1,)
    again = _CounterInInit.from_state(None, model.to_state())
    assert np.array_equal(again.predict_proba(np.eye(3)), model.predict_proba(np.eye(3)))
    check_model(_CounterInInit)


def test_check_model_passes_lgbm():
    pytest.importorskip("lightgbm")
    check_model(plugins.load("model", "lgbm"))

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

"""Example model types: ``always_half`` (knows nothing) and ``up_rate`` (learns one number).

Both keep their learned state as plain JSON values (``to_state``) and are rebuilt from them
(``from_state``), so genesis-fw can save them in a model file and load them without pickle.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from genesis_fw.model import Model


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X, dtype=float), np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"expected X of shape (n, k) and y of shape (n,), got {X.shape} and {y.shape}")
    return X, y


class AlwaysHalf(Model):
    """Predict probability 0.5 for every row; a no-skill baseline."""

    state_schema = {"type": "object", "additionalProperties": False}

    def fit(self, X: np.ndarray, y: np.ndarray) -> AlwaysHalf:
        _check_xy(X, y)
        self.fitted_ = True
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return np.full(len(np.asarray(X)), 0.5)

    def to_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {}

    @classmethod
    def from_state(cls, params: Any, state: dict[str, Any]) -> AlwaysHalf:
        model = cls(params)
        model.fitted_ = True
        return model


@attrs.frozen
class UpRateParams:
    #: Pseudo-count added to both the up and the down labels (Laplace smoothing): larger pulls the
    #: prediction towards 0.5.
    prior: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))


class UpRate(Model):
    """Predict the up-rate seen in training for every row (with a pseudo-count prior)."""

    Params = UpRateParams
    grid = {"prior": (0.0, 1.0, 10.0)}
    state_version = 1
    state_schema = {
        "type": "object",
        "required": ["rate", "n_features"],
        "additionalProperties": False,
        "properties": {
            "rate": {"type": "number", "minimum": 0, "maximum": 1},
            "n_features": {"type": "integer", "minimum": 1},
        },
    }

    def fit(self, X: np.ndarray, y: np.ndarray) -> UpRate:
        X, y = _check_xy(X, y)
        prior = self.params.prior
        n = len(y) + 2 * prior
        self.rate_ = float((np.sum(y == 1) + prior) / n) if n > 0 else 0.5
        self.n_features_ = int(X.shape[1])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise ValueError(f"expected X of shape (n, {self.n_features_}) ({self.n_features_} features), "
                             f"got {X.shape}")
        return np.full(len(X), self.rate_)

    def to_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"rate": self.rate_, "n_features": self.n_features_}

    @classmethod
    def from_state(cls, params: Any, state: dict[str, Any]) -> UpRate:
        model = cls(params)
        model.rate_ = float(state["rate"])
        model.n_features_ = int(state["n_features"])
        return model

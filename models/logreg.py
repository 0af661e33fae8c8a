"""Logistic regression on standardised features: the baseline model type.

State (``to_state``): the scaler's ``mean`` and ``scale`` per feature (``x_std = (x - mean) / scale``),
the coefficients ``coef`` per feature and the ``intercept``; P(up) = 1 / (1 + exp(-(x_std . coef +
intercept))). Predictions always come from these numbers, so a model loaded from its file predicts
bit for bit what the fitted one did, and each row's prediction is the same whether it is predicted
alone or in a batch.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from genesis_fw.model import Model

_VECTOR = {"type": "array", "items": {"type": "number"}}


@attrs.frozen
class LogRegParams:
    #: Inverse regularisation strength (larger = weaker L2 penalty).
    C: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: Iteration cap of the lbfgs solver.
    max_iter: int = attrs.field(default=1000, validator=attrs.validators.ge(1))


class LogReg(Model):
    """Logistic regression (scikit-learn) on standardised features; a calibrated-by-construction baseline."""

    Params = LogRegParams
    grid = {"C": (0.001, 0.01, 0.1, 1.0, 10.0)}
    state_version = 1
    state_schema = {
        "type": "object",
        "required": ["mean", "scale", "coef", "intercept"],
        "additionalProperties": False,
        "properties": {"mean": _VECTOR, "coef": _VECTOR, "intercept": {"type": "number"},
                       # x_std = (x - mean) / scale: a scale of 0 divides by zero, a negative one flips the sign.
                       "scale": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}},
    }

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogReg:
        # scikit-learn is imported here, not at module level, so listing plugins stays fast.
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=float)
        scaler = StandardScaler().fit(X)
        clf = LogisticRegression(C=self.params.C, max_iter=self.params.max_iter).fit(scaler.transform(X), np.asarray(y))
        self.mean_ = np.asarray(scaler.mean_, dtype=float)
        self.scale_ = np.asarray(scaler.scale_, dtype=float)
        self.coef_ = np.asarray(clf.coef_[0], dtype=float)
        self.intercept_ = float(clf.intercept_[0])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        self._check_fitted()
        X = np.ascontiguousarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.coef_.size:
            raise ValueError(f"expected X of shape (n, {self.coef_.size}), got {X.shape}")
        # A row-wise sum over C-ordered rows, not a BLAS matrix-vector product: BLAS may pick another
        # kernel for another number of rows, and one row must get the same bits alone as in a batch
        # (the ml_model strategy predicts all bars at once and one bar at a time; they must agree).
        z = (((X - self.mean_) / self.scale_) * self.coef_).sum(axis=1)
        return expit(z + self.intercept_)

    def to_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist(), "coef": self.coef_.tolist(),
                "intercept": self.intercept_}

    @classmethod
    def from_state(cls, params: Any, state: dict[str, Any]) -> LogReg:
        model = cls(params)
        model.mean_, model.scale_, model.coef_ = (np.asarray(state[k], dtype=float) for k in ("mean", "scale", "coef"))
        if not model.mean_.size == model.scale_.size == model.coef_.size:
            raise ValueError("mean, scale and coef must have one value per feature")
        model.intercept_ = float(state["intercept"])
        return model

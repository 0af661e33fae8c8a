"""A scikit-learn estimator around any model plugin, so ``GridSearchCV`` can tune it.

``PluginEstimator(LogReg, C=0.1)`` exposes the plugin's ``Params`` fields as scikit-learn parameters
(``get_params`` / ``set_params``, so ``clone`` and ``GridSearchCV`` work), fits ``LogReg(Params(...))``
and answers ``predict_proba`` with two columns (P(0), P(1)) and ``classes_ = [0, 1]``, which the
``neg_log_loss`` scorer needs. It never shuffles or reorders rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..config import make_params
from ..model import Model


class PluginEstimator(ClassifierMixin, BaseEstimator):
    """scikit-learn view of the model plugin class ``model_class`` with parameters ``params``
    (names of ``model_class.Params`` fields; omitted ones keep their defaults)."""

    def __init__(self, model_class: type[Model], **params: Any) -> None:
        self.model_class = model_class
        self._params = dict(params)

    # scikit-learn's own get_params reads the __init__ signature; the parameters here are the plugin's.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"model_class": self.model_class, **self._params}

    def set_params(self, **params: Any) -> PluginEstimator:
        if "model_class" in params:
            self.model_class = params.pop("model_class")
        self._params.update(params)
        return self

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"PluginEstimator({self.model_class.__name__}{', ' if args else ''}{args})"

    def fit(self, X: Any, y: Any) -> PluginEstimator:
        built = make_params(self.model_class.Params, self._params, owner="model")
        self.model_ = self.model_class(built).fit(np.asarray(X, dtype=float), np.asarray(y))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = np.asarray(self.model_.predict_proba(np.asarray(X, dtype=float)), dtype=float)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

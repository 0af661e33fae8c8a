"""``always_half``: a model type that knows nothing; P(label = 1) is 0.5 for every row."""

from __future__ import annotations

import numpy as np

from genesis_fw.model import Model


class AlwaysHalf(Model):
    """Predict probability 0.5 for every row; a no-skill baseline."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> AlwaysHalf:
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"expected X of shape (n, k) and y of shape (n,), got {X.shape} and {y.shape}")
        self.fitted_ = True
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return np.full(len(np.asarray(X)), 0.5)

"""Logistic regression on standardised features."""

from __future__ import annotations

import attrs
import numpy as np

from genesis_fw.model import Model


@attrs.frozen
class LogRegParams:
    #: Inverse regularisation strength (larger = weaker L2 penalty).
    C: float = 1.0
    #: Iteration cap of the lbfgs solver.
    max_iter: int = 1000


class LogReg(Model):
    """Logistic regression (scikit-learn) on standardised features; a calibrated-by-construction baseline."""

    Params = LogRegParams

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogReg:
        # scikit-learn is imported here, not at module level, so listing plugins stays fast.
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.pipeline_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.params.C, max_iter=self.params.max_iter)
        ).fit(np.asarray(X, dtype=float), np.asarray(y))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.pipeline_.predict_proba(np.asarray(X, dtype=float))[:, 1]

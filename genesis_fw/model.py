"""The model-type contract: what a model plugin implements.

Model types follow scikit-learn's habits: ``__init__`` only stores ``params`` (no logic, no I/O),
``fit(X, y)`` learns and returns ``self``, learned state ends in ``_``, and using a model before
``fit`` raises a clear error. ``X`` is a 2-D float array (rows = bars, columns = features),
``y`` a 1-D array of 0/1 labels; ``predict_proba`` returns P(label = 1) for each row.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .errors import GenesisError
from .strategy import NoParams


class NotFittedError(GenesisError):
    """A model was used before ``fit``."""


class Model:
    """Base class of model plugins; see the module docstring for the contract."""

    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()

    def fit(self, X: np.ndarray, y: np.ndarray) -> Model:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of label 1 for each row of ``X``, shape ``(n,)``, values in [0, 1]."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")

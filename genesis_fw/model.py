"""The model-type contract: what a model plugin implements.

Model types follow scikit-learn's habits: ``__init__`` only stores ``params`` (no logic, no I/O),
``fit(X, y)`` learns and returns ``self``, learned state ends in ``_``, and using a model before
``fit`` raises a clear error. ``X`` is a 2-D float array (rows = bars, columns = features),
``y`` a 1-D array of 0/1 labels; ``predict_proba`` returns P(label = 1) for each row.

Models are data, not code. A fitted model gives its learned state as plain JSON values
(:meth:`Model.to_state`) and is rebuilt from them (:meth:`Model.from_state`) without executing
anything from the file: no pickle, no ``eval``, no imports named by the file. The rebuilt model
predicts bit for bit what the fitted one did; :func:`genesis_fw.testing.check_model` checks both.

A model type also declares

* ``grid`` -- its default hyper-parameter grid for the search in ``genesis-fw train``: a ``Params``
  field name -> tuple of candidate values (``model.PARAM=a,b,c`` on the command line replaces one);
* ``state_version`` -- the version of its state layout, stored in every model file; bump it when
  ``to_state`` changes so old files are refused with a clear message instead of misread;
* optionally ``state_schema`` -- a JSON Schema (a dict) the state must satisfy, checked whenever a
  model file is written or read.
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
    #: Default hyper-parameter grid: ``Params`` field name -> candidate values.
    grid: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: Version of the :meth:`to_state` layout (an integer >= 1).
    state_version: ClassVar[int] = 1
    #: JSON Schema of the :meth:`to_state` output, or ``None`` for no check beyond "a JSON object".
    state_schema: ClassVar[dict[str, Any] | None] = None

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()

    def fit(self, X: np.ndarray, y: np.ndarray) -> Model:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of label 1 for each row of ``X``, shape ``(n,)``, values in [0, 1]."""
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        """The learned state as a JSON object: only dicts with string keys, lists, strings, ints,
        finite floats, booleans and ``None`` (a booster's own text format is a string)."""
        raise NotImplementedError(f"{type(self).__name__} must implement to_state() to be saved")

    @classmethod
    def from_state(cls, params: Any, state: dict[str, Any]) -> Model:
        """A fitted model rebuilt from ``params`` and the output of :meth:`to_state`. It must predict
        exactly what the fitted model did and must not execute anything found in ``state``."""
        raise NotImplementedError(f"{cls.__name__} must implement from_state() to be loaded")

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")

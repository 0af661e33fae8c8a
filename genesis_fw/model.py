"""The model-type contract: what a model plugin implements.

Model types follow scikit-learn's habits: ``__init__`` only stores ``params`` (no logic, no I/O),
``fit(X, y)`` learns and returns ``self``, learned state ends in ``_``, and using a model before
``fit`` raises a clear error. ``X`` is a 2-D float array (rows = bars, columns = features),
``y`` a 1-D array of 0/1 labels; ``predict_proba`` returns P(label = 1) for each row.

``predict_proba`` must treat each row on its own and leave ``X`` unchanged: a row's probability is the
same, bit for bit, whether it is predicted alone, in a chunk or with all rows. A model that
standardises with the statistics of the batch it is given uses the future when the ``ml_model``
strategy predicts all bars at once. ``fit`` must be deterministic: two fits on the same data give
bit-identical predictions (fix any random seed in ``Params``).

Not fitted: ``predict_proba`` (and ``to_state``) of a model that was neither fitted nor rebuilt by
``from_state`` must raise :class:`NotFittedError`; call :meth:`Model.check_fitted` first thing. The base
class records that a model was fitted: every ``fit`` and ``from_state`` a subclass defines is wrapped
so that its successful return marks the model, so attributes set in ``__init__`` (even ones ending
in ``_``) never make an unfitted model look fitted.

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

import functools
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "fit" in own and not getattr(own["fit"], "_marks_fitted", False):
            cls.fit = _marking_fit(own["fit"])  # type: ignore[method-assign]
        if isinstance(own.get("from_state"), classmethod) and not getattr(own["from_state"].__func__,
                                                                         "_marks_fitted", False):
            cls.from_state = classmethod(_marking_from_state(own["from_state"].__func__))  # type: ignore[assignment]

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` returned or the model was rebuilt by ``from_state``."""
        return bool(self.__dict__.get(_FITTED, False))

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless the model was fitted or rebuilt by ``from_state``; call it
        first in ``predict_proba`` and ``to_state``."""
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")

    #: The former name of :meth:`check_fitted`, kept for existing plugins.
    _check_fitted = check_fitted


_FITTED = "_genesis_fitted"


def _marking_fit(fit: Any) -> Any:
    @functools.wraps(fit)
    def wrapper(self: Model, *args: Any, **kwargs: Any) -> Any:
        out = fit(self, *args, **kwargs)
        self.__dict__[_FITTED] = True
        return out

    wrapper._marks_fitted = True  # type: ignore[attr-defined]
    return wrapper


def _marking_from_state(from_state: Any) -> Any:
    @functools.wraps(from_state)
    def wrapper(cls: type, *args: Any, **kwargs: Any) -> Any:
        out = from_state(cls, *args, **kwargs)
        if isinstance(out, Model):
            out.__dict__[_FITTED] = True
        return out

    wrapper._marks_fitted = True  # type: ignore[attr-defined]
    return wrapper

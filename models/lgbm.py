"""Gradient-boosted trees (LightGBM): the non-linear model type, an optional extra.

Install it with ``pip install 'genesis-fw[lightgbm]'``. LightGBM is imported only when a model is
fitted, loaded or used, so ``genesis-fw plugins`` lists ``lgbm`` (and stays fast) without it; fitting
or loading without it raises a one-line :class:`~genesis_fw.errors.PluginError` saying how to install it.

State (``to_state``): ``booster``, the booster in LightGBM's own text format
(``Booster.model_to_string()``, a string starting with ``tree``), and ``n_features``. Loading it
(``lightgbm.Booster(model_str=...)``) parses numbers and tree structure; it executes no code from
the file (no pickle). The fitted model predicts from a booster rebuilt from that same text, so a
model loaded from its file predicts bit for bit what the fitted one did.

Training is deterministic: ``deterministic=True``, row-wise histograms, one fixed ``seed`` for
every random choice (row and feature sampling, binning), and a fixed thread count (``num_threads``,
default 1) so the trees do not depend on how many cores the machine has.
"""

from __future__ import annotations

import numbers
from typing import Any

import attrs
import numpy as np

from genesis_fw.errors import PluginError
from genesis_fw.model import Model

MISSING = "model type lgbm needs LightGBM: pip install 'genesis-fw[lightgbm]'"


def _integer(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{attribute.name} must be an integer, got {value!r}")


def _real(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")


def _fraction(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


def _int_field(default: int, low: int) -> Any:
    return attrs.field(default=default, converter=lambda v: v if isinstance(v, bool) else _as_int(v),
                       validator=[_integer, attrs.validators.ge(low)])


def _as_int(value: Any) -> Any:
    # numpy integers (what a grid search may hand out) become plain ints; anything else is left for the validator.
    return int(value) if isinstance(value, numbers.Integral) else value


@attrs.frozen
class LgbmParams:
    #: Boosting rounds (trees).
    n_estimators: int = _int_field(100, 1)
    #: Shrinkage applied to each tree's contribution.
    learning_rate: float = attrs.field(default=0.05, validator=[_real, attrs.validators.gt(0)])
    #: Maximum leaves per tree (2 = stumps); the main knob of model complexity.
    num_leaves: int = _int_field(15, 2)
    #: Minimum rows in a leaf (LightGBM's min_data_in_leaf); larger = smoother, less overfit to noise.
    min_child_samples: int = _int_field(50, 1)
    #: Fraction of rows sampled for each tree (1.0 = all rows, no bagging).
    subsample: float = attrs.field(default=1.0, validator=[_real, _fraction])
    #: Fraction of features sampled for each tree (1.0 = all features).
    colsample: float = attrs.field(default=1.0, validator=[_real, _fraction])
    #: L2 penalty on leaf values.
    reg_lambda: float = attrs.field(default=1.0, validator=[_real, attrs.validators.ge(0)])
    #: Seed of every random choice LightGBM makes.
    seed: int = _int_field(0, 0)
    #: Threads for training and prediction. Fixed (not "all cores") so a model is the same on every
    #: machine; a different count can change the trees in the last bits of the sums.
    num_threads: int = _int_field(1, 1)


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError:
        raise PluginError(MISSING) from None
    return lightgbm


class Lgbm(Model):
    """Gradient-boosted decision trees (LightGBM, binary log loss); non-linear, needs the lightgbm extra."""

    Params = LgbmParams
    # Complexity x step size, 6 candidates: leaves 7/15/31 span shallow to LightGBM's default depth, and
    # 0.03/0.1 bracket the usual learning rates for 100 trees. Small on purpose: with 5 folds it is 30 fits,
    # a few seconds on a year of 1h bars with one thread. Extend it with model.PARAM=a,b,c.
    grid = {"num_leaves": (7, 15, 31), "learning_rate": (0.03, 0.1)}
    state_version = 1
    state_schema = {
        "type": "object",
        "required": ["booster", "n_features"],
        "additionalProperties": False,
        "properties": {
            # LightGBM's text model format begins with the line "tree".
            "booster": {"type": "string", "pattern": "^tree\\r?\\n"},
            "n_features": {"type": "integer", "minimum": 1},
        },
    }

    def _train_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "binary",
            "learning_rate": float(p.learning_rate),
            "num_leaves": int(p.num_leaves),
            "min_data_in_leaf": int(p.min_child_samples),
            "bagging_fraction": float(p.subsample),
            "bagging_freq": 1 if p.subsample < 1 else 0,
            "feature_fraction": float(p.colsample),
            "lambda_l2": float(p.reg_lambda),
            "seed": int(p.seed),
            "num_threads": int(p.num_threads),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def fit(self, X: np.ndarray, y: np.ndarray) -> Lgbm:
        lgb = _lightgbm()
        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"expected X of shape (n, k) and y of shape (n,), got {X.shape} and {y.shape}")
        params = self._train_params()
        data = lgb.Dataset(X, label=y.astype(float), params={"verbosity": -1, "seed": params["seed"]})
        trained = lgb.train(params, data, num_boost_round=int(self.params.n_estimators))
        # Predict from the saved text, not from the training object, so fitted == loaded by construction.
        self._set_booster(lgb, trained.model_to_string(), X.shape[1])
        return self

    def _set_booster(self, lgb: Any, text: str, n_features: int) -> None:
        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"booster text is not a valid LightGBM model: {first}") from None
        if booster.num_feature() != n_features:
            raise ValueError(f"booster has {booster.num_feature()} features but n_features is {n_features}")
        self.booster_text_ = text
        self.n_features_ = int(n_features)
        self.booster_ = booster

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise ValueError(f"expected X of shape (n, {self.n_features_}), got {X.shape}")
        return np.asarray(self.booster_.predict(X, num_threads=int(self.params.num_threads)), dtype=float)

    def to_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"booster": self.booster_text_, "n_features": self.n_features_}

    @classmethod
    def from_state(cls, params: Any, state: dict[str, Any]) -> Lgbm:
        lgb = _lightgbm()
        model = cls(params)
        model._set_booster(lgb, str(state["booster"]), int(state["n_features"]))
        return model

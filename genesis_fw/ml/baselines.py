"""The version-1 baselines shipped in ``config/models/``: hand-set placeholders, not trained.

``tBTCUSD_1m_v1`` and ``tBTCUSD_1h_v1`` are ``logreg`` model files whose numbers are set by hand:
a small positive weight (:data:`WEIGHT`) on the standardised 5-bar log return (short-term momentum)
and zero on every other feature; the scaler's mean is 0 and its scale a rounded typical magnitude of
each feature on that timeframe (ratios ~1, percent indicators tens, returns and volatilities a few
tenths of a percent per minute). So P(up) = sigmoid(0.1 x log_return_5 / scale): 0.5 when the price
has not moved over 5 bars, about 0.525 after a typical rise. They claim no skill; they exist so that
there is always a model to compare against and to run the ``ml_model`` strategy with. Horizon 20
bars, endpoint label rule, the default features, no calibration, no training data, no grid search,
no metrics; sealed with their content hash (:func:`genesis_fw.ml.model_file.seal`) like any model file.

Rewrite them with ``python -m genesis_fw.ml.baselines [MODELS_DIR]`` (default ``config/models``);
``tests/test_model_file.py`` checks that the shipped files are exactly what this writes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import attrs

from .. import plugins
from .._util import write_text_atomic
from ..config import FeaturesConfig
from . import features, model_file

SYMBOL = "tBTCUSD"
TIMEFRAMES = ("1m", "1h")
HORIZON = 20
#: The one feature with a non-zero weight, and its weight on the standardised value.
MOMENTUM_FEATURE = "log_return_5"
WEIGHT = 0.1
#: Fixed, so the files are reproducible byte for byte.
CREATED_AT = "2026-11-30T00:00:00Z"
#: Typical size of a 1-bar log return (fraction) per timeframe: ~0.1 % a minute, ~0.8 % an hour (2019).
_BAR_MOVE = {"1m": 0.001, "1h": 0.008}


def _typical_scale(name: str, timeframe: str) -> float:
    """A rounded typical magnitude of feature ``name`` on ``timeframe`` (the placeholder scaler's scale)."""
    move = _BAR_MOVE[timeframe]
    kind, _, n = name.rpartition("_")
    if kind == "ema":
        value = 1.0  # EMA / close, around 1
    elif kind == "rsi":
        value = 50.0
    elif kind in ("adx", "plus_di", "minus_di"):
        value = 25.0
    elif kind in ("atr", "volatility"):
        value = move
    elif kind == "log_return":
        value = move * math.sqrt(int(n))
    elif kind == "volume_z":
        value = 1.0
    else:
        raise ValueError(f"no typical magnitude for feature {name!r}")
    return float(f"{value:.2g}")


def doc(timeframe: str) -> dict[str, Any]:
    """The version-1 baseline model document of ``tBTCUSD`` on ``timeframe``."""
    cfg = FeaturesConfig()
    names = features.names(cfg)
    cls = plugins.load("model", "logreg")
    scale = [_typical_scale(n, timeframe) for n in names]
    momentum = scale[names.index(MOMENTUM_FEATURE)]
    return {
        "schema_version": model_file.SCHEMA_VERSION,
        "name": f"{SYMBOL}_{timeframe}_v1",
        "version": 1,
        "model_type": "logreg",
        "model_type_version": cls.state_version,
        "params": attrs.asdict(cls.Params()),
        "state": {
            "mean": [0.0] * len(names),
            "scale": scale,
            "coef": [WEIGHT if n == MOMENTUM_FEATURE else 0.0 for n in names],
            "intercept": 0.0,
        },
        "symbol": SYMBOL,
        "timeframe": timeframe,
        "horizon": HORIZON,
        "label": {"rule": "endpoint", "dead_zone_bps": 0.0, "keep_ties": False},
        "features": {"names": names, "definitions_hash": features.definitions_hash(cfg), "params": attrs.asdict(cfg)},
        "calibration": {"method": "none"},
        "training_data": None,
        "grid_search": None,
        "metrics": {},
        "libraries": {},
        "created_at": CREATED_AT,
        "description": (
            f"Hand-set placeholder baseline, not trained: a placeholder with no claimed skill. P(up) = sigmoid("
            f"{WEIGHT} x {MOMENTUM_FEATURE} / {momentum}): a small positive weight on the 5-bar log return "
            "(short-term momentum), zero on every other feature; scaler mean 0 and scale a rounded typical "
            f"magnitude of each feature on {timeframe}. Shipped so there is always a model to compare against."
        ),
        "baseline": True,
    }


def write(models_dir: Path) -> list[Path]:
    """(Re)write the baselines into ``models_dir``, validated; returns their paths."""
    out = []
    for timeframe in TIMEFRAMES:
        d = model_file.seal(doc(timeframe))
        path = Path(models_dir) / f"{d['name']}.json"
        model_file.validate(d, where=str(path))
        write_text_atomic(path, model_file.dumps(d))
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write(Path(sys.argv[1] if len(sys.argv) > 1 else "config/models")):
        print(written)

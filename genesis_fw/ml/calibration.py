"""Calibration of predicted probabilities (``{"method": "none"}``: the raw probabilities unchanged)."""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("none", "platt", "isotonic")


def apply(calibration: dict[str, Any], p_raw: Any) -> np.ndarray:
    """The calibrated probabilities of ``p_raw`` under ``calibration`` (identity for ``"none"``)."""
    if calibration.get("method") == "none":
        return np.asarray(p_raw, dtype=float)
    raise ValueError(f"unknown calibration {calibration.get('method')!r}")

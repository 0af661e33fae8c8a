"""``buy_and_hold``: take one position at the first bar and keep it."""

from __future__ import annotations

import attrs
import numpy as np

from genesis_fw.strategy import LONG, SHORT, Bars, Strategy

SIDES = ("long", "short")


def _side(_inst, attribute, value):
    if value not in SIDES:
        raise ValueError(f"{attribute.name} must be one of {', '.join(SIDES)}, got {value!r}")


@attrs.frozen
class BuyAndHoldParams:
    #: Direction of the position held from the first bar: "long" or "short".
    side: str = attrs.field(default="long", validator=_side)


class BuyAndHold(Strategy):
    """Enter at the close of the first bar (long or short) and hold to the end."""

    Params = BuyAndHoldParams

    def _target(self) -> float:
        return LONG if self.params.side == "long" else SHORT

    def next(self, i: int) -> float | None:
        return self._target() if i == 0 else None

    def targets(self, bars: Bars) -> np.ndarray:
        out = np.full(len(bars), np.nan)
        if len(bars):
            out[0] = self._target()
        return out

"""Test fixture: a valid strategy whose entry-point name collides with genesis-fw-example's."""

from genesis_fw.strategy import LONG, Strategy


class AlsoBuyAndHold(Strategy):
    """Go long at the first bar and hold (a second package's idea of buy_and_hold)."""

    def next(self, i: int) -> float | None:
        return LONG if i == 0 else None

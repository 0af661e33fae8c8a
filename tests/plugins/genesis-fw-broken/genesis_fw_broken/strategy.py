"""Fails on import, like a plugin whose dependency is not installed."""

import genesis_fw_missing_dependency  # noqa: F401  (no such package exists: ModuleNotFoundError)

from genesis_fw.strategy import Strategy


class Broken(Strategy):
    """Never reached."""

"""genesis-fw: crypto trading research -- candles, SQL checks, backtests, models.

The public API is the names in ``__all__``; they are imported on first use so that importing the
package (and starting the CLI) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Bars": "strategy",
    "Strategy": "strategy",
    "LONG": "strategy",
    "SHORT": "strategy",
    "FLAT": "strategy",
    "Model": "model",
    "RuntimeConfig": "config",
    "StrategyConfig": "config",
    "CandleStore": "data.store",
    "Dataset": "data.store",
    "Catalog": "catalog",
    "Console": "console",
    "GenesisError": "errors",
    "UsageError": "errors",
    "ConfigError": "errors",
    "PluginError": "errors",
    "DataError": "errors",
    "ExchangeError": "errors",
    "TemporaryExchangeError": "errors",
    "CatalogError": "errors",
    "ConsoleError": "errors",
    "RegistryError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genesis_fw' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

"""Errors a user can act on.

Every error the framework raises on purpose derives from :class:`GenesisError`; the CLI prints its
message as one line and exits with status 1 (2 for :class:`UsageError`). Anything else is a bug and
keeps its traceback.

    GenesisError
    ├── UsageError              bad command-line input (exit status 2)
    ├── ConfigError             unknown key, wrong type, unreadable config file
    ├── PluginError             unknown, broken or duplicated strategy / model plugin
    ├── DataError               missing, malformed or out-of-range candles; bad symbol / timeframe
    ├── ExchangeError           the exchange refused or failed a request for good
    │   └── TemporaryExchangeError   rate limit, 5xx, timeout: worth retrying
    ├── CatalogError            the catalog database cannot be opened or written
    ├── ConsoleError            a statement the read-only SQL console refuses or cannot run
    ├── OutputError             an output path inside the store's own files, or not writable
    ├── RegistryError           model registry misuse (unknown version, bad promotion)
    ├── ModelFileError          a model file that is truncated, tampered, of another schema or state
    │                           version, missing fields, of an unknown model type, or for another
    │                           symbol / timeframe than asked; an unknown model name
    └── NoSkillError            evaluate --require-skill: the model does not beat its base rates

A message says what went wrong, where, and how to fix it.
"""

from __future__ import annotations


class GenesisError(Exception):
    """Base class of every error the framework raises deliberately."""

    exit_code = 1


class UsageError(GenesisError):
    """The command line was wrong (exit status 2)."""

    exit_code = 2


class ConfigError(GenesisError):
    """A configuration key is unknown, has the wrong type, or the config file is unreadable."""


class PluginError(GenesisError):
    """A plugin is unknown, failed to import, or two packages claim the same name."""


class DataError(GenesisError):
    """Candles are missing, malformed or outside the requested range; or a symbol/timeframe is invalid."""


class ExchangeError(GenesisError):
    """The exchange refused or failed a request and retrying will not help."""


class TemporaryExchangeError(ExchangeError):
    """A request failed in a way that may succeed if retried (HTTP 429, 5xx, timeout, reset)."""


class CatalogError(GenesisError):
    """The catalog database cannot be opened, migrated or written."""


class ConsoleError(GenesisError):
    """The read-only SQL console refused a statement, or DuckDB could not run it."""


class OutputError(GenesisError):
    """An output path (``--output``, ``--report-dir``) is inside the store's own files or cannot be written."""


class RegistryError(GenesisError):
    """The model registry was asked for something it cannot do."""


class ModelFileError(GenesisError):
    """A model file cannot be used: unreadable, not strict JSON, refused by the schema or its model type's
    state schema, of another schema or state version, an unknown model type or name, or for another
    symbol / timeframe than asked."""


class NoSkillError(GenesisError):
    """``evaluate --require-skill``: the model does not beat its base-rate baselines."""

"""The public API is pinned: the exported names, and that importing the package or starting the CLI
does not load the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import genesis_fw

PUBLIC_API = [
    "Bars",
    "CandleStore",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "Console",
    "ConsoleError",
    "DataError",
    "Dataset",
    "ExchangeError",
    "FLAT",
    "GenesisError",
    "LONG",
    "Model",
    "PluginError",
    "RegistryError",
    "RuntimeConfig",
    "SHORT",
    "Strategy",
    "StrategyConfig",
    "TemporaryExchangeError",
    "UsageError",
    "__version__",
]

HEAVY = ["duckdb", "pyarrow", "sklearn", "matplotlib"]

#: Prints, as JSON, the heavy top-level modules loaded after running SETUP in a fresh interpreter.
_PROBE = """
import json, sys
{setup}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))
"""


def _heavy_modules_after(setup: str) -> tuple[list[str], str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *before, last = proc.stdout.strip().splitlines()
    return json.loads(last), "\n".join(before)


def test_all_is_pinned() -> None:
    assert PUBLIC_API == sorted(PUBLIC_API)
    assert genesis_fw.__all__ == PUBLIC_API
    assert dir(genesis_fw) == PUBLIC_API


@pytest.mark.parametrize("name", PUBLIC_API)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(genesis_fw, name)
    assert value is not None
    if name == "__version__":
        assert isinstance(value, str) and value
    elif name in {"LONG", "SHORT", "FLAT"}:
        assert value == {"LONG": 1.0, "SHORT": -1.0, "FLAT": 0.0}[name]
    else:
        assert isinstance(value, type) and value.__name__ == name and value.__module__.startswith("genesis_fw.")
        if name.endswith("Error"):
            assert issubclass(value, genesis_fw.GenesisError)


def test_star_import_and_unknown_names() -> None:
    namespace: dict = {}
    exec("from genesis_fw import *", namespace)
    assert set(PUBLIC_API) <= set(namespace)
    with pytest.raises(AttributeError, match="no_such_name"):
        genesis_fw.no_such_name  # noqa: B018


def test_the_probe_sees_heavy_imports() -> None:
    """The check below would be worthless if it could not see a heavy import: show that it does."""
    loaded, _ = _heavy_modules_after("import genesis_fw.data.store")
    assert "pyarrow" in loaded


def test_importing_the_package_loads_no_heavy_library() -> None:
    loaded, _ = _heavy_modules_after("import genesis_fw\nassert genesis_fw.__all__")
    assert loaded == []


def test_cli_help_loads_no_heavy_library() -> None:
    setup = (
        "from genesis_fw.cli import cli\n"
        "code = cli.main(['--help'], prog_name='genesis-fw', standalone_mode=False)\n"
        "assert code in (0, None), code\n"
    )
    loaded, help_text = _heavy_modules_after(setup)
    assert "Usage: genesis-fw" in help_text and "import" in help_text and "sql" in help_text, help_text
    assert loaded == []

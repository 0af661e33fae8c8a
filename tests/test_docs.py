"""The docs are tested: every command documents an example, and docs/CLI.md is generated from --help.

Regenerate the reference after changing a command: ``GENESIS_UPDATE_DOCS=1 python -m pytest tests/test_docs.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from genesis_fw.cli import cli

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "CLI.md"


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="genesis-fw", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def cli_reference() -> str:
    parts = ["# CLI reference", "", "Generated from `genesis-fw --help` by `tests/test_docs.py`; do not edit by hand.",
             "", "## genesis-fw", "", "```", _help().rstrip(), "```", ""]
    for name in sorted(cli.commands):
        parts += [f"## genesis-fw {name}", "", "```", _help(name).rstrip(), "```", ""]
    return "\n".join(parts)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(command):
    text = _help(command)
    assert re.search(r"Examples?:\n\s+genesis-fw ", text), f"`genesis-fw {command} --help` shows no example"


def test_cli_reference_is_up_to_date():
    expected = cli_reference()
    if os.environ.get("GENESIS_UPDATE_DOCS"):
        CLI_MD.write_text(expected, encoding="utf-8")
    assert CLI_MD.read_text(encoding="utf-8") == expected, (
        "docs/CLI.md is stale; regenerate it: GENESIS_UPDATE_DOCS=1 python -m pytest tests/test_docs.py")


def test_readme_quick_start_is_the_two_make_targets():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    demo = re.search(r"^demo:.*\n\t(.+)$", makefile, re.M).group(1)
    assert demo.endswith("genesis-fw backtest strategy=ema_rsi")
    test = re.search(r"^test:.*\n\t(.+)$", makefile, re.M).group(1)
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make lint" in ci


#: Prose that names Python objects: a moved or renamed module must not leave a dead name behind.
_DOCS_WITH_PYTHON_NAMES = ["README.md", "data/DATA_FORMAT.md", "genesis_fw/sample/README.md",
                           *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "CLI.md")]


#: Entry-point group names look like module paths but are not.
_ENTRY_POINT_GROUPS = {"genesis_fw.strategies", "genesis_fw.models"}


def test_entry_point_groups_are_the_ones_registered():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert {g for g in _ENTRY_POINT_GROUPS if f'[project.entry-points."{g}"]' in text} == _ENTRY_POINT_GROUPS


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


@pytest.mark.parametrize("doc", _DOCS_WITH_PYTHON_NAMES)
def test_python_names_in_the_docs_exist(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    names = set(re.findall(r"\bgenesis_fw(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text)) - _ENTRY_POINT_GROUPS
    dead = sorted(n for n in names if not _resolves(n))
    assert not dead, f"{doc} names Python objects that do not exist: {dead}"

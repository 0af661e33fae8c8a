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

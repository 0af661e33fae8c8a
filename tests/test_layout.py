"""The package layout's rules, read from the source (every import, also those inside functions):

* stages import down the pipeline only: ``data`` never imports ``backtest``;
* the core contracts (errors, helpers, config, catalog, plugins, the strategy and model contracts,
  indicators, SQL files) import no stage at all, so a stage can use them without a circle;
* no module-level import circle anywhere in ``genesis_fw``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "genesis_fw"

#: Stage packages in pipeline order: a stage may import only the ones before it.
STAGES = ["data", "ml", "backtest", "registry", "selection", "workflow"]
#: Core modules that everything may use, and which therefore import no stage.
CORE_CONTRACTS = {"errors", "_util", "sqlfiles", "config", "catalog", "plugins", "strategy", "model", "indicators",
                  "pages"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute ``genesis_fw...`` modules imported by the file at ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("genesis_fw"):
                continue
            for alias in node.names:  # `from . import store` imports a module
                candidate = f"{mod}.{alias.name}"
                found.add(candidate if _exists(candidate) else mod)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genesis_fw"))
    return {m for m in found if m.startswith("genesis_fw.") or m == "genesis_fw"}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PKG / rel).with_suffix(".py").exists() or (PKG / rel / "__init__.py").exists()


def _sources() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_stages_import_down_the_pipeline_only() -> None:
    bad = []
    for path in _sources():
        me = _module_name(path)
        mine = _stage_of(me)
        if mine is None:
            continue
        for dep in _imports(path, top_level_only=False):
            theirs = _stage_of(dep)
            if theirs is not None and STAGES.index(theirs) > STAGES.index(mine):
                bad.append(f"{me} imports {dep}")
    assert not bad, bad


def test_core_contracts_import_no_stage() -> None:
    bad = []
    for name in sorted(CORE_CONTRACTS):
        path = PKG / f"{name}.py"
        assert path.exists(), f"{path} listed as core but missing"
        bad += [f"genesis_fw.{name} imports {dep}" for dep in _imports(path, top_level_only=False) if _stage_of(dep)]
    assert not bad, bad


def test_no_module_level_import_cycle() -> None:
    graph = {_module_name(p): _imports(p, top_level_only=True) for p in _sources()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == node or dep == "genesis_fw":
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if state.get(dep) is None and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if state.get(module) is None:
            cycle = visit(module)
            assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_a_circle(tmp_path) -> None:
    # The rules above are only worth something if the parser finds relative imports inside functions.
    path = PKG / "data" / "datasets.py"
    deps = _imports(path, top_level_only=False)
    assert "genesis_fw.data.hashing" in deps and "genesis_fw.catalog" in deps
    assert _stage_of("genesis_fw.backtest.engine") == "backtest"


def test_every_package_folder_is_installed():
    # The package list in pyproject.toml is explicit: a stage folder missing from it works in an editable
    # install and is absent from a built wheel (genesis-fw models / compare / champion would fail there).
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
                 ["packages"])
    folders = {_module_name(p) for p in PKG.rglob("__init__.py") if "__pycache__" not in p.parts}
    assert folders - listed == set()

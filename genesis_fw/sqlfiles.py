"""The SQL files DuckDB runs, loaded from the top-level ``sql/`` folder (installed as ``genesis_fw_sql``).

One file per query, named after what it returns; named parameters (``$name``) only.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load(name: str) -> str:
    """Text of ``sql/{name}.sql`` (``name`` may contain a sub-folder: ``validation/gaps``)."""
    return (resources.files("genesis_fw_sql") / f"{name}.sql").read_text(encoding="utf-8")


def names(folder: str = "") -> list[str]:
    """Names (without ``.sql``) of the files in ``sql/{folder}``."""
    base = resources.files("genesis_fw_sql")
    if folder:
        base = base / folder
    return sorted(p.name[:-4] for p in base.iterdir() if p.name.endswith(".sql"))


def to_arrow(con, query: str, params: dict | None = None):
    """Run ``query`` with named ``params`` on a DuckDB connection; the result as a ``pyarrow.Table``."""
    return con.sql(query, params=params).to_arrow_table()

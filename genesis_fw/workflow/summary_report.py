"""The run summary of ``genesis-fw e2e`` as a terminal table and a self-contained HTML page.

The page (template ``genesis_fw/templates/e2e.html.j2``, shared style of :mod:`genesis_fw.pages`) has no
JavaScript and fetches nothing; it links the step reports (data quality, evaluation, comparison, backtests,
selection) by paths relative to the run folder, so the folder can be moved or archived whole.
Units: seconds, MiB (2**20 bytes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..pages import template


def _secs(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}"


def text_lines(summary: dict[str, Any]) -> list[str]:
    """The terminal table: one row per step (status, wall s, CPU s, peak MiB, what it produced), then the
    model, the decision and where the summary went."""
    rows = [(f"{i}. {s['name']}", s["status"], _secs(s["wall_s"]), _secs(s["cpu_s"]), _mib(s["peak_mib"]),
             s["detail"]) for i, s in enumerate(summary["steps"], 1)]
    head = ("step", "status", "wall s", "CPU s", "peak MiB", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    lines = [f"e2e {summary['symbol']} {summary['timeframe']}: "
             + ("done" if summary["ok"] else "stopped") + f" in {summary['wall_s']:.2f} s wall, "
             f"{summary['cpu_s']:.2f} s CPU"]
    fmt = "  {:<{w0}}  {:<{w1}}  {:>{w2}}  {:>{w3}}  {:>{w4}}  {}"
    kw = {f"w{i}": w for i, w in enumerate(widths)}
    lines.append(fmt.format(*head, **kw).rstrip())
    lines += [fmt.format(*r, **kw).rstrip() for r in rows]
    model = summary.get("model") or {}
    if model.get("name"):
        lines.append(f"Model: {model['name']}: {model['verdict']}")
    d = summary.get("decision")
    if d:
        lines.append(f"Decision: {d['reason']}")
        lines.append(f"Champion of {summary['symbol']} {summary['timeframe']}: {d['champion_after'] or 'none'}")
    return lines


def _link(path: str | None, folder: Path) -> str | None:
    if not path:
        return None
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:
        return Path(path).as_uri()


def render_summary_page(summary: dict[str, Any], folder: Path) -> str:
    """The HTML page of ``summary`` for the run folder ``folder`` (links relative to it)."""
    folder = Path(folder).resolve()
    steps = []
    for i, s in enumerate(summary["steps"], 1):
        steps.append({"number": i, "name": s["name"], "what": s["what"], "status": s["status"],
                      "wall": _secs(s["wall_s"]), "cpu": _secs(s["cpu_s"]), "peak": _mib(s["peak_mib"]),
                      "scope": s.get("peak_scope") or "", "detail": s["detail"],
                      "reports": [{"label": label, "href": _link(p, folder)} for label, p in s["reports"].items()]})
    data = summary.get("data") or {}
    source = data.get("source") or {}
    facts = [("Symbol / timeframe", f"{summary['symbol']} / {summary['timeframe']}"),
             ("Range", f"{summary['start'] or 'first candle'} .. {summary['end'] or 'last candle'}"),
             ("Data", f"{data.get('dataset') or source.get('describe') or 'n/a'}"
                      + (f", version {data['dataset_version']}" if data.get("dataset_version") not in (None, "n/a")
                         else "")),
             ("Candles SHA-256", data.get("sha256") or "n/a"),
             ("Quality score", "n/a" if data.get("quality_score") is None else f"{data['quality_score']:.6f}"),
             ("Model", (summary.get("model") or {}).get("name") or "n/a"),
             ("Started (UTC)", summary["started_at"][:19].replace("T", " ")), ("genesis-fw", summary["genesis_fw"]),
             ("Total", f"{summary['wall_s']:.2f} s wall, {summary['cpu_s']:.2f} s CPU")]
    d = summary.get("decision")
    return template("e2e.html.j2").render(
        title=f"e2e {summary['symbol']} {summary['timeframe']}", summary=summary, steps=steps, facts=facts,
        decision=d, error=summary.get("error"), notes=summary.get("notes") or [])

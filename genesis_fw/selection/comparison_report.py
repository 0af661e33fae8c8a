"""The terminal table and the HTML page of a model comparison (:func:`genesis_fw.selection.comparison.compare`).

The page is like the evaluation page (:mod:`genesis_fw.ml.evaluation_report`, shared pieces in
:mod:`genesis_fw.pages`): one self-contained file, no JavaScript, nothing fetched, the calibration curves
and equity curves matplotlib PNGs embedded as ``data:`` URIs, every string autoescaped (template
``genesis_fw/templates/comparison.html.j2``). Every number shown is :func:`cell` of the result's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._util import atomic_path
from ..errors import DataError
from ..pages import BLUE, GREEN, GREY, INK, RED, finite, format_value, new_figure, png, style_axes, template

#: Scores rows: key in each model's ``scores``, label, format (see :func:`cell`).
SCORE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("log_loss", "Log loss (nats)", "p4"),
    ("brier", "Brier score", "p4"),
    ("auc", "ROC-AUC", "p4"),
    ("ece", "Expected calibration error", "p4"),
    ("accuracy", "Accuracy", "pct"),
    ("up_rate", "Up-rate of the labels", "pct"),
    ("n", "Rows", "int"),
)
#: Backtest rows: key in each model's ``backtest``, label, format.
BACKTEST_ROWS: tuple[tuple[str, str, str], ...] = (
    ("sharpe", "Sharpe ratio (annualised)", "p2"),
    ("psr", "Probabilistic Sharpe ratio (SR > 0)", "p4"),
    ("total_return", "Total return", "pct"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("num_trades", "Trades", "int"),
)
#: Significance rows of a pair: (path in the pair, label, format).
PAIR_ROWS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("log_loss_difference",), "Mean log-loss difference, candidate - baseline (nats)", "p6"),
    (("dm", "statistic"), "Diebold-Mariano statistic (HAC)", "p4"),
    (("dm", "lag"), "HAC lag (bars)", "int"),
    (("dm", "p_value"), "DM p-value (one-sided: candidate better)", "p"),
    (("bootstrap", "low"), "Bootstrap CI of the mean difference: low", "p6"),
    (("bootstrap", "high"), "Bootstrap CI of the mean difference: high", "p6"),
    (("bootstrap", "block"), "Bootstrap block length (bars)", "int"),
    (("sharpe", "difference"), "Sharpe difference, candidate - baseline", "p2"),
    (("sharpe", "low"), "Bootstrap CI of the Sharpe difference: low", "p2"),
    (("sharpe", "high"), "Bootstrap CI of the Sharpe difference: high", "p2"),
    (("sharpe", "p_value"), "Sharpe bootstrap p-value (one-sided: candidate better)", "p"),
)
REQUIRED = ("symbol", "timeframe", "horizon", "label", "period", "models", "pairs", "walk_forward", "notes")
COLOURS = (GREY, BLUE, GREEN, RED, "#9333ea", "#ea580c", "#0891b2", INK)


def cell(value: Any, kind: str) -> str:
    """A value as shown in the table and on the page: ``p2`` / ``p4`` / ``p6`` that many decimals, ``p``
    a p-value (4 significant digits), ``pct`` a fraction as percent with 2 decimals, ``int``; ``n/a``
    for ``None``."""
    x = finite(value)
    if x is None:
        return "n/a"
    if kind in ("p2", "p4", "p6"):
        return f"{x:.{kind[1]}f}"
    if kind == "p":
        return f"{x:.4g}"
    return format_value(value, kind)


def pair_value(pair: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a pair (``None`` where a part is missing, e.g. no backtest)."""
    value: Any = pair
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _verdict(pair: dict[str, Any], alpha: float = 0.05) -> str:
    dm, boot = pair["dm"], pair["bootstrap"]
    better = "lower" if pair["log_loss_difference"] < 0 else "not lower"
    sig = dm["p_value"] < alpha
    lo, hi = finite(boot.get("low")), finite(boot.get("high"))
    where = "" if lo is None or hi is None else " (contains 0)" if lo <= 0 <= hi else " (excludes 0)"
    return (f"{pair['candidate']}'s log loss is {better} than {pair['baseline']}'s by "
            f"{abs(pair['log_loss_difference']):.6f} nats per bar; "
            + ("significant" if sig else "not significant") + f" at {alpha:g} (DM p {dm['p_value']:.4g}); "
            f"{1 - float(boot.get('alpha', 0.05)):.0%} bootstrap interval of the mean difference "
            f"[{cell(lo, 'p6')}, {cell(hi, 'p6')}]{where}")


def base_rate_line(entry: dict[str, Any], alpha: float = 0.05) -> str:
    """One plain sentence: has the model of a comparison entry skill over the best constant predictor?"""
    vs = entry.get("vs_base_rate")
    if not vs:
        return f"{entry['name']}: not tested against the base rate"
    d, p = float(vs["log_loss_difference"]), float(vs["dm"]["p_value"])
    if d >= 0:
        word = "no skill over the base rate"
    elif p >= alpha:
        word = "no significant skill over the base rate"
    else:
        word = "significant skill over the base rate"
    return (f"{entry['name']} vs the best constant ({vs['constant']}, {vs['rate']:.4f}): {word} (mean log-loss "
            f"difference {d:+.6f} nats, DM p {p:.4g})")


def comparison_text(result: dict[str, Any]) -> list[str]:
    """The terminal table: scores and backtests side by side, the tests of each candidate, walk-forward."""
    models = result["models"]
    names = [m["name"] for m in models]
    width = max(16, *(len(n) + 2 for n in names))
    period = result["period"]
    lab = result["label"]
    lines = [f"{result['symbol']} {result['timeframe']}, horizon {result['horizon']} bars ({lab['rule']} rule), "
             f"{period['rows']:,} labelled bars {period['first_bar'][:16]} .. {period['last_bar'][:16]} UTC: "
             f"{period['how']}",
             "  " + f"{'':<40}" + "".join(f"{n:>{width}}" for n in names)]
    constants = result.get("constants") or []
    if constants:
        lines[-1] += "".join(f"{'const ' + format(c['rate'], '.4f'):>{width}}" for c in constants)
    for key, label, kind in SCORE_ROWS:
        lines.append("  " + f"{label[:40]:<40}" + "".join(f"{cell(m['scores'].get(key), kind):>{width}}"
                                                          for m in models)
                     + "".join(f"{cell(c['scores'].get(key), kind):>{width}}" for c in constants))
    if constants:
        lines.append("  " + f"{'DM p-value vs the best constant':<40}" + "".join(
            f"{cell((m.get('vs_base_rate') or {}).get('dm', {}).get('p_value'), 'p'):>{width}}" for m in models))
        lines.append("Constant predictors (the const columns): " + "; ".join(
            f"{c['name']} = {c['rate']:.4f}, {c['source']}" for c in constants))
        lines.extend(base_rate_line(m) for m in models)
    if any(m["backtest"] for m in models):
        costs = result.get("costs") or {}
        lines.append(f"Backtests (ml_model, {period['start'][:16]} .. {period['end'][:16]} UTC, commission "
                     f"{costs.get('commission')} per side, slippage {costs.get('slippage_bps')} bps):")
        for key, label, kind in BACKTEST_ROWS:
            lines.append("  " + f"{label[:40]:<40}" + "".join(
                f"{cell((m['backtest'] or {}).get(key), kind):>{width}}" for m in models))
    for pair in result["pairs"]:
        lines.append(f"{pair['candidate']} vs {pair['baseline']}: {_verdict(pair)}")
        sh = pair.get("sharpe")
        if sh:
            lines.append(f"  Sharpe {cell(sh.get('sharpe_b'), 'p2')} vs {cell(sh.get('sharpe_a'), 'p2')}: difference "
                         f"{cell(sh.get('difference'), 'p2')}, bootstrap interval [{cell(sh.get('low'), 'p2')}, "
                         f"{cell(sh.get('high'), 'p2')}], p {cell(sh.get('p_value'), 'p')}")
    wf = result.get("walk_forward")
    if wf:
        lines.append(f"Walk-forward, {wf['k']} windows ({wf['rule']}), log loss:")
        lines.append("  " + f"{'window':<36}" + "".join(f"{n:>{width}}" for n in names))
        for w in wf["windows"]:
            span = f"{w['start'][:16]} .. {w['end'][:16]}"
            lines.append("  " + f"{span:<36}" + "".join(f"{cell(w['log_loss'][n], 'p4'):>{width}}" for n in names))
        lines.append("  " + f"{'windows better than ' + names[0]:<36}" + f"{'':>{width}}" + "".join(
            f"{wf['wins'][n]:>{width - 4},} of {wf['k']}" for n in names[1:]))
        t = wf["timing"]
        lines.append(f"  retraining {t['retrain_s']:.3f} s, testing {t['test_s']:.3f} s")
    return lines


# -- the page -------------------------------------------------------------------------------------------


def _calibration_chart(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Each model's reliability curve (observed up-rate against mean predicted probability per bin), in
    panels side by side, with the rows per bin underneath."""
    n = len(models)
    fig = new_figure(5.2)
    grid = fig.add_gridspec(2, n, height_ratios=(3, 1))
    for col, m in enumerate(models):
        rel, colour = m["reliability"], COLOURS[col % len(COLOURS)]
        ax, hist = fig.add_subplot(grid[0, col]), fig.add_subplot(grid[1, col])
        style_axes(ax, dates=False)
        style_axes(hist, dates=False)
        ax.plot([0, 1], [0, 1], color=INK, linewidth=0.8, linestyle=":")
        full = [b for b in rel["bins"] if b["count"]]
        ax.plot([b["mean_predicted"] for b in full], [b["observed_rate"] for b in full], color=colour, marker="o",
                linewidth=1.4, markersize=4)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{m['name']}: ECE {rel['ece']:.4f}", fontsize=9, color=INK)
        if col == 0:
            ax.set_ylabel("Observed up-rate", fontsize=9, color=INK)
            hist.set_ylabel("Rows", fontsize=9, color=INK)
        hist.bar([b["lo"] for b in rel["bins"]], [b["count"] for b in rel["bins"]],
                 width=[b["hi"] - b["lo"] for b in rel["bins"]], align="edge", color=colour, alpha=0.6,
                 edgecolor="white", linewidth=0.5)
        hist.set_xlim(0, 1)
        hist.set_xlabel("Predicted P(up)", fontsize=9, color=INK)
    return png(fig)


def _equity_chart(models: list[dict[str, Any]], cash: float) -> dict[str, Any]:
    """The equity at each UTC day's end of every model's backtest, on one time axis."""
    import numpy as np

    fig = new_figure(3.6, aligned=True)
    ax = fig.add_subplot()
    style_axes(ax)
    for k, m in enumerate(models):
        daily = m["backtest"]["daily_equity"]
        days = np.array([d for d, _ in daily], dtype="datetime64[D]")
        ax.plot(days, [e for _, e in daily], color=COLOURS[k % len(COLOURS)], linewidth=1.5, label=m["name"],
                drawstyle="steps-post")
    ax.axhline(cash, color=INK, linewidth=0.8, linestyle=":")
    ax.set_ylabel("Equity at day end", fontsize=9, color=INK)
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    return png(fig)


def _context(result: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        raise DataError(f"comparison result lacks {', '.join(missing)}; build it with "
                        "genesis_fw.selection.comparison.compare")
    models = result["models"]
    names = [m["name"] for m in models]
    period, lab = result["period"], result["label"]
    constants = result.get("constants") or []
    score_rows = [{"key": key, "label": label,
                   "cells": [{"model": m["name"], "text": cell(m["scores"].get(key), kind)} for m in models],
                   "constants": [{"name": c["name"], "text": cell(c["scores"].get(key), kind)} for c in constants]}
                  for key, label, kind in SCORE_ROWS]
    if constants:
        score_rows.append({"key": "vs_base_rate.p_value", "label": "DM p-value vs the best constant (one-sided)",
                           "cells": [{"model": m["name"], "text": cell(
                               (m.get("vs_base_rate") or {}).get("dm", {}).get("p_value"), "p")} for m in models],
                           "constants": [{"name": c["name"], "text": ""} for c in constants]})
    backtests = all(m["backtest"] for m in models)
    bt_rows = [{"key": key, "label": label,
                "cells": [{"model": m["name"], "text": cell(m["backtest"].get(key), kind)} for m in models]}
               for key, label, kind in BACKTEST_ROWS] if backtests else []
    pairs = [{"candidate": p["candidate"], "verdict": _verdict(p),
              "rows": [{"key": ".".join(path), "label": label, "text": cell(pair_value(p, path), kind)}
                       for path, label, kind in PAIR_ROWS if path[0] != "sharpe" or p.get("sharpe")]}
             for p in result["pairs"]]
    wf = result["walk_forward"]
    wf_ctx = None
    if wf:
        wf_ctx = {"rule": wf["rule"], "k": wf["k"],
                  "rows": [{"index": i, "span": f"{w['start'][:16]} .. {w['end'][:16]}", "rows": f"{w['rows']:,}",
                            "cells": [{"model": n, "text": cell(w["log_loss"][n], "p4")} for n in names]}
                           for i, w in enumerate(wf["windows"], start=1)],
                  "wins": [{"model": n, "text": f"{wf['wins'][n]} of {wf['k']}"} for n in names[1:]],
                  "retrain": f"{wf['timing']['retrain_s']:.3f} s", "test": f"{wf['timing']['test_s']:.3f} s"}
    costs = result.get("costs") or {}
    data = result.get("data") or {}
    meta = [("Symbol / timeframe", f"{result['symbol']} / {result['timeframe']}"),
            ("Labels", f"horizon {result['horizon']} bars, {lab['rule']} rule, dead zone {lab['dead_zone_bps']:g} bps, "
                       f"ties {'kept' if lab['keep_ties'] else 'dropped'}"),
            ("Period", f"{period['first_bar']} .. {period['last_bar']} UTC ({period['rows']:,} labelled bars)"),
            ("Why this period", period["how"]),
            ("Baseline", names[0])]
    if backtests:
        meta.append(("Backtests", f"ml_model from {period['start']} to {period['end']} (exclusive), commission "
                                  f"{costs.get('commission')} per side, slippage {costs.get('slippage_bps')} bps"))
    meta += [("Candles", f"{data.get('dataset', '?')}, sha256 {data.get('sha256', '?')}")]
    meta += [(f"{m['name']} file", f"{m['path']} (sha256 {m['sha256'][:12]})") for m in models]
    return {
        "title": f"Comparison of {', '.join(names)}",
        "names": names,
        "meta": meta,
        "notes": [str(n) for n in result["notes"]],
        "score_rows": score_rows,
        "constants": [{"name": c["name"], "rate": f"{c['rate']:.4f}", "source": c["source"]} for c in constants],
        "base_rate_lines": [base_rate_line(m) for m in models] if constants else [],
        "models": [{"name": m["name"], "type": f"{m['model_type']}, calibration {m['calibration']}"
                    + (", hand-set baseline" if m["baseline"] else "")} for m in models],
        "bt_rows": bt_rows,
        "pairs": pairs,
        "calibration_chart": _calibration_chart(models),
        "equity_chart": _equity_chart(models, float(costs.get("initial_cash", 0.0))) if backtests else None,
        "walk_forward": wf_ctx,
    }


def render_comparison_page(result: dict[str, Any]) -> str:
    """The self-contained HTML page of a :func:`~genesis_fw.selection.comparison.compare` result."""
    return template("comparison.html.j2").render(**_context(result))


def render_comparison_html(result: dict[str, Any], path: Any) -> Path:
    """Write the page of ``result`` to ``path`` (UTF-8, temp file + rename) and return the path. A result
    missing a required key raises :class:`DataError` and writes nothing."""
    text = render_comparison_page(result)
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target

"""The HTML page of a model evaluation: one self-contained file, readable offline in any browser.

Like the backtest report (and with its shared pieces, :mod:`genesis_fw.pages`): no JavaScript, nothing
fetched, the reliability diagram a matplotlib PNG embedded as a ``data:`` URI, every string from the
result autoescaped (template ``genesis_fw/templates/evaluation.html.j2``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._util import atomic_path
from ..errors import DataError
from ..pages import BLUE, GREY, INK, format_value, new_figure, png, style_axes, template

#: The rows of the scores table: key, label, format. Formats: ``p4`` (4 decimals), ``pct`` (a fraction
#: shown as percent, 2 decimals), ``int``.
SCORE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("log_loss", "Log loss (nats)", "p4"),
    ("brier", "Brier score (probability²)", "p4"),
    ("ece", "Expected calibration error", "p4"),
    ("roc_auc", "ROC-AUC", "p4"),
    ("pr_auc", "PR-AUC (average precision)", "p4"),
    ("accuracy", "Accuracy", "pct"),
    ("precision", "Precision (up)", "pct"),
    ("recall", "Recall (up)", "pct"),
    ("up_rate", "Up-rate of the labels", "pct"),
    ("n", "Rows", "int"),
)

REQUIRED = ("model", "split", "period", "scores", "raw_scores", "baselines", "skill", "verdict", "calibration",
            "reliability")


def format_score(value: Any, kind: str) -> str:
    """A score as shown on the page: ``p4`` 4 decimals, ``pct`` percent with 2 decimals, ``int``; None "n/a"."""
    if kind == "p4":
        return "n/a" if value is None else f"{float(value):.4f}"
    return format_value(value, kind)


def _reliability_chart(raw: dict[str, Any], calibrated: dict[str, Any], method: str) -> dict[str, Any]:
    """Observed up-rate against mean predicted probability per bin, raw (left) and calibrated (right),
    with the number of rows per bin underneath."""
    fig = new_figure(5.6)
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1))
    panels = ((raw, "Before calibration (raw model)", GREY), (calibrated, f"After calibration ({method})", BLUE))
    for col, (rel, title, colour) in enumerate(panels):
        ax, hist = fig.add_subplot(grid[0, col]), fig.add_subplot(grid[1, col])
        style_axes(ax, dates=False)
        style_axes(hist, dates=False)
        ax.plot([0, 1], [0, 1], color=INK, linewidth=0.8, linestyle=":", label="perfectly calibrated")
        full = [b for b in rel["bins"] if b["count"]]
        xs, ys = [b["mean_predicted"] for b in full], [b["observed_rate"] for b in full]
        ax.plot(xs, ys, color=colour, marker="o", linewidth=1.4, markersize=5, label="observed up-rate per bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{title}: ECE {rel['ece']:.4f}", fontsize=10, color=INK)
        ax.set_ylabel("Observed up-rate", fontsize=9, color=INK)
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        lo = [b["lo"] for b in rel["bins"]]
        width = [b["hi"] - b["lo"] for b in rel["bins"]]
        hist.bar(lo, [b["count"] for b in rel["bins"]], width=width, align="edge", color=colour, alpha=0.6,
                 edgecolor="white", linewidth=0.5)
        hist.set_xlim(0, 1)
        hist.set_xlabel("Predicted probability of up (bin)", fontsize=9, color=INK)
        hist.set_ylabel("Rows", fontsize=9, color=INK)
    return png(fig)


def _calibration_rows(cal: dict[str, Any]) -> list[tuple[str, str]]:
    method = cal.get("method", "none")
    rows = [("Method", str(method))]
    if method == "platt":
        rows += [("Sigmoid slope a (on the logit)", format_value(cal.get("a"))),
                 ("Sigmoid intercept b", format_value(cal.get("b")))]
    elif method == "isotonic":
        rows.append(("Thresholds", format_value(len(cal.get("x_thresholds", [])), "int")))
    if "eps" in cal:
        rows.append(("Clipped to", f"[{cal['eps']:g}, {1 - cal['eps']:g}]"))
    if "chosen_because" in cal:
        rows.append(("Chosen because", str(cal["chosen_because"])))
    return rows


def _context(result: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        raise DataError(f"evaluation result lacks {', '.join(missing)}; build it with genesis_fw.ml.evaluation.summary")
    m, cal = result["model"], result["calibration"]
    method = str(cal.get("method", "none"))
    columns = [("model", f"Model ({method})", result["scores"]), ("raw", "Model, raw", result["raw_scores"])]
    columns += [(name, f"Constant {name}", s) for name, s in result["baselines"].items()]
    rates = result.get("baseline_rates", {})
    score_rows = [{"key": key, "label": label,
                   "cells": [{"column": col, "text": format_score(s.get(key), kind)} for col, _, s in columns]}
                  for key, label, kind in SCORE_ROWS]
    skill_rows = [{"name": name, "rate": format_value(rates.get(name), "pct") if name in rates else "n/a",
                   "log_loss_skill": format_value(sk.get("log_loss_skill"), "pct"),
                   "brier_skill": format_value(sk.get("brier_skill"), "pct")}
                  for name, sk in result["skill"].items()]
    (tn, fp), (fn, tp) = result["scores"]["confusion"]
    period = result["period"]
    rel = result["reliability"]
    return {
        "title": f"Evaluation of {m.get('name', '?')}",
        "model": {k: format_value(m.get(k)) for k in ("name", "model_type", "symbol", "timeframe", "horizon")},
        "split": str(result["split"]),
        "period": f"{period.get('start', '?')} .. {period.get('end', '?')} UTC",
        "verdict": str(result["verdict"]),
        "no_skill": str(result["verdict"]).startswith("no skill"),
        "columns": [label for _, label, _ in columns],
        "score_rows": score_rows,
        "skill_rows": skill_rows,
        "threshold": format_value(float(result.get("threshold", 0.5))),
        "confusion": {k: format_value(v, "int") for k, v in (("tn", tn), ("fp", fp), ("fn", fn), ("tp", tp))},
        "calibration_rows": _calibration_rows(cal),
        "cv_rows": [(name, format_score(v, "p4")) for name, v in cal.get("cv_log_loss", {}).items()],
        "reliability_chart": _reliability_chart(rel["raw"], rel["calibrated"], method),
        "data_rows": [(str(k), format_value(v)) for k, v in result.get("data", {}).items()],
    }


def render_evaluation_page(result: dict[str, Any]) -> str:
    """The self-contained HTML page of ``result`` (layout in :func:`render_evaluation_html`)."""
    return template("evaluation.html.j2").render(**_context(result))


def render_evaluation_html(result: dict[str, Any], path: Any) -> Path:
    """Write the HTML page of an evaluation to ``path`` (UTF-8, temp file + rename) and return the path.

    ``result`` (as :func:`genesis_fw.ml.evaluation.summary` builds it; probabilities and rates are
    fractions, log loss in nats, Brier in probability squared, times UTC ISO strings):

    * ``model``: ``{"name", "model_type", "symbol", "timeframe", "horizon"}`` (horizon in bars)
    * ``split``: the evaluated part's name (``"test"``); ``period``: ``{"start", "end"}``
    * ``scores``: :func:`~genesis_fw.ml.evaluation.scores` of the calibrated probabilities;
      ``raw_scores``: the same of the raw ones
    * ``baselines``: ``{name: scores}`` of each constant predictor; ``skill``: ``{name:
      {"log_loss_skill", "brier_skill"}}`` of the calibrated model against each
    * ``verdict``: :func:`~genesis_fw.ml.evaluation.verdict`'s sentence
    * ``calibration``: the stored calibration dict (``method``, its parameters, optionally
      ``cv_log_loss`` and ``chosen_because``)
    * ``reliability``: ``{"raw": ..., "calibrated": ...}``, each :func:`~genesis_fw.ml.evaluation.reliability`
    * optional: ``threshold`` (of the confusion matrix, default 0.5), ``baseline_rates`` ``{name: rate}``,
      ``data`` ``{label: value}`` (dataset identity rows shown as given)

    A result missing a required key raises :class:`DataError`.
    """
    text = render_evaluation_page(result)
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target

"""Shared pieces of the self-contained HTML pages (the backtest report, the model evaluation page).

Display formatting of numbers, matplotlib figures on the Agg canvas embedded as PNG ``data:`` URIs, and
the jinja2 environment over ``genesis_fw/templates/`` (autoescaped, strict about undefined names; the
common CSS is ``templates/_style.css.j2``). Matplotlib and jinja2 are imported only when a page is
rendered. No stage is imported here, so every stage may use it.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
from typing import Any

import numpy as np

BLUE, GREY, GREEN, RED, INK = "#2563eb", "#9ca3af", "#16a34a", "#dc2626", "#374151"
#: Resolution of every chart (pixels per inch).
DPI = 100
#: Width of a full-width chart (inches, at :data:`DPI`).
WIDTH = 11.0


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, not a number or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def decimals(x: float, sig: int, lo: int, hi: int = 10) -> str:
    """``x`` with about ``sig`` significant digits, between ``lo`` and ``hi`` decimals."""
    if not math.isfinite(x):
        return "n/a"
    digits = math.floor(math.log10(abs(x))) if x else 0
    dec = min(max(sig - 1 - digits, lo), hi)
    return f"{x:,.{dec}f}"


def format_value(value: Any, kind: str = "auto") -> str:
    """``value`` as display text; ``None`` and non-finite numbers are ``"n/a"``.

    ``kind``: ``pct`` (fraction -> percent, 2 decimals), ``ratio`` (2 decimals), ``int``, ``money``
    (2 decimals, thousands separators), ``hours`` or ``auto`` (by the value's type).
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | np.integer | np.floating):
        x = float(value)
        if not math.isfinite(x):
            return "n/a"
        if kind == "pct":
            return f"{x * 100:.2f}%"
        if kind == "ratio":
            return f"{x:,.2f}"
        if kind == "money":  # amounts that round to 0.00 keep two significant digits (no "-0.00")
            return "0.00" if x == 0 else f"{x:,.2f}" if abs(x) >= 0.005 else decimals(x, 2, 2)
        if kind == "hours":
            return f"{x:,.2f} h"
        if kind == "int" or isinstance(value, int | np.integer):
            return f"{x:,.0f}"
        return f"{x:,.6g}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def new_figure(height: float, *, aligned: bool = False, width: float = WIDTH) -> Any:
    """A figure on the Agg canvas. ``aligned``: fixed margins, so the time charts share their x positions."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=None if aligned else "constrained")
    FigureCanvasAgg(fig)  # explicitly the Agg backend; pyplot and its global state are not used
    if aligned:  # margins in inches: room for tick labels like "1,000,000" and the axis label
        fig.subplots_adjust(left=1.05 / width, right=1 - 0.25 / width, top=1 - 0.15 / height,
                            bottom=0.62 / height)
    return fig


def style_axes(ax: Any, dates: bool = True) -> None:
    """Light grid, no top/right spines, small ticks; concise date ticks when ``dates``."""
    import matplotlib.dates as mdates

    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(labelsize=9, colors=INK)
    if dates:
        locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def png(fig: Any) -> dict[str, Any]:
    """``{"src": data URI, "width", "height"}`` (pixels) of ``fig`` saved as PNG on white."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    width, height = fig.get_size_inches() * DPI
    return {"src": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            "width": round(width), "height": round(height)}


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("genesis_fw", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template(name: str) -> Any:
    """The jinja2 template ``genesis_fw/templates/{name}``."""
    return _environment().get_template(name)

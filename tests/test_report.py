"""The HTML report (genesis_fw/backtest/report.py) of real backtests on real candles, checked as HTML and in
Chromium (driven by tests/browser.py)."""

from __future__ import annotations

import base64
import io
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from browser import PAGE_STATE, PNG_PREFIX, Chromium, Page, decode_png, needs_chromium, problems
from markupsafe import escape
from PIL import Image

from genesis_fw.backtest import report
from genesis_fw.backtest.engine import BacktestResult, run
from genesis_fw.config import RuntimeConfig
from genesis_fw.data.store import CandleStore

SECTIONS = {
    "metrics": "Metrics",
    "parameters": "Parameters",
    "dataset": "Dataset",
    "equity": "Equity curve",
    "drawdown": "Drawdown (underwater)",
    "trade-returns": "Distribution of trade returns",
    "monthly-returns": "Monthly returns",
    "trades": "Trades",
}


def cfg(**values: Any) -> RuntimeConfig:
    return RuntimeConfig.load(None, {k: str(v) for k, v in values.items()})




@pytest.fixture
def result(btc_store: Path) -> BacktestResult:
    """ema_rsi with default settings on two real days of tBTCUSD 1m (62 trades)."""
    return run(RuntimeConfig(), CandleStore.open(btc_store))


@pytest.fixture(scope="module")
def sample_result(tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    """ema_rsi on the bundled sample (an empty store falls back to it): 3 months of 1m bars, thousands of trades."""
    return run(RuntimeConfig(), CandleStore.open(tmp_path_factory.mktemp("empty_store")))


# --------------------------------------------------------------------------- the HTML


def test_report_has_every_section_and_identifies_the_run(result: BacktestResult):
    html = report.render_html(result)
    page = Page(html)
    assert html.startswith("<!DOCTYPE html>") and page.tags["html"] == page.tags["body"] == 1
    assert "overview" in page.ids
    for sid, heading in SECTIONS.items():
        assert page.ids.count(sid) == 1, sid
        assert page.h2[sid].startswith(heading), (sid, page.h2.get(sid))
    assert page.h2["trades"] == "Trades (62)"
    d = result.dataset
    header = html[html.index('id="overview"'):html.index('id="metrics"')]
    for text in (result.strategy, d["symbol"], d["timeframe"], result.run_id, result.engine_version,
                 d["sha256"], d["origin"], "2019-04-01 00:00 .. 2019-04-02 23:59 UTC"):
        assert text in header, text
    assert page.tags["title"] == 1 and "<title>Backtest ema_rsi on tBTCUSD 1m</title>" in html
    # Parameters: every strategy parameter and the costs.
    params = dict(row for row in page.section_rows("parameters") if len(row) == 2)
    assert params["fast"] == "12" and params["slow"] == "26" and params["rsi_upper"] == "70"
    assert params["Commission per fill"] == "0.2% of notional"
    assert params["Slippage per market fill"] == "0 bps"
    assert params["Initial cash"] == "10,000.00" and params["Stop-loss"] == "off"
    # Dataset identity: every key of result.dataset, the file path and hash in full.
    dataset = dict(page.section_rows("dataset"))
    assert len(dataset) == len(d)
    assert dataset["File"] == d["file"] and dataset["SHA-256 of the candles used"] == d["sha256"]
    assert dataset["Bars"] == f"{d['num_bars']:,}" == "2,817"


def test_every_metric_is_shown_with_its_label_and_format(result: BacktestResult):
    m = result.metrics
    cells = Page(report.render_html(result)).metric_cells()
    assert set(cells) == set(m)
    # A few spelled out independently of the report's own formatter.
    assert cells["total_return"] == ("Total return", f"{m['total_return'] * 100:.2f}%")
    assert cells["total_return"][1] == "-8.45%"
    assert cells["max_drawdown"] == ("Max drawdown", "-18.04%")
    assert cells["sharpe"] == ("Sharpe ratio", f"{m['sharpe']:.2f}")
    assert cells["num_trades"] == ("Trades", "62")
    assert cells["final_equity"] == ("Final equity", f"{m['final_equity']:,.2f}")
    assert cells["avg_holding_hours"][1] == f"{m['avg_holding_hours']:.2f} h"
    for key, value in m.items():
        label, kind = report.METRIC_FORMATS[key]
        assert cells[key][0] == label
        if kind == "pct":
            assert cells[key][1] == f"{value * 100:.2f}%", key


def test_unknown_metrics_are_rendered_and_undefined_ones_are_n_a(result: BacktestResult):
    metrics = {**result.metrics, "kelly_fraction": 0.123456789, "tail_ratio": None, "sharpe": None,
               "max_run": 7}
    cells = Page(report.render_html(attrs.evolve(result, metrics=metrics))).metric_cells()
    assert cells["kelly_fraction"] == ("Kelly fraction", "0.123457")
    assert cells["tail_ratio"] == ("Tail ratio", "n/a")
    assert cells["sharpe"] == ("Sharpe ratio", "n/a")
    assert cells["max_run"] == ("Max run", "7")


def test_images_are_inline_pngs_and_nothing_points_outside(result: BacktestResult):
    html = report.render_html(result)
    page = Page(html)
    assert len(page.imgs) == 3  # equity, drawdown, trade returns
    for img in page.imgs:
        png = decode_png(img["src"])
        assert png.size == (int(img["width"]), int(img["height"]))
        assert png.size[0] >= 800 and png.size[1] >= 200
        assert img.get("alt")
    # The only URLs are the images' data: URIs and in-page anchors.
    assert page.urls, "expected image sources and the table of contents"
    for tag, name, value in page.urls:
        v = value.strip().lower()
        assert not v.startswith(("http:", "https:", "//", "file:", "ftp:")), (tag, name, value)
        assert v.startswith(PNG_PREFIX) if name == "src" else v.startswith("#"), (tag, name, value)
        if v.startswith("#"):
            assert v[1:] in page.ids, value
    for tag in ("script", "link", "iframe", "object", "embed", "base", "form"):
        assert page.tags[tag] == 0, tag
    for needle in ("http://", "https://", "url(", "@import", 'src="//', 'href="//'):
        assert needle not in html, needle


def test_user_controlled_strings_are_escaped(data_dir: Path):
    # A real store in a folder whose name is markup, and a run whose strings are hostile.
    store = data_dir / 'st<i>re & "q"'
    (store / "candles").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "data" / "tBTCUSD_1m_2019-04-01_2d.parquet",
                store / "candles" / "tBTCUSD_1m.parquet")
    real = run(RuntimeConfig(), CandleStore.open(store))
    hostile = {
        "strategy": '<script>alert("s")</script>',
        "run_id": '"><img src=x onerror=alert(1)>',
        "params": {"label": "<b>bold</b> & 'quoted'", "<th>key": 1},
        "notes": ("</section><h2>injected</h2>",),
    }
    html = report.render_html(attrs.evolve(real, **hostile))
    page = Page(html)
    assert page.tags["script"] == 0 and page.tags["img"] == 3 and page.tags["b"] == 0 and page.tags["i"] == 0
    assert "injected" not in page.h2.values() and len(page.h2) == len(SECTIONS)
    for raw in (hostile["strategy"], hostile["run_id"], "<b>bold</b> & 'quoted'", "<th>key", hostile["notes"][0],
                real.dataset["file"]):
        assert raw not in html, raw
        assert str(escape(raw)) in html, raw
    assert '<img src=x' not in html


def test_a_run_without_trades_renders_and_undefined_metrics_are_n_a(btc_store: Path):
    res = run(cfg(**{"strategy.slow": 5000}), CandleStore.open(btc_store))  # warm-up longer than the data
    assert len(res.trades) == 0 and res.metrics["sharpe"] is None and res.metrics["win_rate"] is None
    html = report.render_html(res)
    page = Page(html)
    assert "No trades in this run." in html and "No trades, so no trade returns to show." in html
    assert page.h2["trades"] == "Trades (0)"
    assert len(page.imgs) == 2  # equity and drawdown; no histogram
    for img in page.imgs:
        decode_png(img["src"])
    cells = page.metric_cells()
    undefined = [k for k, v in res.metrics.items() if v is None]
    assert {"sharpe", "sortino", "calmar", "win_rate", "profit_factor"} <= set(undefined)
    for key in undefined:
        assert cells[key][1] == "n/a", key
    assert cells["num_trades"][1] == "0" and cells["total_return"][1] == "0.00%"
    assert "n/a" not in {cells[k][1] for k, v in res.metrics.items() if v is not None}


def _month_table(page: Page) -> dict[int, dict[str, tuple[str, str]]]:
    """year -> {column header: (text, inline style)} of the monthly returns heatmap."""
    header = next(r for r in page.rows if r["section"] == "monthly-returns" and r["cells"][0][0] == "Year")
    names = [text for text, _ in header["cells"]]
    assert names == ["Year", *report._MONTHS, "Total"]
    out = {}
    for r in page.rows:
        if r["section"] == "monthly-returns" and r is not header:
            out[int(r["cells"][0][0])] = {n: (t, a.get("style", "")) for n, (t, a) in zip(names[1:], r["cells"][1:],
                                                                                       strict=True)}
    return out


def _expected_months(res: BacktestResult) -> dict[tuple[int, int], float]:
    """Month-end equity returns, computed with datetime instead of numpy month arithmetic."""
    last: dict[tuple[int, int], float] = {}
    for ts, eq in zip(res.bars.timestamp.tolist(), res.equity.tolist(), strict=True):
        dt = datetime.fromtimestamp(ts / 1000, tz=UTC)
        last[(dt.year, dt.month)] = eq
    out, prev = {}, res.config.initial_cash
    for key in sorted(last):
        out[key] = last[key] / prev - 1.0
        prev = last[key]
    return out


def test_monthly_returns_come_from_month_end_equity(result: BacktestResult, sample_result: BacktestResult):
    table = _month_table(Page(report.render_html(result)))
    ret = result.equity[-1] / result.config.initial_cash - 1.0
    assert list(table) == [2019]
    assert table[2019]["Apr"][0] == table[2019]["Total"][0] == f"{ret * 100:.2f}%" == "-8.45%"
    assert table[2019]["Mar"] == ("", "") and table[2019]["May"] == ("", "")

    sample = _month_table(Page(report.render_html(sample_result)))
    expected = _expected_months(sample_result)
    assert sorted(expected) == [(2019, 4), (2019, 5), (2019, 6)]
    for (year, month), value in expected.items():
        text, style = sample[year][report._MONTHS[month - 1]]
        assert text == f"{value * 100:.2f}%"
        rgb = [int(c) for c in style.split("rgb(")[1].split(")")[0].split(",")]
        assert (rgb[1] > rgb[0]) if value > 0 else (rgb[0] > rgb[1]), (month, value, style)
    year_total = sample_result.equity[-1] / sample_result.config.initial_cash - 1.0
    assert sample[2019]["Total"][0] == f"{year_total * 100:.2f}%"


def test_many_trades_show_the_first_and_last_500_with_a_note(sample_result: BacktestResult):
    k = len(sample_result.trades)
    assert k > 2 * report.TRADES_SHOWN
    page = Page(report.render_html(sample_result))
    rows = page.section_rows("trades")[1:]  # without the header row
    gap = [r for r in rows if len(r) == 1]
    trades = [r for r in rows if len(r) == 12]
    assert len(trades) == 2 * report.TRADES_SHOWN and len(gap) == 1
    assert gap[0][0] == f"… {k - 1000:,} trades not shown …"
    numbers = [int(r[0].replace(",", "")) for r in trades]
    assert numbers == list(range(1, 501)) + list(range(k - 499, k + 1))
    assert rows.index(gap[0]) == 500
    note = f"{k:,} trades: showing the first 500 and the last 500"
    assert note in " ".join(report.render_html(sample_result).split())
    # Rows match the engine's own trade records.
    records = sample_result.trade_records()
    for row, rec in ((trades[0], records[0]), (trades[-1], records[-1])):
        assert row[1] == rec["side"] and row[2] == rec["entry_time"][:16].replace("T", " ")
        assert row[3] == rec["exit_time"][:16].replace("T", " ")
        assert row[8] == f"{rec['return'] * 100:.2f}%" and row[11] == rec["exit_reason"]
        assert math.isclose(float(row[9].replace(",", "")), rec["pnl"], rel_tol=0.05)  # >= 2 significant digits
    assert trades[0][9] == f"{records[0]['pnl']:,.2f}" == "-5.57"
    # By the end the account is nearly wiped out: amounts under a cent keep two significant digits, never "-0.00".
    assert abs(records[-1]["pnl"]) < 0.005 and trades[-1][9] != "0.00"
    tail = zip(trades[500:], records[-500:], strict=True)
    assert not any(r[9] in ("-0.00", "0.00") and rec["pnl"] for r, rec in tail)


def test_downsampling_keeps_every_extreme_of_a_real_equity_curve(sample_result: BacktestResult):
    eq = sample_result.equity
    dd = report.drawdown(eq, sample_result.config.initial_cash)
    assert len(eq) > 10 * report.MAX_PLOT_POINTS
    for series in (eq, dd, sample_result.bars.close):
        idx = report.downsample_indices(series)
        assert len(idx) <= report.MAX_PLOT_POINTS
        assert np.all(np.diff(idx) > 0) and idx[0] == 0 and idx[-1] == len(series) - 1
        assert series[idx].min() == series.min() and series[idx].max() == series.max()
        # No local dip or spike is lost: the extremes of every 1/200 of the series are matched or
        # exceeded by kept points at most one bucket width away.
        width = math.ceil(len(series) / ((report.MAX_PLOT_POINTS - 2) // 2))
        for chunk in np.array_split(np.arange(len(series)), 200):
            near = series[idx[(idx >= chunk[0] - width) & (idx <= chunk[-1] + width)]]
            assert near.min() <= series[chunk].min() and near.max() >= series[chunk].max()
    short = np.arange(10.0)
    assert report.downsample_indices(short).tolist() == list(range(10))
    assert math.isclose(float(dd.min()), sample_result.metrics["max_drawdown"])


def test_write_html_writes_the_rendered_page_atomically(result: BacktestResult, tmp_path: Path):
    target = tmp_path / "out" / "report.html"
    report.write_html(result, target)
    text = target.read_text(encoding="utf-8")
    assert text == report.render_html(result)  # rendering is deterministic
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left behind
    target.write_text("old", encoding="utf-8")
    with pytest.raises(AttributeError):
        report.write_html(object(), target)  # fails while rendering: the old file stays
    assert target.read_text(encoding="utf-8") == "old"




@needs_chromium
def test_report_renders_in_chromium_with_every_image_and_no_errors(result: BacktestResult, tmp_path: Path,
                                                                   chromium: Chromium):
    path = tmp_path / "report.html"
    report.write_html(result, path)
    url = path.as_uri()
    session, events = chromium.open(url)
    state = chromium.evaluate(PAGE_STATE, session)
    seen = {e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"}
    assert url in seen  # the page's own load is observed, so a stray request would be too
    assert problems(events, url) == []
    assert state["title"] == "Backtest ema_rsi on tBTCUSD 1m"
    assert state["sections"][:3] == ["Metrics", "Parameters", "Dataset"] and len(state["sections"]) == len(SECTIONS)
    assert len(state["images"]) == 3
    for img in state["images"]:
        assert img["scheme"] == "data:image/png;base64" and img["complete"], img
        assert img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["shownWidth"] > 600, img  # laid out across the card, not collapsed
    assert state["scripts"] == 0 and state["resources"] == []
    assert state["pageWidth"] <= state["viewportWidth"], "the page scrolls sideways at 1280 px"

    # Full-page screenshot (kept in tmp_path as report.png for a human to look at).
    size = chromium.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = chromium.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}, session)
    png = base64.b64decode(shot["data"])
    (tmp_path / "report.png").write_bytes(png)
    img = Image.open(io.BytesIO(png))
    img.load()
    assert img.size[0] >= 1200 and img.size[1] > 2000
    # Not a blank page: many distinct colours (charts, heatmap, text).
    assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50

    # Narrow window (a phone): still no sideways scrolling of the page itself (wide tables scroll in their box).
    chromium.send("Emulation.setDeviceMetricsOverride",
                  {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
    narrow = chromium.evaluate(PAGE_STATE, session)
    assert narrow["viewportWidth"] == 420
    assert narrow["pageWidth"] <= 420, "the page scrolls sideways at 420 px"
    chromium.send("Emulation.clearDeviceMetricsOverride", session=session)
    assert problems(chromium.events, url) == []


@needs_chromium
def test_hostile_strings_stay_text_in_chromium(result: BacktestResult, tmp_path: Path, chromium: Chromium):
    marker = "document.title='pwned'"
    hostile = attrs.evolve(
        result,
        strategy=f'<img src="x.png" onerror="{marker}">',
        params={"label": f"<script>{marker}</script>"},
        notes=(f'<iframe src="https://example.invalid/" onload="{marker}"></iframe>',),
    )
    path = tmp_path / "hostile.html"
    report.write_html(hostile, path)
    url = path.as_uri()
    session, events = chromium.open(url)
    state = chromium.evaluate(PAGE_STATE, session)
    assert state["title"] == f"Backtest {hostile.strategy} on tBTCUSD 1m"  # no handler ran and set it
    assert state["scripts"] == 0 and len(state["images"]) == 3
    assert chromium.evaluate("document.querySelectorAll('iframe').length", session) == 0
    h1 = chromium.evaluate("document.querySelector('h1').textContent", session)
    assert h1.startswith(hostile.strategy)
    assert problems(events + chromium.events, url) == []

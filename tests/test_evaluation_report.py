"""The evaluation page (genesis_fw.ml.evaluation_report) of a real model on real candles, as HTML and in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import PAGE_STATE, PNG_PREFIX, Chromium, Page, decode_png, needs_chromium, problems
from markupsafe import escape
from ml_sample import logreg_on_sample

from genesis_fw.errors import DataError
from genesis_fw.ml import calibration, evaluation
from genesis_fw.ml.evaluation_report import SCORE_ROWS, format_score, render_evaluation_html, render_evaluation_page

SECTIONS = ["Verdict", "Scores", "Skill against the baselines", "Confusion matrix", "Calibration",
            "Reliability diagram"]


def _result(method: str | None = None) -> dict:
    data = logreg_on_sample()
    val, test = data["validation"], data["test"]
    if method is None:
        cal = calibration.choose(val["p"], val["y"], val["start_ms"], val["end_ms"], "1h")
    else:
        cal = calibration.fit(method, val["p"], val["y"])
    rates = {"train_rate": data["train_rate"], "validation_rate": float(val["y"].mean())}
    model = {"name": "tBTCUSD_1h_v7", "model_type": "logreg", "symbol": "tBTCUSD", "timeframe": "1h", "horizon": 20}
    return evaluation.summary(test["y"], test["p"], cal, rates, model=model, split="test",
                              period={"start": "2019-06-12T00:00:00Z", "end": "2019-06-30T23:00:00Z"})


def test_summary_holds_the_scores_of_the_calibrated_and_raw_model():
    result = _result("platt")
    test = logreg_on_sample()["test"]
    assert result["raw_scores"] == evaluation.scores(test["y"], test["p"])
    assert result["scores"] == evaluation.scores(test["y"], calibration.apply(result["calibration"], test["p"]))
    assert result["scores"] != result["raw_scores"]
    assert result["verdict"] == evaluation.verdict(result["scores"], result["baselines"])
    assert set(result["skill"]) == {"train_rate", "validation_rate"}


def _columns(result: dict) -> dict[str, dict]:
    cols = {"model": result["scores"], "raw": result["raw_scores"]}
    cols.update(result["baselines"])
    return cols


def test_page_shows_the_numbers_of_the_result():
    result = _result("platt")
    html = render_evaluation_page(result)
    page = Page(html)
    assert [page.h2[s] for s in ("verdict", "scores", "skill", "confusion", "calibration", "reliability")] == SECTIONS
    cols = _columns(result)
    shown = {r["attrs"]["data-metric"]: {a["data-column"]: t for t, a in r["cells"][1:]}
             for r in page.rows if "data-metric" in r["attrs"]}
    assert set(shown) == {key for key, _, _ in SCORE_ROWS}
    for key, _, kind in SCORE_ROWS:
        for column, scores in cols.items():
            assert shown[key][column] == format_score(scores[key], kind), (key, column)
            if kind == "p4" and scores[key] is not None:
                assert abs(float(shown[key][column]) - scores[key]) <= 5e-5
    assert shown["log_loss"]["model"] != shown["log_loss"]["raw"]
    cells = {a["data-cell"]: t for r in page.rows for t, a in r["cells"] if "data-cell" in a}
    (tn, fp), (fn, tp) = result["scores"]["confusion"]
    assert cells == {"tn": f"{tn:,}", "fp": f"{fp:,}", "fn": f"{fn:,}", "tp": f"{tp:,}"}
    skill = {r["attrs"]["data-baseline"]: [t for t, _ in r["cells"]]
             for r in page.rows if "data-baseline" in r["attrs"]}
    for name, sk in result["skill"].items():
        assert skill[name][0] == name
        assert skill[name][1] == f"{result['baseline_rates'][name] * 100:.2f}%"
        assert skill[name][2] == f"{sk['log_loss_skill'] * 100:.2f}%"
        assert skill[name][3] == f"{sk['brier_skill'] * 100:.2f}%"
    assert str(escape(result["verdict"])) in " ".join(html.split())
    assert "tBTCUSD_1h_v7" in html and "logreg" in html
    (img,) = page.imgs
    chart = decode_png(img["src"])
    assert chart.size == (int(img["width"]), int(img["height"]))
    assert len(chart.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20
    assert all(v.startswith(PNG_PREFIX) or v.startswith("#") for _, _, v in page.urls)
    assert page.tags["script"] == 0


def test_chosen_calibration_is_shown_with_its_reason():
    result = _result()
    page = Page(render_evaluation_page(result))
    cv = {r["attrs"]["data-cv"]: r["cells"][1][0] for r in page.rows if "data-cv" in r["attrs"]}
    assert cv == {m: f"{v:.4f}" for m, v in result["calibration"]["cv_log_loss"].items()}
    rows = {r[0]: r[1] for r in page.section_rows("calibration") if len(r) == 2}
    assert rows["Method"] == result["calibration"]["method"]
    assert rows["Chosen because"] == result["calibration"]["chosen_because"]


def test_hostile_strings_are_escaped_and_missing_keys_are_a_data_error(tmp_path: Path):
    result = _result("none")
    result["model"]["name"] = '<script>document.title="pwned"</script>'
    html = render_evaluation_page(result)
    assert "<script>" not in html and "&lt;script&gt;" in html
    del result["verdict"]
    with pytest.raises(DataError, match="lacks verdict"):
        render_evaluation_html(result, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


@needs_chromium
@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_page_renders_in_chromium_with_its_numbers(method: str, tmp_path: Path, chromium: Chromium):
    result = _result(method)
    path = render_evaluation_html(result, tmp_path / "evaluation.html")
    assert path == tmp_path / "evaluation.html"
    url = path.as_uri()
    session, events = chromium.open(url)
    state = chromium.evaluate(PAGE_STATE, session)
    assert problems(events, url) == []
    assert state["title"] == "Evaluation of tBTCUSD_1h_v7"
    assert state["sections"] == SECTIONS
    (img,) = state["images"]
    assert img["scheme"] == "data:image/png;base64" and img["complete"] and img["naturalWidth"] > 0, img
    assert img["shownWidth"] > 600
    assert state["scripts"] == 0 and state["resources"] == []
    assert state["pageWidth"] <= state["viewportWidth"]
    # what the browser shows (textContent) equals the result's numbers
    shown = chromium.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('tr[data-metric]')).map(
        r => [r.dataset.metric, Object.fromEntries(Array.from(r.querySelectorAll('td')).map(
            c => [c.dataset.column, c.textContent.trim()]))]))""", session)
    for key, _, kind in SCORE_ROWS:
        for column, scores in _columns(result).items():
            assert shown[key][column] == format_score(scores[key], kind)
    verdict = chromium.evaluate("document.getElementById('verdict-text').textContent", session)
    assert " ".join(verdict.split()) == result["verdict"]
    chromium.send("Emulation.setDeviceMetricsOverride",
                  {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
    narrow = chromium.evaluate(PAGE_STATE, session)
    assert narrow["pageWidth"] <= 420, "the page scrolls sideways at 420 px"
    assert problems(chromium.events, url) == []

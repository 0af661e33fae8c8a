"""``genesis-fw e2e`` in the situations a researcher meets after the first run: a champion trained on other data,
a held-out end, label settings, two run folders on one market, going back to earlier settings, failures outside
a step, bad folders and bad requests."""

from __future__ import annotations

import json
import shutil

from conftest import cli_ok, one_line_error
from test_e2e import STEPS, World

from genesis_fw.workflow.cache import file_sha256


def test_a_champion_trained_on_other_data_is_compared_on_the_new_models_test_part(tmp_path):
    """The usual retrain on more data: the champion's test part does not overlap the new model's. compare runs
    on the new model's test part (as champion select does) instead of stopping the run."""
    world = World(tmp_path / "w")
    cli_ok(world.e2e("--start", "2019-04-01", "--end", "2019-05-20", out="early"))
    cli_ok(world.run("models", "promote", "tBTCUSD_1h_v2", "--reason", "trained on April to mid-May"))
    proc = cli_ok(world.e2e(out="full"))
    statuses = world.statuses("full")
    assert statuses == {"fetch": "skipped", **{s: "done" for s in STEPS[1:]}}, proc.stdout
    compared = json.loads((world.root / "full" / "reports" / "comparison.json").read_text())
    assert [m["name"] for m in compared["models"]] == ["tBTCUSD_1h_v2", "tBTCUSD_1h_v3"]
    model = json.loads((world.models / "tBTCUSD_1h_v3.json").read_text())
    assert compared["period"]["start"] == model["training_data"]["split"]["boundaries"]["test_start"]
    assert json.loads((world.root / "full" / "reports" / "selection.json").read_text())["comparison_reused"]
    assert "Audit log OK" in cli_ok(world.run("models", "audit", "--verify")).stdout


def test_end_bounds_every_step_nothing_after_it_is_read(tmp_path):
    """--end holds out the candles after it from every step, also compare's walk-forward refits and select."""
    world = World(tmp_path / "w")
    cli_ok(world.e2e("--end", "2019-06-01"))
    reports = world.root / "run" / "reports"
    compared = json.loads((reports / "comparison.json").read_text())
    assert compared["data"]["end"] < "2019-06-01"  # the last candle read
    windows = compared["walk_forward"]["windows"]
    assert windows and all(w["end"] <= "2019-06-01T00:00:00Z" for w in windows), windows
    assert compared["period"]["last_label_end"] < "2019-06-01"
    selection = json.loads((reports / "selection.json").read_text())
    assert selection["comparison_reused"] is True
    runs = world.summary()["steps"][STEPS.index("backtest")]["outputs"]
    assert runs["period"]["end"] <= "2019-06-01T00:00:00Z"


def test_label_settings_reach_the_model_even_when_the_labels_come_out_the_same(tmp_path):
    """A tiny dead zone labels the sample's bars exactly as before, but the model file records the definition:
    train and calibrate must run again, or the model would say dead_zone_bps 0 and be compared as such."""
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    cli_ok(world.e2e("train.dead_zone_bps=0.0001"))
    statuses = world.statuses()
    assert statuses["train"] == "done" and statuses["calibrate"] == "done", statuses
    name = world.summary()["model"]["name"]
    assert json.loads((world.models / f"{name}.json").read_text())["label"]["dead_zone_bps"] == 0.0001


def test_two_run_folders_on_one_market_settle_instead_of_logging_forever(tmp_path):
    world = World(tmp_path / "w")
    for _ in range(2):
        cli_ok(world.e2e("model.C=0.01,0.1", out="a"))
        cli_ok(world.e2e("model.C=0.03,0.3", out="b"))
    entries = len(world.audit.read_text().splitlines())
    cli_ok(world.e2e("model.C=0.01,0.1", out="a"))
    cli_ok(world.e2e("model.C=0.03,0.3", out="b"))
    assert world.statuses("a") == world.statuses("b") == {"fetch": "skipped", **{s: "cached" for s in STEPS[1:]}}
    assert len(world.audit.read_text().splitlines()) == entries


def test_going_back_to_earlier_settings_reuses_the_model_made_with_them(tmp_path):
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    cli_ok(world.e2e("features.rsi_period=7"))
    cli_ok(world.e2e())
    assert world.summary()["model"]["name"] == "tBTCUSD_1h_v2"
    assert sorted(p.name for p in world.models.glob("tBTCUSD_1h_v*.json")) == \
        ["tBTCUSD_1h_v1.json", "tBTCUSD_1h_v2.json", "tBTCUSD_1h_v3.json"]


def test_what_a_step_produced_is_listed_with_its_sha256_and_notes_survive_the_cache(tmp_path):
    world = World(tmp_path / "w")
    first = cli_ok(world.e2e())
    for step in world.summary()["steps"][1:]:
        assert step["files"], step["name"]
        for path, sha in step["files"].items():
            assert file_sha256(__import__("pathlib").Path(path)) == sha
    cached = cli_ok(world.e2e())
    said = [ln for ln in first.stderr.splitlines() if ln.startswith("Note: ") and "registered" not in ln
            and "adopted" not in ln]
    assert said and all(ln in cached.stderr for ln in said), (said, cached.stderr)
    assert any("hand-set baseline" in n for n in world.summary()["notes"])


def test_json_format_prints_the_summary_also_when_a_gate_stops_the_run(tmp_path):
    world = World(tmp_path / "w")
    proc = world.e2e("--format", "json", "--min-quality", "1")
    one_line_error(proc, "below --min-quality", notes_only=False)
    summary = json.loads(proc.stdout)
    assert summary["ok"] is False and summary["steps"][1]["status"] == "failed"
    assert summary["steps"][1]["wall_s"] > 0  # a failed step's time is measured too


def test_an_error_before_a_steps_work_marks_that_step_failed(tmp_path):
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    shutil.move(world.models / "tBTCUSD_1h_v1.json", world.root / "v1.json")  # the registered champion's file
    proc = world.e2e("model.C=0.5,1")
    one_line_error(proc, "tBTCUSD_1h_v1", notes_only=False)
    statuses = world.statuses()
    assert statuses["compare"] == "failed" and statuses["select"] == "not run"
    assert world.summary()["steps"][STEPS.index("compare")]["detail"]


def test_bad_run_folders_and_bad_requests_are_one_line(tmp_path):
    world = World(tmp_path / "w")
    (world.root / "afile").write_text("x")
    one_line_error(world.e2e(out="afile/sub"), "afile", notes_only=False)
    (world.root / "bad").mkdir()
    (world.root / "bad" / "work").write_text("not a folder")
    proc = world.e2e(out="bad")
    one_line_error(proc, "work", notes_only=False)
    assert json.loads((world.root / "bad" / "summary.json").read_text())["steps"][3]["status"] == "failed"
    one_line_error(world.e2e("train.calibration_folds=400"), "400", notes_only=False)
    assert "failed validation" not in world.e2e("train.calibration_folds=400").stderr
    for args, expected in ((["--timeframe", "7h"], "7h"), (["model=nosuch"], "nosuch"),
                           (["--start", "2019-13-01"], "2019-13-01")):
        proc = world.run("e2e", "--symbol", "tBTCUSD", "--timeframe", "1h", "--offline", "--output", "early",
                         *args)
        one_line_error(proc, expected)  # refused before any step: no progress lines, nothing written
        assert not (world.root / "early").exists()

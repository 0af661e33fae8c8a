"""``genesis-fw e2e``: the whole workflow as real processes on the bundled sample and against the local exchange
server, its step cache (cached reruns, exactly the downstream steps rerun, kill -9 then continue), its gates
(the registry unchanged when one fails), and its summary (terminal, JSON, a page checked in Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bitfinex_server import BitfinexServer
from browser import PAGE_STATE, Chromium, needs_chromium, problems
from conftest import cli_ok, one_line_error

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["fetch", "validate", "features", "labels", "train", "calibrate", "evaluate", "compare", "backtest", "select"]


class World:
    """A throw-away world: an empty store (the bundled sample stands in), a copy of the shipped models folder,
    an audit log mirror and a working directory, all under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "store"
        self.models = root / "models"
        self.audit = root / "logs" / "audit.jsonl"
        self.store.mkdir(parents=True, exist_ok=True)
        if not self.models.exists():
            shutil.copytree(ROOT / "config" / "models", self.models)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(GENESIS_DATA_DIR=str(self.store), GENESIS_MODELS_DIR=str(self.models),
                   GENESIS_AUDIT_LOG=str(self.audit), **extra)
        env.pop("GENESIS_E2E_KILL_AT", None)
        env.update(extra)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "genesis_fw", *args], capture_output=True, text=True,
                              cwd=self.root, env=self.env(**extra), timeout=600)

    def e2e(self, *args: str, out: str = "run", **extra: str) -> subprocess.CompletedProcess:
        return self.run("e2e", "--symbol", "tBTCUSD", "--timeframe", "1h", "--offline", "--output", out, *args,
                        **extra)

    def summary(self, out: str = "run") -> dict:
        return json.loads((self.root / out / "summary.json").read_text())

    def statuses(self, out: str = "run") -> dict[str, str]:
        return {s["name"]: s["status"] for s in self.summary(out)["steps"]}

    def registry_bytes(self) -> dict[str, bytes]:
        """Every file of the registry: registry.json, registry.db (and its WAL) and the audit mirror."""
        files = [p for p in self.models.iterdir() if p.name.startswith("registry.")]
        files += [self.audit] if self.audit.exists() else []
        return {p.name: p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> tuple[World, subprocess.CompletedProcess]:
    """One offline e2e run on the sample with the shipped models (v1 is the 1h champion)."""
    world = World(tmp_path_factory.mktemp("e2e") / "world")
    return world, world.e2e()


def test_offline_run_on_the_sample_ends_with_a_champion_and_a_verified_audit_chain(first):
    world, proc = first
    cli_ok(proc)
    assert world.statuses() == {"fetch": "skipped", **{s: "done" for s in STEPS[1:]}}
    s = world.summary()
    assert s["ok"] and s["error"] is None
    assert s["data"]["quality_score"] > 0.99
    model = s["model"]["name"]
    assert model == "tBTCUSD_1h_v2" and (world.models / f"{model}.json").is_file()
    d = s["decision"]
    assert d["action"] in ("promote", "keep") and d["champion_after"] in (model, "tBTCUSD_1h_v1")
    listed = cli_ok(world.run("models", "list", "--symbol", "tBTCUSD", "--timeframe", "1h")).stdout
    champion_rows = [ln for ln in listed.splitlines() if " champion " in ln]
    assert len(champion_rows) == 1 and champion_rows[0].startswith(d["champion_after"])
    assert f"{model} " in listed  # registered (challenger, or champion when promoted)
    assert "Audit log OK" in cli_ok(world.run("models", "audit", "--verify")).stdout
    # the terminal table names every step with its status, and the decision
    for name in STEPS:
        assert any(line.split()[1:3] == [name, world.statuses()[name]] for line in proc.stdout.splitlines()
                   if line.strip().startswith(f"{STEPS.index(name) + 1}.")), (name, proc.stdout)
    assert f"Decision: {d['reason']}" in proc.stdout


def test_every_step_records_its_cost(first):
    world, _ = first
    for step in world.summary()["steps"][1:]:
        assert step["wall_s"] > 0 and step["cpu_s"] > 0, step
        assert step["peak_mib"] > 10 and step["peak_scope"] in ("step", "process"), step
    assert world.summary()["wall_s"] >= sum(s["wall_s"] for s in world.summary()["steps"][1:])


def test_the_model_is_the_one_train_writes_with_the_same_settings(first, tmp_path):
    """The workflow's split into train and calibrate steps (with the fitted state through JSON) changes nothing:
    `genesis-fw train` with the same settings writes the same model."""
    world, _ = first
    other = World(tmp_path / "w")
    cli_ok(other.run("train", "--symbol", "tBTCUSD", "--timeframe", "1h"))
    mine = json.loads((world.models / "tBTCUSD_1h_v2.json").read_text())
    theirs = json.loads((other.models / "tBTCUSD_1h_v2.json").read_text())
    volatile = ("created_at", "content_sha256", "libraries")
    assert {k: v for k, v in mine.items() if k not in volatile} == \
        {k: v for k, v in theirs.items() if k not in volatile}


def test_its_figures_are_those_of_the_single_commands(first):
    """Evaluation and backtests equal `genesis-fw evaluate` and `genesis-fw backtest --period test` of the model."""
    world, _ = first
    reports = world.root / "run" / "reports"
    evaluation = json.loads((reports / "evaluation.json").read_text())
    alone = json.loads(cli_ok(world.run("evaluate", "tBTCUSD_1h_v2", "--format", "json", "--no-report",
                                        "--output", str(world.root / "ev.html"))).stdout)
    assert evaluation["scores"] == alone["scores"] and evaluation["verdict"] == alone["verdict"]
    run = json.loads((reports / "backtest_tBTCUSD_1h_v2.json").read_text())
    cli_ok(world.run("backtest", "--timeframe", "1h", "strategy=ml_model", "strategy.model=tBTCUSD_1h_v2",
                     "--period", "test", "--no-report", "--output", str(world.root / "bt.html")))
    alone_bt = json.loads((world.root / "bt.json").read_text())
    assert run["metrics"] == alone_bt["metrics"]
    # select took the compare step's comparison as its evidence; comparing again gives the same gates
    selection = json.loads((reports / "selection.json").read_text())
    assert selection["comparison_reused"] is True
    compared = json.loads((reports / "comparison.json").read_text())
    assert selection["comparison"]["models"] == compared["models"]
    again = json.loads(cli_ok(world.run("champion", "select", "tBTCUSD", "1h", "--dry-run", "--format",
                                        "json")).stdout)
    assert again["comparison_reused"] is False and again["challengers"] == selection["challengers"]


def test_a_rerun_with_nothing_changed_runs_nothing(tmp_path):
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    before = world.registry_bytes()
    proc = cli_ok(world.e2e())
    assert world.statuses() == {"fetch": "skipped", **{s: "cached" for s in STEPS[1:]}}
    assert world.registry_bytes() == before  # no new audit entry, registry.json untouched
    assert sorted(p.name for p in world.models.glob("tBTCUSD_1h_v*.json")) == \
        ["tBTCUSD_1h_v1.json", "tBTCUSD_1h_v2.json"]
    assert proc.stdout.count(" cached ") == len(STEPS) - 1


def test_a_changed_input_reruns_exactly_the_steps_after_it(tmp_path):
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    cli_ok(world.e2e("features.rsi_period=7"))
    assert world.statuses() == {"fetch": "skipped", "validate": "cached",
                                **{s: "done" for s in STEPS[2:]}}
    assert world.summary()["model"]["name"] == "tBTCUSD_1h_v3"
    # v2 is still a challenger: select compares all three, not the compare step's pair
    selection = json.loads((world.root / "run" / "reports" / "selection.json").read_text())
    assert [m["name"] for m in selection["comparison"]["models"]] == ["tBTCUSD_1h_v1", "tBTCUSD_1h_v2",
                                                                     "tBTCUSD_1h_v3"]
    assert selection["comparison_reused"] is False
    cli_ok(world.e2e("features.rsi_period=7", "champion.max_ece=0.5"))  # a gate setting: only select reruns
    assert world.statuses() == {"fetch": "skipped", **{s: "cached" for s in STEPS[1:-1]}, "select": "done"}
    proc = cli_ok(world.e2e("features.rsi_period=7", "champion.max_ece=0.5", "--horizon", "10"))
    assert world.statuses() == {"fetch": "skipped", "validate": "cached", "features": "cached",
                                **{s: "done" for s in STEPS[3:]}, "compare": "skipped"}
    # another horizon than the champion's cannot be compared on the same labels: select leaves it out and says so
    compare = world.summary()["steps"][STEPS.index("compare")]
    d = world.summary()["decision"]
    assert f"not comparable with {d['champion_before']}" in compare["detail"] and "horizon" in compare["detail"]
    assert d["champion_after"] == d["champion_before"] != "tBTCUSD_1h_v4"
    assert "failed comparable" in proc.stdout


def test_an_edited_output_is_redone(tmp_path):
    """A step's files are part of its record: an edited evaluation page makes evaluate (and what follows from
    its outputs) run again rather than trusting the cache."""
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    page = world.root / "run" / "reports" / "evaluation.html"
    page.write_text(page.read_text() + "<!-- hand-made change -->")
    cli_ok(world.e2e())
    statuses = world.statuses()
    assert statuses["evaluate"] == "done" and statuses["calibrate"] == "cached"
    assert "hand-made change" not in page.read_text()


def test_a_step_that_reruns_without_a_real_change_stops_the_rerun_there(tmp_path):
    """A step that runs again (its record lost, or its key changed) and produces the same thing leaves the steps
    after it cached: train writes the same fitted state, and calibrate keeps the model file it wrote before
    (no new version) when the new model equals it but for its name and creation time."""
    world = World(tmp_path / "w")
    cli_ok(world.e2e())
    state_path = world.root / "run" / "state.json"
    for step in ("train", "calibrate"):
        state = json.loads(state_path.read_text())
        if step == "train":
            del state["steps"][step]
        else:  # as if an input had changed without changing the model
            state["steps"][step]["key"] = "0" * 64
        state_path.write_text(json.dumps(state))
        cli_ok(world.e2e())
        assert world.statuses() == {"fetch": "skipped", **{s: "done" if s == step else "cached" for s in STEPS[1:]}}
        assert world.summary()["model"]["name"] == "tBTCUSD_1h_v2"
        assert not (world.models / "tBTCUSD_1h_v3.json").exists()


def test_kill_9_mid_way_then_the_rerun_continues_from_the_cached_steps(tmp_path):
    world = World(tmp_path / "w")
    proc = world.e2e(GENESIS_E2E_KILL_AT="train")
    assert proc.returncode == -signal.SIGKILL
    state = json.loads((world.root / "run" / "state.json").read_text())
    assert sorted(state["steps"]) == ["features", "labels", "validate"]
    before = world.registry_bytes()
    proc = cli_ok(world.e2e())
    assert world.statuses() == {"fetch": "skipped", "validate": "cached", "features": "cached",
                                "labels": "cached", **{s: "done" for s in STEPS[4:]}}
    assert world.registry_bytes() != before  # the rerun reached select
    assert "Audit log OK" in cli_ok(world.run("models", "audit", "--verify")).stdout


def test_kill_9_from_outside_at_any_moment_leaves_a_run_that_continues(tmp_path):
    """A real kill -9 from another process while a step works (after the first steps are recorded)."""
    world = World(tmp_path / "w")
    state = world.root / "run" / "state.json"
    p = subprocess.Popen([sys.executable, "-m", "genesis_fw", "e2e", "--symbol", "tBTCUSD", "--timeframe", "1h",
                          "--offline", "--output", "run"], cwd=world.root, env=world.env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        try:
            if "labels" in json.loads(state.read_text())["steps"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    recorded = sorted(json.loads(state.read_text())["steps"])
    assert {"validate", "features", "labels"} <= set(recorded)
    cli_ok(world.e2e())
    statuses = world.statuses()
    assert all(statuses[s] == "cached" for s in recorded), (recorded, statuses)
    assert all(statuses[s] == "done" for s in STEPS[1:] if s not in recorded)
    assert "Audit log OK" in cli_ok(world.run("models", "audit", "--verify")).stdout


def test_the_quality_gate_stops_the_run_and_leaves_the_registry_unchanged(tmp_path):
    world = World(tmp_path / "w")
    before = world.registry_bytes()
    proc = world.e2e("--min-quality", "1")
    line = one_line_error(proc, "quality score 0.99", "below --min-quality 1", notes_only=False)
    assert "Traceback" not in proc.stderr and line
    assert world.statuses() == {"fetch": "skipped", "validate": "failed", **{s: "not run" for s in STEPS[2:]}}
    s = world.summary()
    assert not s["ok"] and "below --min-quality" in s["error"] and s["decision"] is None
    assert world.registry_bytes() == before
    assert not list(world.models.glob("tBTCUSD_1h_v2*"))
    assert (world.root / "run" / "reports" / "tBTCUSD_1m.quality.md").is_file()  # what it produced stays
    # the gate is applied to the cached score too: the same stop, without validating again
    proc = world.e2e("--min-quality", "1")
    one_line_error(proc, "below --min-quality 1", notes_only=False)
    assert world.statuses()["validate"] == "failed"
    cli_ok(world.e2e("--min-quality", "0.99"))
    assert world.statuses()["validate"] == "cached"


def test_require_skill_stops_a_model_without_skill_before_the_registry(first, tmp_path):
    """On the sample the model has no significant skill over the base rate: with --require-skill the run stops
    at evaluate; the model file stays, unregistered."""
    world = World(tmp_path / "w")
    before = world.registry_bytes()
    verdict = first[0].summary()["model"]["verdict"]
    assert not verdict.startswith("skill")  # what the test relies on (the sample's honest result)
    proc = world.e2e("--require-skill")
    one_line_error(proc, "no skill over the base rate", "--require-skill", "registry is unchanged",
                   notes_only=False)
    assert world.statuses()["evaluate"] == "failed"
    assert all(world.statuses()[s] == "not run" for s in ("compare", "backtest", "select"))
    assert world.registry_bytes() == before
    assert (world.models / "tBTCUSD_1h_v2.json").is_file()


def test_fetch_from_the_local_exchange_server_a_few_days_of_1m(tmp_path):
    world = World(tmp_path / "w")
    with BitfinexServer() as server:
        args = ("e2e", "--symbol", "tBTCUSD", "--timeframe", "1m", "--start", "2019-04-01", "--end", "2019-04-05",
                "--base-url", server.url, "--output", "run1m", "exchange.rate_limit=6000")
        proc = cli_ok(world.run(*args))
        requests = len(server.log)
        assert requests > 0
        statuses = {s["name"]: s["status"] for s in world.summary("run1m")["steps"]}
        assert statuses == {s: "done" for s in STEPS}, proc.stdout
        fetch = world.summary("run1m")["steps"][0]["outputs"]
        assert fetch["candles"] > 5000 and fetch["version"] == 1
        assert (world.store / "candles" / "tBTCUSD_1m.parquet").is_file()
        d = world.summary("run1m")["decision"]
        assert d["champion_after"] in ("tBTCUSD_1m_v1", world.summary("run1m")["model"]["name"])
        assert "Audit log OK" in cli_ok(world.run("models", "audit", "--verify")).stdout
        # the rerun asks the exchange nothing: the store still holds exactly what the fetch left
        cli_ok(world.run(*args))
        assert len(server.log) == requests
        assert {s["name"]: s["status"] for s in world.summary("run1m")["steps"]} == {s: "cached" for s in STEPS}


def test_bad_input_is_one_line(tmp_path):
    world = World(tmp_path / "w")
    one_line_error(world.run("e2e", "--symbol", "tBTCUSD", "--timeframe", "1h"), "--start", "--offline",
                   notes_only=False)
    one_line_error(world.e2e("strategy.fast=3"), "e2e does not take 'strategy.fast'", notes_only=False)
    proc = world.e2e(out=str(world.models / "run"))
    one_line_error(proc, "models folder", notes_only=False)
    (world.root / "afile").write_text("x")
    assert world.e2e(out="afile").returncode != 0
    assert "Traceback" not in world.e2e(out="afile").stderr
    one_line_error(world.run("e2e", "--symbol", "tXXXUSD", "--timeframe", "1h", "--offline"), "tXXXUSD",
                   notes_only=False)


def test_a_second_run_on_the_same_folder_is_refused_while_one_runs(tmp_path):
    import fcntl

    world = World(tmp_path / "w")
    (world.root / "run").mkdir()
    with open(world.root / "run" / ".e2e.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        one_line_error(world.e2e(), "another genesis-fw e2e is running", notes_only=False)


@needs_chromium
def test_the_summary_page_in_a_real_browser_links_every_step_report(first, chromium: Chromium):
    world, _ = first
    summary = world.summary()
    url = (world.root / "run" / "summary.html").as_uri()
    session, events = chromium.open(url)
    state = chromium.evaluate(PAGE_STATE, session)
    assert problems(events, url) == []
    assert state["title"] == "e2e tBTCUSD 1h"
    assert state["sections"] == ["Decision", "Steps", "Notes"]
    assert state["scripts"] == 0 and state["resources"] == []
    assert state["pageWidth"] <= state["viewportWidth"]
    shown = chromium.evaluate("""(() => Array.from(document.querySelectorAll('tr[data-step]')).map(r => ({
        step: r.dataset.step, status: r.querySelector('td[data-status]').dataset.status,
        cells: Array.from(r.querySelectorAll('td.num')).map(c => c.textContent.trim()),
        links: Array.from(r.querySelectorAll('a[data-report]')).map(a => [a.dataset.report, a.href])})))()""",
        session)
    assert [r["step"] for r in shown] == STEPS
    links = {}
    for row, step in zip(shown, summary["steps"], strict=True):
        assert row["status"] == step["status"]
        if step["wall_s"] is not None:
            assert row["cells"][0] == f"{step['wall_s']:.2f}" and row["cells"][1] == f"{step['cpu_s']:.2f}"
        links.update(dict(row["links"]))
    assert {"quality", "evaluation", "comparison", "backtest tBTCUSD_1h_v1", "backtest tBTCUSD_1h_v2",
            "selection"} <= set(links)
    assert chromium.evaluate("document.getElementById('decision-text').textContent", session).strip() == \
        summary["decision"]["reason"]
    for label, href in links.items():  # every linked report opens
        s2, ev2 = chromium.open(href)
        assert [p for p in problems(ev2, href) if not p.startswith("request: data:")] == [], label
        body = chromium.evaluate("document.body ? document.body.innerText.length : 0", s2)
        assert body > 50, label

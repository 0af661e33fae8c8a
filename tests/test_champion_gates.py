"""The gates of champion selection (genesis_fw.selection.champion) on comparison results whose answer is known:
each gate failing alone is reported by name, with its numbers."""

from __future__ import annotations

import copy

import attrs
import pytest

from genesis_fw.config import ChampionConfig
from genesis_fw.selection import champion

CFG = ChampionConfig()  # alpha 0.05, max_ece 0.05, walk_forward 5, min share 0.6, Sharpe tolerance 0.25


def _comparison() -> dict:
    """A comparison in compare()'s layout in which the challenger passes every default gate."""
    def model(name: str, log_loss: float, ece: float, sharpe: float | None) -> dict:
        return {"name": name, "path": f"/m/{name}.json", "sha256": "0" * 64, "model_type": "logreg",
                "calibration": "none", "baseline": False,
                "scores": {"n": 500, "log_loss": log_loss, "brier": 0.24, "auc": 0.55, "ece": ece},
                "in_sample": None,
                "vs_base_rate": {"constant": "constant 0.5", "rate": 0.5, "log_loss_difference": log_loss - 0.6931,
                                 "dm": {"statistic": -1.0, "p_value": 0.2, "lag": 20, "n": 500,
                                        "mean_difference": log_loss - 0.6931}},
                "backtest": {"sharpe": sharpe, "total_return": 0.1, "max_drawdown": -0.1, "num_trades": 12,
                             "psr": 0.6}}

    return {
        "symbol": "tBTCUSD", "timeframe": "1h", "horizon": 20,
        "models": [model("tBTCUSD_1h_v1", 0.6931, 0.02, 1.0), model("tBTCUSD_1h_v2", 0.6800, 0.03, 1.1)],
        "pairs": [{"baseline": "tBTCUSD_1h_v1", "candidate": "tBTCUSD_1h_v2", "log_loss_difference": -0.0131,
                   "dm": {"statistic": -2.5, "p_value": 0.006, "lag": 20, "n": 500, "mean_difference": -0.0131},
                   "bootstrap": {"mean": -0.0131, "low": -0.02, "high": -0.004, "block": 9, "reps": 2000,
                                 "alpha": 0.05, "method": "circular block bootstrap"},
                   "sharpe": None}],
        "walk_forward": {"k": 5, "windows": [{"start": "a", "end": "b", "rows": 100, "log_loss": {}}] * 5,
                         "wins": {"tBTCUSD_1h_v2": 4}, "timing": {}},
        "notes": [],
    }


def _gates(comparison: dict, cfg: ChampionConfig = CFG) -> list[dict]:
    return champion.gates_against_champion(comparison, cfg)["tBTCUSD_1h_v2"]


def _failed(gates: list[dict]) -> list[str]:
    return [g["gate"] for g in gates if g["passed"] is False]


def test_a_challenger_passing_everything_fails_nothing():
    gates = _gates(_comparison())
    assert [g["gate"] for g in gates] == ["significance", "skill", "calibration", "walk_forward", "sharpe"]
    assert _failed(gates) == []
    assert all(g["passed"] is (None if g["gate"] == "skill" else True) for g in gates)  # skill: shown, not required


def _set(c: dict, path: tuple, value) -> dict:
    c = copy.deepcopy(c)
    target = c
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return c


@pytest.mark.parametrize(
    ("path", "value", "gate", "words"),
    [
        (("pairs", 0, "dm", "p_value"), 0.2, "significance", ["p 0.2 >= alpha 0.05", "HAC lag 20"]),
        (("pairs", 0, "dm", "p_value"), 0.05, "significance", ["p 0.05 >= alpha 0.05"]),  # the boundary fails
        (("models", 1, "scores", "ece"), 0.0612, "calibration", ["ECE 0.0612 > max_ece 0.05"]),
        (("walk_forward", "wins", "tBTCUSD_1h_v2"), 2, "walk_forward", ["2 of 5 windows", "40%"]),
        (("models", 1, "backtest", "sharpe"), 0.7, "sharpe", ["Sharpe 0.700 < 0.750", "tolerance 0.25"]),
        (("models", 1, "backtest", "sharpe"), None, "sharpe", ["undefined", "taken as 0"]),
    ],
)
def test_each_gate_failing_alone_is_reported_by_name_with_its_numbers(path, value, gate, words):
    gates = _gates(_set(_comparison(), path, value))
    assert _failed(gates) == [gate]
    detail = next(g["detail"] for g in gates if g["gate"] == gate)
    for word in words:
        assert word in detail, detail


def test_boundaries_that_pass():
    c = _set(_comparison(), ("models", 1, "scores", "ece"), 0.05)  # ECE == max_ece passes
    c = _set(c, ("walk_forward", "wins", "tBTCUSD_1h_v2"), 3)  # 3/5 = 0.6 == min share passes
    c = _set(c, ("models", 1, "backtest", "sharpe"), 0.75)  # champion 1.0 - 0.25
    assert _failed(_gates(c)) == []


def test_walk_forward_zero_turns_the_gate_off():
    c = _set(_comparison(), ("walk_forward",), None)
    gates = _gates(c, ChampionConfig(walk_forward=0))
    wf = next(g for g in gates if g["gate"] == "walk_forward")
    assert wf["passed"] is None and "off" in wf["detail"]
    # ...but asked for and missing, it fails rather than passing silently
    assert _failed(_gates(c)) == ["walk_forward"]


def test_comparison_without_backtests_skips_the_sharpe_gate():
    c = _set(_comparison(), ("models", 1, "backtest"), None)
    sharpe = next(g for g in _gates(c) if g["gate"] == "sharpe")
    assert sharpe["passed"] is None


def test_overridden_thresholds_change_the_verdicts():
    strict = ChampionConfig(alpha=0.001, max_ece=0.01, min_walk_forward_share=1.0, sharpe_tolerance=0.0)
    assert _failed(_gates(_comparison(), strict)) == ["significance", "calibration", "walk_forward"]


def test_table_names_every_failed_gate_with_numbers():
    c = _set(_set(_comparison(), ("pairs", 0, "dm", "p_value"), 0.3), ("models", 1, "scores", "ece"), 0.09)
    gates = _gates(c)
    result = {"symbol": "tBTCUSD", "timeframe": "1h", "dry_run": True, "champion": "tBTCUSD_1h_v1", "notes": [],
              "challengers": [{"name": "tBTCUSD_1h_v2", "log_loss": 0.68, "gates": gates, "failed": _failed(gates),
                               "eligible": False}],
              "decision": {"action": "keep", "winner": None, "reason": "x", "applied": False, "seq": None}}
    text = "\n".join(champion.text_lines(result))
    assert "tBTCUSD_1h_v2 fails significance: p 0.3 >= alpha 0.05" in text
    assert "tBTCUSD_1h_v2 fails calibration: ECE 0.0900 > max_ece 0.05" in text
    assert "Dry run: would keep tBTCUSD_1h_v1; nothing changed" in text
    header = next(line for line in text.splitlines() if "challenger" in line and "eligible" in line)
    for gate in ("significance", "calibration", "walk_forward", "sharpe"):
        assert gate in header


def test_the_skill_gate_blocks_only_when_required():
    """Shown always (the DM test against the best constant); it fails a challenger only with require_skill."""
    comparison = _comparison()
    shown = next(g for g in _gates(comparison) if g["gate"] == "skill")
    assert shown["passed"] is None and shown["value"] == 0.2 and "not required" in shown["detail"]
    required = attrs.evolve(CFG, require_skill=True)
    assert _failed(_gates(comparison, required)) == ["skill"]
    comparison["models"][1]["vs_base_rate"]["dm"]["p_value"] = 0.01
    assert next(g for g in _gates(comparison, required) if g["gate"] == "skill")["passed"] is True

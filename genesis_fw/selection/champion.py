"""``genesis-fw champion select SYMBOL TIMEFRAME``: promote the best challenger that passes every gate, or keep
the champion and say why (docs/CHAMPION_SELECTION.md, "Champion selection").

The rule
    The current champion and every challenger of the market are compared on the same test period and labels
    (:func:`genesis_fw.selection.comparison.compare`, champion first). A challenger is *eligible* when it
    passes every gate of :class:`~genesis_fw.config.ChampionConfig`:

    ``significance``  one-sided Diebold-Mariano test (HAC variance, lag = horizon) that its per-bar log loss
                      is below the champion's: ``p_value < alpha``;
    ``calibration``   its expected calibration error on the test period: ``ece <= max_ece``;
    ``walk_forward``  its log loss below the champion's in at least ``min_walk_forward_share`` of the
                      ``walk_forward`` windows (``walk_forward = 0``: gate off);
    ``sharpe``        its backtest Sharpe ratio at least the champion's minus ``sharpe_tolerance`` (an
                      undefined Sharpe ratio, e.g. no trades, counts as 0).

    Among the eligible, the lowest test log loss wins and is promoted (Registry.promote, reason
    "champion select: ...", evidence = the comparison JSON and every gate's value, threshold and result).
    Without an eligible challenger the champion is kept and the decision is logged (Registry.keep, same
    evidence). A challenger whose horizon or label definition differs from the champion's cannot be
    compared on the same labels: it fails the ``comparable`` gate and stays out of the comparison.

No challenger
    Nothing to decide: one line, exit 0, nothing logged (an audit entry per idle run would bury the
    decisions that matter).

No champion
    There is nothing to compare on a common period: each challenger is scored on its own test part
    (:func:`genesis_fw.ml.model_evaluation.evaluate`), the significance gate tests it against the best
    constant base rate (its training or validation part's up-rate, whichever has the lower log loss;
    :func:`genesis_fw.ml.evaluation.loss_difference_test`) and the calibration gate applies; the
    walk-forward and Sharpe gates are skipped (there is no champion to beat). The lowest test log loss
    among the eligible is promoted.

Units: log loss in nats per bar, ECE a probability, shares 0..1, Sharpe ratios annualised.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..config import ChampionConfig, RuntimeConfig
from ..data.store import CandleStore
from ..errors import RegistryError

#: Gate names, in display order.
GATES = ("comparable", "significance", "calibration", "walk_forward", "sharpe")


def _gate(name: str, value: Any, threshold: Any, passed: bool | None, detail: str) -> dict[str, Any]:
    """One gate's result; ``passed`` None = skipped (does not block), with why in ``detail``."""
    return {"gate": name, "value": value, "threshold": threshold, "passed": passed, "detail": detail}


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _sharpe(backtest: dict[str, Any] | None) -> tuple[float | None, str]:
    """A model's backtest Sharpe ratio for the gate: ``(value, note)``; None without a backtest."""
    if backtest is None:
        return None, "no backtest"
    value = backtest.get("sharpe")
    if value is None:
        return 0.0, " (undefined: no trades or no dispersion, taken as 0)"
    return float(value), ""


def gates_against_champion(comparison: dict[str, Any], cfg: ChampionConfig) -> dict[str, list[dict[str, Any]]]:
    """Every challenger's gate results from a :func:`~genesis_fw.selection.comparison.compare` result whose
    first model (``pairs[*].baseline``) is the champion: ``{challenger name: [gate, ...]}`` in the order of
    :data:`GATES` (``comparable`` excepted: the comparison only holds comparable models)."""
    models = {m["name"]: m for m in comparison["models"]}
    wf = comparison.get("walk_forward")
    out: dict[str, list[dict[str, Any]]] = {}
    for pair in comparison["pairs"]:
        name, champ = pair["candidate"], pair["baseline"]
        model = models[name]
        gates = []
        dm = pair["dm"]
        p = float(dm["p_value"])
        gates.append(_gate("significance", p, cfg.alpha, p < cfg.alpha,
                           f"p {_p(p)} {'<' if p < cfg.alpha else '>='} alpha {cfg.alpha:g} (one-sided "
                           f"Diebold-Mariano, HAC lag {dm.get('lag')}; mean log-loss difference "
                           f"{float(dm['mean_difference']):+.6f} nats vs {champ})"))
        ece = model["scores"].get("ece")
        if ece is None:
            gates.append(_gate("calibration", None, cfg.max_ece, False, "ECE undefined on the test period"))
        else:
            ok = float(ece) <= cfg.max_ece
            gates.append(_gate("calibration", float(ece), cfg.max_ece, ok,
                               f"ECE {float(ece):.4f} {'<=' if ok else '>'} max_ece {cfg.max_ece:g}"))
        if cfg.walk_forward == 0:
            gates.append(_gate("walk_forward", None, cfg.min_walk_forward_share, None, "off (walk_forward = 0)"))
        elif not wf or not wf.get("windows"):
            gates.append(_gate("walk_forward", None, cfg.min_walk_forward_share, False,
                               "no walk-forward windows in the comparison"))
        else:
            k = len(wf["windows"])
            wins = int(wf.get("wins", {}).get(name, 0))
            share = wins / k
            ok = share >= cfg.min_walk_forward_share
            gates.append(_gate("walk_forward", share, cfg.min_walk_forward_share, ok,
                               f"better than {champ} in {wins} of {k} windows ({share:.0%}; needs "
                               f">= {cfg.min_walk_forward_share:.0%})"))
        s_c, note_c = _sharpe(model.get("backtest"))
        s_champ, note_champ = _sharpe(models[champ].get("backtest"))
        if s_c is None or s_champ is None:
            gates.append(_gate("sharpe", None, None, None, "skipped: the comparison ran without backtests"))
        else:
            floor = s_champ - cfg.sharpe_tolerance
            ok = s_c >= floor
            gates.append(_gate("sharpe", s_c, floor, ok,
                               f"Sharpe {s_c:.3f}{note_c} {'>=' if ok else '<'} {floor:.3f} ({champ}'s "
                               f"{s_champ:.3f}{note_champ} - tolerance {cfg.sharpe_tolerance:g})"))
        out[name] = gates
    return out


def gates_without_champion(evaluation: dict[str, Any], cfg: ChampionConfig) -> list[dict[str, Any]]:
    """A challenger's gate results when its market has no champion, from
    :func:`genesis_fw.ml.model_evaluation.evaluate` of its test part (see the module docstring)."""
    test = evaluation["test"]
    gates = []
    if test is None:
        gates.append(_gate("significance", None, cfg.alpha, False, "no base rate to test against"))
    else:
        p = float(test["p_value"])
        base = test["baseline"]
        rate = evaluation["baseline_rates"][base]
        gates.append(_gate("significance", p, cfg.alpha, p < cfg.alpha,
                           f"p {_p(p)} {'<' if p < cfg.alpha else '>='} alpha {cfg.alpha:g} (no champion: one-sided "
                           f"Diebold-Mariano against the constant {base} {rate:.4f}, HAC lag {test['lag']})"))
    ece = evaluation["scores"].get("ece")
    ok = ece is not None and float(ece) <= cfg.max_ece
    gates.append(_gate("calibration", ece, cfg.max_ece, ok,
                       "ECE undefined" if ece is None else
                       f"ECE {float(ece):.4f} {'<=' if ok else '>'} max_ece {cfg.max_ece:g}"))
    gates.append(_gate("walk_forward", None, cfg.min_walk_forward_share, None, "skipped: no champion to beat"))
    gates.append(_gate("sharpe", None, None, None, "skipped: no champion to beat"))
    return gates


def _failed(gates: list[dict[str, Any]]) -> list[str]:
    return [g["gate"] for g in gates if g["passed"] is False]


def _comparable(champion: Any, challenger: Any) -> dict[str, Any]:
    """The ``comparable`` gate: same horizon and label definition as the champion (else the per-bar losses
    are of other labels and no paired test means anything)."""
    a, b = champion.doc, challenger.doc
    same = a["horizon"] == b["horizon"] and a["label"] == b["label"]
    detail = (f"horizon {b['horizon']} and label {b['label']} as {champion.name}" if same else
              f"horizon {b['horizon']}, label {b['label']}; {champion.name} has horizon {a['horizon']}, label "
              f"{a['label']}: not comparable on the same labels")
    return _gate("comparable", None, None, same, detail)


def select(registry: Any, symbol: str, timeframe: str, store: CandleStore, cfg: RuntimeConfig, *,
           dry_run: bool = False, progress: Any = None) -> dict[str, Any]:
    """Apply the rule of the module docstring to the challengers of (``symbol``, ``timeframe``) in
    ``registry`` (a :class:`genesis_fw.registry.registry.Registry`), reading candles from ``store``, with
    the gates of ``cfg.champion`` and the costs of ``cfg`` for the backtests.

    Returns a JSON-ready dict: ``symbol``, ``timeframe``, ``dry_run``, ``champion`` (name or None),
    ``gates_config`` (the ChampionConfig), ``challengers`` (per challenger, in version order: ``name``,
    ``log_loss`` (test, nats), ``gates`` [{gate, value, threshold, passed (None = skipped), detail}],
    ``failed`` (gate names), ``eligible``), ``decision`` (``action``: promote | keep | none, ``winner``,
    ``reason``, ``applied``: whether the registry changed or logged it, ``seq``: the audit entry), and the
    evidence: ``comparison`` (compare's JSON) or ``evaluations`` (per challenger, without a champion),
    ``notes``. With ``dry_run`` nothing is written anywhere (registry, registry.json, audit log).
    """
    from .comparison import compare

    cc = cfg.champion
    champion = registry.champion(symbol, timeframe)
    challengers = registry.challengers(symbol, timeframe)
    result: dict[str, Any] = {
        "symbol": symbol, "timeframe": timeframe, "dry_run": bool(dry_run),
        "champion": champion.name if champion is not None else None,
        "gates_config": attrs.asdict(cc), "challengers": [], "comparison": None, "evaluations": None, "notes": [],
    }
    if not challengers:
        result["decision"] = {"action": "none", "winner": None, "applied": False, "seq": None,
                              "reason": f"no challengers for {symbol} {timeframe}: nothing to select, nothing logged"}
        return result

    rows: list[dict[str, Any]] = []
    if champion is not None:
        champ = registry.load_checked(champion.name)
        loaded = {c.name: registry.load_checked(c.name) for c in challengers}
        comparable = {name: _comparable(champ, m) for name, m in loaded.items()}
        compared = [m for name, m in loaded.items() if comparable[name]["passed"]]
        by_name: dict[str, list[dict[str, Any]]] = {}
        scores: dict[str, float] = {}
        if compared:
            comparison = compare([champ, *compared], store, cfg, walk_forward=cc.walk_forward, backtest=True,
                                 progress=progress)
            result["comparison"] = comparison
            by_name = gates_against_champion(comparison, cc)
            scores = {m["name"]: float(m["scores"]["log_loss"]) for m in comparison["models"]}
        for c in challengers:
            gates = [comparable[c.name], *by_name.get(c.name, [])]
            rows.append({"name": c.name, "log_loss": scores.get(c.name), "gates": gates})
    else:
        from ..ml.model_evaluation import evaluate

        evaluations = {}
        for c in challengers:
            ev = evaluate(registry.load_checked(c.name), store)
            evaluations[c.name] = ev
            rows.append({"name": c.name, "log_loss": float(ev["scores"]["log_loss"]),
                         "gates": gates_without_champion(ev, cc)})
        result["evaluations"] = evaluations
        result["notes"].append(f"{symbol} {timeframe} has no champion: each challenger is tested against the best "
                               "constant base rate on its own test part; the walk-forward and Sharpe gates are skipped")
    for row in rows:
        row["failed"] = _failed(row["gates"])
        row["eligible"] = not row["failed"]
    result["challengers"] = rows

    eligible = sorted((r for r in rows if r["eligible"]), key=lambda r: r["log_loss"])
    current = champion.name if champion is not None else "none"
    if eligible:
        win = eligible[0]
        others = f"; {len(eligible) - 1} other eligible with higher log loss" if len(eligible) > 1 else ""
        reason = (f"champion select: {win['name']} passes every gate with the lowest test log loss "
                  f"{win['log_loss']:.6f} (champion was {current}{others})")
        decision = {"action": "promote", "winner": win["name"], "reason": reason}
    else:
        why = "; ".join(f"{r['name']} failed {', '.join(r['failed'])}" for r in rows)
        decision = {"action": "keep", "winner": None,
                    "reason": f"champion select: no challenger passes every gate, keeping {current} ({why})"}
    result["decision"] = {**decision, "applied": False, "seq": None}
    if dry_run:
        return result

    evidence = {k: result[k] for k in ("champion", "gates_config", "challengers", "comparison", "evaluations",
                                       "notes")}
    now = registry.champion(symbol, timeframe)
    if (now.name if now is not None else None) != result["champion"]:
        raise RegistryError(f"the champion of {symbol} {timeframe} changed while selecting ({result['champion']} -> "
                            f"{now.name if now else None}): nothing done; run champion select again")
    if decision["action"] == "promote":
        change = registry.promote(decision["winner"], reason=decision["reason"], evidence=evidence,
                                  expected_champion=result["champion"])
    else:
        change = registry.keep(symbol, timeframe, reason=decision["reason"], evidence=evidence,
                               expected_champion=result["champion"])
    result["decision"].update(applied=True, seq=change.seq, replaced=change.from_model)
    result["notes"].extend(change.notes)
    return result


def text_lines(result: dict[str, Any]) -> list[str]:
    """The terminal form of :func:`select`'s result: a table of challengers x gates, the failed gates of each
    challenger with their numbers, and the decision."""
    champ = result["champion"] or "none"
    d = result["decision"]
    if d["action"] == "none":  # nothing to decide: one line
        return [d["reason"][0].upper() + d["reason"][1:]]
    lines = []
    lines.append(f"Champion selection {result['symbol']} {result['timeframe']}: champion {champ}, "
                 f"{len(result['challengers'])} challenger(s)")
    for note in result["notes"]:
        lines.append(f"Note: {note}")
    if result["challengers"]:
        shown = [g for g in GATES if any(x["gate"] == g for r in result["challengers"] for x in r["gates"])]

        def cell(g: dict[str, Any] | None) -> str:
            if g is None:
                return "-"
            if g["passed"] is None:
                return "skipped"
            mark = "pass" if g["passed"] else "FAIL"
            v = g["value"]
            if v is None:
                return mark
            if g["gate"] == "walk_forward":
                return f"{v:.0%} {mark}"
            return f"{_p(v) if g['gate'] == 'significance' else f'{v:.3f}'} {mark}"

        header = ["challenger", "log loss", *shown, "eligible"]
        table = [header]
        for r in result["challengers"]:
            gates = {g["gate"]: g for g in r["gates"]}
            ll = "n/a" if r["log_loss"] is None else f"{r['log_loss']:.5f}"
            table.append([r["name"], ll, *(cell(gates.get(g)) for g in shown), "yes" if r["eligible"] else "no"])
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        for r in result["challengers"]:
            for g in r["gates"]:
                if g["passed"] is False:
                    lines.append(f"  {r['name']} fails {g['gate']}: {g['detail']}")
    verb = {"promote": f"promote {d['winner']}", "keep": f"keep {champ}"}[d["action"]]
    if result["dry_run"]:
        lines.append(f"Dry run: would {verb}; nothing changed")
    elif d["action"] == "promote":
        lines.append(f"Promoted {d['winner']} (was {d.get('replaced') or 'none'}); logged as audit entry {d['seq']}")
    else:
        lines.append(f"Kept {champ}; the decision is logged as audit entry {d['seq']}")
    return lines

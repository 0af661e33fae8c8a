"""``genesis-fw champion select SYMBOL TIMEFRAME``: promote the best challenger that passes every gate, or keep
the champion and say why (docs/CHAMPION_SELECTION.md, "Champion selection").

The rule
    The current champion and every challenger of the market are compared on the same test period and labels
    (:func:`genesis_fw.selection.comparison.compare`, champion first). A challenger is *eligible* when it
    passes every gate of :class:`~genesis_fw.config.ChampionConfig`:

    ``file``          its registered file is there with the registered SHA-256;
    ``comparable``    its horizon and label definition are the champion's, and its test part overlaps the
                      period the others are compared on (:func:`overlapping`: the newest trained
                      challenger's test part, narrowed by each older overlapping one);
    ``significance``  one-sided Diebold-Mariano test (HAC variance, lag = horizon) that its per-bar log loss
                      is below the champion's: ``p_value < alpha``;
    ``skill``         the same test against the best constant predictor (compare's ``vs_base_rate``):
                      shown always, blocking only with ``require_skill``;
    ``calibration``   its expected calibration error on the test period: ``ece <= max_ece``;
    ``walk_forward``  its log loss below the champion's in at least ``min_walk_forward_share`` of the
                      ``walk_forward`` windows (``walk_forward = 0``: gate off);
    ``sharpe``        its backtest Sharpe ratio at least the champion's minus ``sharpe_tolerance`` (an
                      undefined Sharpe ratio, e.g. no trades, counts as 0).

    Among the eligible, the lowest test log loss wins and is promoted (Registry.promote, reason
    "champion select: ...", evidence = the comparison JSON and every gate's value, threshold and result).
    Without an eligible challenger the champion is kept and the decision is logged (Registry.keep, same
    evidence). A challenger failing ``file`` or ``comparable`` stays out of the comparison; the others are
    still compared (one bad challenger never stops the market).

No challenger
    Nothing to decide: one line, exit 0, nothing logged (an audit entry per idle run would bury the
    decisions that matter).

No champion
    There is nothing to compare on a common period: each challenger is scored on its own test part
    (:func:`genesis_fw.ml.model_evaluation.evaluate`), the significance gate tests it against the best
    constant base rate (its training or validation part's up-rate, whichever has the lower log loss;
    :func:`genesis_fw.ml.evaluation.loss_difference_test`) and the calibration gate applies; the
    walk-forward and Sharpe gates are skipped (there is no champion to beat). Only challengers scored on
    the same rows and labels as the newest one are ranked (the others fail ``comparable``); the lowest
    test log loss among the eligible is promoted.

Units: log loss in nats per bar, ECE a probability, shares 0..1, Sharpe ratios annualised.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..config import ChampionConfig, RuntimeConfig
from ..data.store import CandleStore
from ..data.timeframes import check_symbol, check_timeframe
from ..errors import ConfigError, DataError, ModelFileError, RegistryError

#: Gate names, in display order.
GATES = ("file", "comparable", "significance", "skill", "calibration", "walk_forward", "sharpe")


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
        gates.append(_skill_gate(model.get("vs_base_rate"), cfg))
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


def _skill_gate(vs: dict[str, Any] | None, cfg: ChampionConfig) -> dict[str, Any]:
    """The ``skill`` gate: the one-sided Diebold-Mariano test against the best constant predictor
    (``vs``: a comparison entry's ``vs_base_rate``). Shown always; it blocks only with
    ``cfg.require_skill``."""
    if vs is None:
        return _gate("skill", None, cfg.alpha, False if cfg.require_skill else None, "no base-rate test")
    p, d = float(vs["dm"]["p_value"]), float(vs["log_loss_difference"])
    ok = p < cfg.alpha and d < 0
    word = ("significant skill" if ok else "no skill" if d >= 0 else "no significant skill") + " over the base rate"
    detail = (f"{word}: p {_p(p)} {'<' if p < cfg.alpha else '>='} alpha {cfg.alpha:g}, mean log-loss difference "
              f"{d:+.6f} nats vs the best constant ({vs['constant']}, {float(vs['rate']):.4f})"
              + ("" if cfg.require_skill else "; not required (champion.require_skill = false)"))
    return _gate("skill", p, cfg.alpha, ok if cfg.require_skill else None, detail)


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
        gates.append(_skill_gate({"dm": test, "log_loss_difference": float(test["mean_difference"]),
                                  "constant": base, "rate": rate}, cfg))
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


def _labels_text(doc: dict[str, Any]) -> str:
    """A model's labels in words: ``horizon 10, endpoint rule`` (and the dead zone and ties when set)."""
    lab = doc["label"]
    text = f"horizon {doc['horizon']}, {lab['rule']} rule"
    if lab.get("dead_zone_bps"):
        text += f", dead zone {float(lab['dead_zone_bps']):g} bps"
    if lab.get("keep_ties"):
        text += ", ties kept"
    return text


def _comparable(champion: Any, challenger: Any) -> dict[str, Any]:
    """The ``comparable`` gate: same horizon and label definition as the champion (else the per-bar losses
    are of other labels and no paired test means anything)."""
    a, b = champion.doc, challenger.doc
    same = a["horizon"] == b["horizon"] and a["label"] == b["label"]
    detail = (f"{_labels_text(b)}, as {champion.name}" if same else
              f"{_labels_text(b)}; {champion.name} has {_labels_text(a)}: not comparable on the same labels")
    return _gate("comparable", None, None, same, detail)


def _file_gate(entry: Any, exc: Exception) -> dict[str, Any]:
    """The ``file`` gate of a challenger whose registered file cannot be used (missing, or changed since it
    was registered): it stays out of the comparison."""
    what = "missing" if not entry.file.exists() else "changed since registered" if "tampered" in str(exc) \
        else "unusable"
    return _gate("file", None, None, False, f"{what}: {exc}")


def _test_part(m: Any) -> tuple[int, int, int] | None:
    """A trained model's test part as ms UTC (first bar, last bar, last label end); None for hand-set."""
    from ..data.timeframes import parse_time, to_ms

    td = m.doc["training_data"]
    if td is None:
        return None
    b = td["split"]["boundaries"]
    return tuple(to_ms(parse_time(b[k])) for k in ("test_start", "test_end", "test_label_end"))  # type: ignore


def _span(part: tuple[int, int, int]) -> str:
    from ..data.timeframes import from_ms

    return f"{from_ms(part[0]).strftime('%Y-%m-%d %H:%M')} .. {from_ms(part[1]).strftime('%Y-%m-%d %H:%M')} UTC"


def overlapping(models: list[Any]) -> tuple[list[Any], dict[str, dict[str, Any]], tuple[int, int, int] | None]:
    """The challengers (loaded, comparable) that can be compared on one test period: the newest trained
    challenger's test part, narrowed by each older one (newest first) whose test part overlaps what is left.
    Returns (kept, {name: failed ``comparable`` gate} of the others, the common part in ms or None when no
    challenger is trained). Hand-set challengers have no test part and are always kept."""
    trained = sorted((m for m in models if _test_part(m) is not None), key=lambda m: -int(m.doc["version"]))
    failed: dict[str, dict[str, Any]] = {}
    if not trained:
        return list(models), failed, None
    newest = trained[0]
    common = _test_part(newest)
    assert common is not None
    for m in trained[1:]:
        part = _test_part(m)
        assert part is not None
        lo, hi, end = max(common[0], part[0]), min(common[1], part[1]), min(common[2], part[2])
        if lo > hi:
            failed[m.name] = _gate("comparable", None, None, False,
                                   f"its test part {_span(part)} does not overlap {_span(common)}, the test period of "
                                   f"{newest.name} (the newest challenger) that the others are compared on")
        else:
            common = (lo, hi, end)
    return [m for m in models if m.name not in failed], failed, common


def _same_rows(loaded: dict[str, Any], evaluations: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Without a champion, each challenger is scored on its own test part: log losses of other rows or
    labels cannot be ranked. The ``comparable`` gate: the same labels (horizon and definition), candles and
    scored rows (period and count) as the newest challenger that could be scored."""
    if not evaluations:
        return {}

    def key(name: str) -> tuple[Any, ...]:
        ev, doc = evaluations[name], loaded[name].doc
        return (doc["horizon"], repr(sorted(doc["label"].items())), ev["period"]["start"], ev["period"]["end"],
                ev["rows"], ev["dataset"]["sha256"])

    def where(name: str) -> str:
        ev = evaluations[name]
        return (f"{_labels_text(loaded[name].doc)}; {ev['rows']:,} bars {ev['period']['start'][:16]} .. "
                f"{ev['period']['end'][:16]} UTC")

    newest = max(evaluations, key=lambda n: int(loaded[n].doc["version"]))
    out = {}
    for name in evaluations:
        ok = key(name) == key(newest)
        detail = (f"scored on the same rows and labels as {newest} ({where(newest)})" if ok else
                  f"scored on other rows or labels ({where(name)}) than {newest}, the newest challenger "
                  f"({where(newest)}): log losses of different labels are not ranked")
        out[name] = _gate("comparable", None, None, ok, detail)
    return out


def comparison_period(champ: Any, common: tuple[int, int, int] | None,
                      timeframe: str) -> tuple[dict[str, Any], str | None]:
    """The ``start``/``end`` (UTC ISO) :func:`select` compares ``champ`` and the challengers on, given the
    challengers' common test part ``common`` (from :func:`overlapping`): empty (compare's default, the
    intersection of the trained models' test parts) unless the champion's own test part, if any, does not
    overlap theirs; then the challengers' part, with a note when the champion has a test part elsewhere."""
    own = _test_part(champ)
    if common is None or not (own is None or max(own[0], common[0]) > min(own[1], common[1])):
        return {}, None
    from ..data.timeframes import from_ms
    from ..ml.labels import add_bars

    period = {"start": from_ms(common[0]).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "end": from_ms(add_bars(common[2], 1, timeframe)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    note = None if own is None else (f"the test part of {champ.name} ({_span(own)}) does not overlap the "
                                     f"challengers' ({_span(common)}): compared on the challengers'")
    return period, note


def _reusable(done: dict[str, Any] | None, models: list[Any], cfg: RuntimeConfig, period: dict[str, Any]) -> bool:
    """Whether ``done``, a :func:`~genesis_fw.selection.comparison.compare` result the caller made with this
    store and ``cfg``, is the comparison :func:`select` would make now: the same models (names and file
    SHA-256) in the same order, asked for the same period (``done["asked_period"]``: the ``start``/``end``
    and ``data_end`` given to compare, None for its default), with the champion section's walk-forward
    windows and the same costs."""
    if not done:
        return False
    asked = done.get("asked_period") or {}
    if {k: asked.get(k) for k in ("start", "end", "data_end")} != {k: period.get(k) for k in ("start", "end",
                                                                                               "data_end")}:
        return False
    same_models = [(m["name"], m["sha256"]) for m in done.get("models", [])] == [(m.name, m.sha256) for m in models]
    wf = done.get("walk_forward")
    same_windows = (wf["k"] if wf else 0) == cfg.champion.walk_forward
    costs = {"commission": cfg.commission, "slippage_bps": cfg.slippage, "initial_cash": cfg.initial_cash,
             "size": cfg.size}
    return same_models and same_windows and done.get("costs") == costs


def select(registry: Any, symbol: str, timeframe: str, store: CandleStore, cfg: RuntimeConfig, *,
           dry_run: bool = False, progress: Any = None, comparison: dict[str, Any] | None = None,
           data_end: str | None = None) -> dict[str, Any]:
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
    ``comparison``: a compare result the caller already made with ``store`` and ``cfg`` (``genesis-fw e2e``'s
    compare step); used as the evidence instead of comparing again when it is exactly the comparison this
    selection needs (:func:`_reusable`), else ignored. ``result["comparison_reused"]`` says which.
    ``data_end`` (UTC): no candle at or after it is read (compare's ``data_end``: labels, walk-forward refits).
    """
    from .comparison import compare

    check_symbol(symbol)
    check_timeframe(timeframe)
    cc = cfg.champion
    champion = registry.champion(symbol, timeframe)
    challengers = registry.challengers(symbol, timeframe)
    result: dict[str, Any] = {
        "symbol": symbol, "timeframe": timeframe, "dry_run": bool(dry_run),
        "champion": champion.name if champion is not None else None,
        "gates_config": attrs.asdict(cc), "challengers": [], "comparison": None, "evaluations": None, "notes": [],
        "comparison_reused": False,
    }
    if not challengers:
        result["decision"] = {"action": "none", "winner": None, "applied": False, "seq": None,
                              "reason": f"no challengers for {symbol} {timeframe}: nothing to select, nothing logged"}
        return result

    rows: list[dict[str, Any]] = []
    early: dict[str, list[dict[str, Any]]] = {}  # challengers out of the comparison: their failed gates
    loaded: dict[str, Any] = {}
    for c in challengers:
        try:
            loaded[c.name] = registry.load_checked(c.name)
        except (RegistryError, ModelFileError) as exc:
            early[c.name] = [_file_gate(c, exc)]
    if champion is not None:
        champ = registry.load_checked(champion.name)
        comparable = {name: _comparable(champ, m) for name, m in loaded.items()}
        for name, gate in comparable.items():
            if not gate["passed"]:
                early[name] = [gate]
        kept, apart, common = overlapping([m for name, m in loaded.items() if name not in early])
        for name, gate in apart.items():
            early[name] = [comparable[name], gate]
        by_name: dict[str, list[dict[str, Any]]] = {}
        scores: dict[str, float] = {}
        if kept:
            period, note = comparison_period(champ, common, timeframe)
            if note:
                result["notes"].append(note)
            try:
                if _reusable(comparison, [champ, *kept], cfg, {**period, "data_end": data_end}):
                    result["comparison_reused"] = True
                else:
                    comparison = compare([champ, *kept], store, cfg, walk_forward=cc.walk_forward, backtest=True,
                                         progress=progress, data_end=data_end, **period)
            except (ConfigError, DataError) as exc:  # compare's advice names its own options (--start/--end)
                text = str(exc).split("; give ")[0]
                raise type(exc)(f"champion select {symbol} {timeframe}: comparing {champ.name} with "
                                f"{', '.join(m.name for m in kept)}: {text}") from exc
            result["comparison"] = comparison
            by_name = gates_against_champion(comparison, cc)
            scores = {m["name"]: float(m["scores"]["log_loss"]) for m in comparison["models"]}
        for c in challengers:
            gates = early.get(c.name) or [comparable[c.name], *by_name.get(c.name, [])]
            rows.append({"name": c.name, "log_loss": scores.get(c.name), "gates": gates})
    else:
        from ..ml.model_evaluation import evaluate

        evaluations = {}
        for name, m in loaded.items():
            try:
                evaluations[name] = evaluate(m, store)
            except DataError as exc:  # e.g. no candles of its test part: it cannot be scored
                early[name] = [_gate("comparable", None, None, False, f"cannot be scored on its test part: {exc}")]
        same = _same_rows(loaded, evaluations)
        for c in challengers:
            if c.name in early:
                rows.append({"name": c.name, "log_loss": None, "gates": early[c.name]})
                continue
            ev = evaluations[c.name]
            rows.append({"name": c.name, "log_loss": float(ev["scores"]["log_loss"]),
                         "gates": [same[c.name], *gates_without_champion(ev, cc)]})
        result["evaluations"] = evaluations
        result["notes"].append(f"{symbol} {timeframe} has no champion: each challenger is tested against the best "
                               "constant base rate on its own test part, and only those scored on the same rows and "
                               "labels as the newest are ranked; the walk-forward and Sharpe gates are skipped")
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
        keeping = f"keeping {current}" if champion is not None else f"{symbol} {timeframe} stays without a champion"
        decision = {"action": "keep", "winner": None,
                    "reason": f"champion select: no challenger passes every gate, {keeping} ({why})"}
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
                return "skipped" if g["value"] is None else f"{_p(g['value'])} (not required)"
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
    market = f"{result['symbol']} {result['timeframe']}"
    keep = f"keep {champ}" if result["champion"] else f"leave {market} without a champion"
    verb = {"promote": f"promote {d['winner']}", "keep": keep}[d["action"]]
    if result["dry_run"]:
        lines.append(f"Dry run: would {verb}; nothing changed")
    elif d["action"] == "promote":
        lines.append(f"Promoted {d['winner']} (was {d.get('replaced') or 'none'}); logged as audit entry {d['seq']}")
    elif result["champion"]:
        lines.append(f"Kept {champ}; the decision is logged as audit entry {d['seq']}")
    else:
        lines.append(f"Promoted none: {market} stays without a champion; the decision is logged as audit entry "
                     f"{d['seq']}")
    return lines

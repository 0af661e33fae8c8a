"""``genesis-fw e2e``: from candles to a champion in one command, every step cached by its inputs' hashes.

The steps, in order (docs/WORKFLOW.md):

==========  =================================================================================================
fetch       candles from the exchange into the store (:func:`genesis_fw.data.fetch.run`); skipped offline
validate    the quality checks of the file the data is read from; gate: score >= ``min_quality``
features    the feature file (:func:`genesis_fw.ml.feature_files.make`)
labels      the labelled examples (:func:`genesis_fw.ml.dataset.build`), written as ``work/labels.parquet``
train       the purged grid search and refit (:func:`genesis_fw.ml.training.fit`) -> ``work/fitted.json``
calibrate   calibration, scores, verdict and the model file (:func:`genesis_fw.ml.training.calibrate`); the
            file is validated on write and on load (gate: a model that fails validation stops the run)
evaluate    the model on its test part against the base rates; gate with ``require_skill``: its verdict
            must be "skill" (significantly better than the best constant)
compare     the model against the market's current champion (:func:`genesis_fw.selection.comparison.compare`,
            with the champion section's walk-forward windows); skipped without a champion
backtest    ``ml_model`` backtests of the champion and the model over the model's test part, saved as runs
select      the model registered as a challenger, then ``champion select`` (promote or keep, logged)
==========  =================================================================================================

Caching (:mod:`genesis_fw.workflow.cache`): each step's key is the SHA-256 of its inputs: the hash of the
candle file the data comes from, the definitions and settings the step uses, and its upstream steps'
output hashes. A rerun with nothing changed runs nothing; a changed input runs exactly the steps
downstream of it. The registry is an input of ``compare``, ``backtest`` and ``select``: the market's
state (every registered model's status and file hash, the rollback target). When the market is exactly
as this folder's own ``select`` step left it for the same model, the state before that step stands in
for it, so the step's own registration and decision do not count as a change. ``--end`` bounds every
candle any step reads, also compare's walk-forward refits and select (``data_end``).

Gates stop the run with one :class:`GateFailed` line before anything of a later step is done; the registry
is changed only by the last step. Everything finished stays (files and cache), and the run summary says
what was done, what stopped it and what was not run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from .. import __version__
from .._util import write_text_atomic
from ..config import RuntimeConfig
from ..data.store import CandleStore
from ..errors import ConfigError, GenesisError, ModelFileError, OutputError
from .cache import StepCache, file_sha256, key_of
from .measure import measure

#: The steps in order, with what each does (the summary's wording).
STEPS: tuple[tuple[str, str], ...] = (
    ("fetch", "candles from the exchange into the store"),
    ("validate", "data quality checks (gate: --min-quality)"),
    ("features", "feature file, cached by content"),
    ("labels", "labelled examples"),
    ("train", "purged grid search and refit"),
    ("calibrate", "calibration, scores and the model file"),
    ("evaluate", "test part against the base rates"),
    ("compare", "against the current champion"),
    ("backtest", "ml_model backtests of both"),
    ("select", "register, then champion select"),
)
STEP_NAMES = tuple(name for name, _ in STEPS)
#: Testing hook: ``GENESIS_E2E_KILL_AT=<step>`` kills the process with SIGKILL when that step starts its work
#: (after the steps before it are recorded), to test that a rerun continues from the cache.
KILL_ENV = "GENESIS_E2E_KILL_AT"


class GateFailed(GenesisError):
    """A gate of the workflow failed (data quality, model validation, skill): the run stops there."""


@attrs.frozen
class Options:
    """What ``genesis-fw e2e`` was asked. ``cfg`` holds symbol, timeframe, start, end and the overrides.

    ``min_quality``: lowest data quality score (0..1) that lets the run go on. ``require_skill``: stop
    unless the model is significantly better than the best constant on its test part. ``offline``: no
    fetch. ``output``: the run folder (cache, summary, step reports).
    """

    cfg: RuntimeConfig
    output: Path
    offline: bool = False
    min_quality: float = 0.99
    require_skill: bool = False
    fetch_start: str | None = None
    fetch_end: str | None = None


@attrs.define
class StepResult:
    """One row of the run summary. ``status``: done | cached | skipped | failed | not run."""

    name: str
    what: str
    status: str = "not run"
    detail: str = ""
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_mib: float | None = None
    peak_scope: str | None = None
    outputs: dict[str, Any] = attrs.field(factory=dict)
    #: Every file the step produced: absolute path -> SHA-256 of its bytes.
    files: dict[str, str] = attrs.field(factory=dict)
    reports: dict[str, str] = attrs.field(factory=dict)


def _os_error(exc: OSError) -> OutputError:
    """A file-system error as the one-line :class:`OutputError` a user sees."""
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    return OutputError(f"cannot write{where}: {exc.strerror or exc}")


_SQL_HASH: list[str] = []


def _sql_hash() -> str:
    """SHA-256 over the SQL files DuckDB runs (resampling, validation, features): a changed query changes
    every step's key, as a new genesis-fw version does."""
    if not _SQL_HASH:
        import hashlib
        from importlib import resources

        h = hashlib.sha256()
        root = Path(str(resources.files("genesis_fw_sql")))
        for path in sorted(root.rglob("*.sql")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _SQL_HASH.append(h.hexdigest())
    return _SQL_HASH[0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One run at a time per run folder (an flock on ``.e2e.lock``); a second one is refused in one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / ".e2e.lock", "a+")  # noqa: SIM115 - held for the run
    except OSError as exc:
        raise OutputError(f"cannot use {folder} as the run folder: {exc.strerror or exc}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another genesis-fw e2e is running in {folder}; wait for it or give another "
                              "--output") from None
        yield


def check_request(cfg: RuntimeConfig) -> None:
    """Refuse what no step could do, before any runs: a bad symbol, timeframe or date, an unknown model type
    or parameter grid (one-line errors)."""
    from ..data.timeframes import check_symbol, check_timeframe, parse_time
    from ..plugins import load, model_grid

    check_symbol(cfg.symbol)
    check_timeframe(cfg.timeframe)
    start, end = parse_time(cfg.start, what="start"), parse_time(cfg.end, what="end")
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    load("model", cfg.model.name)
    model_grid(cfg.model)


class Pipeline:
    """One e2e run: :meth:`run` executes the steps and returns the summary (also written as JSON/HTML)."""

    def __init__(self, opts: Options, store: CandleStore, registry: Any, *,
                 progress: Callable[[str], Any] | None = None) -> None:
        self.opts = opts
        self.cfg = opts.cfg
        self.store = store
        self.registry = registry
        self.folder = Path(opts.output)
        self.reports = self.folder / "reports"
        self.work = self.folder / "work"
        self.progress = progress or (lambda text: None)
        self.cache = StepCache(self.folder)
        self.results = [StepResult(name, what) for name, what in STEPS]
        self.notes: list[str] = list(self.cache.notes)
        self.out: dict[str, dict[str, Any]] = {}  # outputs of the steps so far
        self._examples: Any = None  # (Examples, Split) built in this process
        self.summary: dict[str, Any] = {}

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _result(self, name: str) -> StepResult:
        return self.results[STEP_NAMES.index(name)]

    def _step(self, name: str, inputs: dict[str, Any] | None, work: Callable[[], tuple[dict[str, Any], list[Path]]],
              *, skipped: str | None = None) -> dict[str, Any]:
        """Run ``work`` unless the cache holds ``name`` under ``inputs``' key; ``skipped`` = why it does not apply."""
        res = self._result(name)
        number = f"[{STEP_NAMES.index(name) + 1}/{len(STEPS)}] {name}"
        if skipped is not None:
            res.status, res.detail = "skipped", skipped
            self.out[name] = {}
            self.progress(f"{number}: skipped ({skipped})")
            return {}
        inputs = {"genesis_fw": __version__, "sql": _sql_hash(), "store": str(self.store.root.resolve()),
                  "models": str(Path(self.registry.dir).resolve()), **(inputs or {})}
        key = key_of(name, inputs)
        rec = self.cache.hit(name, key)
        if rec is not None:
            res.status, res.wall_s, res.cpu_s = "cached", 0.0, 0.0
            res.outputs, res.files = rec["outputs"], dict(rec["files"])
            self.out[name] = rec["outputs"]
            self.notes.extend(n for n in rec["outputs"].get("notes", []) if n not in self.notes)
            res.detail = rec["outputs"].get("detail", "")
            self.progress(f"{number}: cached ({res.detail})" if res.detail else f"{number}: cached")
            return rec["outputs"]
        self.progress(f"{number}: {res.what} ...")
        if os.environ.get(KILL_ENV) == name:  # the documented testing hook: a real kill -9 at this point
            os.kill(os.getpid(), signal.SIGKILL)
        res.status = "failed"
        before = len(self.notes)
        try:
            with measure() as cost:
                outputs, files = work()
        finally:
            res.wall_s, res.cpu_s = cost.wall_s, cost.cpu_s
            res.peak_mib, res.peak_scope = cost.peak_mib, cost.peak_scope
        outputs["notes"] = self.notes[before:]  # said again when the step is cached
        rec = self.cache.record(name, key, inputs, outputs, files)
        res.status, res.outputs, res.files = "done", outputs, dict(rec["files"])
        res.detail = outputs.get("detail", "")
        self.out[name] = outputs
        self.progress(f"{number}: done in {cost.wall_s:.2f} s ({res.detail})" if res.detail else
                      f"{number}: done in {cost.wall_s:.2f} s")
        return outputs

    def _fail(self, name: str, message: str) -> GateFailed:
        res = self._result(name)
        res.status, res.detail = "failed", message
        return GateFailed(message)

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every step (under the run folder's lock); the summary is written also when a step fails."""
        started = _now()
        error: GenesisError | None = None
        with _folder_lock(self.folder), measure() as total:
            try:
                for name in STEP_NAMES:
                    getattr(self, f"_{name}")()
            except (GenesisError, OSError) as exc:
                error = exc if isinstance(exc, GenesisError) else _os_error(exc)
                failed = [r for r in self.results if r.status == "failed"]
                if not failed:  # raised before the step's work began (e.g. loading the champion)
                    failed = [next(r for r in self.results if r.status == "not run")]
                    failed[0].status = "failed"
                for res in failed:
                    res.detail = res.detail or str(error)
        self.summary = self._summary(started, total, error)
        try:
            self._write_summary()
        except OSError as exc:
            raise _os_error(exc) from (error or exc)
        if error is not None:
            raise error
        return self.summary

    # -- steps -------------------------------------------------------------------------------------------
    def _fetch(self) -> None:
        cfg, opts = self.cfg, self.opts
        if opts.offline:
            self._step("fetch", None, lambda: ({}, []), skipped="--offline: the store (or the bundled sample) as it is")
            return
        from ..data import datasets as ds
        from ..data import fetch as fetch_mod
        from ..data.timeframes import parse_time

        if not opts.fetch_start:
            raise ConfigError("e2e fetches from --start: give --start (or --offline to use what the store holds)")
        start = parse_time(opts.fetch_start, what="start")
        end = parse_time(opts.fetch_end, what="end") or datetime.now(UTC).replace(second=0, microsecond=0)
        inputs = {"symbol": cfg.symbol, "timeframe": cfg.timeframe, "start": start.isoformat(),
                  "end": end.isoformat(), "base_url": cfg.exchange.base_url}
        current = ds.current(self.store, cfg.symbol, cfg.timeframe)
        inputs["dataset_sha256"] = current.sha256 if current is not None else None

        def work() -> tuple[dict[str, Any], list[Path]]:
            done = fetch_mod.run(self.store, {cfg.symbol: [cfg.timeframe]}, start, end, exchange=cfg.exchange,
                                 progress=False)
            r = done[0]
            after = ds.current(self.store, cfg.symbol, cfg.timeframe)
            what = f"version {r.version}" + ("" if r.new_version else " (unchanged)")
            detail = (f"{r.num_candles:,} candles, {what}; {r.candles_fetched:,} new, {r.requests} requests, "
                      f"{r.retries} retries")
            return ({"detail": detail, "version": r.version, "candles": r.num_candles, "new": r.candles_fetched,
                     "requests": r.requests, "sha256": after.sha256 if after else None},
                    [self.store.path(cfg.symbol, cfg.timeframe)])

        # A fetch recorded with the dataset it left is cached while the store still holds exactly that.
        rec = self.cache.steps.get("fetch") or {}
        if current is not None and rec.get("outputs", {}).get("sha256") == current.sha256:
            inputs["dataset_sha256"] = rec.get("inputs", {}).get("dataset_sha256")
        self._step("fetch", inputs, work)

    def _source(self) -> tuple[Any, list[str]]:
        from ..data.store import locate

        return locate(self.store, self.cfg.symbol, self.cfg.timeframe)

    def _validate(self) -> None:
        from ..data import validate as checks

        found, notes = self._source()
        self.notes.extend(n for n in notes if n not in self.notes)
        source_tf = found.resampled_from or found.timeframe
        self.source = {"path": str(found.path), "timeframe": source_tf, "origin": found.origin,
                       "sha256": file_sha256(found.path), "describe": found.describe()}
        inputs = {"source": self.source["sha256"], "symbol": self.cfg.symbol, "source_timeframe": source_tf}

        def work() -> tuple[dict[str, Any], list[Path]]:
            report = checks.validate(found.path, self.cfg.symbol, source_tf)
            json_path, md_path = checks.save(report, self.reports)
            if self.store.writable:
                checks.record(self.store.catalog_path, report, json_path)
                if found.origin == "store":
                    from ..data import datasets as ds

                    ds.update_quality(self.store, self.cfg.symbol, source_tf, report.quality_score,
                                      report.counts["gaps"])
            detail = f"{self.cfg.symbol} {source_tf} ({found.origin}): quality {report.quality_score:.6f}"
            return ({"detail": detail, "quality_score": report.quality_score, "counts": report.counts,
                     "report": str(md_path), "report_json": str(json_path)}, [json_path, md_path])

        out = self._step("validate", inputs, work)
        self._result("validate").reports["quality"] = out["report"]
        if out["quality_score"] < self.opts.min_quality:
            raise self._fail("validate", f"{self.cfg.symbol} {source_tf} quality score {out['quality_score']:.6f} is "
                                         f"below --min-quality {self.opts.min_quality:g} (report: {out['report']}); "
                                         "nothing after validation was run")

    def _range(self) -> dict[str, Any]:
        return {"symbol": self.cfg.symbol, "timeframe": self.cfg.timeframe, "start": self.cfg.start,
                "end": self.cfg.end, "source": self.source["sha256"]}

    def _features(self) -> None:
        from ..ml import feature_files
        from ..ml.features import definitions_hash

        cfg = self.cfg
        inputs = {**self._range(), "definitions": definitions_hash(cfg.features),
                  "params": attrs.asdict(cfg.features)}

        def work() -> tuple[dict[str, Any], list[Path]]:
            run = feature_files.make(self.store, cfg.symbol, cfg.timeframe, cfg.features, start=cfg.start,
                                     end=cfg.end)
            self.notes.extend(n for n in run.notes if n not in self.notes)
            m = run.meta
            files = [run.path] if run.path is not None and Path(run.path).is_file() else []
            detail = (f"{m['rows']:,} rows x {len(m['features'])} features"
                      + (" (store's cache was up to date)" if run.cached else ""))
            return {"detail": detail, "rows": m["rows"], "features": list(m["features"]),
                    "definitions_hash": m.get("definitions_hash", definitions_hash(cfg.features)),
                    "path": str(run.path) if files else None, "candles_sha256": m["sha256"]}, files

        self._step("features", inputs, work)

    def _label_config(self) -> dict[str, Any]:
        """The label definition the model file records (its labels file can be the same for two of them)."""
        tc = self.cfg.train
        return {"horizon": tc.horizon, "rule": tc.label_rule, "dead_zone_bps": tc.dead_zone_bps,
                "keep_ties": tc.keep_ties}

    def _features_id(self) -> dict[str, Any]:
        """What identifies the features downstream steps use: the feature file's SHA-256 (when the store keeps
        one), the definitions' hash and the candles' content hash."""
        out = self.out["features"]
        return {"file": self._file_hash("features"), "definitions": out.get("definitions_hash"),
                "candles": out.get("candles_sha256")}

    def _examples_now(self) -> Any:
        if self._examples is None:
            from ..ml import training

            self._examples = training.prepare(self.cfg, self.store)
        return self._examples

    def _labels(self) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .._util import atomic_path

        tc = self.cfg.train
        inputs = {**self._range(), "features": self._features_id(), "horizon": tc.horizon,
                  "rule": tc.label_rule, "dead_zone_bps": tc.dead_zone_bps,
                  "keep_ties": tc.keep_ties, "fractions": list(tc.fractions), "embargo": tc.embargo}

        def work() -> tuple[dict[str, Any], list[Path]]:
            ex, split = self._examples_now()
            lab = ex.labels
            table = pa.table({"timestamp": pa.array(lab.timestamp_ms, pa.int64()),
                              "label_end": pa.array(lab.end_ms, pa.int64()),
                              "forward_return": pa.array(np.asarray(lab.ret, dtype=float)),
                              "up": pa.array(ex.y.astype(np.int8))})
            path = self.work / "labels.parquet"
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
            parts = {part: int(rows.size) for part, rows in split.parts().items()}
            ident = ex.identity
            detail = (f"{len(ex.y):,} examples, horizon {tc.horizon} bars, up-rate {float(ex.y.mean()):.4f}; "
                      f"split {parts['train']:,}/{parts['validation']:,}/{parts['test']:,}")
            return ({"detail": detail, "examples": int(len(ex.y)), "up_rate": float(ex.y.mean()),
                     "drops": ex.drop_report(), "split": parts, "boundaries": split.boundaries,
                     "dataset": ident["dataset"], "dataset_version": ident["dataset_version"],
                     "candles_sha256": ident["sha256"], "path": str(path)}, [path])

        self._step("labels", inputs, work)

    def _train(self) -> None:
        from ..ml import training

        cfg = self.cfg
        tc = cfg.train
        inputs = {**self._range(), "labels": self._file_hash("labels"), "features": self._features_id(),
                  "model": cfg.model.name, "model_params": cfg.model.params, "folds": tc.folds,
                  "embargo": tc.embargo, "fractions": list(tc.fractions), "label": self._label_config()}

        def work() -> tuple[dict[str, Any], list[Path]]:
            ex, split = self._examples_now()
            fitted = training.fit(cfg, ex, split, on_step=lambda t: self.progress(f"      {t}"))
            data = training.fitted_state(cfg, fitted)
            path = self.work / "fitted.json"
            write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
            best = ", ".join(f"{k}={v}" for k, v in fitted.best.items()) or "no parameters"
            detail = f"{cfg.model.name}, {len(fitted.results)} candidates x {tc.folds} folds; best {best}"
            return ({"detail": detail, "best": fitted.best, "warnings": fitted.warnings, "path": str(path)}, [path])

        out = self._step("train", inputs, work)
        self.notes.extend(w for w in out.get("warnings", []) if w not in self.notes)

    def _file_hash(self, step: str) -> str | None:
        """One SHA-256 for every file ``step`` produced (their paths and hashes, in path order); None for none."""
        files = (self.cache.steps.get(step) or {}).get("files") or {}
        return key_of("files", dict(sorted(files.items()))) if files else None

    def _calibrate(self) -> None:
        from ..ml import model_file, training

        cfg = self.cfg
        tc = cfg.train
        inputs = {**self._range(), "fitted": self._file_hash("train"), "labels": self._file_hash("labels"),
                  "features": self._features_id(),
                  "calibration": list(tc.calibration), "calibration_folds": tc.calibration_folds,
                  "embargo": tc.embargo, "label": self._label_config()}

        def work() -> tuple[dict[str, Any], list[Path]]:
            ex, split = self._examples_now()
            data = json.loads(Path(self.out["train"]["path"]).read_text(encoding="utf-8"))
            fitted = training.fitted_from_state(cfg, data)
            result = training.calibrate(cfg, ex, split, fitted)
            same = self._same_model(result.doc)
            if same is None:
                result = training.write_model(result)
            # validated again as any reader will; an equal earlier file is used as it is (no new version)
            loaded = model_file.load(same or result.path)
            result = attrs.evolve(result, path=loaded.path, doc=loaded.doc)
            cal = result.doc["calibration"]
            detail = f"{loaded.name}, calibration {cal['method']}; {short_verdict(result.verdict)}"
            return ({"detail": detail, "model": loaded.name, "path": str(result.path), "verdict": result.verdict,
                     "calibration": cal["method"], "test_metrics": result.doc["metrics"]["test"]},
                    [result.path])

        try:
            self._step("calibrate", inputs, work)
        except ModelFileError as exc:
            raise self._fail("calibrate", f"the model failed validation: {exc}") from exc

    def _same_model(self, doc: dict[str, Any]) -> Path | None:
        """A model file of the market in the models folder (newest first) that ``doc`` equals but for its name,
        version, creation time and content hash (the same settings on the same data made it before); else None."""
        from ..ml import model_file

        volatile = ("name", "version", "created_at", "content_sha256")

        def strip(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if k not in volatile}

        new = json.loads(json.dumps(strip(doc)))
        folder = Path(self.registry.dir)
        for path in sorted(folder.glob(f"{self.cfg.symbol}_{self.cfg.timeframe}_v*.json"), reverse=True):
            try:
                old = model_file.load(path)
            except GenesisError:
                continue
            if strip(old.doc) == new:
                return path
        return None

    def _model(self) -> Any:
        from ..ml import model_file

        return model_file.load(self.out["calibrate"]["path"])

    def _evaluate(self) -> None:
        from ..ml import model_evaluation
        from ..ml.evaluation_report import render_evaluation_page

        inputs = {"model": self._file_hash("calibrate"), "source": self.source["sha256"]}

        def work() -> tuple[dict[str, Any], list[Path]]:
            loaded = self._model()
            result = model_evaluation.evaluate(loaded, self.store)
            self.notes.extend(n for n in result["notes"] if n not in self.notes)
            json_path, html = self.reports / "evaluation.json", self.reports / "evaluation.html"
            write_text_atomic(json_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
            write_text_atomic(html, render_evaluation_page(result))
            s = result["scores"]
            detail = f"log loss {s['log_loss']:.4f}, ECE {s['ece']:.4f}; {short_verdict(result['verdict'])}"
            return ({"detail": detail, "verdict": result["verdict"], "log_loss": s["log_loss"], "ece": s["ece"],
                     "n": s["n"], "report": str(html)}, [json_path, html])

        out = self._step("evaluate", inputs, work)
        self._result("evaluate").reports["evaluation"] = out["report"]
        if self.opts.require_skill and not out["verdict"].startswith("skill"):
            raise self._fail("evaluate", f"{self.out['calibrate']['model']} has no skill over the base rate on its "
                                         f"test part (--require-skill): {out['verdict']}; the registry is unchanged")

    # -- the registry's market -----------------------------------------------------------------------------
    def _market(self) -> dict[str, Any]:
        """The market's registry state: every registered model's status and file hash, and the rollback target
        (a decision that changes nothing, such as another folder's "keep", is no change)."""
        cfg = self.cfg
        entries = self.registry.entries(cfg.symbol, cfg.timeframe, include_retired=True)
        return {"models": sorted([e.name, e.status, e.sha256] for e in entries),
                "rollback_to": self.registry.rollback_target(cfg.symbol, cfg.timeframe)}

    def _effective_market(self) -> tuple[dict[str, Any], str | None]:
        """The registry input of compare/backtest/select and the champion to compare with: the market as this
        folder's select step found it when that step selected this same model and the market is still as it
        left it (its own registration and decision are no change), else the market as it is."""
        now = self._market()
        rec = self.cache.steps.get("select") or {}
        outputs = rec.get("outputs") or {}
        same_model = (rec.get("inputs") or {}).get("model") == self._file_hash("calibrate")
        if same_model and outputs.get("market_after") == now and "market_before" in outputs:
            return outputs["market_before"], outputs.get("champion_before")
        champ = self.registry.champion(self.cfg.symbol, self.cfg.timeframe)
        return now, champ.name if champ is not None else None

    def _costs(self) -> dict[str, Any]:
        c = self.cfg
        return {"commission": c.commission, "slippage": c.slippage, "initial_cash": c.initial_cash,
                "size": c.size, "max_leverage": c.max_leverage, "stop_loss": c.stop_loss,
                "take_profit": c.take_profit, "strategy": c.strategy.params if c.strategy.name == "ml_model" else {}}

    def _compare(self) -> None:
        from ..selection import comparison, comparison_report

        market, champion = self._effective_market()
        self.market_before, self.champion_before = market, champion
        model = self.out["calibrate"]["model"]
        if champion is None:
            self._step("compare", None, lambda: ({}, []), skipped=f"{self.cfg.symbol} {self.cfg.timeframe} has no "
                       "champion; select tests the model against the base rate")
            return
        if champion == model:
            self._step("compare", None, lambda: ({}, []), skipped=f"{model} is the champion already")
            return
        try:
            comparison.check_comparable([self.registry.load_checked(champion), self._model()])
        except ConfigError as exc:  # champion select will leave it out by its comparable gate, and say so
            self._step("compare", None, lambda: ({}, []), skipped=f"not comparable with {champion}: {exc}")
            return
        cc = self.cfg.champion
        inputs = {"model": self._file_hash("calibrate"), "market": market, "champion": champion,
                  "source": self.source["sha256"], "costs": self._costs(), "walk_forward": cc.walk_forward,
                  "fractions": list(self.cfg.train.fractions)}

        def work() -> tuple[dict[str, Any], list[Path]]:
            from ..selection.champion import comparison_period, overlapping

            champ, model_now = self.registry.load_checked(champion), self._model()
            cfg = attrs.evolve(self.cfg, strategy=attrs.evolve(self.cfg.strategy, name="ml_model"))
            # the period champion select compares on, so that select can reuse this comparison
            period, _ = comparison_period(champ, overlapping([model_now])[2], cfg.timeframe)
            result = comparison.compare([champ, model_now], self.store, cfg, walk_forward=cc.walk_forward,
                                        progress=lambda t: self.progress(f"      {t}"), data_end=self.cfg.end,
                                        **period)
            result["asked_period"] = {"start": period.get("start"), "end": period.get("end"),
                                      "data_end": self.cfg.end}
            self.notes.extend(n for n in result["notes"] if n not in self.notes and n.split(": ", 1)[-1] not in
                              self.notes)
            json_path, html = self.reports / "comparison.json", self.reports / "comparison.html"
            write_text_atomic(json_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
            write_text_atomic(html, comparison_report.render_comparison_page(result))
            scores = {m["name"]: m["scores"]["log_loss"] for m in result["models"]}
            detail = f"log loss {champion} {scores[champion]:.4f} vs {model} {scores[model]:.4f}"
            return ({"detail": detail, "champion": champion, "log_loss": scores, "period": result["period"],
                     "report": str(html)}, [json_path, html])

        out = self._step("compare", inputs, work)
        self._result("compare").reports["comparison"] = out["report"]

    def _backtest(self) -> None:
        from ..backtest import engine, runs
        from ..selection.comparison import backtest_config

        model = self.out["calibrate"]["model"]
        champion = self.champion_before if self.champion_before != model else None
        names = [n for n in (champion, model) if n is not None]
        inputs = {"model": self._file_hash("calibrate"), "market": self.market_before, "champion": champion,
                  "source": self.source["sha256"], "costs": self._costs()}

        def work() -> tuple[dict[str, Any], list[Path]]:
            loaded = {model: self._model()}
            if champion is not None:
                loaded[champion] = self.registry.load_checked(champion)
            cfg = attrs.evolve(self.cfg, strategy=attrs.evolve(self.cfg.strategy, name="ml_model"))
            period = engine.with_period(backtest_config(cfg, loaded[model], {"start": None, "end": None}), "test")
            span = {"start": period.start, "end": period.end}
            outputs: dict[str, Any] = {"period": span, "runs": {}}
            files: list[Path] = []
            for name in names:
                bt = backtest_config(cfg, loaded[name], span)
                result = engine.run(bt, self.store)
                self.notes.extend(n for n in result.notes if n not in self.notes)
                paths = runs.save(result, self.reports / f"backtest_{name}.html", store=self.store)
                m = result.metrics
                outputs["runs"][name] = {"run_id": result.run_id, "report": str(paths["report"]),
                                         "total_return": m.get("total_return"), "sharpe": m.get("sharpe"),
                                         "num_trades": m.get("num_trades"), "max_drawdown": m.get("max_drawdown")}
                files.extend(paths.values())
            outputs["detail"] = "; ".join(
                f"{n} return {_pct(r['total_return'])}, Sharpe {_num(r['sharpe'])}, {r['num_trades']} trades"
                for n, r in outputs["runs"].items())
            return outputs, files

        out = self._step("backtest", inputs, work)
        for name, r in out.get("runs", {}).items():
            self._result("backtest").reports[f"backtest {name}"] = r["report"]

    def _select(self) -> None:
        from ..selection import champion as selection

        cfg = self.cfg
        model = self.out["calibrate"]["model"]
        inputs = {"model": self._file_hash("calibrate"), "market": self.market_before,
                  "champion": attrs.asdict(cfg.champion), "costs": self._costs(), "source": self.source["sha256"],
                  "comparison": self._file_hash("compare") if self.out.get("compare") else None}

        def work() -> tuple[dict[str, Any], list[Path]]:
            notes: list[str] = []
            known = {e.name: e for e in self.registry.entries(cfg.symbol, cfg.timeframe, include_retired=True)}
            if model not in known:
                change = self.registry.register(self.out["calibrate"]["path"], reason="trained by genesis-fw e2e",
                                                evidence={"test_metrics": self.out["calibrate"]["test_metrics"],
                                                          "verdict": self.out["calibrate"]["verdict"]})
                notes.extend(change.notes)
                notes.append(f"registered {model} as a challenger (audit entry {change.seq})")
            elif known[model].status == "retired":
                notes.append(f"{model} is retired in the registry (not registered again: `genesis-fw models "
                             f"register {model}` makes it a challenger)")
            sel_cfg = attrs.evolve(cfg, strategy=attrs.evolve(cfg.strategy, name="ml_model"))
            done = None  # the compare step's result: select reuses it when it is the comparison it needs
            compared = (self.out.get("compare") or {}).get("report")
            if compared and Path(compared).with_suffix(".json").is_file():
                done = json.loads(Path(compared).with_suffix(".json").read_text(encoding="utf-8"))
            result = selection.select(self.registry, cfg.symbol, cfg.timeframe, self.store, sel_cfg,
                                      progress=lambda t: self.progress(f"      {t}"), comparison=done,
                                      data_end=cfg.end)
            if result.get("comparison_reused"):
                notes.append("champion select used the compare step's comparison (the same models, period, "
                             "windows and costs)")
            notes.extend(result["notes"])
            self.notes.extend(n for n in notes if n not in self.notes)
            json_path = self.reports / "selection.json"
            write_text_atomic(json_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
            text_path = self.reports / "selection.txt"
            write_text_atomic(text_path, "\n".join(selection.text_lines(result)) + "\n")
            d = result["decision"]
            now = self.registry.champion(cfg.symbol, cfg.timeframe)
            detail = {"promote": f"promoted {d['winner']} (audit entry {d['seq']})",
                      "keep": f"kept {result['champion'] or 'no champion'} (audit entry {d['seq']})",
                      "none": "nothing to decide"}[d["action"]]
            return ({"detail": detail, "action": d["action"], "winner": d["winner"], "reason": d["reason"],
                     "seq": d["seq"], "champion_before": result["champion"],
                     "champion_after": now.name if now is not None else None,
                     "failed": {r["name"]: r["failed"] for r in result["challengers"]},
                     "market_before": self.market_before, "market_after": self._market(),
                     "report": str(text_path)}, [json_path, text_path])

        out = self._step("select", inputs, work)
        self._result("select").reports["selection"] = out["report"]

    # -- the summary ---------------------------------------------------------------------------------------
    def _summary(self, started: str, total: Any, error: GenesisError | None) -> dict[str, Any]:
        sel = self.out.get("select") or {}
        cal = self.out.get("calibrate") or {}
        lab = self.out.get("labels") or {}
        return {
            "version": 1,
            "symbol": self.cfg.symbol, "timeframe": self.cfg.timeframe,
            "start": self.cfg.start, "end": self.cfg.end, "offline": self.opts.offline,
            "started_at": started, "finished_at": _now(), "genesis_fw": __version__,
            "ok": error is None, "error": None if error is None else str(error),
            "wall_s": total.wall_s, "cpu_s": total.cpu_s,
            # each step resets the high-water mark: the run's peak is the largest of the steps' and the rest's
            "peak_mib": max([total.peak_mib or 0.0, *(r.peak_mib for r in self.results if r.peak_mib is not None)]),
            "data": {"source": getattr(self, "source", None), "dataset": lab.get("dataset"),
                     "dataset_version": lab.get("dataset_version"), "sha256": lab.get("candles_sha256"),
                     "quality_score": (self.out.get("validate") or {}).get("quality_score")},
            "model": {"name": cal.get("model"), "path": cal.get("path"), "verdict": cal.get("verdict")},
            "decision": {k: sel.get(k) for k in ("action", "winner", "reason", "seq", "champion_before",
                                                 "champion_after")} if sel else None,
            "steps": [attrs.asdict(r) for r in self.results],
            "notes": self.notes,
        }

    def _write_summary(self) -> None:
        from .summary_report import render_summary_page

        text = json.dumps(self.summary, indent=2, allow_nan=False) + "\n"
        page = render_summary_page(self.summary, self.folder)
        write_text_atomic(self.folder / "summary.json", text)
        write_text_atomic(self.folder / "summary.html", page)


def short_verdict(verdict: str) -> str:
    """A verdict without its parenthesised statistics: "no significant skill: log loss 0.61 vs base rate 0.63"."""
    return verdict.split(" (", 1)[0]


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"

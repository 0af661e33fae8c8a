"""Data validation: SQL checks over a candle file, summed up in a :class:`QualityReport`.

Each check is one file in ``sql/validation/`` that DuckDB runs straight over the Parquet file
(``read_parquet($source)``) and that returns one row per finding (``coverage.sql`` returns the single
summary row). Definitions, the outlier rule and the quality score are documented in
``docs/DATA_PIPELINE.md`` (section "Validation"); in short:

* ``gaps``            runs of missing slots on the timeframe grid (normal on Bitfinex: no trades, no candle)
* ``duplicates``      rows repeating an earlier row's timestamp
* ``misaligned``      timestamps off the timeframe's UTC grid (weeks open on Mondays, ``1M`` on the 1st)
* ``not_increasing``  timestamps not later than the previous row's, in file order
* ``ohlc``            high/low inconsistent with open/close, prices <= 0, NaN/inf/NULL, negative volume
* ``outliers``        price spikes: a close far from the previous one (robust z-score) that comes back
* ``zero_volume``     rows with volume 0 (Bitfinex never sends one: a filled-in candle)

``quality_score = 1 - weighted defective rows / rows``, each row counted once with the weight of its
worst defect (:data:`WEIGHTS`); gaps do not lower it but are reported as ``coverage``.

Row positions in reports are 0-based row numbers in the file (``file_row_number``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import sqlfiles
from .._util import one_line
from ..errors import DataError
from .store import CandleStore, Dataset
from .store import locate as store_locate
from .timeframes import check_symbol, check_timeframe, from_ms, grid_origin_ms, timeframe_ms

#: Every check, in the order they run and are reported.
CHECKS: tuple[str, ...] = ("gaps", "duplicates", "misaligned", "not_increasing", "ohlc", "outliers", "zero_volume")

#: What each check finds (one line, for reports).
DESCRIPTIONS: dict[str, str] = {
    "gaps": "runs of missing candle times on the timeframe grid (not a defect on Bitfinex: no trades, no candle)",
    "duplicates": "rows repeating an earlier row's timestamp",
    "misaligned": "timestamps off the timeframe's UTC grid (weeks: Mondays 00:00; 1M: calendar months)",
    "not_increasing": "timestamps not later than the previous row's, in file order",
    "ohlc": "high < max(open, close), low > min(open, close), high < low, price <= 0, NaN/inf, volume < 0",
    "outliers": "price spikes: |1-bar log return| > max(k * robust sigma, min_return), reverting within R bars",
    "zero_volume": "rows with volume 0 (Bitfinex sends no candle without trades: a filled-in candle)",
}

#: Weight of one affected row in the quality score; a row with several defects counts once, at its
#: highest weight. ``gaps`` has no weight (reported as coverage instead).
WEIGHTS: dict[str, float] = {
    "duplicates": 1.0,
    "misaligned": 1.0,
    "not_increasing": 1.0,
    "ohlc": 1.0,
    "outliers": 1.0,
    "zero_volume": 0.5,
}

#: Tunable parameters and their defaults (``params=`` of :func:`validate` overrides them).
DEFAULT_PARAMS: dict[str, Any] = {
    "k": 10.0,            # outliers: spike size in robust standard deviations
    "window": 60,         # outliers: trailing bars that estimate the scale
    "min_return": 0.02,   # outliers: smallest |log return| that can be a spike
    "revert": 5,          # outliers: bars within which the close must come back
    "examples": 10,       # offending rows kept per check in the report
    "max_ranges": 100,    # gap ranges kept in the report (the first ones in time)
}

#: The rule flags of the ohlc check (columns of sql/validation/ohlc.sql).
_OHLC_FLAGS = ("non_finite", "non_positive_price", "high_below_open_close", "low_above_open_close",
               "high_below_low", "negative_volume")

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@attrs.frozen
class QualityReport:
    """The result of :func:`validate` on one candle file.

    ``counts``: findings per check run (gaps: runs of missing slots; duplicates: rows after the first
    of each repeated timestamp; other checks: offending rows, or spikes for outliers). ``details``: sub-counts
    (OHLC rules, missing slots, ...). ``examples``: the first offending rows per check. ``gaps``: summary
    ``{count, missing, largest_ms, largest_from, largest_to, ranges, largest}``. ``expected_candles``: grid
    slots from the first candle's slot to the last one's; ``coverage``: occupied slots / expected slots
    (= ``num_candles / expected_candles`` without duplicates or misaligned rows).
    """

    symbol: str
    timeframe: str
    path: str
    data_sha256: str
    checked_at: str
    checks: tuple[str, ...]
    params: dict[str, Any]
    num_candles: int
    first: str | None
    last: str | None
    expected_candles: int
    coverage: float | None
    counts: dict[str, int]
    details: dict[str, dict[str, int]]
    examples: dict[str, list[dict[str, Any]]]
    gaps: dict[str, Any] | None
    defective_rows: int
    weighted_defects: float
    quality_score: float
    duration_s: float
    timings_s: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["checks"] = list(self.checks)
        out["weights"] = {k: WEIGHTS[k] for k in self.checks if k in WEIGHTS}
        return _jsonable(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def summary(self) -> str:
        """A few lines for the terminal."""
        span = f"{_short(self.first)} .. {_short(self.last)} UTC" if self.first else "no candles"
        lines = [
            f"{self.symbol} {self.timeframe}: {self.num_candles:,} candles, {span}  ({self.path})",
            f"  quality score  {self.quality_score:.6f}  ({self.defective_rows:,} defective rows, "
            f"weighted {self.weighted_defects:g})",
        ]
        if self.coverage is not None:
            lines.append(f"  coverage       {self.coverage * 100:.2f} %  "
                         f"({self.num_candles:,} candles, {self.expected_candles:,} grid slots)")
        for name in self.checks:
            extra = ""
            if name == "gaps" and self.gaps and self.gaps["count"]:
                g = self.gaps
                extra = (f"  ({g['missing']:,} missing; largest {_duration(g['largest_ms'])} "
                         f"{_short(g['largest_from'])} .. {_short(g['largest_to'])})")
            elif name in self.details and self.counts[name]:
                extra = "  (" + ", ".join(f"{k} {v:,}" for k, v in self.details[name].items() if v) + ")"
            lines.append(f"  {name:<15}{self.counts[name]:>10,}{extra}")
        lines.append(f"  checked in {self.duration_s:.2f} s")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A readable page: summary, per-check counts, largest gaps, examples."""
        out = [f"# Data quality: {self.symbol} {self.timeframe}", ""]
        rows = [
            ("file", f"`{self.path}`"),
            ("SHA-256 of the candles", f"`{self.data_sha256}`"),
            ("checked at", self.checked_at),
            ("candles", f"{self.num_candles:,}"),
            ("first / last candle (UTC)", f"{_short(self.first)} / {_short(self.last)}" if self.first else "n/a"),
            ("grid slots first..last", f"{self.expected_candles:,}"),
            ("coverage", "n/a" if self.coverage is None else f"{self.coverage * 100:.3f} %"),
            ("defective rows (weighted)", f"{self.defective_rows:,} ({self.weighted_defects:g})"),
            ("**quality score**", f"**{self.quality_score:.6f}**"),
            ("duration", f"{self.duration_s:.3f} s"),
        ]
        out += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows] + [""]
        out += ["quality score = 1 - weighted defective rows / candles; each row counts once, at the weight of "
                "its worst defect; gaps do not count (see coverage). Definitions: docs/DATA_PIPELINE.md.", ""]
        out += ["## Checks", "", "| check | found | weight | details | what it finds |",
                "| --- | ---: | ---: | --- | --- |"]
        for name in self.checks:
            detail = ", ".join(f"{k} {v:,}" for k, v in self.details.get(name, {}).items())
            weight = WEIGHTS.get(name, 0.0)
            out.append(f"| {name} | {self.counts[name]:,} | {weight:g} | {detail} | {_md_cell(DESCRIPTIONS[name])} |")
        out.append("")
        p = self.params
        out += [f"Parameters: outliers k={p['k']:g}, window={p['window']} bars, min_return={p['min_return']:g}, "
                f"revert={p['revert']} bars.", ""]
        if self.gaps is not None:
            g = self.gaps
            out += ["## Largest gaps", ""]
            if not g["largest"]:
                out += ["No gaps.", ""]
            else:
                out += [f"{g['count']:,} gaps, {g['missing']:,} missing candles in total.", "",
                        "| first missing (UTC) | last missing (UTC) | missing candles | duration |",
                        "| --- | --- | ---: | --- |"]
                out += [f"| {_short(r['from'])} | {_short(r['to'])} | {r['missing']:,} | "
                        f"{_duration(r['duration_ms'])} |" for r in g["largest"]]
                out.append("")
        shown = [n for n in self.checks if n != "gaps" and self.examples.get(n)]
        if shown:
            out += ["## Examples", "", "Row numbers are 0-based positions in the file.", ""]
            for name in shown:
                out += [f"### {name} ({self.counts[name]:,})", ""]
                rows = self.examples[name]
                if name == "ohlc":  # the rules broken in one column instead of six true/false ones
                    rows = [{**{k: v for k, v in r.items() if k not in _OHLC_FLAGS},
                             "rules broken": ", ".join(f for f in _OHLC_FLAGS if r.get(f))} for r in rows]
                out += _md_table(rows) + [""]
        return "\n".join(out)


def validate(path: Path, symbol: str, timeframe: str, *, checks: Iterable[str] | None = None,
             params: Mapping[str, Any] | None = None) -> QualityReport:
    """Run the checks (default: all of :data:`CHECKS`) over the candle file at ``path``.

    ``params`` overrides :data:`DEFAULT_PARAMS`. The file is read as it is (not through the store's
    checks), so it may hold anything the checks look for. Raises :class:`DataError` when the file
    cannot be read as candles.
    """
    import duckdb

    started = time.perf_counter()
    check_symbol(symbol)
    step_ms = timeframe_ms(check_timeframe(timeframe))
    selected = _select(checks)
    opts = _params(params)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no candle file at {path}")
    sha = _data_sha256(path)
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    values = {"source": str(path), "step_ms": step_ms, "origin_ms": grid_origin_ms(timeframe),
              **{k: opts[k] for k in ("k", "window", "min_return", "revert")}}
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}  # name -> pyarrow.Table
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name in ("coverage", *selected):
            t0 = time.perf_counter()
            query = sqlfiles.load(f"validation/{name}")
            used = {k: values[k] for k in set(_PARAM_RE.findall(query))}
            try:
                table = sqlfiles.to_arrow(con, query, used)
            except duckdb.Error as exc:
                raise DataError(f"cannot validate {path} ({name} check): {one_line(exc)}") from None
            results[name] = table
            timings[name] = time.perf_counter() - t0
    finally:
        con.close()

    cov = results.pop("coverage").to_pylist()[0]
    num = int(cov["num_candles"])
    n_examples = int(opts["examples"])
    counts: dict[str, int] = {}
    details: dict[str, dict[str, int]] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    rows_by_check: dict[str, np.ndarray] = {}
    gaps_summary = None
    for name in selected:
        found = results[name]
        if name == "gaps":
            gaps_summary = _gaps_summary(found, int(opts["max_ranges"]))
            counts[name] = gaps_summary["count"]
            details[name] = {"missing": gaps_summary["missing"]}
            examples[name] = gaps_summary["ranges"][:n_examples]
            continue
        if name == "duplicates":
            extra = pc.list_flatten(pc.list_slice(found.column("rows"), 1)).to_numpy()
            rows_by_check[name] = extra
            counts[name] = int(extra.size)
            copies = found.column("copies").to_numpy()
            identical = int((copies - 1)[found.column("identical").to_numpy(zero_copy_only=False)].sum())
            details[name] = {"timestamps": found.num_rows, "identical": identical,
                             "conflicting": int(extra.size) - identical}
        else:
            rows_by_check[name] = found.column("file_row_number").to_numpy()
            counts[name] = found.num_rows
        if name == "ohlc":
            details[name] = {f: int(pc.sum(found.column(f)).as_py() or 0) for f in _OHLC_FLAGS}
        examples[name] = [_example(r) for r in found.slice(0, n_examples).to_pylist()]

    # Each defective row counts once, at the highest weight among the checks that found it.
    if rows_by_check:
        rows = np.concatenate([r.astype(np.int64) for r in rows_by_check.values()])
        weights = np.concatenate([np.full(r.size, WEIGHTS[n]) for n, r in rows_by_check.items()])
        unique, inverse = np.unique(rows, return_inverse=True)
        worst = np.zeros(unique.size)
        np.maximum.at(worst, inverse, weights)
    else:
        worst = np.zeros(0)
    weighted = float(worst.sum())
    defective = int(np.count_nonzero(worst > 0))
    score = 0.0 if num == 0 else min(1.0, max(0.0, 1.0 - weighted / num))
    return QualityReport(
        symbol=symbol,
        timeframe=timeframe,
        path=str(path),
        data_sha256=sha,
        checked_at=checked_at,
        checks=selected,
        params=opts,
        num_candles=num,
        first=_iso(cov["first_ms"]),
        last=_iso(cov["last_ms"]),
        expected_candles=int(cov["expected_slots"]),
        coverage=None if cov["coverage"] is None else float(cov["coverage"]),
        counts=counts,
        details=details,
        examples=examples,
        gaps=gaps_summary,
        defective_rows=defective,
        weighted_defects=weighted,
        quality_score=score,
        duration_s=time.perf_counter() - started,
        timings_s={k: round(v, 6) for k, v in timings.items()},
    )


def locate(store: CandleStore, symbol: str, timeframe: str) -> tuple[Dataset, list[str]]:
    """The stored file of ``symbol``/``timeframe`` (else the bundled sample's) and notes on how it was found.

    Validation checks stored files only: a timeframe the store would resample on the fly is refused
    with a message naming the file to validate instead.
    """
    check_symbol(symbol)
    check_timeframe(timeframe)
    found, notes = store_locate(store, symbol, timeframe, using="validating")
    if found.resampled_from is not None:
        where = " of the bundled sample" if found.origin == "sample" else ""
        raise DataError(f"the store at {store.root} has no {symbol} {timeframe} file ({timeframe} is only resampled "
                        f"on the fly from the {found.resampled_from} file{where}); validation checks stored files: "
                        f"validate {found.resampled_from}, or store {timeframe} first with "
                        f"'genesis-fw resample --symbol {symbol} --to {timeframe}'")
    return found, notes


def save(report: QualityReport, folder: Path) -> tuple[Path, Path]:
    """Write ``{symbol}_{timeframe}.quality.json`` and ``.quality.md`` into ``folder`` atomically."""
    from .._util import write_text_atomic

    stem = f"{report.symbol}_{report.timeframe}.quality"
    json_path, md_path = Path(folder) / f"{stem}.json", Path(folder) / f"{stem}.md"
    try:
        write_text_atomic(json_path, report.to_json())
        write_text_atomic(md_path, report.to_markdown())
    except OSError as exc:
        raise DataError(f"cannot write the quality report into {folder}: {exc.strerror or exc}") from None
    return json_path, md_path


def record(catalog_path: Path, report: QualityReport, report_path: Path) -> None:
    """Append a row to the catalog's ``quality`` table and log a ``dataset.validated`` event."""
    from ..catalog import Catalog

    c = report.counts
    row = {
        "symbol": report.symbol, "timeframe": report.timeframe, "checked_at": report.checked_at,
        "num_candles": report.num_candles, "quality_score": report.quality_score,
        "gaps": c.get("gaps"), "missing": report.gaps["missing"] if report.gaps is not None else None,
        "duplicates": c.get("duplicates"), "ohlc": c.get("ohlc"), "outliers": c.get("outliers"),
        "zero_volume": c.get("zero_volume"), "report_path": str(report_path), "data_sha256": report.data_sha256,
    }
    detail = {"quality_score": report.quality_score, "report": str(report_path),
              "counts": {k: v for k, v in c.items()}}
    with Catalog(catalog_path).connect(write=True) as con:
        con.execute(f"INSERT INTO quality ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                    tuple(row.values()))
        con.execute("INSERT INTO events (at, kind, subject, detail) VALUES (?, ?, ?, ?)",
                    (report.checked_at, "dataset.validated", f"{report.symbol}_{report.timeframe}",
                     json.dumps(detail, sort_keys=True)))


# -- helpers ---------------------------------------------------------------------------------------------------


def _select(checks: Iterable[str] | None) -> tuple[str, ...]:
    if checks is None:
        return CHECKS
    wanted = [checks] if isinstance(checks, str) else list(checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        from .._util import did_you_mean

        raise DataError(f"unknown check {unknown[0]!r}{did_you_mean(unknown[0], CHECKS)}; known: {', '.join(CHECKS)}")
    return tuple(c for c in CHECKS if c in wanted)


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            raise DataError(f"unknown validation parameter {key!r}; known: {', '.join(DEFAULT_PARAMS)}")
        kind = type(DEFAULT_PARAMS[key])
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise DataError(f"validation parameter {key!r} must be {kind.__name__}, got {value!r}") from None
        smallest = {"k": 0, "min_return": 0, "window": 1, "revert": 1, "examples": 0, "max_ranges": 0}[key]
        if not math.isfinite(value) or value < smallest or (kind is float and value <= smallest):
            raise DataError(f"validation parameter {key!r} is out of range: {value!r}")
        out[key] = value
    return out


def _gaps_summary(found: Any, max_ranges: int) -> dict[str, Any]:
    """Summary of the gaps table (``found``, one row per gap in time order)."""
    first = found.column("first_missing_ms").to_numpy()
    missing = found.column("missing").to_numpy()
    duration = found.column("next_ms").to_numpy() - first
    # Largest first; the earliest among equally long gaps first (a stable sort of rows in time order).
    order = np.argsort(-duration, kind="stable")[:10]

    def ranges(idx: Iterable[int]) -> list[dict[str, Any]]:
        rows = found.take(pa.array(list(idx), type=pa.int64())).to_pylist()
        return [{"from": _iso(g["first_missing_ms"]), "to": _iso(g["last_missing_ms"]), "missing": int(g["missing"]),
                 "duration_ms": int(g["next_ms"] - g["first_missing_ms"]), "prev_row": g["prev_row"],
                 "next_row": g["next_row"]} for g in rows]

    largest = ranges(order)
    top = largest[0] if largest else None
    return {
        "count": found.num_rows,
        "missing": int(missing.sum()),
        "largest_ms": top["duration_ms"] if top else 0,
        "largest_missing": top["missing"] if top else 0,
        "largest_from": top["from"] if top else None,
        "largest_to": top["to"] if top else None,
        "ranges": ranges(range(min(max_ranges, found.num_rows))),
        "largest": largest,
    }


_TIME_KEYS = {"ts_ms": "timestamp", "prev_ts_ms": "prev_timestamp", "slot_ms": "slot"}


def _example(row: dict[str, Any]) -> dict[str, Any]:
    """One finding as JSON-able values: ``row`` first, ms times as ISO 8601 UTC."""
    out: dict[str, Any] = {}
    if "file_row_number" in row:
        out["row"] = row["file_row_number"]
    for key, value in row.items():
        if key == "file_row_number":
            continue
        if key in _TIME_KEYS:
            out[_TIME_KEYS[key]] = _iso(value)
        else:
            out[key] = value
    return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _iso(ms: int | None) -> str | None:
    return None if ms is None else from_ms(int(ms)).isoformat().replace("+00:00", "Z")


def _short(iso: str | None) -> str:
    return "n/a" if iso is None else iso.replace("T", " ").removesuffix("Z").removesuffix(":00")


def _duration(ms: int) -> str:
    minutes = ms // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if mins or not parts:
        parts.append(f"{mins}m")
    return " ".join(parts)


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.6g}" if isinstance(v, float) else _md_cell(str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _data_sha256(path: Path) -> str:
    """SHA-256 of the candles' content, the digest dataset metadata and backtests use
    (:func:`genesis_fw.data.hashing.content_sha256`), so a quality row joins ``dataset_versions.sha256``.
    A file that cannot be read as candles at all is hashed byte for byte instead."""
    import pyarrow.parquet as pq

    from .hashing import content_sha256
    from .store import COLUMNS

    try:
        return content_sha256(pq.read_table(path, columns=COLUMNS))
    except (OSError, pa.ArrowException, ValueError, TypeError, KeyError):
        return _file_sha256(path)


def _file_sha256(path: Path) -> str:
    from .hashing import file_sha256

    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None

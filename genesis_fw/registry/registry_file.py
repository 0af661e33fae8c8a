"""``registry.json``: the registry's current state as the trading bot reads it (docs/CHAMPION_SELECTION.md).

The file is rendered from the catalog (``registry.db``), never edited: per (symbol, timeframe) the
champion and the challengers with file name, version, SHA-256 of the model file and key metrics,
plus ``event``, the audit entry (seq and SHA-256) whose ``state_after`` it shows. It is checked
against its JSON Schema (``genesis_fw/schemas/registry.schema.json``) with :mod:`jsonschema` and
rewritten atomically (temp file, fsync, rename). :func:`standing` tells a file that is current from
one left behind by a crash (it equals an earlier entry's state), one edited by hand (it matches no
state of the catalog) and one that is adoptable (``event`` null and the catalog has no entries).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import attrs

from .._util import strict_json, write_text_atomic
from ..errors import RegistryError

#: The registry state file's name inside the models folder.
FILE_NAME = "registry.json"
#: Layout version of registry.json.
SCHEMA_VERSION = 1
#: The JSON Schema of registry.json, shipped as package data.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "registry.schema.json"
#: The key metrics an entry carries (from the model file's test metrics; ``auc`` is its ``roc_auc``).
METRIC_KEYS = ("log_loss", "brier", "auc", "ece", "n", "verdict")


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@cache
def schema() -> dict[str, Any]:
    """The registry.json JSON Schema (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> Any:
    from ..ml.model_file import _strict_class

    return _strict_class()(schema())


def key_metrics(doc_metrics: Any, verdict: str | None = None) -> dict[str, Any]:
    """The key metrics of a model file's ``metrics`` (its test part): log loss, Brier, AUC (ROC), ECE,
    n (rows) and the verdict (when known); ``{}`` for a file without test metrics (a hand-set baseline)."""
    test = doc_metrics.get("test") if isinstance(doc_metrics, dict) else None
    out: dict[str, Any] = {}
    if isinstance(test, dict):
        for key, src in (("log_loss", "log_loss"), ("brier", "brier"), ("auc", "roc_auc"), ("ece", "ece"),
                         ("n", "n")):
            value = test.get(src, False)
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                out[key] = value
    if verdict is not None:
        out["verdict"] = verdict
    return out


def entry_doc(model: dict[str, Any]) -> dict[str, Any]:
    """The ENTRY of one catalog ``models`` row (a dict of its columns, ``metrics`` as JSON text or dict)."""
    metrics = model["metrics"]
    return {"name": model["name"], "file": model["file"], "version": int(model["version"]),
            "sha256": model["sha256"], "model_type": model["model_type"], "horizon": int(model["horizon"]),
            "baseline": bool(model["baseline"]), "status": model["status"],
            "metrics": json.loads(metrics) if isinstance(metrics, str) else dict(metrics),
            "registered_at": model["registered_at"]}


def markets(models: list[dict[str, Any]], stacks: dict[tuple[str, str], list[str]]) -> list[dict[str, Any]]:
    """The ``markets`` of registry.json from the catalog's models rows and champion stacks (names, oldest
    first): markets with a champion or a challenger, sorted by (symbol, timeframe); challengers by
    version; ``rollback_to`` the champion a rollback would restore (the one below the top of the stack)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for m in sorted(models, key=lambda m: (m["symbol"], m["timeframe"], int(m["version"]), m["name"])):
        if m["status"] == "retired":
            continue
        key = (m["symbol"], m["timeframe"])
        market = out.setdefault(key, {"symbol": key[0], "timeframe": key[1], "champion": None, "challengers": [],
                                      "rollback_to": None})
        if m["status"] == "champion":
            market["champion"] = entry_doc(m)
        else:
            market["challengers"].append(entry_doc(m))
    for key, market in out.items():
        stack = stacks.get(key, [])
        market["rollback_to"] = stack[-2] if len(stack) >= 2 else None
    return [out[k] for k in sorted(out)]


def render(registry_id: str | None, event: dict[str, Any] | None, state: list[dict[str, Any]],
           updated_at: str | None = None) -> dict[str, Any]:
    """The registry.json document of a catalog state (``event``: ``{"seq", "sha256"}`` of its last entry)."""
    return {"schema_version": SCHEMA_VERSION, "registry_id": registry_id, "updated_at": updated_at or now_iso(),
            "event": None if event is None else {"seq": int(event["seq"]), "sha256": event["sha256"]},
            "markets": state}


def dumps(doc: dict[str, Any]) -> str:
    """The file text: indented JSON, newline-terminated."""
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write(path: Path, doc: dict[str, Any]) -> None:
    """Validate ``doc`` and write it to ``path`` atomically (temp file beside it, fsync, rename)."""
    validate(doc, where=str(path))
    write_text_atomic(path, dumps(doc))


def validate(doc: Any, *, where: str) -> None:
    """Check a registry.json document: the JSON Schema, then what a schema cannot say: markets sorted and
    unique, entries named for their market, a champion of status champion, challengers of status
    challenger sorted by version, no model listed twice. :class:`RegistryError` naming ``where``."""
    from ..ml.model_file import _first_problem

    problem = _first_problem(_validator(), doc)
    if problem:
        raise RegistryError(f"{where}: {problem}")
    keys = [(m["symbol"], m["timeframe"]) for m in doc["markets"]]
    if keys != sorted(set(keys)):
        raise RegistryError(f"{where}: markets are not sorted by symbol and timeframe, or one is listed twice")
    seen: set[str] = set()
    for m in doc["markets"]:
        listed = ([m["champion"]] if m["champion"] else []) + m["challengers"]
        for e, status in zip(listed, ["champion"] * bool(m["champion"]) + ["challenger"] * len(m["challengers"]),
                             strict=True):
            if e["status"] != status:
                raise RegistryError(f"{where}: {e['name']} is listed as {status} with status {e['status']!r}")
            if not e["name"].startswith(f"{m['symbol']}_{m['timeframe']}_v") or e["name"] != \
                    f"{m['symbol']}_{m['timeframe']}_v{e['version']}":
                raise RegistryError(f"{where}: {e['name']} (version {e['version']}) is listed under "
                                    f"{m['symbol']} {m['timeframe']}")
            if e["name"] in seen:
                raise RegistryError(f"{where}: {e['name']} is listed twice")
            seen.add(e["name"])
        versions = [e["version"] for e in m["challengers"]]
        if versions != sorted(versions):
            raise RegistryError(f"{where}: the challengers of {m['symbol']} {m['timeframe']} are not sorted by version")


def parse(raw: bytes, *, where: str) -> dict[str, Any]:
    """A registry.json's bytes parsed (strict JSON: no NaN, no duplicate keys) and :func:`validate`-d."""

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryError(f"{where}: not UTF-8 text") from None
    doc = strict_json(text, where=where, error=RegistryError, what="registry.json")
    validate(doc, where=where)
    return doc


@attrs.frozen
class FileState:
    """registry.json as found: ``raw`` bytes (``None`` when missing), the parsed document (``None`` when
    missing or invalid) and why it is invalid (``problem``)."""

    path: Path
    raw: bytes | None
    doc: dict[str, Any] | None
    problem: str | None

    @property
    def sha256(self) -> str | None:
        return None if self.raw is None else hashlib.sha256(self.raw).hexdigest()


def read(path: Path) -> FileState:
    """Read registry.json at ``path`` without raising for a missing or invalid file (see ``problem``)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return FileState(path, None, None, None)
    except OSError as exc:
        raise RegistryError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    try:
        return FileState(path, raw, parse(raw, where=str(path)), None)
    except RegistryError as exc:
        return FileState(path, raw, None, str(exc))


def load(path: Path) -> dict[str, Any]:
    """The valid registry.json at ``path``, or :class:`RegistryError` in one line."""
    state = read(path)
    if state.raw is None:
        raise RegistryError(f"no registry file {path}")
    if state.doc is None:
        raise RegistryError(state.problem or f"{path}: invalid")
    return state.doc


#: :func:`standing` kinds.
CURRENT, MISSING, BEHIND, ADOPTABLE, HAND_EDITED = "current", "missing", "behind", "adoptable", "edited"


def standing(found: FileState, registry_id: str | None, events: list[dict[str, Any]]) -> tuple[str, str]:
    """Where registry.json stands against the catalog: ``(kind, detail)``.

    ``events`` are the catalog's audit entries, oldest first, as dicts with ``seq``, ``sha256``,
    ``action``, ``evidence`` and ``state_after`` (parsed). Kinds: :data:`CURRENT` (it shows the last
    entry's state); :data:`MISSING`; :data:`ADOPTABLE` (``event`` null and no entries yet);
    :data:`BEHIND` (it shows an earlier entry's state exactly, or it is the very file the first
    ``adopt`` entry adopted: a crash stopped a change before its rewrite); :data:`HAND_EDITED`
    (invalid, or it matches no state of the catalog). ``detail`` is a one-line reason."""
    if found.raw is None:
        return MISSING, f"{found.path} is missing"
    if found.doc is None:
        return HAND_EDITED, found.problem or "invalid"
    doc = found.doc
    if not events:
        if doc["event"] is None:
            return ADOPTABLE, f"{found.path} has no registry catalog yet (event null)"
        return ADOPTABLE, (f"{found.path} records event {doc['event']['seq']} of registry {doc['registry_id']} "
                           "whose catalog is not here")
    first = events[0]
    if first["action"] == "adopt" and first["evidence"].get("registry_json_sha256") == found.sha256:
        return BEHIND, f"{found.path} is the file adopted by entry 1, not yet rewritten"
    if doc["event"] is None:
        return HAND_EDITED, f"{found.path} has event null, but the catalog has {len(events)} entries"
    if doc["registry_id"] != registry_id:
        return HAND_EDITED, f"{found.path} names registry {doc['registry_id']}, the catalog is registry {registry_id}"
    seq, sha = doc["event"]["seq"], doc["event"]["sha256"]
    if not 1 <= seq <= len(events) or events[seq - 1]["sha256"] != sha:
        return HAND_EDITED, f"{found.path} names event {seq} ({sha[:12]}), which is not in the catalog"
    if doc["markets"] != events[seq - 1]["state_after"]:
        return HAND_EDITED, f"{found.path} differs from the state after event {seq}"
    if seq != len(events):
        return BEHIND, f"{found.path} shows event {seq}, the catalog is at event {len(events)}"
    return CURRENT, f"{found.path} is current (event {seq})"

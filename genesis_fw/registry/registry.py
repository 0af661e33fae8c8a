"""The model registry: champion, challengers and retired versions per (symbol, timeframe).

The registry is its models folder (docs/CHAMPION_SELECTION.md, "The registry"): ``registry.db`` (the
catalog, source of truth), ``registry.json`` (the state the trading bot reads) and ``.registry.lock``.
Every change holds an exclusive ``flock`` on the lock file for its whole length and runs:

1. catch up: a registry.json or audit-log mirror left behind by a crash is brought up to the catalog
   (the change's notes say so); a registry.json that matches no state of the catalog (edited by hand)
   refuses the change; a registry.json with ``event`` null and no catalog entries is adopted first;
2. one ``BEGIN IMMEDIATE`` transaction updating ``models`` / ``champion_stack`` and inserting the
   ``model_events`` row (the audit entry, hash-chained to the previous one);
3. the entry's line appended to the JSON-lines mirror (fsynced);
4. registry.json rewritten atomically from the catalog.

A ``kill -9`` anywhere leaves the change nowhere (before the commit), or in the catalog with the mirror
and/or registry.json behind, which the next command repairs and says so (a read rewrites registry.json
but never creates or writes the mirror: it says which entries the mirror lacks, and the next change
appends them).

Testing hook: with ``$GENESIS_REGISTRY_CRASH_AT`` set to one of :data:`CRASH_POINTS` the process
kills itself with SIGKILL at that point of the first entry it logs (``before_commit``: inside the
transaction; ``after_commit``; ``after_mirror``; ``after_json``). Nothing else reads it.

Model files are validated with :func:`genesis_fw.ml.model_file.load` (the model schema, no code from
a file is executed) when registered and whenever the registry loads them, and their SHA-256 must be the
one recorded at registration.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .._util import did_you_mean
from ..errors import ModelFileError, RegistryError
from . import registry_file as rf

if TYPE_CHECKING:
    from ..ml.model_file import LoadedModel
    from .audit import AuditReport

#: The catalog's file name inside the models folder.
DB_FILE = "registry.db"
#: The lock file held for the whole of every change.
LOCK_FILE = ".registry.lock"
#: Where the audit log is mirrored when neither ``--audit-log``, $GENESIS_AUDIT_LOG nor the run config says.
DEFAULT_AUDIT_LOG = "logs/champion_selection.jsonl"
#: Environment variable naming the audit log mirror (the CLI's ``--audit-log`` sets it).
AUDIT_LOG_ENV = "GENESIS_AUDIT_LOG"
#: Testing hook: kill the process (SIGKILL) at this point of the first logged entry.
CRASH_ENV = "GENESIS_REGISTRY_CRASH_AT"
CRASH_POINTS = ("before_commit", "after_commit", "after_mirror", "after_json")
STATUSES = ("champion", "challenger", "retired")
#: The ``meta`` key recording the resolved absolute path of the registry's audit log mirror.
MIRROR_META_KEY = "audit_log"


class _Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


#: ``expected_champion`` of :meth:`Registry.promote` / :meth:`Registry.keep`: do not check the champion.
UNCHECKED = _Unchecked.UNCHECKED


def short_pair(a: str, b: str, *, at_least: int = 12) -> tuple[str, str]:
    """Two hex digests cut to the same length: ``at_least`` characters, or more when they agree that
    far, so the printed prefixes show where they differ."""
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    k = max(at_least, n + 1)
    return a[:k], b[:k]


def _hash_pair(now: str, recorded: str, where: str) -> str:
    x, y = short_pair(now, recorded)
    return f"SHA-256 {x} now, {y} in {where}"


def audit_log_path(cfg_value: str | None = None) -> Path:
    """The audit log mirror: $GENESIS_AUDIT_LOG, else ``cfg_value`` (the run config's
    ``registry.audit_log``), else ``logs/champion_selection.jsonl``; relative to the working directory."""
    env = os.environ.get(AUDIT_LOG_ENV)
    return Path(env or cfg_value or DEFAULT_AUDIT_LOG)


def _crash(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


@attrs.frozen
class ModelEntry:
    """One registered model version. ``file`` is its path in the models folder; ``sha256`` the SHA-256
    (hex) of the file's bytes when registered; ``metrics`` its key test metrics (may be empty)."""

    name: str
    symbol: str
    timeframe: str
    version: int
    file: Path
    sha256: str
    status: str
    model_type: str
    horizon: int
    baseline: bool
    metrics: dict[str, Any]
    registered_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any], folder: Path) -> ModelEntry:
        metrics = row["metrics"]
        return cls(name=row["name"], symbol=row["symbol"], timeframe=row["timeframe"], version=int(row["version"]),
                   file=folder / row["file"], sha256=row["sha256"], status=row["status"],
                   model_type=row["model_type"], horizon=int(row["horizon"]), baseline=bool(row["baseline"]),
                   metrics=json.loads(metrics) if isinstance(metrics, str) else dict(metrics),
                   registered_at=row["registered_at"])


@attrs.frozen
class Change:
    """What a change did: the logged entry's action, market, from/to model names and ``seq``, and
    one-line ``notes`` (repairs and adoption done before it)."""

    action: str
    symbol: str | None
    timeframe: str | None
    from_model: str | None
    to_model: str | None
    seq: int
    notes: list[str] = attrs.field(factory=list)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that reads the catalog at ``path`` without migrating or writing it (read-only folders
    included: :meth:`genesis_fw.catalog.Catalog.connect`); rows as :class:`sqlite3.Row`."""
    from .db import RegistryDB

    with RegistryDB(path).connect(migrate=False) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


def _registry_id(conn: sqlite3.Connection) -> str:
    from .db import registry_id

    return registry_id(conn)


def _events(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    out = []
    for r in conn.execute("SELECT seq, action, symbol, timeframe, evidence, state_after, sha256, entry "
                          "FROM model_events ORDER BY seq"):
        out.append({"seq": r["seq"], "action": r["action"], "symbol": r["symbol"], "timeframe": r["timeframe"],
                    "evidence": json.loads(r["evidence"]), "state_after": json.loads(r["state_after"]),
                    "sha256": r["sha256"], "entry": r["entry"]})
    return out


def _models(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM models ORDER BY symbol, timeframe, version, name")]


def _stacks(conn: sqlite3.Connection) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for r in conn.execute("SELECT symbol, timeframe, name FROM champion_stack ORDER BY symbol, timeframe, position"):
        out.setdefault((r["symbol"], r["timeframe"]), []).append(r["name"])
    return out


def _mirror_lines(path: Path) -> set[str]:
    try:
        return set(path.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return set()
    except (OSError, UnicodeDecodeError):
        return set()


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _state_models(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The models rows an adoptable registry.json describes (champion and challengers)."""
    rows = []
    for m in doc["markets"]:
        for e in ([m["champion"]] if m["champion"] else []) + m["challengers"]:
            rows.append({**e, "symbol": m["symbol"], "timeframe": m["timeframe"], "updated_at": e["registered_at"]})
    return rows


class Registry:
    """The registry of one models folder (see the module docstring). Read methods never write, except to
    repair what a crash left behind (see :attr:`notes`); changes are serialised across processes."""

    def __init__(self, models_dir: Path, audit_log: Path) -> None:
        self.dir = models_dir
        self.audit_log = audit_log
        self.db_path = models_dir / DB_FILE
        self.json_path = models_dir / rf.FILE_NAME
        #: One-line notes of repairs (or of stale files in a read-only folder) found by read methods.
        self.notes: list[str] = []
        self._checked = False

    @classmethod
    def open(cls, models_dir: Path | None = None, audit_log: Path | None = None) -> Registry:
        """The registry of ``models_dir`` (default: the models folder, ``--models-dir`` /
        $GENESIS_MODELS_DIR / config/models) mirroring its audit log to ``audit_log`` (default
        :func:`audit_log_path`). Nothing is created or written here."""
        from ..ml.model_file import default_models_dir

        folder = Path(models_dir) if models_dir is not None else default_models_dir()
        if folder.exists() and not folder.is_dir():
            raise RegistryError(f"the models folder {folder} is a file, not a folder")
        return cls(folder, Path(audit_log) if audit_log is not None else audit_log_path())

    # -- reading -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fh = open(self.dir / LOCK_FILE, "a")  # noqa: SIM115 - held across the change
        except OSError as exc:
            raise RegistryError(f"the models folder {self.dir} is not writable ({exc.strerror or exc}); a registry "
                                "change needs to write there") from None
        with fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A connection to the catalog, created (schema and registry_id) when missing; autocommit, so each
        change opens its own ``BEGIN IMMEDIATE``. Called with the lock held."""
        from .db import RegistryDB

        rdb = RegistryDB(self.db_path)
        if not rdb.exists():
            with rdb.write():  # creates the file with its schema in one transaction
                pass
        with rdb.connect() as conn:
            conn.row_factory = sqlite3.Row
            yield conn

    def _check_read(self) -> None:
        """Before the first read: repair a registry.json behind the catalog (under the lock; the mirror is
        never written by a read, only said to be stale), or
        note what is stale when the folder cannot be written; refuse a registry.json edited by hand."""
        if self._checked:
            return
        self._checked = True
        if not self.db_path.exists():
            found = rf.read(self.json_path)
            kind, detail = rf.standing(found, None, [])
            if kind == rf.HAND_EDITED:
                raise self._edited(detail)
            if found.doc is not None and found.doc["event"] is not None:
                self.notes.append(f"{self._orphan(found.doc)}; the next change adopts its state as a new registry")
            return
        if not _writable(self.dir):
            with _reading(self.db_path) as conn:
                events = _events(conn)
                kind, detail = rf.standing(rf.read(self.json_path), _registry_id(conn), events)
            if kind == rf.HAND_EDITED:
                raise self._edited(detail)
            if kind in (rf.BEHIND, rf.MISSING) and events:
                self.notes.append(f"stale: {detail} (the folder is read-only, so it was not repaired; "
                                  "run `genesis-fw models repair` where it can be written)")
            self.notes.extend(self._stale_mirror(events))
            return
        with self._lock():
            with self._writing() as conn:
                self.notes.extend(self._catch_up(conn, adopt=False, mirror=False))

    def _stale_mirror(self, events: list[dict[str, Any]]) -> list[str]:
        """A note naming the entries the mirror lacks, for reads (which never write the mirror)."""
        missing = [e["seq"] for e in events if e["entry"] not in _mirror_lines(self.audit_log)]
        if not missing:
            return []
        which = f"entry {missing[0]}" if len(missing) == 1 else f"entries {_seqs(missing)}"
        return [f"stale: the audit log mirror {self.audit_log} lacks {which}; the next change appends them"]

    def _rows(self) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[str]]]:
        self._check_read()
        if self.db_path.exists():
            with _reading(self.db_path) as conn:
                models, stacks = _models(conn), _stacks(conn)
            if models:  # else a catalog made by a change that did not commit: registry.json may be adoptable
                return models, stacks
        found = rf.read(self.json_path)
        if found.doc is None:
            return [], {}
        rows = _state_models(found.doc)
        stacks = {(r["symbol"], r["timeframe"]): [r["name"]] for r in rows if r["status"] == "champion"}
        return rows, stacks

    def entries(self, symbol: str | None = None, timeframe: str | None = None, *,
                include_retired: bool = True) -> list[ModelEntry]:
        """Registered models, by (symbol, timeframe, version); retired ones unless ``include_retired`` is False."""
        rows, _ = self._rows()
        return [ModelEntry.from_row(r, self.dir) for r in rows
                if (symbol is None or r["symbol"] == symbol) and (timeframe is None or r["timeframe"] == timeframe)
                and (include_retired or r["status"] != "retired")]

    def get(self, name: str) -> ModelEntry:
        """The registered model ``name``; :class:`RegistryError` with a close match when there is none."""
        entries = self.entries()
        for e in entries:
            if e.name == name:
                return e
        names = [e.name for e in entries]
        where = f"the registry of {self.dir}"
        raise RegistryError(f"no model {name!r} in {where}{did_you_mean(name, names)}"
                            + ("" if names else " (none registered: genesis-fw models register FILE)"))

    def champion(self, symbol: str, timeframe: str) -> ModelEntry | None:
        """The champion of (symbol, timeframe), or ``None``."""
        return next((e for e in self.entries(symbol, timeframe) if e.status == "champion"), None)

    def challengers(self, symbol: str, timeframe: str) -> list[ModelEntry]:
        """The challengers of (symbol, timeframe), by version."""
        return [e for e in self.entries(symbol, timeframe) if e.status == "challenger"]

    def rollback_target(self, symbol: str, timeframe: str) -> str | None:
        """The champion a rollback of (symbol, timeframe) would restore, or ``None``."""
        _, stacks = self._rows()
        stack = stacks.get((symbol, timeframe), [])
        return stack[-2] if len(stack) >= 2 else None

    def load_checked(self, name: str) -> LoadedModel:
        """Load the registered model ``name``: validated by :func:`~genesis_fw.ml.model_file.load` and its
        SHA-256 equal to the registry's, else a one-line error (missing, tampered, another market)."""
        return self._load_entry(self.get(name))

    @staticmethod
    def _load_entry(entry: ModelEntry) -> LoadedModel:
        from ..ml import model_file

        if not entry.file.exists():
            raise RegistryError(f"{entry.name}: its file {entry.file} is missing; restore it (SHA-256 "
                                f"{entry.sha256[:12]}...) or retire the model")
        loaded = model_file.load(entry.file, symbol=entry.symbol, timeframe=entry.timeframe)
        if loaded.name != entry.name:
            raise RegistryError(f"{entry.file}: the file holds {loaded.name}, registered as {entry.name}")
        if loaded.sha256 != entry.sha256:
            raise RegistryError(f"{entry.file}: tampered or replaced since it was registered "
                                f"({_hash_pair(loaded.sha256, entry.sha256, 'the registry')}); restore the "
                                f"registered file, or register the new one under a new version")
        return loaded

    def history(self, symbol: str | None = None, timeframe: str | None = None) -> list[dict[str, Any]]:
        """The audit entries (dicts as in the mirror), oldest first; with a market, only its entries."""
        self._check_read()
        if not self.db_path.exists():
            return []
        with _reading(self.db_path) as conn:
            out = [json.loads(r[0]) for r in conn.execute("SELECT entry FROM model_events ORDER BY seq")]
        return [e for e in out if (symbol is None or e["symbol"] == symbol)
                and (timeframe is None or e["timeframe"] == timeframe)]

    def verify(self) -> AuditReport:
        """Check the catalog's hash chain and the mirror against it (:func:`genesis_fw.registry.audit.verify`),
        and that every structured column of ``model_events`` (what ``genesis-fw sql`` shows) equals its
        entry's field: the first mismatch is a problem naming the entry and the column."""
        from . import audit

        lines: list[str] = []
        rid = None
        forged: str | None = None
        if self.db_path.exists():
            with _reading(self.db_path) as conn:
                rows = [dict(r) for r in conn.execute("SELECT * FROM model_events ORDER BY seq")]
                rid = _registry_id(conn)
            lines = [r["entry"] for r in rows]
            forged = next((p for p in map(_column_problem, rows) if p), None)
        report = audit.verify(lines, self.audit_log, rid)
        if forged is None:
            return report
        return attrs.evolve(report, ok=False, problems=[*report.problems, forged])

    # -- changing ------------------------------------------------------------------------------------

    def _edited(self, detail: str) -> RegistryError:
        return RegistryError(f"{detail}: registry.json matches no state of the registry catalog (edited by hand?); "
                             "rebuild it from the catalog with `genesis-fw models repair`")

    def _orphan(self, doc: dict[str, Any]) -> str:
        return (f"{self.json_path} records event {doc['event']['seq']} of registry {doc['registry_id']} whose "
                "catalog is not here")

    def _publish(self, conn: sqlite3.Connection) -> list[str]:
        """Append the catalog's entries the mirror lacks, then rewrite registry.json from the last entry."""
        from . import audit

        events = _events(conn)
        if not events:
            return []
        notes = [f"warning: {n}" for n in audit.append_mirror(self.audit_log, [e["entry"] for e in events])]
        _crash("after_mirror")
        last = events[-1]
        rf.write(self.json_path, rf.render(_registry_id(conn), last, last["state_after"]))
        _crash("after_json")
        return notes

    def _catch_up(self, conn: sqlite3.Connection, *, adopt: bool, mirror: bool = True) -> list[str]:
        """Bring registry.json and (when ``mirror``) the mirror up to the catalog; adopt an adoptable
        registry.json when ``adopt``. Returns one-line notes of what was done (with ``mirror`` False, of
        what the mirror lacks). Called with the lock held."""
        events = _events(conn)
        found = rf.read(self.json_path)
        kind, detail = rf.standing(found, _registry_id(conn), events)
        if kind == rf.HAND_EDITED:
            raise self._edited(detail)
        notes: list[str] = []
        if kind == rf.ADOPTABLE:
            if adopt:
                assert found.doc is not None
                self._adopt(conn, found)
                if found.doc["event"] is None:
                    notes.append(f"adopted {self.json_path} (event null) as the registry's first state")
                else:
                    notes.append(f"{self._orphan(found.doc)}: adopted its state as a new registry")
            return notes
        if not events:
            return notes
        if not mirror:
            if kind in (rf.BEHIND, rf.MISSING):
                last = events[-1]
                rf.write(self.json_path, rf.render(_registry_id(conn), last, last["state_after"]))
                notes.append(f"repaired: {detail}; rewrote it from the catalog")
            return notes + self._stale_mirror(events)
        have = _mirror_lines(self.audit_log)
        missing = [e["seq"] for e in events if e["entry"] not in have]
        extra = self._publish_quiet(conn, kind)
        warnings = [n for n in extra if _is_warning(n)]
        repaired = [n for n in extra if not _is_warning(n)]
        if missing and not warnings:  # (append_mirror counts the last entry as the change's own append)
            which = f"entry {missing[0]}" if len(missing) == 1 else f"entries {_seqs(missing)}"
            notes.append(f"repaired: the audit log mirror {self.audit_log} lacked {which}; appended")
        notes.extend(f"repaired: {n}" for n in repaired if n.startswith("completed"))
        notes.extend(f"warning: {n}" for n in warnings)
        if kind in (rf.BEHIND, rf.MISSING):
            notes.append(f"repaired: {detail}; rewrote it from the catalog")
        return notes

    def _publish_quiet(self, conn: sqlite3.Connection, kind: str) -> list[str]:
        from . import audit

        events = _events(conn)
        notes = audit.append_mirror(self.audit_log, [e["entry"] for e in events])
        if kind != rf.CURRENT:
            last = events[-1]
            rf.write(self.json_path, rf.render(_registry_id(conn), last, last["state_after"]))
        return notes

    def _log(self, conn: sqlite3.Connection, *, action: str, symbol: str | None, timeframe: str | None,
             from_model: str | None, to_model: str | None, reason: str, evidence: dict[str, Any]) -> int:
        """Insert the audit entry of the change made so far in the open transaction; returns its seq."""
        from . import audit

        last = conn.execute("SELECT seq, sha256 FROM model_events ORDER BY seq DESC LIMIT 1").fetchone()
        seq = 1 if last is None else last["seq"] + 1
        state = rf.markets(_models(conn), _stacks(conn))
        entry = audit.make_entry(seq=seq, prev_sha256=audit.GENESIS_HASH if last is None else last["sha256"],
                                 registry_id=_registry_id(conn), action=action, symbol=symbol, timeframe=timeframe,
                                 from_model=from_model, to_model=to_model, reason=reason, evidence=evidence,
                                 state_after=state)
        conn.execute("INSERT INTO model_events (seq, at, user, host, action, symbol, timeframe, from_model, "
                     "to_model, reason, evidence, state_after, prev_sha256, sha256, entry) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, entry["at"], entry["user"], entry["host"], action, symbol, timeframe, from_model,
                      to_model, reason, audit.canonical(entry["evidence"]), audit.canonical(entry["state_after"]),
                      entry["prev_sha256"], entry["sha256"], audit.canonical(entry)))
        return seq

    def _transaction(self, conn: sqlite3.Connection, body: Callable[[], int]) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = body()
            _crash("before_commit")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        _crash("after_commit")
        return seq

    def _adopt(self, conn: sqlite3.Connection, found: rf.FileState) -> None:
        """Register the models of an adoptable registry.json with its statuses (each file validated and
        its SHA-256 equal to the JSON's) and log one ``adopt`` entry, then publish."""
        assert found.doc is not None
        rows = _state_models(found.doc)
        for row in rows:
            entry = ModelEntry.from_row({**row, "metrics": row["metrics"]}, self.dir)
            try:
                self._load_entry(entry)
            except (RegistryError, ModelFileError) as exc:
                raise RegistryError(f"cannot adopt {self.json_path}: {exc}") from None

        def body() -> int:
            for row in rows:
                conn.execute("INSERT INTO models (name, symbol, timeframe, version, file, sha256, status, model_type, "
                             "horizon, baseline, metrics, registered_at, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (row["name"], row["symbol"], row["timeframe"], row["version"], row["file"],
                              row["sha256"], row["status"], row["model_type"], row["horizon"], int(row["baseline"]),
                              json.dumps(row["metrics"], sort_keys=True), row["registered_at"], rf.now_iso()))
                if row["status"] == "champion":
                    conn.execute("INSERT INTO champion_stack (symbol, timeframe, position, name) VALUES (?, ?, 1, ?)",
                                 (row["symbol"], row["timeframe"], row["name"]))
            doc = found.doc
            assert doc is not None
            if doc["event"] is None:
                reason = f"adopted {rf.FILE_NAME} (event null) as the registry's first state"
                extra: dict[str, Any] = {}
            else:
                reason = (f"{rf.FILE_NAME} records event {doc['event']['seq']} of registry {doc['registry_id']} whose "
                          "catalog is not here: adopted its state as a new registry")
                extra = {"adopted_event": doc["event"], "adopted_registry_id": doc["registry_id"]}
            return self._log(conn, action="adopt", symbol=None, timeframe=None, from_model=None, to_model=None,
                             reason=reason, evidence={"registry_json_sha256": found.sha256,
                                                      "models": [r["name"] for r in rows], **extra})

        self._transaction(conn, body)
        self._publish(conn)

    def _change(self, body: Callable[[sqlite3.Connection, list[str]], Change]) -> Change:
        """Run ``body`` under the lock after catching up. When it fails, the notes of what was adopted or
        repaired before are in :attr:`notes` (so the CLI can print them before the error)."""
        if not self.db_path.exists():  # refused before a catalog is made
            kind, detail = rf.standing(rf.read(self.json_path), None, [])
            if kind == rf.HAND_EDITED:
                raise self._edited(detail)
        with self._lock():
            with self._writing() as conn:
                notes = self._mirror_warning(conn)
                try:
                    notes += self._catch_up(conn, adopt=True)
                    change = body(conn, notes)
                except Exception:
                    self.notes.extend(notes)
                    raise
                notes.extend(self._publish(conn))
                return change

    def _mirror_warning(self, conn: sqlite3.Connection) -> list[str]:
        """Record the mirror's resolved path in ``meta`` at the first change; later, a warning note when
        this change mirrors to another path than the recorded one (it still writes the configured one)."""
        here = str(self.audit_log.resolve())
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (MIRROR_META_KEY,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (MIRROR_META_KEY, here))
            return []
        if row["value"] == here:
            return []
        return [f"warning: this registry's audit log mirror is recorded as {row['value']}, but this change "
                f"mirrors to {here} (relative paths are relative to the working directory; pass --audit-log "
                f"{row['value']} to keep one mirror)"]

    def _row(self, conn: sqlite3.Connection, name: str) -> ModelEntry:
        row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [r[0] for r in conn.execute("SELECT name FROM models")]
            raise RegistryError(f"no model {name!r} in the registry of {self.dir}{did_you_mean(name, names)}"
                                + ("" if names else " (none registered: genesis-fw models register FILE)"))
        return ModelEntry.from_row(dict(row), self.dir)

    def _expect(self, conn: sqlite3.Connection, symbol: str, timeframe: str, expected: str | None | _Unchecked,
                doing: str) -> None:
        """Refuse the change when the champion of (symbol, timeframe) is not ``expected`` (under the lock)."""
        if expected is UNCHECKED:
            return
        row = conn.execute("SELECT name FROM models WHERE symbol = ? AND timeframe = ? AND status = 'champion'",
                           (symbol, timeframe)).fetchone()
        now = row["name"] if row else None
        if now != expected:
            raise RegistryError(f"the champion of {symbol} {timeframe} changed to {now or 'none'} while "
                                f"{doing} (it was {expected or 'none'} when compared: another process changed "
                                "the registry); nothing done: run champion select again")

    def _definition_warning(self, old: ModelEntry, new: ModelEntry, loaded: LoadedModel) -> list[str]:
        """A warning note when ``new`` predicts another horizon or label definition than the champion ``old``."""
        from ..ml import model_file

        what = []
        if old.horizon != new.horizon:
            what.append(f"horizon {new.horizon} bars, the champion's {old.horizon}")
        try:
            old_label = model_file.load(old.file).doc.get("label")
        except (OSError, ModelFileError):
            old_label = None
        new_label = loaded.doc.get("label")
        if old_label is not None and new_label is not None and old_label != new_label:
            what.append("another label definition than the champion's")
        if not what:
            return []
        return [f"warning: {new.name} predicts {' and '.join(what)} ({old.name}); champion select compares only "
                "challengers of the champion's horizon and labels"]

    def _set_status(self, conn: sqlite3.Connection, name: str, status: str) -> None:
        conn.execute("UPDATE models SET status = ?, updated_at = ? WHERE name = ?", (status, rf.now_iso(), name))

    def register(self, ref: str | Path, *, reason: str, evidence: dict[str, Any] | None = None) -> Change:
        """Register the model file ``ref`` (a path or a name in the models folder; the file must be in the
        models folder) as a challenger, validated by the model schema; a retired model becomes a
        challenger again (its file unchanged). ``evidence`` defaults to the file's metrics."""
        from ..ml import model_file

        path = Path(ref) if isinstance(ref, Path) else model_file.resolve(str(ref), self.dir)
        if not path.is_file():
            raise ModelFileError(f"no model file {path}")
        if path.resolve().parent != self.dir.resolve():
            if path.is_symlink() and path.parent.resolve() == self.dir.resolve():
                raise RegistryError(f"{path} is a symbolic link to {path.resolve()}, outside the models folder "
                                    f"{self.dir}: replace it with a copy (rm {path} && cp {path.resolve()} {path}) "
                                    "and register that")
            raise RegistryError(f"{path} is not in the models folder {self.dir}: copy it there under its name "
                                f"(cp {path.resolve()} {self.dir}/) and register that")
        loaded = model_file.load(path)
        if path.name != f"{loaded.name}.json":
            raise RegistryError(f"{path} holds the model {loaded.name}, so its file must be named {loaded.name}.json "
                                f"(models are loaded by name): rename it (mv {path} {self.dir}/{loaded.name}.json) "
                                "and register that")
        doc = loaded.doc
        verdict = (evidence or {}).get("verdict")
        metrics = rf.key_metrics(doc.get("metrics"), verdict)
        proof = {"metrics": doc.get("metrics", {}), "description": doc.get("description"), **(evidence or {})}

        def body(conn: sqlite3.Connection, notes: list[str]) -> Change:
            def work() -> int:
                row = conn.execute("SELECT status, sha256 FROM models WHERE name = ?", (loaded.name,)).fetchone()
                now = rf.now_iso()
                if row is not None:
                    if row["status"] != "retired":
                        raise RegistryError(f"{loaded.name} is already registered (a {row['status']})")
                    if row["sha256"] != loaded.sha256:
                        raise RegistryError(f"{path}: tampered or replaced since it was registered "
                                            f"({_hash_pair(loaded.sha256, row['sha256'], 'the registry')})")
                    self._set_status(conn, loaded.name, "challenger")
                else:
                    conn.execute("INSERT INTO models (name, symbol, timeframe, version, file, sha256, status, "
                                 "model_type, horizon, baseline, metrics, registered_at, updated_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?, 'challenger', ?, ?, ?, ?, ?, ?)",
                                 (loaded.name, loaded.symbol, loaded.timeframe, doc["version"], path.name,
                                  loaded.sha256, doc["model_type"], loaded.horizon, int(bool(doc.get("baseline"))),
                                  json.dumps(metrics, sort_keys=True), now, now))
                return self._log(conn, action="register", symbol=loaded.symbol, timeframe=loaded.timeframe,
                                 from_model=None, to_model=loaded.name, reason=reason, evidence=proof)

            seq = self._transaction(conn, work)
            return Change("register", loaded.symbol, loaded.timeframe, None, loaded.name, seq, notes)

        return self._change(body)

    def promote(self, name: str, *, reason: str, evidence: dict[str, Any] | None = None,
                expected_champion: str | None | _Unchecked = UNCHECKED) -> Change:
        """Make the challenger ``name`` the champion of its market; the old champion is retired (its file
        untouched) and stays below it on the champion stack, so :meth:`rollback` restores it.

        ``expected_champion``: the champion (name, or ``None`` for none) a decision to promote was based
        on, e.g. the one ``champion select`` compared against; checked under the lock, so a champion
        changed by another process in the meantime refuses the promotion (nothing logged).
        :data:`UNCHECKED` (the default): no check. A winner of another horizon or label definition than
        the champion's is promoted with a warning note (``champion select`` never compares those)."""

        def body(conn: sqlite3.Connection, notes: list[str]) -> Change:
            m = self._row(conn, name)
            self._expect(conn, m.symbol, m.timeframe, expected_champion, f"promoting {name}")
            if m.status == "champion":
                raise RegistryError(f"{name} is already the champion of {m.symbol} {m.timeframe}")
            if m.status == "retired":
                raise RegistryError(f"{name} is retired: `genesis-fw models rollback {m.symbol} {m.timeframe}` "
                                    f"restores the previous champion, and `genesis-fw models register {name}` makes "
                                    "a retired model a challenger again")
            loaded = self._load_entry(m)
            old = conn.execute("SELECT * FROM models WHERE symbol = ? AND timeframe = ? AND status = 'champion'",
                               (m.symbol, m.timeframe)).fetchone()
            if old is not None:
                notes.extend(self._definition_warning(ModelEntry.from_row(dict(old), self.dir), m, loaded))

            def work() -> int:
                if old is not None:
                    self._set_status(conn, old["name"], "retired")
                self._set_status(conn, name, "champion")
                top = conn.execute("SELECT max(position) FROM champion_stack WHERE symbol = ? AND timeframe = ?",
                                   (m.symbol, m.timeframe)).fetchone()[0]
                conn.execute("INSERT INTO champion_stack (symbol, timeframe, position, name) VALUES (?, ?, ?, ?)",
                             (m.symbol, m.timeframe, (top or 0) + 1, name))
                proof = {**(evidence or {}), "metrics": {name: m.metrics,
                                                         **({old["name"]: json.loads(old["metrics"])} if old else {})}}
                return self._log(conn, action="promote", symbol=m.symbol, timeframe=m.timeframe,
                                 from_model=old["name"] if old else None, to_model=name, reason=reason, evidence=proof)

            seq = self._transaction(conn, work)
            return Change("promote", m.symbol, m.timeframe, old["name"] if old else None, name, seq, notes)

        return self._change(body)

    def rollback(self, symbol: str, timeframe: str, *, reason: str) -> Change:
        """Retire the champion of (symbol, timeframe) and restore the one it replaced (the champion stack's
        previous entry); rolling back again goes further back, never forward."""

        def body(conn: sqlite3.Connection, notes: list[str]) -> Change:
            stack = [r["name"] for r in conn.execute(
                "SELECT name FROM champion_stack WHERE symbol = ? AND timeframe = ? ORDER BY position",
                (symbol, timeframe))]
            if not stack:
                markets = sorted({f"{r[0]} {r[1]}" for r in
                                  conn.execute("SELECT symbol, timeframe FROM champion_stack")})
                raise RegistryError(f"{symbol} {timeframe} has no champion to roll back"
                                    f"{did_you_mean(f'{symbol} {timeframe}', markets)}")
            if len(stack) < 2:
                raise RegistryError(f"no previous champion of {symbol} {timeframe} to roll back to: {stack[-1]} is its "
                                    "first champion")
            top, below = self._row(conn, stack[-1]), self._row(conn, stack[-2])
            self._load_entry(below)

            def work() -> int:
                conn.execute("DELETE FROM champion_stack WHERE symbol = ? AND timeframe = ? AND position = "
                             "(SELECT max(position) FROM champion_stack WHERE symbol = ? AND timeframe = ?)",
                             (symbol, timeframe, symbol, timeframe))
                self._set_status(conn, top.name, "retired")
                self._set_status(conn, below.name, "champion")
                return self._log(conn, action="rollback", symbol=symbol, timeframe=timeframe, from_model=top.name,
                                 to_model=below.name, reason=reason,
                                 evidence={"metrics": {top.name: top.metrics, below.name: below.metrics}})

            seq = self._transaction(conn, work)
            return Change("rollback", symbol, timeframe, top.name, below.name, seq, notes)

        return self._change(body)

    def retire(self, name: str, *, reason: str) -> Change:
        """Retire the challenger ``name`` (its file untouched). The champion is not retired this way:
        promote another model or roll back."""

        def body(conn: sqlite3.Connection, notes: list[str]) -> Change:
            m = self._row(conn, name)
            if m.status == "retired":
                raise RegistryError(f"{name} is already retired")
            if m.status == "champion":
                raise RegistryError(f"{name} is the champion of {m.symbol} {m.timeframe}: promote another model or "
                                    f"`genesis-fw models rollback {m.symbol} {m.timeframe}` instead")

            def work() -> int:
                self._set_status(conn, name, "retired")
                return self._log(conn, action="retire", symbol=m.symbol, timeframe=m.timeframe, from_model=name,
                                 to_model=None, reason=reason, evidence={"metrics": {name: m.metrics}})

            seq = self._transaction(conn, work)
            return Change("retire", m.symbol, m.timeframe, name, None, seq, notes)

        return self._change(body)

    def keep(self, symbol: str, timeframe: str, *, reason: str, evidence: dict[str, Any],
             expected_champion: str | None | _Unchecked = UNCHECKED) -> Change:
        """Log a decision to keep the champion of (symbol, timeframe); changes no status.
        ``expected_champion`` as in :meth:`promote`: the champion the decision kept."""

        def body(conn: sqlite3.Connection, notes: list[str]) -> Change:
            self._expect(conn, symbol, timeframe, expected_champion, "keeping it")
            row = conn.execute("SELECT name FROM models WHERE symbol = ? AND timeframe = ? AND status = 'champion'",
                               (symbol, timeframe)).fetchone()
            name = row["name"] if row else None

            def work() -> int:
                return self._log(conn, action="keep", symbol=symbol, timeframe=timeframe, from_model=name,
                                 to_model=name, reason=reason, evidence=evidence)

            seq = self._transaction(conn, work)
            return Change("keep", symbol, timeframe, name, name, seq, notes)

        return self._change(body)

    def repair(self) -> list[str]:
        """Rewrite registry.json from the catalog and append the entries the mirror lacks. A registry.json
        that matched no state of the catalog (edited by hand) is replaced and a ``repair`` entry logged.
        Returns one-line notes of what was done (``nothing to repair: ...`` when nothing was)."""
        if not self.db_path.exists():
            found = rf.read(self.json_path)
            if found.doc is not None and found.doc["event"] is not None:
                with self._lock():
                    with self._writing() as conn:
                        return self._mirror_warning(conn) + self._catch_up(conn, adopt=True)
            return [f"nothing to repair: {self.dir} has no registry catalog yet ({DB_FILE})"]
        with self._lock():
            with self._writing() as conn:
                events = _events(conn)
                found = rf.read(self.json_path)
                kind, detail = rf.standing(found, _registry_id(conn), events)
                if kind != rf.HAND_EDITED:
                    notes = self._catch_up(conn, adopt=False)
                    return notes or [f"nothing to repair: {detail}, and the audit log mirror has every entry"]
                if not events:
                    raise RegistryError(f"{detail}; the catalog has no entries to rebuild it from: move it away")

                def work() -> int:
                    return self._log(conn, action="repair", symbol=None, timeframe=None, from_model=None,
                                     to_model=None, reason=f"registry.json rebuilt from the catalog: {detail}",
                                     evidence={"replaced_sha256": found.sha256, "problem": detail})

                have = _mirror_lines(self.audit_log)
                missing = [e["seq"] for e in events if e["entry"] not in have]
                seq = self._transaction(conn, work)
                self._publish(conn)
                notes = [f"repaired: {detail}; rewrote {self.json_path} from the catalog (entry {seq}, repair)"]
                if missing:
                    notes.insert(0, f"repaired: the audit log mirror {self.audit_log} lacked entries "
                                    f"{_seqs(missing)}; appended")
                return notes


#: model_events columns and the entry field each must equal (JSON columns compared canonically).
_COLUMNS = (("seq", "seq"), ("at", "at"), ("user", "user"), ("host", "host"), ("action", "action"),
            ("symbol", "symbol"), ("timeframe", "timeframe"), ("from_model", "from"), ("to_model", "to"),
            ("reason", "reason"), ("evidence", "evidence"), ("state_after", "state_after"),
            ("prev_sha256", "prev_sha256"), ("sha256", "sha256"))


def _column_problem(row: dict[str, Any]) -> str | None:
    """The first structured column of a ``model_events`` row that differs from its parsed ``entry``."""
    from . import audit

    try:
        entry = json.loads(row["entry"])
    except ValueError:
        return None  # the chain check names an entry that does not parse
    if not isinstance(entry, dict):
        return None
    for column, field in _COLUMNS:
        value = entry.get(field)
        if column in ("evidence", "state_after"):
            try:
                same = audit.canonical(json.loads(row[column])) == audit.canonical(value)
            except (TypeError, ValueError):
                same = False
        else:
            same = row[column] == value
        if not same:
            return (f"entry {row['seq']}: the catalog column {column} differs from the entry's {field!r} "
                    f"(edited in the catalog: `genesis-fw sql` would show {str(row[column])[:60]!r})")
    return None


def validate_state_file(path: Path) -> dict[str, Any]:
    """Check a registry.json strictly (the pre-commit check): its schema and rules; with a registry.db
    beside it, that it shows the catalog's current state; and that each listed model file exists with
    the SHA-256 it lists. Returns the document; :class:`RegistryError` with the first problem."""
    doc = rf.load(path)
    db_path = path.parent / DB_FILE
    if db_path.exists():
        with _reading(db_path) as conn:
            events = _events(conn)
            rid = _registry_id(conn)
        kind, detail = rf.standing(rf.read(path), rid, events)
        if kind == rf.HAND_EDITED:
            raise RegistryError(f"{detail}: registry.json matches no state of the registry catalog {db_path} "
                                "(edited by hand?); rebuild it with `genesis-fw models repair`")
        if kind == rf.BEHIND:
            raise RegistryError(f"{detail}: it is behind the catalog {db_path}; bring it up with "
                                "`genesis-fw models repair`")
    for row in _state_models(doc):
        file = path.parent / row["file"]
        try:
            now = hashlib.sha256(file.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise RegistryError(f"{path}: the file of its {row['status']} {row['name']}, {file}, is missing; "
                                "restore it") from None
        except OSError as exc:
            raise RegistryError(f"{path}: {file} cannot be read: {exc.strerror or exc}") from None
        if now != row["sha256"]:
            raise RegistryError(f"{path}: {file} was tampered with or replaced ("
                                f"{_hash_pair(now, row['sha256'], 'registry.json')}); restore the listed file")
    return doc


def registered_but_missing(ref: str, folder: Path) -> None:
    """When the model name ``ref`` is registered in ``folder``'s registry (registry.db, or registry.json
    without one) but its file is missing: :class:`ModelFileError` saying so. Otherwise nothing."""
    row: dict[str, Any] | None = None
    if (folder / DB_FILE).exists():
        with _reading(folder / DB_FILE) as conn:
            found = conn.execute("SELECT name, file, status FROM models WHERE name = ?", (ref,)).fetchone()
        row = dict(found) if found is not None else None
    else:
        state = rf.read(folder / rf.FILE_NAME)
        if state.doc is not None:
            row = next((r for r in _state_models(state.doc) if r["name"] == ref), None)
    if row is not None and not (folder / row["file"]).exists():
        raise ModelFileError(f"{ref} is registered in {folder} (a {row['status']}), but its file "
                             f"{folder / row['file']} is missing; restore it (or retire the model)")


def _is_warning(note: str) -> bool:
    """Whether a note of :func:`genesis_fw.registry.audit.append_mirror` says it could not bring the mirror up."""
    return "disagrees" in note or note.startswith("cannot write")


def _seqs(seqs: list[int]) -> str:
    if len(seqs) == 1:
        return str(seqs[0])
    if seqs == list(range(seqs[0], seqs[-1] + 1)):
        return f"{seqs[0]}..{seqs[-1]}"
    return ", ".join(map(str, seqs[:10])) + (", ..." if len(seqs) > 10 else "")


def check_registered(loaded: LoadedModel) -> None:
    """Refuse a model file that is registered in its folder's registry with another SHA-256 (one-line
    :class:`ModelFileError`): for load paths outside the registry (ml_model backtests, compare). The
    registry is ``registry.db`` in the file's folder, or an adoptable ``registry.json`` there when
    there is no catalog yet. An unregistered file is not checked."""
    folder = loaded.path.parent
    db_path = folder / DB_FILE
    recorded: str | None = None
    where = str(db_path)
    if db_path.exists():
        with _reading(db_path) as conn:
            row = conn.execute("SELECT sha256 FROM models WHERE name = ?", (loaded.name,)).fetchone()
        recorded = None if row is None else row[0]
    else:
        found = rf.read(folder / rf.FILE_NAME)
        if found.doc is not None:
            where = str(found.path)
            recorded = next((r["sha256"] for r in _state_models(found.doc) if r["name"] == loaded.name), None)
    if recorded is not None and recorded != loaded.sha256:
        raise ModelFileError(f"{loaded.path}: tampered or replaced since it was registered "
                             f"({_hash_pair(loaded.sha256, recorded, where)}); restore the registered file")

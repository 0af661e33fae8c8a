"""The registry's audit log: a hash chain of entries, kept in the catalog and mirrored to a JSON-lines file.

Every registry change appends one entry (a JSON object) to ``model_events`` in ``registry.db`` and the
same text, plus a newline, to the mirror (``logs/champion_selection.jsonl`` by default). An entry has
the keys ``seq`` (1, 2, ...), ``at`` (ISO 8601 UTC, ms), ``user`` (OS user), ``host``, ``pid``,
``registry_id``, ``action``, ``symbol``, ``timeframe``, ``from``, ``to``, ``reason``, ``evidence``,
``state_after``, ``prev_sha256`` and ``sha256``:

* :func:`canonical` is the one text of an object: sorted keys, no spaces, UTF-8 characters as they are,
  no NaN (JSON has none: :func:`make_entry` turns non-finite numbers into ``null``);
* ``sha256`` is the SHA-256 (hex) of the canonical text of the entry without its ``sha256`` key;
* ``prev_sha256`` is the previous entry's ``sha256`` (64 zeros for entry 1), so each entry seals every
  entry before it.

What the chain proves: as long as the catalog and the mirror agree and each copy's chain verifies
(:func:`verify`), no entry of either copy was edited, removed, inserted or reordered after the fact by
someone who changed only one copy, or changed an entry without re-hashing everything after it. An edit
shows at its entry (the content no longer matches its ``sha256``); an edit that also recomputes that
hash breaks the link from the next entry; a removal, insertion or swap breaks the numbering and a link;
re-hashing the last entry, or cutting the tail off, makes the two copies disagree.

What it does not prove: someone who can write both the catalog and the mirror can rewrite the whole
history consistently (edit an entry and re-hash it and every later entry in both copies) and the chain
still verifies; the hashes carry no secret. What anchors the history against that is a copy of a hash
kept where that person cannot rewrite it: ``registry.json``'s ``event.sha256`` (checked in to version
control, read by the trading bot), and copies of the JSON-lines log elsewhere (backups, a log shipper):
any later rewrite no longer ends in, or passes through, the hashes recorded there. Nor does the chain
say that an entry's content is true (its ``user`` and ``host`` are what the writing process saw).

Several registries may share one mirror file: each entry names its ``registry_id``, and lines of other
registries are skipped (and counted) when one registry's chain is checked.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..catalog import utcnow

#: ``prev_sha256`` of the first entry.
GENESIS_HASH = "0" * 64

#: The keys of an entry, in the order they are documented.
ENTRY_KEYS = ("seq", "at", "user", "host", "pid", "registry_id", "action", "symbol", "timeframe", "from", "to",
              "reason", "evidence", "state_after", "prev_sha256", "sha256")

#: At most this many problems are listed per copy (the first broken link is always the first).
MAX_PROBLEMS = 20


def canonical(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces, non-ASCII kept, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical text (UTF-8) of ``entry`` without its ``sha256`` key."""
    body = {k: v for k, v in entry.items() if k != "sha256"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def os_user() -> str:
    """The OS user running this process (``getpass.getuser()``), else ``"uid <n>"``."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        getuid = getattr(os, "getuid", None)
        return f"uid {getuid()}" if getuid is not None else "unknown"


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: tuples become lists, numpy scalars Python numbers, paths strings,
    non-finite floats ``None``; mapping keys become strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str | bytes):
        value = value.item()   # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def make_entry(*, seq: int, prev_sha256: str, registry_id: str, action: str, symbol: str | None,
               timeframe: str | None, from_model: str | None, to_model: str | None, reason: str,
               evidence: Mapping[str, Any], state_after: Any, at: str | None = None, user: str | None = None,
               host: str | None = None, pid: int | None = None) -> dict[str, Any]:
    """A new audit entry with its ``sha256`` filled in. ``at`` defaults to now (ISO 8601 UTC, ms),
    ``user``/``host``/``pid`` to this process's OS user, host name and process id."""
    entry: dict[str, Any] = {
        "seq": int(seq), "at": at or utcnow(), "user": user or os_user(), "host": host or socket.gethostname(),
        "pid": os.getpid() if pid is None else int(pid), "registry_id": registry_id, "action": action,
        "symbol": symbol, "timeframe": timeframe, "from": from_model, "to": to_model, "reason": reason,
        "evidence": _jsonable(evidence), "state_after": _jsonable(state_after), "prev_sha256": prev_sha256,
    }
    entry["sha256"] = entry_hash(entry)
    return entry


# --- the mirror ------------------------------------------------------------------------------------------


@attrs.frozen
class _Line:
    """One line of a mirror file: its number (1-based), text (without newline), parsed entry or why not."""

    number: int
    text: str | None
    entry: dict[str, Any] | None
    problem: str | None
    torn: bool = False


def _parse(number: int, raw: bytes, *, torn: bool = False) -> _Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Line(number, None, None, "not UTF-8 text", torn)
    try:
        entry = json.loads(text)
    except ValueError as exc:
        return _Line(number, text, None, f"not JSON ({exc.msg} at column {exc.colno})", torn)
    try:
        canonical(entry)   # json.loads takes NaN, Infinity and 2e596 (inf); no entry can hold them
    except ValueError:
        return _Line(number, text, None, "holds a number JSON cannot represent (NaN or out of range: edited)", torn)
    if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int) or isinstance(entry["seq"], bool) \
            or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("prev_sha256"), str):
        return _Line(number, text, None, "not an audit entry (no integer seq, sha256 and prev_sha256)", torn)
    return _Line(number, text, entry, None, torn)


def _read_lines(data: bytes) -> list[_Line]:
    """The lines of a mirror file's bytes; a last line without newline is marked torn."""
    parts = data.split(b"\n")
    tail = parts.pop()   # b"" when the file ends with a newline
    out = [_parse(i + 1, raw) for i, raw in enumerate(parts)]
    if tail:
        out.append(_parse(len(parts) + 1, tail, torn=True))
    return out


def _registry_of(lines: list[str]) -> str | None:
    for text in lines:
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("registry_id"), str):
            return entry["registry_id"]
    return None


def _first_seq(lines: list[str]) -> int:
    """The seq of the first of ``lines`` (1 when it has none)."""
    try:
        seq = json.loads(lines[0]).get("seq")
    except (ValueError, AttributeError):
        return 1
    return seq if isinstance(seq, int) and seq >= 1 else 1


def _span(seqs: list[int]) -> str:
    """``entry 3``, ``entries 3..5`` or ``entries 3, 7..8`` for sorted seqs."""
    runs: list[list[int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    parts = [str(a) if a == b else f"{a}..{b}" for a, b in runs]
    return ("entry " if len(seqs) == 1 else "entries ") + ", ".join(parts)


def append_mirror(path: Path, lines: list[str]) -> list[str]:
    """Bring the mirror at ``path`` up to ``lines`` by appending what the file lacks at its end; fsynced.

    ``lines`` are the catalog's canonical lines of one registry (without newlines), in seq order: all of
    them, or those from some entry on (the new entry alone, say). The mirror's lines of that registry
    (lines of other registries are left alone) must hold every entry before the first one given, then
    a prefix of ``lines``: the rest is appended. A torn last line (no newline: a write was interrupted)
    that is the start of the next expected line is completed. A complete line is never rewritten or
    removed: a mirror that does not fit (an edited or missing entry, entries the catalog lacks, an
    unreadable line) is not touched at all. Creates the file and its folder when missing.

    Returns one-line notes: what it repaired (anything beyond appending the last of ``lines``), that the
    mirror disagrees and was left alone, or that it cannot be written (the catalog keeps the entries;
    the next change tries again).
    """
    path = Path(path)
    if not lines:
        return []
    first = _first_seq(lines)
    rid = _registry_of(lines)
    where = f"the audit log mirror {path}"
    disagree = f"{where} disagrees with the registry catalog ({{}}); not touched: " \
               "`genesis-fw models audit --verify` shows where"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as fh:
            _lock(fh.fileno())
            fh.seek(0)
            found = _read_lines(fh.read())
            before: list[_Line] = []   # this registry's entries before the first line given
            given: list[_Line] = []    # and from it on
            for line in found:
                if line.torn:
                    continue
                if line.problem is not None:
                    return [disagree.format(f"line {line.number} is {line.problem}")]
                assert line.entry is not None
                if line.entry.get("registry_id") != rid:
                    continue
                (given if given or line.entry["seq"] >= first else before).append(line)
            held = int(before[-1].entry["seq"]) if before and before[-1].entry is not None else 0
            if held != first - 1:
                return [disagree.format(f"it lacks {_span(list(range(held + 1, first)))}, before the entries "
                                        "to append" if held < first - 1 else
                                        f"its entry {held} on line {before[-1].number} is out of order")]
            for k, line in enumerate(given):
                if k >= len(lines):
                    return [disagree.format(f"it has entries the catalog lacks, from line {line.number}")]
                if line.text != lines[k]:
                    return [disagree.format(f"line {line.number} is not the catalog's entry {first + k}")]
            todo = lines[len(given):]
            seq = first + len(given)   # the seq of todo[0]
            notes: list[str] = []
            text = ""
            if found and found[-1].torn:
                torn = found[-1].text
                if not todo or torn is None or not todo[0].startswith(torn):
                    return [disagree.format(f"its last line {found[-1].number} is incomplete and is not the "
                                            "start of this registry's next entry")]
                text = todo[0][len(torn):] + "\n"
                notes.append(f"completed the torn last line of {where} (entry {seq})")
                todo, seq = todo[1:], seq + 1
            if len(todo) > 1:
                notes.append(f"added {_span(list(range(seq, seq + len(todo) - 1)))} that {where} lacked")
            text += "".join(t + "\n" for t in todo)
            if text:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        if not found and text:
            _fsync_dir(path.parent)
        return notes
    except OSError as exc:
        return [f"cannot write {where}: {exc.strerror or exc}; the catalog keeps the entries and the next "
                "change writes them"]


def _lock(fd: int) -> None:
    """Hold an exclusive ``flock`` on the open mirror until it is closed (registries sharing the file
    append one at a time); without ``fcntl`` (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- verify ----------------------------------------------------------------------------------------------


@attrs.frozen
class AuditReport:
    """What :func:`verify` found. ``entries``: entries in the catalog. ``problems``: the catalog's chain,
    first broken link first. ``mirror_problems``: the mirror's own chain (first broken link first), then
    where it disagrees with the catalog. ``skipped``: mirror lines of other registries."""

    ok: bool
    entries: int
    problems: list[str]
    mirror_problems: list[str]
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problems": list(self.problems),
                "mirror_problems": list(self.mirror_problems), "skipped": self.skipped}


def _chain_problems(lines: list[_Line], registry_id: str | None) -> list[str]:
    """Each broken link of one copy's chain, in order, checking every line against the line before it."""
    problems: list[str] = []
    prev: dict[str, Any] | None = None
    for line in lines:
        if line.problem is not None:
            problems.append(f"line {line.number}: {line.problem}")
            continue
        entry = line.entry
        assert entry is not None
        seq = entry["seq"]
        at = f"entry {seq} (line {line.number})"
        if registry_id is not None and entry.get("registry_id") != registry_id:
            problems.append(f"{at}: belongs to registry {str(entry.get('registry_id'))[:12]}…, not "
                            f"{registry_id[:12]}…")
            prev = entry
            continue
        if entry_hash(entry) != entry["sha256"]:
            problems.append(f"{at}: its content does not match its sha256 (edited)")
            prev = entry
            continue
        parts: list[str] = []
        expected = 1 if prev is None else prev["seq"] + 1
        if seq != expected:
            if prev is None:
                parts.append(f"the first entry has seq {seq} (entries 1..{seq - 1} are missing: removed)"
                             if seq > 1 else f"the first entry has seq {seq}")
            elif seq > expected:
                gap = _span(list(range(expected, seq)))
                verb = "is" if seq - expected == 1 else "are"
                parts.append(f"seq {seq} follows entry {prev['seq']} ({gap} {verb} missing: removed or moved)")
            elif seq == prev["seq"]:
                parts.append(f"seq {seq} follows entry {prev['seq']} (a repeated seq: an entry was inserted or "
                             "duplicated)")
            else:
                parts.append(f"seq {seq} follows entry {prev['seq']} (out of order: reordered)")
        link = GENESIS_HASH if prev is None else prev["sha256"]
        if entry["prev_sha256"] != link:
            if prev is None:
                parts.append("its prev_sha256 is not the genesis hash (entries before it were removed)")
            else:
                why = "an entry before it was removed, inserted or reordered"
                if seq == expected:
                    why += f", or entry {prev['seq']} was edited and re-hashed"
                parts.append(f"its prev_sha256 does not match entry {prev['seq']}'s sha256 ({why})")
        if parts:
            problems.append(f"{at}: " + "; ".join(parts))
        prev = entry
    return problems


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more"]


def verify(catalog_lines: list[str], mirror: Path, registry_id: str | None) -> AuditReport:
    """Check the audit chain of the catalog (``catalog_lines``: its ``entry`` texts by seq) and of the
    mirror file, and compare the two.

    For each copy, every line must be a JSON entry whose ``sha256`` matches its content, whose
    ``prev_sha256`` is the previous entry's ``sha256`` and whose ``seq`` follows it by one; the first
    broken link is listed first, naming the entry, its line and what is wrong (edited, removed, inserted,
    reordered). Then the mirror's entries are compared to the catalog's as text: which seqs differ, which
    the mirror lacks, which are only in the mirror. Mirror lines of another ``registry_id`` are skipped
    and counted (``registry_id`` ``None``: the catalog's, or every line when the catalog is empty).
    """
    mirror = Path(mirror)
    rid = registry_id if registry_id is not None else _registry_of(catalog_lines)
    catalog = [_parse(i + 1, text.encode("utf-8")) for i, text in enumerate(catalog_lines)]
    problems = _capped(_chain_problems(catalog, rid))

    mirror_problems: list[str] = []
    skipped = 0
    try:
        data = mirror.read_bytes()
        exists = True
    except FileNotFoundError:
        data, exists = b"", False
    except OSError as exc:
        return AuditReport(False, len(catalog_lines), problems,
                           [f"cannot read the mirror {mirror}: {exc.strerror or exc}"])
    if not exists and catalog_lines:
        mirror_problems.append(f"the mirror {mirror} does not exist")
    found = _read_lines(data)
    mine: list[_Line] = []
    torn_note: str | None = None
    for line in found:
        if line.torn:
            torn_note = f"line {line.number}: torn last line (no newline; a write was interrupted)"
            continue
        if line.problem is not None:
            mine.append(line)   # unattributable: reported in its place in the chain
            continue
        assert line.entry is not None
        if rid is not None and line.entry.get("registry_id") != rid:
            skipped += 1
            continue
        mine.append(line)
    mirror_problems += _chain_problems(mine, rid)
    known: dict[int, str] = {}   # the catalog's entries by seq
    for line in catalog:
        if line.entry is not None and line.text is not None:
            known.setdefault(line.entry["seq"], line.text)
    if torn_note is not None:
        torn = found[-1]
        expected = max((m.entry["seq"] for m in mine if m.entry is not None), default=0) + 1
        if torn.text is not None and known.get(expected, "\0").startswith(torn.text):
            torn_note += f", the start of entry {expected}"
        elif torn.problem is not None:
            torn_note += f", {torn.problem}"
        mirror_problems.append(torn_note)

    # The mirror against the catalog, as text, by seq.
    by_seq: dict[int, list[_Line]] = {}
    for line in mine:
        if line.entry is not None:
            by_seq.setdefault(line.entry["seq"], []).append(line)
    differ, repeated = [], []
    for seq, occurrences in sorted(by_seq.items()):
        if len(occurrences) > 1:
            repeated.append(f"entry {seq} appears {len(occurrences)} times in the mirror (lines "
                            f"{', '.join(str(o.number) for o in occurrences)})")
        if seq in known:
            for o in occurrences:
                if o.text != known[seq]:
                    differ.append(f"entry {seq} differs between the mirror and the catalog (mirror line {o.number})")
    missing = sorted(s for s in known if s not in by_seq)
    extra = sorted(s for s in by_seq if s not in known)
    mirror_problems += differ + repeated
    if missing:
        mirror_problems.append(f"mirror lacks {_span(missing)}")
    if extra:
        span = _span(extra)
        mirror_problems.append(f"{span} {'is' if len(extra) == 1 else 'are'} only in the mirror")
    mirror_problems = _capped(mirror_problems)
    return AuditReport(not problems and not mirror_problems, len(catalog_lines), problems, mirror_problems,
                       skipped)

"""The registry's audit log (genesis_fw.registry.audit): the hash chain of entries, the JSON-lines mirror
appended after every change, and ``verify`` naming the first broken link of each copy and where the
mirror and the catalog disagree. Real files throughout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_fw.registry import audit

RID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def _chain(n: int, registry_id: str = RID) -> list[str]:
    """``n`` linked canonical lines, as the catalog's ``entry`` column holds them."""
    lines, prev = [], audit.GENESIS_HASH
    for seq in range(1, n + 1):
        entry = audit.make_entry(
            seq=seq, prev_sha256=prev, registry_id=registry_id, action="promote" if seq % 2 else "register",
            symbol="tBTCUSD", timeframe="1h", from_model=f"tBTCUSD_1h_v{seq}", to_model=f"tBTCUSD_1h_v{seq + 1}",
            reason=f"change {seq}: Größe €", evidence={"metrics": {"log_loss": 0.69 - seq / 1000, "n": 100 + seq}},
            state_after={"markets": [{"symbol": "tBTCUSD", "timeframe": "1h", "champion": f"v{seq + 1}"}]},
            at=f"2026-01-01T00:00:{seq % 60:02d}.000+00:00", user="alice", host="box", pid=42)
        lines.append(audit.canonical(entry))
        prev = entry["sha256"]
    return lines


def _write(path: Path, lines: list[str], tail: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + (tail if lines else ""), encoding="utf-8")
    return path


def _edit(line: str, **changes: object) -> str:
    entry = json.loads(line)
    entry.update(changes)
    return audit.canonical(entry)


def _rehash(line: str, **changes: object) -> str:
    entry = json.loads(line)
    entry.update(changes)
    entry["sha256"] = audit.entry_hash(entry)
    return audit.canonical(entry)


# --- entries -------------------------------------------------------------------------------------


def test_entries_are_canonical_and_hashed_over_everything_but_their_hash() -> None:
    entry = audit.make_entry(seq=1, prev_sha256=audit.GENESIS_HASH, registry_id=RID, action="register",
                             symbol="tBTCUSD", timeframe="1h", from_model=None, to_model="tBTCUSD_1h_v2",
                             reason="trained", evidence={"auc": float("nan"), "b": (1, 2)}, state_after={})
    assert set(entry) == {"seq", "at", "user", "host", "pid", "registry_id", "action", "symbol", "timeframe",
                          "from", "to", "reason", "evidence", "state_after", "prev_sha256", "sha256"}
    assert entry["pid"] == os.getpid() and entry["user"] and entry["host"]
    assert entry["at"].endswith("+00:00") and len(entry["at"].split(".")[1]) == len("000+00:00")
    assert entry["evidence"] == {"auc": None, "b": [1, 2]}   # JSON has no NaN or tuples
    body = {k: v for k, v in entry.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    import hashlib

    assert entry["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest() == audit.entry_hash(entry)
    assert audit.canonical({"b": "é", "a": 1}) == '{"a":1,"b":"é"}'


def test_user_falls_back_to_the_uid_when_there_is_no_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(audit.getpass, "getuser", no_user)
    assert audit.os_user() == f"uid {os.getuid()}"


# --- verify: a clean chain and each kind of tampering ----------------------------------------------


def test_a_clean_chain_verifies(tmp_path: Path) -> None:
    lines = _chain(12)
    mirror = _write(tmp_path / "logs" / "audit.jsonl", lines)
    report = audit.verify(lines, mirror, RID)
    assert report.ok and report.entries == 12 and report.problems == [] and report.mirror_problems == []
    assert report.as_dict()["ok"] is True
    empty = audit.verify([], tmp_path / "none.jsonl", RID)
    assert empty.ok and empty.entries == 0


def _both(lines: list[str], tampered: list[str], tmp_path: Path, tail: str = "\n") -> tuple[audit.AuditReport, ...]:
    """Verify ``tampered`` as the catalog (against a clean mirror) and as the mirror (against the clean
    catalog)."""
    as_catalog = audit.verify(tampered, _write(tmp_path / "clean.jsonl", lines), RID)
    as_mirror = audit.verify(lines, _write(tmp_path / "tampered.jsonl", tampered, tail), RID)
    assert not as_catalog.ok and not as_mirror.ok
    return as_catalog, as_mirror


def test_an_edited_field_is_named_at_its_entry(tmp_path: Path) -> None:
    lines = _chain(12)
    tampered = [*lines]
    tampered[6] = _edit(lines[6], reason="nothing to see")
    cat, mir = _both(lines, tampered, tmp_path)
    assert cat.problems[0] == "entry 7 (line 7): its content does not match its sha256 (edited)"
    assert mir.mirror_problems[0] == "entry 7 (line 7): its content does not match its sha256 (edited)"
    assert "entry 7 differs between the mirror and the catalog (mirror line 7)" in mir.mirror_problems
    assert mir.problems == []   # the catalog itself is intact


def test_a_deleted_entry_is_named_at_the_entry_after_the_gap(tmp_path: Path) -> None:
    lines = _chain(12)
    tampered = lines[:8] + lines[9:]
    cat, mir = _both(lines, tampered, tmp_path)
    expected = ("entry 10 (line 9): seq 10 follows entry 8 (entry 9 is missing: removed or moved); its "
                "prev_sha256 does not match entry 8's sha256 (an entry before it was removed, inserted or reordered)")
    assert cat.problems[0] == expected and mir.mirror_problems[0] == expected
    assert "mirror lacks entry 9" in mir.mirror_problems
    assert "entry 9 is only in the mirror" in cat.mirror_problems


def test_two_swapped_entries_are_named(tmp_path: Path) -> None:
    lines = _chain(12)
    tampered = [*lines]
    tampered[7], tampered[8] = lines[8], lines[7]
    cat, _ = _both(lines, tampered, tmp_path)
    assert cat.problems[0] == (
        "entry 9 (line 8): seq 9 follows entry 7 (entry 8 is missing: removed or moved); its prev_sha256 does "
        "not match entry 7's sha256 (an entry before it was removed, inserted or reordered)")
    assert cat.problems[1].startswith("entry 8 (line 9): seq 8 follows entry 9 (out of order: reordered)")


def test_a_forged_entry_inserted_with_a_valid_hash_is_detected(tmp_path: Path) -> None:
    lines = _chain(12)
    forged = _rehash(lines[4], seq=6, prev_sha256=json.loads(lines[4])["sha256"], reason="forged")
    tampered = lines[:5] + [forged] + lines[5:]   # links to entry 5 and hashes correctly
    cat, mir = _both(lines, tampered, tmp_path)
    assert cat.problems[0] == (
        "entry 6 (line 7): seq 6 follows entry 6 (a repeated seq: an entry was inserted or duplicated); its "
        "prev_sha256 does not match entry 6's sha256 (an entry before it was removed, inserted or reordered)")
    assert mir.mirror_problems[0] == cat.problems[0]
    assert "entry 6 differs between the mirror and the catalog (mirror line 6)" in mir.mirror_problems


def test_a_truncated_tail_shows_as_missing_from_the_mirror(tmp_path: Path) -> None:
    lines = _chain(12)
    report = audit.verify(lines, _write(tmp_path / "m.jsonl", lines[:10]), RID)
    assert not report.ok and report.problems == []
    assert report.mirror_problems == ["mirror lacks entries 11..12"]
    gone = audit.verify(lines, tmp_path / "gone.jsonl", RID)
    assert gone.mirror_problems == [f"the mirror {tmp_path / 'gone.jsonl'} does not exist",
                                    "mirror lacks entries 1..12"]


def test_a_torn_last_line_is_named_and_completed_by_append_mirror(tmp_path: Path) -> None:
    lines = _chain(12)
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines[:11]) + "\n" + lines[11][:40], encoding="utf-8")
    report = audit.verify(lines, path, RID)
    assert report.mirror_problems == [
        "line 12: torn last line (no newline; a write was interrupted), the start of entry 12",
        "mirror lacks entry 12"]
    before = path.read_bytes()
    notes = audit.append_mirror(path, lines)
    assert notes == [f"completed the torn last line of the audit log mirror {path} (entry 12)"]
    assert path.read_bytes().startswith(before)          # appended, nothing rewritten
    assert path.read_text(encoding="utf-8") == "\n".join(lines) + "\n"
    assert audit.verify(lines, path, RID).ok


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    lines = _chain(12)
    tampered = [*lines]
    tampered[11] = lines[11][:-1] + "}}"
    cat, mir = _both(lines, tampered, tmp_path)
    assert cat.problems[0].startswith("line 12: not JSON (")
    assert mir.mirror_problems[0].startswith("line 12: not JSON (")
    assert "mirror lacks entry 12" in mir.mirror_problems
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(("\n".join(lines[:3]) + "\n").encode() + b"\xff\xfe\n")
    assert audit.verify(lines[:3], raw, RID).mirror_problems == ["line 4: not UTF-8 text"]


def test_a_recomputed_hash_edit_breaks_the_next_link_or_the_catalog_copy(tmp_path: Path) -> None:
    lines = _chain(12)
    tampered = [*lines]
    tampered[6] = _rehash(lines[6], reason="rewritten with a fresh hash")
    cat, mir = _both(lines, tampered, tmp_path)
    expected = ("entry 8 (line 8): its prev_sha256 does not match entry 7's sha256 (an entry before it was "
                "removed, inserted or reordered, or entry 7 was edited and re-hashed)")
    assert cat.problems[0] == expected and mir.mirror_problems[0] == expected
    # Re-hashing the last entry keeps the chain of that copy intact: the other copy disagrees.
    last = [*lines[:11], _rehash(lines[11], reason="quietly changed")]
    report = audit.verify(lines, _write(tmp_path / "last.jsonl", last), RID)
    assert report.problems == [] and report.mirror_problems == [
        "entry 12 differs between the mirror and the catalog (mirror line 12)"]


def test_lines_of_other_registries_are_skipped_and_counted(tmp_path: Path) -> None:
    mine, theirs = _chain(5), _chain(3, OTHER)
    mixed = [mine[0], theirs[0], mine[1], mine[2], theirs[1], mine[3], theirs[2], mine[4]]
    report = audit.verify(mine, _write(tmp_path / "shared.jsonl", mixed), RID)
    assert report.ok and report.skipped == 3 and report.as_dict()["skipped"] == 3
    edited = [*mixed]
    edited[5] = _edit(mine[3], reason="x")   # mirror line 6 holds entry 4
    report = audit.verify(mine, _write(tmp_path / "shared2.jsonl", edited), RID)
    assert report.mirror_problems[0] == "entry 4 (line 6): its content does not match its sha256 (edited)"
    # The catalog holding an entry of another registry is a problem of the catalog.
    report = audit.verify([*mine[:2], theirs[2]], _write(tmp_path / "x.jsonl", mine[:2]), RID)
    assert report.problems[0].startswith("entry 3 (line 3): belongs to registry fedcba987654")


# --- append_mirror --------------------------------------------------------------------------------


def test_append_mirror_creates_the_folder_and_appends_only_what_is_missing(tmp_path: Path) -> None:
    lines = _chain(6)
    path = tmp_path / "new" / "logs" / "audit.jsonl"
    assert audit.append_mirror(path, lines[:1]) == []   # the normal case: the new entry, nothing repaired
    assert audit.append_mirror(path, lines[:1]) == []   # already there: nothing written
    assert path.read_text(encoding="utf-8") == lines[0] + "\n"
    notes = audit.append_mirror(path, lines[:4])         # a crash had left entries 2..3 out
    assert notes == [f"added entries 2..3 that the audit log mirror {path} lacked"]
    assert path.read_text(encoding="utf-8") == "\n".join(lines[:4]) + "\n"
    # Another registry sharing the file: its lines are left alone and do not count.
    other = _chain(2, OTHER)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(other[0] + "\n")
    assert audit.append_mirror(path, lines[:5]) == []
    assert path.read_text(encoding="utf-8").splitlines() == [*lines[:4], other[0], lines[4]]


def test_append_mirror_takes_the_catalog_lines_from_any_entry_on(tmp_path: Path) -> None:
    """``lines`` may be the whole catalog or its tail (the new entry alone): the mirror must hold every
    entry before the first one given."""
    lines = _chain(6)
    path = tmp_path / "audit.jsonl"
    for line in lines[:3]:
        assert audit.append_mirror(path, [line]) == []
    assert path.read_text(encoding="utf-8") == "\n".join(lines[:3]) + "\n"
    assert audit.append_mirror(path, lines[2:5]) == [f"added entry 4 that the audit log mirror {path} lacked"]
    before = path.read_bytes()
    notes = audit.append_mirror(path, lines[5:])   # the mirror holds 1..5: nothing is missing
    assert notes == [] and path.read_bytes() == before + (lines[5] + "\n").encode()
    gap = _write(tmp_path / "gap.jsonl", lines[:2])
    notes = audit.append_mirror(gap, lines[3:])
    assert len(notes) == 1 and "lacks entry 3" in notes[0] and "disagrees" in notes[0], notes
    assert gap.read_text(encoding="utf-8") == "\n".join(lines[:2]) + "\n"


def test_append_mirror_never_touches_a_mirror_that_disagrees(tmp_path: Path) -> None:
    lines = _chain(6)
    cases = {
        "edited": [*lines[:2], _edit(lines[2], reason="x"), lines[3]],
        "missing in the middle": [lines[0], lines[2]],
        "ahead of the catalog": lines,
        "not JSON": [*lines[:2], "{oops"],
    }
    for case, content in cases.items():
        path = _write(tmp_path / f"{case}.jsonl", content)
        before = path.read_bytes()
        notes = audit.append_mirror(path, lines[:5])
        assert len(notes) == 1 and "disagrees with the registry catalog" in notes[0], (case, notes)
        assert "`genesis-fw models audit --verify` shows where" in notes[0]
        assert path.read_bytes() == before, case
    torn = tmp_path / "torn.jsonl"
    torn.write_text(lines[0] + "\n" + "garbage", encoding="utf-8")
    notes = audit.append_mirror(torn, lines[:2])
    assert "disagrees" in notes[0] and torn.read_text(encoding="utf-8") == lines[0] + "\ngarbage"


def test_append_mirror_reports_an_unwritable_mirror_in_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "a-file"
    folder.write_text("not a folder")
    notes = audit.append_mirror(folder / "audit.jsonl", _chain(1))
    assert len(notes) == 1 and notes[0].startswith(f"cannot write the audit log mirror {folder / 'audit.jsonl'}")


# --- any single-byte change is detected -------------------------------------------------------------

@pytest.mark.parametrize("number", ["2e596", "-2e596", "NaN", "Infinity"])
def test_a_number_edited_beyond_what_json_can_hold_is_named_not_a_crash(tmp_path: Path, number: str) -> None:
    lines = _chain(3)
    tampered = [*lines]
    tampered[1] = lines[1].replace('"pid":42', f'"pid":{number}')
    assert tampered[1] != lines[1]
    cat, mir = _both(lines, tampered, tmp_path)
    for first in (mir.mirror_problems[0], cat.problems[0]):
        assert first.startswith("line 2: ") and "edited" in first
    assert mir.problems == []   # the catalog itself is intact


CHAIN = _chain(5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.integers(0, len(CHAIN) - 1), offset=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_any_single_byte_change_to_a_valid_mirror_is_detected(tmp_path: Path, line: int, offset: int,
                                                              byte: int) -> None:
    data = bytearray(("\n".join(CHAIN) + "\n").encode("utf-8"))
    start = sum(len(x.encode("utf-8")) + 1 for x in CHAIN[:line])
    pos = start + offset % (len(CHAIN[line].encode("utf-8")) + 1)   # any byte of the line, its newline too
    if data[pos] == byte:
        byte = (byte + 1) % 256
    data[pos] = byte
    path = tmp_path / "mirror.jsonl"
    path.write_bytes(bytes(data))
    report = audit.verify(CHAIN, path, RID)
    assert not report.ok and report.mirror_problems and report.problems == []

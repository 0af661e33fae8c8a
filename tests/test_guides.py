"""The guides are tested: every ``genesis-fw`` command shown in README.md and docs/*.md runs, and shown output matches.

Which documents: README.md and every ``docs/*.md`` (found by glob, so a new guide is covered at once) except
``docs/CLI.md`` (generated from ``--help``, checked by ``tests/test_docs.py``) and ``docs/ARCHITECTURE.md`` (no
commands to run).

Which commands, in fenced code blocks (blocks tagged ``text``, ``json``, ``python``, ``toml``, ... hold none):

* ``$ genesis-fw ...`` (any ``$ `` line, e.g. ``$ cd elsewhere && genesis-fw ...``): the lines after it up to the
  next ``$`` line or the end of the block are the output shown for it, compared with what the command prints now
  (stdout and stderr together, in the order written). A line ``...`` in a shown output stands for any number of
  lines (output left out on purpose).
* bare ``genesis-fw ...`` lines, with ``\\`` continuations and a trailing ``# comment``: run, no output shown.

Each document runs in order, every command a real process (``bash -c``, so ``cd``, ``VAR=value`` prefixes and
``> /dev/null; echo "exit $?"`` work as shown), in its own throw-away world: a temporary working directory
holding copies of ``config/`` (the models folder ``config/models/`` and ``runtime.seed.json``) and ``sql/``, no
``data/`` store at first (so the bundled sample stands in, exactly as for a new user, until the document's own
commands fetch or import something), ``$GENESIS_AUDIT_LOG`` in that folder, and fetches served by the local
exchange server of the data tests (``tests/bitfinex_server.py``, through ``$GENESIS_BITFINEX_URL``).

A command must exit 0 unless its shown output has an ``Error:`` line (then it must fail with one) or ends in
``Killed`` (then it must die of SIGKILL), and never print a traceback; a command ending in ``echo "exit $?"``
must print the ``exit N`` line shown. Before comparing, only what truly varies is normalised, on both sides:
run ids, where the package is installed (``.../genesis_fw/sample/``), times of now (ISO times from 2020 on),
durations in seconds with a decimal point, the time and memory columns of the ``e2e`` summary,
``user@host``, registry ids (32 hex digits) and the world's own path (removed, so paths read relative to the
working directory, as in a checkout; so is ``/tmp/docsess``, the folder a guide names when it shows such an
absolute path). Every other number must be the same.

Markers: an HTML comment on the line(s) just before a fenced block, ``<!-- guide-test: DIRECTIVE; ... -->``:

* ``not compared: REASON`` -- the block's commands still run (so they cannot rot) and must exit as shown, but
  their output is not compared. Used for output from the full 2019 year (``REASON`` = ``output from the full
  2019 year``), which CI does not have; there a ``--data-dir`` naming a year store is the world's store, so the
  command runs on the sample instead.
* ``stdout only`` -- the output shown is the commands' stdout (the prose says what goes to stderr); stderr is
  still checked for tracebacks and ``Error:`` lines.
* ``file NAME`` -- the block (e.g. a JSON config) is written to ``NAME`` in the world before later commands.
* ``new world`` -- the block starts in a fresh world, as if the earlier blocks had not run.
* ``world NAME`` -- the block runs in the world called ``NAME`` (a fresh one the first time), so a story told
  in several blocks continues there after another block ran elsewhere.
* ``setup NAME`` -- a step the prose describes but no command shows (a hand-edited file, a second hand-set
  model); ``SETUPS`` below maps each name to what it does.

Placeholders a user fills in are mapped to real files and values by ``PLACEHOLDERS`` below; any other ``/tmp``
path in a command fails the test (add a mapping). Nothing is skipped.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bitfinex_server import BitfinexServer
from conftest import ETH_2D

from genesis_fw.data.store import CandleStore

ROOT = Path(__file__).resolve().parents[1]
NOT_GUIDES = {"CLI.md", "ARCHITECTURE.md"}
DOCUMENTS = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in NOT_GUIDES)
#: Fence languages whose blocks hold commands; other blocks (``text``, ``json``, ``python``, ...) are never run.
COMMAND_LANGUAGES = {"", "bash", "sh", "shell", "console"}
MARKER = re.compile(r"<!--\s*guide-test:(.*?)-->", re.S)
BIN = Path(sys.executable).parent
DAY_MS = 86_400_000


def _copy_models(world: World, dest: str) -> str:
    shutil.copytree(world.models, world.root / dest, dirs_exist_ok=True)
    return str(world.root / dest)


def _copy_eth(world: World, dest: str) -> str:
    shutil.copy(ETH_2D, world.root / dest)
    return dest


def _store(world: World, _: str) -> str:
    (world.root / "data").mkdir(exist_ok=True)
    return "data"


#: Placeholder -> what it stands for in the world: a string, or a function of (world, placeholder) that creates
#: it and returns the replacement. Longer placeholders are replaced first. (The README's ``--reason "..."`` needs
#: no mapping: three dots are a valid reason, recorded as given.)
PLACEHOLDERS: dict[str, str | Callable[[World, str], str]] = {
    # README: your own candles -> the two real tETHUSD days of tests/data (Bitfinex 1m, 2019-04-01 .. 02)
    "my_candles.parquet": _copy_eth,
    # ML_TRAINING: any 1m model file -> the shipped hand-set 1m baseline (the backtest is on 1m candles)
    "path/to/model.json": "config/models/tBTCUSD_1m_v1.json",
    # BACKTEST_GUIDE: another models folder -> a copy of config/models inside the world
    "/tmp/models": lambda world, _: _copy_models(world, "tmp/models"),
    # DATA_PIPELINE: a report folder -> a folder inside the world
    "/tmp/q": lambda world, _: str(world.root / "tmp" / "q"),
    # DATA_PIPELINE: a mirror or local server -> the local exchange server
    "http://127.0.0.1:8080": lambda world, _: world.env["GENESIS_BITFINEX_URL"],
    # ML_TRAINING: the store holding the full 2019 year -> the world's store (the sample stands in)
    "/tmp/dmdoc/y2019/store": _store,
    # ML_TRAINING: the first bar of the 2019 year's test part -> the first bar of the sample's (v2, horizon 20)
    "--start 2019-10-24T04:00": "--start 2019-06-16T16:00",
}


# -- setups: steps the prose describes that no shown command does -----------------------------------------------
def _two_more_1h_files(world: World) -> None:
    """Two more hand-set 1h models, ``tBTCUSD_1h_v2`` and ``_v3``: the shipped v1 baseline under another name and
    version, with a description saying which, resealed (no training data, so their metrics are ``n/a``)."""
    from genesis_fw.ml import baselines, model_file

    for version in (2, 3):
        doc = baselines.doc("1h")
        doc["name"], doc["version"] = f"tBTCUSD_1h_v{version}", version
        doc["description"] = f"hand-set copy of tBTCUSD_1h_v1 as version {version}"
        model_file.seal(doc)
        path = world.models / f"tBTCUSD_1h_v{version}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _edit_registry_sha(world: World) -> None:
    """Change the SHA-256 of the first model file listed in ``registry.json`` by hand (its last hex digit)."""
    path = world.models / "registry.json"
    text = path.read_text(encoding="utf-8")
    sha = re.search(r'"registered_at": "[^"]*",\s*"sha256": "([0-9a-f]{64})"', text).group(1)
    path.write_text(text.replace(sha, sha[:-1] + ("0" if sha[-1] != "0" else "1"), 1), encoding="utf-8")


def _change_v3_remove_1m(world: World) -> None:
    """``tBTCUSD_1h_v3.json`` rewritten with another description (still a valid, sealed model file) and
    ``tBTCUSD_1m_v1.json`` deleted."""
    from genesis_fw.ml import model_file

    path = world.models / "tBTCUSD_1h_v3.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["description"] = "edited after registration"
    path.write_text(json.dumps(model_file.seal(doc), indent=2) + "\n", encoding="utf-8")
    (world.models / "tBTCUSD_1m_v1.json").unlink()


def _fresh_clone(world: World) -> None:
    """A fresh clone of a repository whose ``registry.json`` was committed after use: the local catalog
    (``registry.db``), the models folder's lock files and the audit log mirror are not there."""
    for name in ("registry.db", "registry.db-wal", "registry.db-shm", ".registry.lock"):
        (world.models / name).unlink(missing_ok=True)
    world.audit_log.unlink(missing_ok=True)


def _default_audit_log(world: World) -> None:
    """``$GENESIS_AUDIT_LOG`` unset from here on: the mirror is ``logs/champion_selection.jsonl`` relative to the
    working directory (the world's folder, the same file as before)."""
    world.env.pop("GENESIS_AUDIT_LOG", None)


def _damage_mirror_remove_json(world: World) -> None:
    """``registry.json`` deleted and line 2 of the audit log mirror changed by hand."""
    (world.models / "registry.json").unlink()
    lines = world.audit_log.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["reason"] = "edited by hand"
    lines[1] = json.dumps(entry) + "\n"
    world.audit_log.write_text("".join(lines), encoding="utf-8")


def _commands_run(*commands: str) -> Callable[[World], None]:
    def setup(world: World) -> None:
        for command in commands:
            proc = world.run(command)
            assert proc.returncode == 0, f"setup `{command}` failed:\n{proc.stdout}"
    setup.__doc__ = "Runs, each expected to succeed: " + "; ".join(f"``{c}``" for c in commands)
    return setup


SETUPS: dict[str, Callable[[World], None]] = {
    "two more 1h files": _two_more_1h_files,
    "register v2 and v3": _commands_run("genesis-fw models register tBTCUSD_1h_v2",
                                        "genesis-fw models register tBTCUSD_1h_v3"),
    "promote v2": _commands_run("genesis-fw models promote tBTCUSD_1h_v2 --reason 'beats v1'"),
    "promote v3": _commands_run("genesis-fw models promote tBTCUSD_1h_v3 --reason 'beats v1'"),
    "a folder elsewhere": lambda world: (world.root / "elsewhere").mkdir(),
    "edit a sha256 in registry.json": _edit_registry_sha,
    "change v3, remove 1m v1": _change_v3_remove_1m,
    "fresh clone": _fresh_clone,
    "default audit log": _default_audit_log,
    "damage the mirror, remove registry.json": _damage_mirror_remove_json,
}


# -- parsing -------------------------------------------------------------------------------------------------------
@attrs.frozen
class Command:
    line: int  # 1-based line of the command in the document
    text: str  # the shell command, continuations joined, comment removed
    output: tuple[str, ...] | None  # the output shown ($ lines), None for a bare line


@attrs.frozen
class Block:
    line: int
    directives: tuple[tuple[str, str], ...]  # (name, argument)
    commands: tuple[Command, ...]
    content: str


def _directives(comment: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in comment.split(";"):
        part = part.strip()
        if not part:
            continue
        if part.startswith("not compared"):
            out.append(("not compared", part.partition(":")[2].strip()))
        elif part.startswith("file "):
            out.append(("file", part[5:].strip()))
        elif part in ("new world", "stdout only"):
            out.append((part, ""))
        elif part.startswith("world "):
            out.append(("world", part[6:].strip()))
        elif part.startswith("setup "):
            name = part[6:].strip()
            assert name in SETUPS, f"unknown guide-test setup {name!r}; known: {sorted(SETUPS)}"
            out.append(("setup", name))
        else:
            raise AssertionError(f"unknown guide-test directive {part!r}")
    return tuple(out)


def _strip_comment(line: str) -> str:
    """``line`` without a trailing shell ``# comment`` (a ``#`` outside quotes, after a space)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _commands(lines: list[str], first: int) -> list[Command]:
    commands: list[Command] = []
    dollar = any(line.startswith("$ ") for line in lines)
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i
        if dollar and line.startswith("$ ") or not dollar and line.startswith("genesis-fw "):
            text = _strip_comment(line[2:] if dollar else line)
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + _strip_comment(lines[i]).strip()
            output = None
            if dollar:
                out = []
                while i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
                    i += 1
                    out.append(lines[i])
                output = tuple(out)
            commands.append(Command(first + start, text, output))
        i += 1
    return commands


def parse(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != fence.group(1):
            j += 1
        # the marker: HTML comments just above the fence (blank lines allowed between)
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        above = []
        while k >= 0 and lines[k].rstrip().endswith("-->"):
            m = k
            while m >= 0 and "<!--" not in lines[m]:
                m -= 1
            above.insert(0, "\n".join(lines[m:k + 1]))
            k = m - 1
        directives = tuple(d for c in above for m in MARKER.finditer(c) for d in _directives(m.group(1)))
        body = lines[i + 1:j]
        commands = _commands(body, i + 2) if fence.group(2) in COMMAND_LANGUAGES else []
        if commands or directives:
            blocks.append(Block(i + 1, directives, tuple(commands), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


# -- the world -------------------------------------------------------------------------------------------------------
@attrs.define
class World:
    root: Path
    env: dict[str, str]

    @property
    def models(self) -> Path:
        return self.root / "config" / "models"

    @property
    def audit_log(self) -> Path:
        return self.root / "logs" / "champion_selection.jsonl"

    @classmethod
    def create(cls, root: Path, exchange_url: str) -> World:
        root.mkdir(parents=True)
        shutil.copytree(ROOT / "config", root / "config",
                        ignore=shutil.ignore_patterns("registry.db*", ".*"))
        shutil.copytree(ROOT / "sql", root / "sql")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_")}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1", COLUMNS="100",
                   GENESIS_AUDIT_LOG=str(root / "logs" / "champion_selection.jsonl"),
                   GENESIS_BITFINEX_URL=exchange_url, GENESIS_BITFINEX_RATE_LIMIT="1000")
        return cls(root, env)

    def command(self, text: str) -> str:
        left = [p for p in re.findall(r"(?<![\w.])/tmp/[^\s'\"]*", text)
                if not any(p == key or p.startswith(key + "/") for key in PLACEHOLDERS)]
        assert not left, f"{text!r}: no mapping for {left} (add one to PLACEHOLDERS in tests/test_guides.py)"
        for key in sorted(PLACEHOLDERS, key=len, reverse=True):
            if key in text:
                value = PLACEHOLDERS[key]
                if callable(value):
                    (self.root / "tmp").mkdir(exist_ok=True)
                    value = value(self, key)
                text = text.replace(key, value)
        return text

    def run(self, text: str, stdout_only: bool = False) -> subprocess.CompletedProcess:
        """``text`` run by bash in the world; ``stdout`` holds stderr too, in the order written, unless
        ``stdout_only`` (then stderr is in ``stderr``)."""
        return subprocess.run(["bash", "-c", self.command(text)], cwd=self.root, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE if stdout_only else subprocess.STDOUT,
                              timeout=300)


# -- comparing -------------------------------------------------------------------------------------------------------
_NORMALISE = [
    (re.compile(r"(?<![0-9A-Za-z])\d{8}T\d{6}Z-[0-9a-f]{8}(?![0-9a-f])"), "<run-id>"),
    (re.compile(r"[^\s\"'(]*/genesis_fw/sample/"), "<installed package>/sample/"),
    (re.compile(r"\b20[2-9]\d-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?"), "<now>"),
    (re.compile(r"\b\d+\.\d+ s\b"), "<seconds> s"),
    # the e2e summary's wall s, CPU s and peak MiB columns
    (re.compile(r"^(  \d+\. \w+ +\w+(?: \w+)?) +(?:[\d.]+|-) +(?:[\d.]+|-) +(?:\d+|-)  ", re.M),
     r"\1 <wall> <cpu> <peak>  "),
    (re.compile(r"\b[\w.-]+@[\w.-]+\b"), "<user@host>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<registry-id>"),
]


#: The folder the guides' examples name when they show an absolute path of the session's working directory.
DOC_FOLDER = "/tmp/docsess"


def normalise(text: str, world: Path | None = None) -> list[str]:
    for folder in ([str(world)] if world is not None else []) + [DOC_FOLDER]:
        text = text.replace(folder + "/", "").replace(folder, ".")
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return [line.rstrip() for line in text.splitlines()]


def matches(shown: list[str], actual: list[str]) -> bool:
    """``actual`` equals ``shown``, where a ``...`` line of ``shown`` stands for any number of lines."""
    if not shown:
        return not actual
    if shown[0] == "...":
        return any(matches(shown[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and shown[0] == actual[0] and matches(shown[1:], actual[1:])


# -- the local exchange ----------------------------------------------------------------------------------------------
def _shifted_copies(src: Path, dest: Path) -> Path:
    """``src``'s candles twice, shifted by whole days: to start on 2024-04-01 (the README's range) and to end at
    today's 00:00 UTC (the ``--preset``'s "last months"), so the guides' fetches find real candles."""
    table = pq.read_table(src)
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    first_day = ts[0] // DAY_MS * DAY_MS
    to_2024 = int(datetime(2024, 4, 1, tzinfo=UTC).timestamp() * 1000) - first_day
    today = int(datetime.now(UTC).timestamp() * 1000) // DAY_MS * DAY_MS
    to_now = today - (ts[-1] // DAY_MS + 1) * DAY_MS
    parts = []
    for shift in (to_2024, to_now):
        col = pa.array(ts + shift).cast(table.schema.field("timestamp").type)
        parts.append(table.set_column(table.schema.get_field_index("timestamp"), "timestamp", col))
    pq.write_table(pa.concat_tables(parts), dest)
    return dest


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exchange")
    sources = {"tBTCUSD": _shifted_copies(CandleStore.sample().path("tBTCUSD", "1m"), folder / "btc.parquet"),
               "tETHUSD": _shifted_copies(ETH_2D, folder / "eth.parquet")}
    with BitfinexServer(sources) as server:
        yield server


# -- running a document -------------------------------------------------------------------------------------------
def _describe(doc: Path, cmd: Command, proc: subprocess.CompletedProcess, why: str) -> str:
    where = f"{doc.relative_to(ROOT)}:{cmd.line}"
    return f"{where}: `{cmd.text}` {why}; it printed (exit {proc.returncode}):\n{proc.stdout}"


def run_document(doc: Path, tmp_path: Path, exchange_url: str) -> tuple[int, list[str]]:
    """Run ``doc``'s commands in order in their worlds under ``tmp_path``: (commands run, failures)."""
    blocks = parse(doc)
    world = World.create(tmp_path / "world0", exchange_url)
    named: dict[str, World] = {}
    failures: list[str] = []
    ran = 0
    for block in blocks:
        for name, arg in block.directives:
            if name == "new world":
                world = World.create(tmp_path / f"world{block.line}", exchange_url)
            elif name == "world":
                if arg not in named:
                    named[arg] = World.create(tmp_path / f"world-{arg}", exchange_url)
                world = named[arg]
            elif name == "setup":
                SETUPS[arg](world)
            elif name == "file":
                (world.root / arg).write_text(block.content, encoding="utf-8")
        compared = all(name != "not compared" for name, _ in block.directives)
        stdout_only = any(name == "stdout only" for name, _ in block.directives)
        for cmd in block.commands:
            proc = world.run(cmd.text, stdout_only)
            ran += 1
            shown = list(cmd.output or ())
            killed = bool(shown) and shown[-1].strip() == "Killed"
            error = any(line.startswith("Error:") for line in shown)
            echoed = re.search(r'echo "exit \$\?"\s*$', cmd.text) is not None
            out = proc.stdout + ("Killed\n" if proc.returncode in (-9, 137) else "")
            if "Traceback (most recent call last)" in out + (proc.stderr or ""):
                failures.append(_describe(doc, cmd, proc, "printed a traceback"))
            elif killed and proc.returncode not in (-9, 137):
                failures.append(_describe(doc, cmd, proc, "was not killed as shown"))
            elif echoed and shown and shown[-1] != (out.splitlines() or [""])[-1]:
                failures.append(_describe(doc, cmd, proc, f"did not end in `{shown[-1]}` as shown"))
            elif error and (proc.returncode == 0 and not echoed
                            or not re.search(r"^Error: ", out + (proc.stderr or ""), re.M)):
                failures.append(_describe(doc, cmd, proc, "did not fail with an `Error:` line as shown"))
            elif not killed and not error and proc.returncode != 0:
                failures.append(_describe(doc, cmd, proc, "failed"))
            elif compared and cmd.output is not None:
                actual = normalise(out, world.root)
                expected = normalise("\n".join(shown))
                if not matches(expected, actual):
                    diff = difflib.unified_diff(expected, actual, "shown", "printed", lineterm="", n=1)
                    failures.append(_describe(doc, cmd, proc, "printed other output than shown")
                                    + "normalised difference:\n" + "\n".join(diff))
    return ran, failures


@pytest.fixture(scope="module")
def documents_run(request, exchange, tmp_path_factory):
    """The run of every selected document, started at once, two at a time (the documents are independent
    worlds; on a 2-core machine this halves the wall time), the README (the longest) first; each test waits
    for its own."""
    selected = {item.callspec.params["doc"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_guide_commands_run_as_shown"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {doc: pool.submit(run_document, doc, tmp_path_factory.mktemp(doc.stem), exchange.url)
                for doc in sorted(selected, key=lambda d: d.name != "README.md")}
        yield runs
        for run in runs.values():
            run.cancel()


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_guide_commands_run_as_shown(doc: Path, documents_run):
    ran, failures = documents_run[doc].result()
    assert ran, f"{doc.relative_to(ROOT)}: no commands found (a guide shows at least one)"
    assert not failures, f"{len(failures)} of {ran} commands in {doc.relative_to(ROOT)} differ:\n\n" + "\n\n".join(
        failures)


def test_parse_reads_commands_outputs_and_markers(tmp_path: Path):
    md = tmp_path / "GUIDE.md"
    md.write_text("\n".join([
        "```bash",
        "genesis-fw plugins                  # a comment",
        'genesis-fw sql "SELECT 1 # not a comment" \\',
        "    --format csv",
        "make demo",
        "```",
        "<!-- guide-test: new world;",
        "     not compared: output from the full 2019 year -->",
        "```console",
        "$ genesis-fw models list",
        "name  status",
        "...",
        "$ genesis-fw models audit --verify",
        "```",
        "```text",
        "genesis-fw fetch   exchange --> store",
        "```",
    ]) + "\n", encoding="utf-8")
    first, second = parse(md)
    assert [c.text for c in first.commands] == ["genesis-fw plugins",
                                                'genesis-fw sql "SELECT 1 # not a comment" --format csv']
    assert [c.output for c in first.commands] == [None, None]
    assert second.directives == (("new world", ""), ("not compared", "output from the full 2019 year"))
    assert [(c.line, c.text, c.output) for c in second.commands] == [
        (10, "genesis-fw models list", ("name  status", "...")),
        (13, "genesis-fw models audit --verify", ())]


def test_shown_output_matches_only_what_it_shows():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a"], ["a", "b"])
    assert normalise("Run 20261130T164139Z-4bd54be7 took 0.31 s") == ["Run <run-id> took <seconds> s"]
    assert normalise("Total return 34.89 %") != normalise("Total return 34.88 %")

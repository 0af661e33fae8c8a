"""Model files: one model as plain JSON, checked against a JSON Schema, versioned, reloaded exactly.

A model file is data, never code. It is written and read with :mod:`json` only (no pickle, no
``eval``), parsed strictly (NaN, Infinity, numbers too large for a float and duplicate keys are
refused) and validated with :mod:`jsonschema` against ``genesis_fw/schemas/model.schema.json``, then
against the model type's own ``state_schema``, on write and on load. The model type is looked up by
name among the *installed* model plugins (``genesis_fw.plugins``), never imported from a name in the
file; its ``from_state`` rebuilds the model from the stored numbers, so a loaded model predicts bit
for bit what the trained one did.

Files live in the models folder (:func:`default_models_dir`: ``$GENESIS_MODELS_DIR``, else
``config/models`` relative to the working directory; the CLI's ``--models-dir`` sets the variable)
and are named ``{symbol}_{timeframe}_v{N}.json``. :func:`write_new` picks ``N`` under an exclusive
``fcntl`` lock on ``<models dir>/.lock``: one more than both the high-water mark in
``<models dir>/.versions.json`` and the largest ``N`` of the files present, so a number is never
given twice, even after its file was deleted, and two processes never get the same one. The file is
written to a temporary file, fsynced, then hard-linked to its name, which fails rather than
replace an existing file.

Every file carries ``content_sha256``, the SHA-256 of its document without that key
(:func:`content_hash`, set by :func:`seal`, which :func:`write_new` calls): :func:`load` and
:func:`validate` check it last, so a file changed by hand after it was written is refused. It detects
accidental or casual edits, not a determined forger, who can recompute it.

Every refusal is a one-line :class:`~genesis_fw.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .. import plugins
from .._util import did_you_mean, one_line, strict_json, temp_beside, write_text_atomic
from ..config import FeaturesConfig, make_params
from ..errors import ConfigError, GenesisError, ModelFileError, PluginError
from ..model import Model

#: Layout version of the model document; a file of another version is refused, not guessed at.
SCHEMA_VERSION = 1
#: Environment variable naming the models folder (the CLI's ``--models-dir`` sets it).
MODELS_DIR_ENV = "GENESIS_MODELS_DIR"
#: The models folder when ``$GENESIS_MODELS_DIR`` is not set, relative to the working directory.
DEFAULT_MODELS_DIR = Path("config/models")
#: ``{symbol}_{timeframe}_v{N}``: a model's name and its file name without ``.json``.
NAME_RE = re.compile(r"(?P<symbol>t[A-Z0-9]+(?::[A-Z0-9]+)?)_(?P<timeframe>[0-9]+[mhDWM])_v(?P<version>[1-9][0-9]*)")
#: High-water mark of the version numbers given out, per ``{symbol}_{timeframe}``.
VERSIONS_FILE = ".versions.json"
#: Lock file serialising :func:`write_new` across processes.
LOCK_FILE = ".lock"
#: A model file larger than this (bytes) is refused before it is read.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Deepest nesting of objects and arrays a model document may have (the document itself is depth 1).
MAX_DEPTH = 32
#: Longest integer (in digits) a model document may hold; longer ones are refused, not converted.
MAX_INT_DIGITS = 30
_MAX_INT = 10**MAX_INT_DIGITS
_MAX_MESSAGE = 300
#: The key holding the document's content hash (:func:`content_hash`).
HASH_KEY = "content_sha256"
#: The recorded split boundaries that must be in this order (``<`` strict, ``<=`` equal allowed).
_SPLIT_ORDER = (
    ("train_start", "<=", "train_end"), ("train_end", "<=", "train_label_end"),
    ("train_label_end", "<", "validation_start"), ("validation_start", "<=", "validation_end"),
    ("validation_end", "<=", "validation_label_end"), ("validation_label_end", "<", "test_start"),
    ("test_start", "<=", "test_end"), ("test_end", "<=", "test_label_end"),
)


def default_models_dir() -> Path:
    """``$GENESIS_MODELS_DIR`` if set, else ``config/models`` (relative to the working directory)."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else DEFAULT_MODELS_DIR


#: The model file's JSON Schema, shipped as package data.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "model.schema.json"


@cache
def _schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    """The model file's JSON Schema (draft 2020-12), a fresh copy."""
    return json.loads(_schema_text())


@cache
def _strict_class() -> Any:
    """Draft 2020-12 where "integer" means a JSON integer token: ``20.0`` is a float, not an integer."""
    from jsonschema import Draft202012Validator, validators

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _, value: _is_int(value))
    return validators.extend(Draft202012Validator, type_checker=checker)


@cache
def _validator() -> Any:
    return _strict_class()(schema())


def _location(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_problem(validator: Any, instance: Any, prefix: str = "") -> str | None:
    """The most relevant schema violation as ``location: message``, or ``None``."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = _location([*([prefix] if prefix else []), *error.absolute_path])
    message = " ".join(error.message.split())
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    return f"{where}: {message}" if where else message


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain_problem(doc: Any) -> str | None:
    """Why ``doc`` is not a plain, bounded JSON value (or ``None``): non-JSON types, non-string keys,
    nesting deeper than :data:`MAX_DEPTH`, integers longer than :data:`MAX_INT_DIGITS` digits or floats
    that are not finite. Iterative, so any depth is answered without recursion."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "")]
    while stack:
        value, depth, at = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth > MAX_DEPTH:
                return f"{at or 'the document'} is nested deeper than {MAX_DEPTH} levels"
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{at or 'the document'} has a key that is not a string: {key!r}"[:_MAX_MESSAGE]
                    stack.append((item, depth + 1, f"{at}.{key}" if at else key))
            else:
                stack.extend((item, depth + 1, f"{at}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if not -_MAX_INT < value < _MAX_INT:
                return f"{at}: an integer of more than {MAX_INT_DIGITS} digits"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{at}: holds NaN or Infinity ({value}); a model file has finite numbers only"
        else:
            return f"{at}: a {type(value).__name__}, not a plain JSON value"
    return None


def _check(doc: Any, where: str) -> type[Model]:
    """The document-level checks of :func:`validate`; returns the installed model class."""
    if not isinstance(doc, dict):
        raise ModelFileError(f"{where}: not a JSON object but a {type(doc).__name__}; a model file is one object")
    problem = _plain_problem(doc)
    if problem:
        raise ModelFileError(f"{where}: {problem}")
    try:  # checked as written: tuples become arrays
        doc = json.loads(json.dumps(doc, allow_nan=False))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{where}: not plain JSON ({one_line(exc)})") from None
    version = doc.get("schema_version")
    if _is_int(version) and version != SCHEMA_VERSION:
        raise ModelFileError(f"{where}: a model file of schema version {version}; this genesis-fw reads schema "
                             f"version {SCHEMA_VERSION}")
    # a missing content_sha256 is reported by the last check, after every other defect
    problem = _first_problem(_validator(), doc if HASH_KEY in doc else {**doc, HASH_KEY: "0" * 64})
    if problem:
        raise ModelFileError(f"{where}: {problem}")
    from datetime import datetime

    try:
        datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
    except ValueError:
        raise ModelFileError(f"{where}: created_at {doc['created_at']!r} is not a real UTC time") from None
    name = f"{doc['symbol']}_{doc['timeframe']}_v{doc['version']}"
    if doc["name"] != name:
        raise ModelFileError(f"{where}: name {doc['name']!r} does not match its symbol, timeframe and version "
                             f"({name})")
    kind = doc["model_type"]
    try:
        cls = plugins.load("model", kind)
    except PluginError as exc:
        raise ModelFileError(f"{where}: {exc}") from exc
    if not _is_int(cls.state_version) or doc["model_type_version"] != cls.state_version:
        raise ModelFileError(f"{where}: a {kind} state version {doc['model_type_version']} model; the installed "
                             f"{kind} reads state version {cls.state_version} (retrain it, or install the "
                             "plugin version that wrote it)")
    if cls.state_schema is not None:
        problem = _first_problem(_strict_class()(cls.state_schema), doc["state"], prefix="state")
        if problem:
            raise ModelFileError(f"{where}: {problem}")
    from .calibration import check as check_calibration

    try:
        check_calibration(doc["calibration"])
    except ConfigError as exc:
        raise ModelFileError(f"{where}: calibration: {exc}") from None
    return cls


def _rebuild(doc: dict[str, Any], cls: type[Model], where: str) -> Model:
    """The checks beyond the schemas, shared by :func:`write_new` and :func:`load`: ``params`` build the
    plugin's ``Params``, ``features.params`` build a ``FeaturesConfig`` whose feature names are
    ``features.names``, ``from_state`` takes the state, the model gives one probability in [0, 1] for
    one row of its features, and so does the stored calibration of it. Returns the rebuilt model."""
    from .calibration import apply as calibrate
    from .features import names as feature_names

    cfg = _features_config(doc, where)
    if feature_names(cfg) != doc["features"]["names"]:
        raise ModelFileError(f"{where}: features.names do not match features.params (expected "
                             f"{', '.join(feature_names(cfg))})")
    kind = doc["model_type"]
    try:
        params = make_params(cls.Params, doc["params"], owner=f"model {kind}")
    except ConfigError as exc:
        raise ModelFileError(f"{where}: params: {exc}") from exc
    try:
        model = cls.from_state(params, copy.deepcopy(doc["state"]))
    except Exception as exc:
        raise ModelFileError(f"{where}: the {kind} state cannot be loaded: {type(exc).__name__}: {one_line(exc)}") \
            from exc
    k = len(doc["features"]["names"])
    try:
        with np.errstate(all="ignore"):
            p = np.asarray(model.predict_proba(np.zeros((1, k))), dtype=float)
    except Exception as exc:
        raise ModelFileError(f"{where}: the {kind} model does not take its {k} features: {type(exc).__name__}: "
                             f"{one_line(exc)}") from exc
    if p.shape != (1,) or not (0.0 <= p[0] <= 1.0):
        raise ModelFileError(f"{where}: the {kind} model gives {p.tolist()} for one row of its {k} features; "
                             "expected one probability in [0, 1]")
    try:
        q = calibrate(doc["calibration"], p)
    except GenesisError as exc:
        raise ModelFileError(f"{where}: calibration: {exc}") from None
    if q.shape != (1,) or not (0.0 <= q[0] <= 1.0):
        raise ModelFileError(f"{where}: the calibration gives {q.tolist()} for the raw probability {p[0]}; "
                             "expected a probability in [0, 1]")
    return model


def content_hash(doc: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``doc`` without its ``content_sha256`` key: UTF-8 bytes of
    ``json.dumps(doc_without_the_key, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)``. Independent of the file's indentation and key order."""
    body = {k: v for k, v in doc.items() if k != HASH_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(doc: dict[str, Any]) -> dict[str, Any]:
    """Set ``doc["content_sha256"]`` to :func:`content_hash` of ``doc`` (in place) and return ``doc``.

    :func:`write_new` seals every file it writes. Use it only for a document you mean to change on
    purpose (a test, a migration): a file edited without it is refused on load."""
    doc[HASH_KEY] = content_hash(doc)
    return doc


def _check_hash(doc: dict[str, Any], where: str) -> None:
    """The last check: the stored ``content_sha256`` is :func:`content_hash` of the document."""
    stored = doc.get(HASH_KEY)
    if stored is None:
        raise ModelFileError(f"{where}: {HASH_KEY}: a required property is missing; model files are written "
                             "by genesis-fw (train), not by hand: retrain, or restore the original")
    if stored != content_hash(doc):
        raise ModelFileError(f"{where}: the file was changed after it was written (content hash differs); model "
                             "files are not edited by hand: retrain, or restore the original")


def _utc_ms(value: Any, key: str, where: str) -> int:
    from datetime import UTC, datetime

    if not isinstance(value, str):
        raise ModelFileError(f"{where}: training_data {key} is {value!r}, not a UTC time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ModelFileError(f"{where}: training_data {key} {value[:40]!r} is not a UTC time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _check_split(doc: dict[str, Any], where: str) -> None:
    """The recorded split, when there is training data: every boundary present and a UTC time; the parts
    in order and apart (each part's labels end before the next part starts); inside the data's
    ``start`` .. ``end`` (when recorded): ``start <= train_start`` and ``test_end < end``."""
    td = doc.get("training_data")
    if td is None:
        return
    bounds = td["split"].get("boundaries")
    if not isinstance(bounds, dict):
        raise ModelFileError(f"{where}: training_data.split.boundaries is missing or not an object")
    ms = {}
    for first, _, second in _SPLIT_ORDER:
        for key in (first, second):
            if key not in bounds:
                raise ModelFileError(f"{where}: training_data.split.boundaries has no {key}")
            ms[key] = _utc_ms(bounds[key], f"split.boundaries.{key}", where)
    for first, op, second in _SPLIT_ORDER:
        if ms[first] > ms[second] or (op == "<" and ms[first] == ms[second]):
            rule = "before" if op == "<" else "at or before"
            raise ModelFileError(f"{where}: training_data.split.boundaries: {first} ({bounds[first]}) must be {rule} "
                                 f"{second} ({bounds[second]}); the parts overlap or are out of order")
    if td.get("start") is not None and _utc_ms(td["start"], "start", where) > ms["train_start"]:
        raise ModelFileError(f"{where}: training_data: train_start ({bounds['train_start']}) is before the data's "
                             f"start ({td['start']})")
    if td.get("end") is not None and ms["test_end"] >= _utc_ms(td["end"], "end", where):
        raise ModelFileError(f"{where}: training_data: test_end ({bounds['test_end']}) is not before the data's "
                             f"end ({td['end']})")


def _validated(doc: Any, where: str) -> Model:
    model = _rebuild(doc, _check(doc, where), where)
    _check_split(doc, where)
    _check_hash(doc, where)
    return model


def validate(doc: dict[str, Any], *, where: str) -> None:
    """Check a model document as :func:`write_new` and :func:`load` do: plain JSON values (finite
    numbers, integers of at most :data:`MAX_INT_DIGITS` digits, nesting at most :data:`MAX_DEPTH`
    deep), the JSON Schema (integers must be JSON integers, not ``20.0``), a real ``created_at``, a
    name that matches its symbol/timeframe/version, an installed model type of the same state version
    and that type's ``state_schema``, the calibration in full, then params, feature names, the state
    and calibration rebuilt and tried on one row, the recorded split dates in order and apart, and
    last the content hash (``content_sha256``, :func:`content_hash`). Raises :class:`ModelFileError`
    naming ``where`` and the first problem."""
    _validated(doc, where)


def dumps(doc: dict[str, Any]) -> str:
    """The file text of a model document: indented JSON, keys in document order, newline-terminated."""
    return json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# Writing


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    import fcntl

    with open(folder / LOCK_FILE, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_versions(folder: Path) -> dict[str, int]:
    path = folder / VERSIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable high-water mark of model versions ({one_line(exc)}); fix it, or "
                             "delete it to continue after the highest version file present") from exc
    if not isinstance(data, dict) or not all(_is_int(v) and v >= 0 for v in data.values()):
        raise ModelFileError(f"{path}: expected an object of version numbers per symbol_timeframe; fix it, or "
                             "delete it to continue after the highest version file present")
    return data


def existing_versions(folder: Path, symbol: str, timeframe: str) -> list[int]:
    """The ``N`` of the ``{symbol}_{timeframe}_v{N}.json`` files in ``folder``, sorted."""
    out = []
    for path in folder.glob(f"{symbol}_{timeframe}_v*.json"):
        m = NAME_RE.fullmatch(path.stem)
        if m and m["symbol"] == symbol and m["timeframe"] == timeframe:
            out.append(int(m["version"]))
    return sorted(out)


def _place_new(text: str, target: Path) -> None:
    """Write ``text`` to a temporary file, fsync it, and hard-link it to ``target``, which must not exist."""
    tmp = temp_beside(target)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise ModelFileError(f"{target} already exists; model files are never overwritten") from None
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the new name durable too
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_folder(folder: Path) -> None:
    """Refuse a models folder that is a file (or sits below one) in one line."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise ModelFileError(f"the models folder {folder} is a file, not a folder" if part == folder else
                                     f"the models folder {folder} cannot be made: {part} is a file, not a folder")
            return


def write_new(doc: dict[str, Any], models_dir: Path | None = None) -> Path:
    """Write ``doc`` as the next version of its symbol and timeframe; returns the new file's path.

    Sets ``doc["name"]`` (``{symbol}_{timeframe}_v{N}``), ``doc["version"]`` (``N``) and
    ``doc["content_sha256"]`` (:func:`seal`), validates the
    document exactly as :func:`load` checks a file (:func:`validate`; nothing is written and no ``N``
    is used when it fails) and writes
    ``<models_dir>/{name}.json`` atomically. ``N`` is one more than the larger of the high-water mark
    and the largest existing file's ``N``; it is recorded before the file appears, so it is never
    given again. ``models_dir`` defaults to :func:`default_models_dir`.
    """
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    symbol, timeframe = doc.get("symbol"), doc.get("timeframe")
    probe = dict(doc)
    if NAME_RE.fullmatch(f"{symbol}_{timeframe}_v1"):
        probe.update(name=f"{symbol}_{timeframe}_v1", version=1)
    if _plain_problem(probe) is None:  # else the checks below name the problem
        seal(probe)
    _validated(probe, where=f"new model {symbol} {timeframe}")  # before any N is taken
    _check_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            key = f"{symbol}_{timeframe}"
            marks = _read_versions(folder)
            n = max([marks.get(key, 0), *existing_versions(folder, symbol, timeframe)]) + 1
            doc["name"], doc["version"] = f"{key}_v{n}", n
            text = dumps(seal(doc))
            write_text_atomic(folder / VERSIONS_FILE, json.dumps({**marks, key: n}, indent=2, sort_keys=True) + "\n")
            target = folder / f"{doc['name']}.json"
            _place_new(text, target)
    except PermissionError as exc:
        raise ModelFileError(f"the models folder {folder} is not writable ({exc.strerror or exc}); give "
                             f"another one with --models-dir or ${MODELS_DIR_ENV}") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot write a model into {folder}: {exc.strerror or exc}") from exc
    return target


# ---------------------------------------------------------------------------------------------
# Finding and loading


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or os.sep in ref


def _name_key(name: str) -> tuple[str, str, int]:
    m = NAME_RE.fullmatch(name)
    assert m is not None
    return m["symbol"], m["timeframe"], int(m["version"])


def _not_found(ref: str, folder: Path) -> ModelFileError:
    """The "no model" error: a case-insensitive or close match as a suggestion, and the existing names
    sorted by (symbol, timeframe, N) -- the versions nearest to the one asked for when ``ref`` is a name."""
    known = sorted((p.stem for p in folder.glob("*.json") if NAME_RE.fullmatch(p.stem)), key=_name_key) \
        if folder.is_dir() else []
    wanted = NAME_RE.fullmatch(ref)
    same_case = [k for k in known if k.lower() == ref.lower()]
    if same_case:
        hint = f" (did you mean {same_case[0]!r}?)"
    elif wanted:  # the nearest version of the same symbol and timeframe, not the nearest spelling
        n = int(wanted["version"])
        siblings = [k for k in known if _name_key(k)[:2] == (wanted["symbol"], wanted["timeframe"])]
        nearest = min(siblings, key=lambda k: (abs(_name_key(k)[2] - n), -_name_key(k)[2]), default=None)
        hint = f" (did you mean {nearest!r}?)" if nearest else did_you_mean(ref, known)
    else:
        hint = did_you_mean(ref, known)
    shown = known[-10:]
    if wanted:
        n = int(wanted["version"])
        siblings = [k for k in known if _name_key(k)[:2] == (wanted["symbol"], wanted["timeframe"])]
        if siblings:
            shown = sorted(sorted(siblings, key=lambda k: (abs(_name_key(k)[2] - n), _name_key(k)[2]))[:10],
                           key=_name_key)
    shape = "" if wanted else "; a model is a .json file path or a name {symbol}_{timeframe}_v{N}"
    listing = f"; models there: {', '.join(shown)}" if shown else " (no models there)"
    return ModelFileError(f"no model {ref!r} in {folder}{hint}{shape}{listing} "
                          f"(the folder is --models-dir or ${MODELS_DIR_ENV})")


def resolve(ref: str, models_dir: Path | None = None) -> Path:
    """The file of ``ref``: a path to a ``.json`` file (a bare file name not found in the working
    directory is also looked for in the models folder), or a name ``{symbol}_{timeframe}_v{N}`` in the
    models folder (``models_dir``, default :func:`default_models_dir`). Raises :class:`ModelFileError`
    (with a close or case-insensitive match as a suggestion and the nearest existing versions) when
    there is no such file."""
    ref = str(ref)
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    if _looks_like_path(ref):
        path = Path(ref)
        if path.is_file():
            return path
        if path.exists():
            raise ModelFileError(f"{path}: not a regular file; a model is a .json file")
        if path.name == ref and (folder / ref).is_file():
            return folder / ref
        if path.name == ref and NAME_RE.fullmatch(path.stem) and folder.is_dir():
            raise _not_found(path.stem, folder)
        raise ModelFileError(f"no model file {path}")
    if folder.exists() and not folder.is_dir():
        raise ModelFileError(f"the models folder {folder} is a file, not a folder (the folder is --models-dir or "
                             f"${MODELS_DIR_ENV})")
    path = folder / f"{ref}.json"
    if path.is_file():
        return path
    raise _not_found(ref, folder)


def _parse(raw: bytes, where: str) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no float overflow, integers of at most :data:`MAX_INT_DIGITS`
    digits, no duplicate keys, nesting at most :data:`MAX_DEPTH` deep."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{where}: not UTF-8 text; a model file is JSON") from None
    doc = strict_json(text, where=where, error=ModelFileError, what="a model file", max_int_digits=MAX_INT_DIGITS)
    problem = _plain_problem(doc)
    if problem:
        raise ModelFileError(f"{where}: {problem}")
    return doc


@attrs.frozen(eq=False)
class LoadedModel:
    """A model file read, validated and rebuilt: the document, where it came from, the SHA-256 (hex) of
    the file's bytes and the model plugin instance.

    Frozen: the document is copied when the model is made and :attr:`doc` hands out a fresh deep copy
    on every access, so a caller that edits what it got (``m.doc["calibration"]["a"] = ...``) changes
    nothing the model uses; :meth:`predict_proba` applies the calibration copied at load. ``model`` is
    the plugin instance itself: treat it as read-only (a plugin's arrays are not copied).
    """

    _doc: dict[str, Any] = attrs.field(alias="doc", converter=copy.deepcopy)
    path: Path
    sha256: str
    model: Model
    _calibration: dict[str, Any] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_calibration", copy.deepcopy(self._doc["calibration"]))

    @property
    def doc(self) -> dict[str, Any]:
        """The model document as loaded (a deep copy: editing it changes nothing here)."""
        return copy.deepcopy(self._doc)

    @property
    def name(self) -> str:
        return self._doc["name"]

    @property
    def symbol(self) -> str:
        return self._doc["symbol"]

    @property
    def timeframe(self) -> str:
        return self._doc["timeframe"]

    @property
    def horizon(self) -> int:
        """Label horizon in bars of :attr:`timeframe`."""
        return self._doc["horizon"]

    @property
    def feature_names(self) -> list[str]:
        """The model's input columns, in order."""
        return list(self._doc["features"]["names"])

    def features_config(self) -> FeaturesConfig:
        """The feature parameters the model was trained with."""
        return _features_config(self._doc, str(self.path))

    def check_features(self) -> None:
        """Raise :class:`ModelFileError` when this framework's definitions of the model's feature parameters
        hash differently from the file's ``features.definitions_hash``: its features cannot be computed here.
        (Feature names that do not follow from the parameters are refused by :func:`load` already.)"""
        from . import features

        recorded = self._doc["features"]["definitions_hash"]
        ours = features.definitions_hash(self.features_config())
        if recorded != ours:
            raise ModelFileError(
                f"{self.path}: model {self.name} was trained on other feature definitions than this genesis-fw "
                f"computes for its feature parameters (definitions hash {recorded[:12]} in the file, {ours[:12]} "
                "here), so its features cannot be computed here: retrain it with genesis-fw train")

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """The plugin's P(up) for each row of ``X`` (columns = :attr:`feature_names`), before calibration."""
        return np.asarray(self.model.predict_proba(X), dtype=float)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(up) for each row of ``X`` after the calibration stored in the file (copied at load)."""
        from .calibration import apply

        return apply(self._calibration, self.predict_raw(X))


def _features_config(doc: dict[str, Any], where: str) -> FeaturesConfig:
    try:
        return make_params(FeaturesConfig, doc["features"]["params"], owner="features")
    except ConfigError as exc:
        raise ModelFileError(f"{where}: features.params: {exc}") from exc


def load(ref: str | Path, models_dir: Path | None = None, *, symbol: str | None = None,
         timeframe: str | None = None) -> LoadedModel:
    """Read, parse, validate and rebuild the model ``ref`` (a path, or a name for :func:`resolve`).

    Refused with a one-line :class:`ModelFileError` naming the file: not a regular file (a FIFO or a
    device is never opened), larger than :data:`MAX_FILE_BYTES`, unreadable or not strict JSON,
    anything :func:`validate` refuses, a file renamed away from its own name, a model for another
    ``symbol`` / ``timeframe`` than given, feature names that are not those of its feature
    parameters, params or state the installed model type cannot take, a model that does not
    accept one row of its features, split dates out of order or overlapping and, checked last, a
    content hash that differs (the file was changed after it was written).
    """
    path = ref if isinstance(ref, Path) else resolve(ref, models_dir)
    where = str(path)
    try:
        if not path.is_file():
            if path.exists():
                raise ModelFileError(f"{where}: not a regular file; a model is a .json file")
            raise ModelFileError(f"no model file {path}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ModelFileError(f"{where}: {size} bytes, larger than a model file may be "
                                 f"({MAX_FILE_BYTES // 2**20} MiB)")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ModelFileError(f"no model file {path}") from None
    except OSError as exc:
        raise ModelFileError(f"{where}: cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ModelFileError(f"{where}: larger than a model file may be ({MAX_FILE_BYTES // 2**20} MiB)")
    doc = _parse(raw, where)
    cls = _check(doc, where)
    stem = NAME_RE.fullmatch(path.stem)
    if stem and path.stem != doc["name"]:
        raise ModelFileError(f"{where}: the file names itself {doc['name']}; a model file keeps its name "
                             "(copy it under that name, or retrain)")
    if (symbol is not None and symbol != doc["symbol"]) or (timeframe is not None and timeframe != doc["timeframe"]):
        asked = f"{symbol or doc['symbol']} {timeframe or doc['timeframe']}"
        raise ModelFileError(f"{where}: a model for {doc['symbol']} {doc['timeframe']}, not for {asked} as asked")
    model = _rebuild(doc, cls, where)
    _check_split(doc, where)
    _check_hash(doc, where)
    return LoadedModel(doc=doc, path=path, sha256=hashlib.sha256(raw).hexdigest(), model=model)

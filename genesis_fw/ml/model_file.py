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

Every refusal is a one-line :class:`~genesis_fw.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import contextlib
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
from .._util import did_you_mean, one_line, temp_beside, write_text_atomic
from ..config import FeaturesConfig, make_params
from ..errors import ConfigError, ModelFileError, PluginError
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
_MAX_MESSAGE = 300


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
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


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


def _check(doc: Any, where: str) -> type[Model]:
    """Everything :func:`validate` checks; returns the installed model class."""
    if not isinstance(doc, dict):
        raise ModelFileError(f"{where}: not a JSON object but a {type(doc).__name__}; a model file is one object")
    try:  # checked as written: tuples become arrays, NaN and non-JSON objects are refused
        doc = json.loads(json.dumps(doc, allow_nan=False))
    except ValueError:
        raise ModelFileError(f"{where}: holds NaN or Infinity; a model file has finite numbers only") from None
    except TypeError as exc:
        raise ModelFileError(f"{where}: holds a value that is not plain JSON ({exc})") from None
    version = doc.get("schema_version")
    if _is_int(version) and version != SCHEMA_VERSION:
        raise ModelFileError(f"{where}: a model file of schema version {version}; this genesis-fw reads schema "
                             f"version {SCHEMA_VERSION}")
    problem = _first_problem(_validator(), doc)
    if problem:
        raise ModelFileError(f"{where}: {problem}")
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
        from jsonschema import Draft202012Validator

        problem = _first_problem(Draft202012Validator(cls.state_schema), doc["state"], prefix="state")
        if problem:
            raise ModelFileError(f"{where}: {problem}")
    return cls


def validate(doc: dict[str, Any], *, where: str) -> None:
    """Check a model document: plain JSON values with finite numbers, the JSON Schema, a name that
    matches its symbol/timeframe/version, an installed model type of the same state version and that
    type's ``state_schema``. Raises :class:`ModelFileError` naming ``where`` and the first problem."""
    _check(doc, where)


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


def write_new(doc: dict[str, Any], models_dir: Path | None = None) -> Path:
    """Write ``doc`` as the next version of its symbol and timeframe; returns the new file's path.

    Sets ``doc["name"]`` (``{symbol}_{timeframe}_v{N}``) and ``doc["version"]`` (``N``), validates the
    document (:func:`validate`; nothing is written and no ``N`` is used when it fails) and writes
    ``<models_dir>/{name}.json`` atomically. ``N`` is one more than the larger of the high-water mark
    and the largest existing file's ``N``; it is recorded before the file appears, so it is never
    given again. ``models_dir`` defaults to :func:`default_models_dir`.
    """
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    symbol, timeframe = doc.get("symbol"), doc.get("timeframe")
    probe = dict(doc)
    if NAME_RE.fullmatch(f"{symbol}_{timeframe}_v1"):
        probe.update(name=f"{symbol}_{timeframe}_v1", version=1)
    _check(probe, where=f"new model {symbol} {timeframe}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            key = f"{symbol}_{timeframe}"
            marks = _read_versions(folder)
            n = max([marks.get(key, 0), *existing_versions(folder, symbol, timeframe)]) + 1
            doc["name"], doc["version"] = f"{key}_v{n}", n
            text = dumps(doc)
            write_text_atomic(folder / VERSIONS_FILE, json.dumps({**marks, key: n}, indent=2, sort_keys=True) + "\n")
            target = folder / f"{doc['name']}.json"
            _place_new(text, target)
    except OSError as exc:
        raise ModelFileError(f"cannot write a model into {folder}: {exc.strerror or exc}") from exc
    return target


# ---------------------------------------------------------------------------------------------
# Finding and loading


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or os.sep in ref


def resolve(ref: str, models_dir: Path | None = None) -> Path:
    """The file of ``ref``: a path to a ``.json`` file, or a name ``{symbol}_{timeframe}_v{N}`` in the
    models folder (``models_dir``, default :func:`default_models_dir`). Raises :class:`ModelFileError`
    (with the closest existing name as a suggestion) when there is no such file."""
    ref = str(ref)
    if _looks_like_path(ref):
        path = Path(ref)
        if not path.is_file():
            raise ModelFileError(f"no model file {path}")
        return path
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    path = folder / f"{ref}.json"
    if path.is_file():
        return path
    known = sorted(p.stem for p in folder.glob("*.json") if NAME_RE.fullmatch(p.stem)) if folder.is_dir() else []
    shape = "" if NAME_RE.fullmatch(ref) else "; a model is a .json file path or a name {symbol}_{timeframe}_v{N}"
    listing = f"; models there: {', '.join(known[-10:])}" if known else " (no models there)"
    raise ModelFileError(f"no model {ref!r} in {folder}{did_you_mean(ref, known)}{shape}{listing} "
                         f"(the folder is --models-dir or ${MODELS_DIR_ENV})")


def _parse(raw: bytes, where: str) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no float overflow, no duplicate keys."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{where}: not UTF-8 text; a model file is JSON") from None

    def constant(name: str) -> Any:
        raise ModelFileError(f"{where}: holds {name}; a model file has finite numbers only")

    def number(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ModelFileError(f"{where}: the number {token[:40]} is too large for a float")
        return value

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ModelFileError(f"{where}: duplicate key {key!r}; the file was edited or corrupted")
            out[key] = value
        return out

    try:
        return json.loads(text, parse_constant=constant, parse_float=number, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{where}: not valid JSON (truncated or edited?): {exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}") from None


@attrs.frozen(eq=False)
class LoadedModel:
    """A model file read, validated and rebuilt: the document, where it came from, the SHA-256 (hex) of
    the file's bytes and the model plugin instance."""

    doc: dict[str, Any]
    path: Path
    sha256: str
    model: Model

    @property
    def name(self) -> str:
        return self.doc["name"]

    @property
    def symbol(self) -> str:
        return self.doc["symbol"]

    @property
    def timeframe(self) -> str:
        return self.doc["timeframe"]

    @property
    def horizon(self) -> int:
        """Label horizon in bars of :attr:`timeframe`."""
        return self.doc["horizon"]

    @property
    def feature_names(self) -> list[str]:
        """The model's input columns, in order."""
        return list(self.doc["features"]["names"])

    def features_config(self) -> FeaturesConfig:
        """The feature parameters the model was trained with."""
        return _features_config(self.doc, str(self.path))

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """The plugin's P(up) for each row of ``X`` (columns = :attr:`feature_names`), before calibration."""
        return np.asarray(self.model.predict_proba(X), dtype=float)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(up) for each row of ``X`` after the stored calibration."""
        from .calibration import apply

        return apply(self.doc["calibration"], self.predict_raw(X))


def _features_config(doc: dict[str, Any], where: str) -> FeaturesConfig:
    try:
        return make_params(FeaturesConfig, doc["features"]["params"], owner="features")
    except ConfigError as exc:
        raise ModelFileError(f"{where}: features.params: {exc}") from exc


def load(ref: str | Path, models_dir: Path | None = None, *, symbol: str | None = None,
         timeframe: str | None = None) -> LoadedModel:
    """Read, parse, validate and rebuild the model ``ref`` (a path, or a name for :func:`resolve`).

    Refused with a one-line :class:`ModelFileError` naming the file: unreadable or not strict JSON,
    anything :func:`validate` refuses, a file renamed away from its own name, a model for another
    ``symbol`` / ``timeframe`` than given, feature names that are not those of its feature
    parameters, params or state the installed model type cannot take, and a model that does not
    accept one row of its features.
    """
    path = ref if isinstance(ref, Path) else resolve(ref, models_dir)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no model file {path}") from None
    except OSError as exc:
        raise ModelFileError(f"{where}: cannot be read: {exc.strerror or exc}") from exc
    doc = _parse(raw, where)
    cls = _check(doc, where)
    stem = NAME_RE.fullmatch(path.stem)
    if stem and path.stem != doc["name"]:
        raise ModelFileError(f"{where}: the file names itself {doc['name']}; a model file keeps its name "
                             "(copy it under that name, or retrain)")
    if (symbol is not None and symbol != doc["symbol"]) or (timeframe is not None and timeframe != doc["timeframe"]):
        asked = f"{symbol or doc['symbol']} {timeframe or doc['timeframe']}"
        raise ModelFileError(f"{where}: a model for {doc['symbol']} {doc['timeframe']}, not for {asked} as asked")
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
        model = cls.from_state(params, doc["state"])
    except Exception as exc:
        raise ModelFileError(f"{where}: the {kind} state cannot be loaded: {type(exc).__name__}: {one_line(exc)}") \
            from exc
    k = len(doc["features"]["names"])
    try:
        p = np.asarray(model.predict_proba(np.zeros((1, k))), dtype=float)
    except Exception as exc:
        raise ModelFileError(f"{where}: the {kind} model does not take its {k} features: {type(exc).__name__}: "
                             f"{one_line(exc)}") from exc
    if p.shape != (1,) or not (0.0 <= p[0] <= 1.0):
        raise ModelFileError(f"{where}: the {kind} model gives {p.tolist()} for one row of its {k} features; "
                             "expected one probability in [0, 1]")
    return LoadedModel(doc=doc, path=path, sha256=hashlib.sha256(raw).hexdigest(), model=model)

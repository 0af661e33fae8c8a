"""Plugin discovery: strategies and model types found through entry points.

Groups: ``genesis_fw.strategies`` and ``genesis_fw.models``. The entry-point name is the name a user
types (``ema_rsi = "my_pkg.strategies:EmaRsi"``). Built-ins are registered in this project's own
``pyproject.toml`` exactly like a third-party package registers its own; nothing here knows them.

Listing names reads package metadata only; a plugin's module is imported when it is loaded, so a
broken or heavy plugin costs nothing until it is used, and a broken one is reported, not fatal.
"""

from __future__ import annotations

import traceback
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs

from ._util import choices_text, did_you_mean
from .errors import ConfigError, GenesisError, PluginError

GROUPS: dict[str, str] = {"strategy": "genesis_fw.strategies", "model": "genesis_fw.models"}


@attrs.frozen
class PluginRef:
    """One entry point: a plugin's name, where it points, and the distribution that provides it."""

    kind: str
    name: str
    value: str
    package: str
    version: str
    entry_point: EntryPoint = attrs.field(eq=False, repr=False)

    @property
    def provider(self) -> str:
        return f"{self.package} {self.version}"


@attrs.frozen
class ParamInfo:
    name: str
    type: str
    default: Any


@attrs.frozen
class PluginInfo:
    """What ``genesis-fw plugins`` shows for one plugin; ``error`` is set when it failed to load."""

    ref: PluginRef
    description: str = ""
    params: tuple[ParamInfo, ...] = ()
    error: str | None = None


def _check_kind(kind: str) -> str:
    if kind not in GROUPS:
        raise PluginError(f"unknown plugin kind {kind!r}; known: {choices_text(GROUPS)}")
    return kind


def refs(kind: str) -> dict[str, list[PluginRef]]:
    """Entry points of ``kind`` by name, without importing any plugin. A name with more than one
    entry is a conflict; :func:`load` reports it."""
    group = GROUPS[_check_kind(kind)]
    found: dict[str, list[PluginRef]] = {}
    seen = set()
    for ep in entry_points(group=group):
        dist = ep.dist
        package = dist.metadata["Name"] if dist is not None else "(unknown package)"
        version = dist.version if dist is not None else "?"
        key = (ep.name, ep.value, package)
        if key in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(key)
        found.setdefault(ep.name, []).append(PluginRef(kind, ep.name, ep.value, package, version, ep))
    return found


def names(kind: str) -> list[str]:
    """Sorted plugin names of ``kind`` (no plugin is imported)."""
    return sorted(refs(kind))


def _resolve(kind: str, name: str) -> PluginRef:
    available = refs(kind)
    if name not in available:
        raise PluginError(
            f"unknown {kind} {name!r}{did_you_mean(name, available)}; available: {choices_text(available)}"
        )
    claims = available[name]
    if len(claims) > 1:
        who = " and ".join(f"{r.provider} ({r.value})" for r in claims)
        raise PluginError(f"{kind} name {name!r} is claimed by more than one package: {who}; uninstall one")
    return claims[0]


def _base(kind: str) -> type:
    if kind == "strategy":
        from .strategy import Strategy

        return Strategy
    from .model import Model

    return Model


def load_ref(ref: PluginRef) -> type:
    """Import the class behind ``ref`` and check it is a :class:`Strategy` / :class:`Model` subclass."""
    try:
        obj = ref.entry_point.load()
    except Exception as exc:
        raise PluginError(
            f"{ref.kind} {ref.name!r} from {ref.provider} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    base = _base(ref.kind)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(
            f"{ref.kind} {ref.name!r} from {ref.provider} points at {ref.value}, which is not a subclass of "
            f"genesis_fw.{base.__name__}"
        )
    try:  # e.g. a Params annotation naming a type imported only under TYPE_CHECKING
        params_of(obj)
    except Exception as exc:
        raise PluginError(
            f"{ref.kind} {ref.name!r} from {ref.provider} has an invalid Params class: {type(exc).__name__}: {exc}"
        ) from exc
    return obj


def load(kind: str, name: str) -> type:
    """The plugin class called ``name``; :class:`PluginError` if unknown, duplicated or broken."""
    return load_ref(_resolve(_check_kind(kind), name))


def params_of(cls: type) -> tuple[ParamInfo, ...]:
    """Parameters of a plugin class: the fields of its ``Params`` attrs class."""
    params_cls = getattr(cls, "Params", None)
    if params_cls is None or not attrs.has(params_cls):
        return ()
    attrs.resolve_types(params_cls)
    out = []
    for f in attrs.fields(params_cls):
        typ = f.type.__name__ if isinstance(f.type, type) else str(f.type)  # `int`, or `str | None` as written
        default = None if f.default is attrs.NOTHING else f.default
        out.append(ParamInfo(f.name, typ, default))
    return tuple(out)


def describe(kind: str) -> list[PluginInfo]:
    """Every plugin of ``kind`` with its parameters; broken or conflicting ones carry ``error``."""
    out = []
    for _name, claims in sorted(refs(kind).items()):
        if len(claims) > 1:
            who = ", ".join(r.provider for r in claims)
            for ref in claims:
                out.append(PluginInfo(ref, error=f"name claimed by more than one package: {who}"))
            continue
        ref = claims[0]
        try:
            cls = load_ref(ref)
        except PluginError as exc:
            cause = exc.__cause__
            reason = "".join(traceback.format_exception_only(cause)).strip() if cause else str(exc)
            out.append(PluginInfo(ref, error=reason))
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        out.append(PluginInfo(ref, description=doc[0] if doc else "", params=params_of(cls)))
    return out


def instantiate(kind: str, name: str, params: dict[str, Any] | None = None) -> Any:
    """Load plugin ``name`` and build it with ``params`` checked against its ``Params`` class.

    Unknown parameter names, wrong types and values the ``Params`` class refuses raise
    :class:`~genesis_fw.errors.ConfigError` naming the plugin, the parameter and what is allowed; any
    other exception raised while building the parameters or the plugin object becomes a one-line
    :func:`plugin_failure` (its traceback chained, for ``--debug``).
    """
    from .config import make_params

    cls = load(kind, name)
    try:
        built = make_params(cls.Params, dict(params or {}), owner=kind)
    except ConfigError as exc:
        text = str(exc).removeprefix(f"{kind}: ")
        raise ConfigError(f"{_who(kind, name)}: {text}") from exc.__cause__
    except GenesisError:
        raise
    except Exception as exc:
        raise plugin_failure(name, "Params", exc, kind=kind) from exc
    try:
        return cls(built)
    except GenesisError:
        raise
    except Exception as exc:
        raise plugin_failure(name, "__init__", exc, kind=kind) from exc


def model_grid(model: Any) -> dict[str, list[Any]]:
    """The hyper-parameter grid of ``model`` (a :class:`~genesis_fw.config.ModelConfig`), values checked.

    Starts from the model type's own ``grid``; each parameter in ``model.params`` replaces that
    parameter's candidates (a list) or fixes it (one value). Every candidate is coerced to the field's
    type and must construct the type's ``Params`` on its own (the other fields at their defaults).
    Raises :class:`~genesis_fw.errors.PluginError` for an unknown model type and
    :class:`~genesis_fw.errors.ConfigError` (one line, naming the model type and the parameter, with a
    close-match suggestion for an unknown name) for a value the ``Params`` class refuses.
    """
    from .config import make_params

    cls = load("model", model.name)
    raw: dict[str, list[Any]] = {key: list(values) for key, values in (getattr(cls, "grid", None) or {}).items()}
    for key, value in model.params.items():
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not values:
            raise ConfigError(f"{_who('model', model.name)}: parameter {key!r} has an empty list of values")
        raw[key] = values
    grid: dict[str, list[Any]] = {}
    for key, values in raw.items():
        typed = []
        for value in values:
            try:
                built = make_params(cls.Params, {key: value}, owner="model")
            except ConfigError as exc:
                text = str(exc).removeprefix("model: ")
                raise ConfigError(f"{_who('model', model.name)}: {text}") from None
            except GenesisError:
                raise
            except Exception as exc:
                raise plugin_failure(model.name, "Params", exc, kind="model") from exc
            typed.append(getattr(built, key))
        if len(set(map(repr, typed))) != len(typed):
            raise ConfigError(f"{_who('model', model.name)}: parameter {key!r} repeats a value in "
                              f"{','.join(map(str, values))}")
        grid[key] = typed
    return grid


def _who(kind: str, name: str) -> str:
    """``strategy 'ema_rsi' (genesis-fw 0.1.0)``: the plugin's kind, name and providing package."""
    claims = refs(kind).get(name, [])
    return f"{kind} {name!r}" + (f" ({claims[0].provider})" if len(claims) == 1 else "")


def plugin_failure(name: str, method: str, exc: BaseException, at: str = "", *, kind: str = "strategy") -> PluginError:
    """A one-line :class:`PluginError` for an exception a plugin raised: the plugin's kind, name and
    package, the method, where (``at``, e.g. `` at bar 7 (2019-04-01T00:07:00+00:00)``) and the
    exception. The CLI's ``--debug`` shows the plugin's traceback (raise it ``from`` the exception)."""
    from ._util import one_line

    what = f"{type(exc).__name__}: {one_line(exc)}" if str(exc).strip() else type(exc).__name__
    return PluginError(f"{_who(kind, name)} raised in {method}(){at}: {what}")

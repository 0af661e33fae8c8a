"""Typed run configuration (attrs), loaded from JSON and overridden from the command line.

Precedence, lowest first: the defaults of :class:`RuntimeConfig` < a JSON config file (``--config``;
without it ``config/runtime.seed.json`` in the working directory when present) < ``key=value``
overrides and flags on the command line.

Keys are the field names below. ``strategy=ema_rsi`` picks the strategy (same as ``strategy.name``);
``strategy.fast=10`` sets one of its parameters (same as ``strategy.params.fast``). Choosing a
different strategy on the command line drops the config file's strategy parameters (they belong
to the file's strategy). Strategy
parameters are checked against the plugin's own ``Params`` class when the strategy is loaded.
The ``model`` section works the same way (``model=lgbm``, ``model.C=0.1``), except that a model
parameter may be a list, a grid for the search of ``genesis-fw train`` (``model.C=0.01,0.1,1``;
:func:`genesis_fw.plugins.model_grid` checks it against the model type's ``Params``).
An unknown key or a value of the wrong type is a :class:`ConfigError`; nothing is silently ignored.
"""

from __future__ import annotations

import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import attrs

from ._util import choices_text, did_you_mean
from .errors import ConfigError

#: The default runtime config file, relative to the working directory.
SEED_CONFIG = Path("config") / "runtime.seed.json"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", ""}


def _type_name(typ: Any) -> str:
    if typ is type(None):
        return "null"
    if isinstance(typ, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "true/false",
                "dict": "object"}.get(typ.__name__, typ.__name__)
    args = typing.get_args(typ)
    if typing.get_origin(typ) is tuple:
        return f"list of {_type_name(args[0])}"
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(typ) is dict:
        return "object"
    return str(typ)


def coerce(value: Any, typ: Any, *, key: str) -> Any:
    """Return ``value`` as ``typ`` (str, int, float, bool, dict, ``X | None``, ``tuple[X, ...]``).

    Strings (from the command line) are parsed; JSON values must already have the right kind
    (an integer is accepted for a number, a bool never for a number). A list is a JSON array or,
    from the command line, comma-separated text (``10,20,50``).
    """
    origin = typing.get_origin(typ)
    if origin is tuple:
        item = typing.get_args(typ)[0]
        if isinstance(value, str):
            value = [] if not value.strip() else value.split(",")
        if not isinstance(value, list | tuple):
            raise _wrong(key, value, typ)
        try:
            return tuple(coerce(v, item, key=key) for v in value)
        except ConfigError:
            raise _wrong(key, value, typ) from None
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(typ)
        if type(None) in members and (value is None or (isinstance(value, str) and value.lower() in _NONE)):
            return None
        for member in members:
            if member is type(None):
                continue
            try:
                return coerce(value, member, key=key)
            except ConfigError:
                pass
        raise _wrong(key, value, typ)
    if origin is dict or typ is dict:
        if isinstance(value, dict):
            return dict(value)
        raise _wrong(key, value, typ)
    if typ is Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise _wrong(key, value, typ)
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _wrong(key, value, typ)
    if typ is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise _wrong(key, value, typ) from None
        else:
            raise _wrong(key, value, typ)
        if not math.isfinite(out):
            raise ConfigError(f"config key {key!r}: {value!r} is not a finite number")
        return out
    if typ is str:
        if isinstance(value, str):
            return value
        raise _wrong(key, value, typ)
    raise ConfigError(f"config key {key!r}: unsupported type {typ!r}")


def _wrong(key: str, value: Any, typ: Any) -> ConfigError:
    return ConfigError(f"config key {key!r}: expected {_type_name(typ)}, got {value!r}")


def build(cls: type, values: dict[str, Any], *, prefix: str = "") -> Any:
    """Instantiate the attrs class ``cls`` from ``values``, coercing each field to its declared type.

    Unknown keys raise :class:`ConfigError` with the allowed names and a close-match suggestion.
    Validators on ``cls`` run too; their ``ValueError`` becomes a :class:`ConfigError`.
    """
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(
                f"unknown config key {full!r}{did_you_mean(key, fields)}; allowed: {choices_text(fields)}"
            )
        typ = fields[key].type
        if attrs.has(typ):
            if isinstance(value, typ):
                kwargs[key] = value
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r}: expected an object, got {value!r}")
            kwargs[key] = build(typ, value, prefix=f"{full}.")
        else:
            kwargs[key] = coerce(value, typ, key=full)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def _in_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
              hi_open: bool = False):
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise ValueError(f"{attribute.name} must be {'>' if lo_open else '>='} {lo}, got {value}")
        if hi is not None and (value > hi or (hi_open and value == hi)):
            raise ValueError(f"{attribute.name} must be {'<' if hi_open else '<='} {hi}, got {value}")

    return check


#: Largest ``initial_cash`` (quote currency): more than any account holds, and small enough that float64
#: amounts keep sub-cent resolution and cannot overflow to inf (``1e308`` did, deep inside the report).
MAX_INITIAL_CASH = 1e12


@attrs.frozen
class StrategyConfig:
    """Which strategy runs and its raw parameter overrides (checked against the plugin's ``Params``)."""

    name: str = "ema_rsi"
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExchangeConfig:
    """Where and how fast candles are fetched. Environment: ``GENESIS_BITFINEX_URL``,
    ``GENESIS_BITFINEX_RATE_LIMIT`` (between the config file and command-line flags)."""

    #: Base URL of the Bitfinex public REST API (or a mirror / local server).
    base_url: str = "https://api-pub.bitfinex.com"
    #: Most requests in any rolling window of ``rate_window_s`` seconds (the public API allows about 10-90
    #: per minute).
    rate_limit: int = attrs.field(default=10, validator=_in_range(1, 10_000))
    #: Length of the rolling window ``rate_limit`` counts in, in seconds.
    rate_window_s: float = attrs.field(default=60.0, validator=_in_range(0, lo_open=True))
    #: Safety margin as a fraction of the window: 0.05 runs 30 per 60 s as 30 per 63 s. Each request also
    #: counts from when its answer arrived, and the window is shared by every fetch on the same store.
    rate_margin: float = attrs.field(default=0.05, validator=_in_range(0, 1))
    #: Attempts per request before giving up on a retryable failure (429, 5xx, timeout, bad body).
    max_attempts: int = attrs.field(default=8, validator=_in_range(1, 100))
    #: Timeout of one HTTP request, in seconds.
    timeout_s: float = attrs.field(default=30.0, validator=_in_range(0, lo_open=True))


def _positive_ints(_inst: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} needs at least one value")
    if any(v <= 0 for v in value):
        raise ValueError(f"{attribute.name} must all be > 0, got {','.join(map(str, value))}")
    if len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} must not repeat a value, got {','.join(map(str, value))}")


@attrs.frozen
class FeaturesConfig:
    """Parameters of the default feature set (``genesis-fw features``; docs/ML_TRAINING.md).
    Every period, span, lag and window counts bars of the dataset's timeframe."""

    #: Spans of the EMAs of close, each a feature ``ema_{span}`` = EMA / close (a ratio, around 1).
    ema_spans: tuple[int, ...] = attrs.field(default=(5, 10, 20, 50), validator=_positive_ints)
    #: Period of Wilder's RSI (percent, 0..100).
    rsi_period: int = attrs.field(default=14, validator=_in_range(1))
    #: Period of Wilder's ADX, +DI and -DI (percent, 0..100).
    adx_period: int = attrs.field(default=14, validator=_in_range(1))
    #: Period of Wilder's ATR, a feature as a fraction of close.
    atr_period: int = attrs.field(default=14, validator=_in_range(1))
    #: Lags of the log returns ``ln(close / close k bars earlier)``.
    return_lags: tuple[int, ...] = attrs.field(default=(1, 5, 10, 20), validator=_positive_ints)
    #: Bars in the rolling volatility (sample standard deviation of 1-bar log returns, not annualised).
    volatility_window: int = attrs.field(default=20, validator=_in_range(2))
    #: Bars in the volume z-score ``(volume - rolling mean) / rolling sample std``.
    volume_window: int = attrs.field(default=50, validator=_in_range(2))


@attrs.frozen
class ModelConfig:
    """Which model type ``genesis-fw train`` fits and its raw parameter overrides: each value is one
    value or a list of candidates (a grid that replaces the model type's own grid for that parameter)."""

    name: str = "logreg"
    params: dict[str, Any] = attrs.field(factory=dict)


#: Label existence rules (:data:`genesis_fw.ml.labels.RULES`).
LABEL_RULES = ("endpoint", "strict")
#: Calibration candidates (:data:`genesis_fw.ml.calibration.METHODS`).
CALIBRATION_METHODS = ("none", "platt", "isotonic")


def _one_of(choices: tuple[str, ...]):
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and (not value or len(set(value)) != len(value)):
            raise ValueError(f"{attribute.name} needs one or more different values of {', '.join(choices)}")
        for v in values:
            if v not in choices:
                raise ValueError(f"{attribute.name}: invalid value {v!r}{did_you_mean(v, choices)}; "
                                 f"allowed: {', '.join(choices)}")

    return check


def _fractions(_inst: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 3 or any(v <= 0 for v in value) or abs(sum(value) - 1.0) > 1e-9:
        raise ValueError(f"{attribute.name} must be three numbers > 0 summing to 1 (train, validation, test), "
                         f"got {','.join(f'{v:g}' for v in value)}")


@attrs.frozen
class TrainConfig:
    """How ``genesis-fw train`` labels, splits, searches and calibrates (docs/ML_TRAINING.md).
    Horizons and embargoes count bars of the dataset's timeframe."""

    #: Bars ahead the label looks: ``price_up`` of the return from the next open to the close ``horizon`` bars on.
    horizon: int = attrs.field(default=20, validator=_in_range(1))
    #: ``endpoint`` (the endpoint candle must exist) or ``strict`` (no candle missing inside the horizon).
    label_rule: str = attrs.field(default="endpoint", validator=_one_of(LABEL_RULES))
    #: Returns within +-dead_zone_bps basis points are ties.
    dead_zone_bps: float = attrs.field(default=0.0, validator=_in_range(0))
    #: Keep ties as label 0 ("not up") instead of dropping them.
    keep_ties: bool = False
    #: Bars of time left out after each part (and each CV test fold) on top of the purge.
    embargo: int = attrs.field(default=0, validator=_in_range(0))
    #: Time-ordered, purged folds of the grid search over the training part.
    folds: int = attrs.field(default=5, validator=_in_range(2))
    #: Train / validation / test fractions of the labelled rows, in time order.
    fractions: tuple[float, ...] = attrs.field(default=(0.6, 0.2, 0.2), validator=_fractions)
    #: Calibration candidates, chosen by cross-validated log loss within the validation part.
    calibration: tuple[str, ...] = attrs.field(default=CALIBRATION_METHODS, validator=_one_of(CALIBRATION_METHODS))
    #: Time-ordered folds of that choice.
    calibration_folds: int = attrs.field(default=5, validator=_in_range(2))
    #: Processes of the grid search (scikit-learn's ``n_jobs``); 1 = in this process.
    n_jobs: int = attrs.field(default=1, validator=_in_range(1))


@attrs.frozen
class RegistryConfig:
    """Where the model registry's audit log is mirrored (docs/CHAMPION_SELECTION.md)."""

    #: The JSON-lines mirror of the audit log, relative to the working directory unless absolute.
    #: ``--audit-log`` / $GENESIS_AUDIT_LOG override it.
    audit_log: str = "logs/champion_selection.jsonl"


@attrs.frozen
class ChampionConfig:
    """The gates of ``genesis-fw champion select`` (docs/CHAMPION_SELECTION.md). A challenger is promoted
    only when it passes every gate; among those that pass, the lowest test log loss wins."""

    #: Significance level of the one-sided Diebold-Mariano test that the challenger's log loss is below
    #: the champion's (a p-value below ``alpha`` passes).
    alpha: float = attrs.field(default=0.05, validator=_in_range(0, 1, lo_open=True, hi_open=True))
    #: Largest expected calibration error (ECE, 10 equal-width bins, a probability 0..1) on the test period.
    max_ece: float = attrs.field(default=0.05, validator=_in_range(0, 1))
    #: Walk-forward windows of the robustness gate (0 = no walk-forward gate).
    walk_forward: int = attrs.field(default=5, validator=_in_range(0, 100))
    #: Share (0..1) of walk-forward windows in which the challenger's log loss must be below the champion's.
    min_walk_forward_share: float = attrs.field(default=0.6, validator=_in_range(0, 1))
    #: How far (annualised Sharpe units) the challenger's backtest Sharpe may fall below the champion's.
    sharpe_tolerance: float = attrs.field(default=0.25, validator=_in_range(0))
    #: Also require skill over the base rate (the ``skill`` gate): the challenger's per-bar log loss
    #: significantly below that of the best constant predictor (0.5 or the trained models' validation-part
    #: up-rates, see ``genesis-fw compare``) by the one-sided Diebold-Mariano test at ``alpha``. Off
    #: (``false``): the test is still shown for every challenger but does not block a promotion.
    require_skill: bool = False


@attrs.frozen
class RuntimeConfig:
    """Everything a run needs. Units: fractions are 0..1 (0.002 = 0.2 %), slippage is basis points,
    cash is in the quote currency (USD for tBTCUSD), times are UTC."""

    symbol: str = "tBTCUSD"
    timeframe: str = "1m"
    #: First candle open time included (UTC date or ISO time); ``None`` = from the first candle.
    start: str | None = None
    #: End of the range, exclusive (UTC date or ISO time); ``None`` = through the last candle.
    end: str | None = None
    strategy: StrategyConfig = attrs.field(factory=StrategyConfig)
    #: Starting equity in the quote currency, at most :data:`MAX_INITIAL_CASH`.
    initial_cash: float = attrs.field(default=10_000.0, validator=_in_range(0, MAX_INITIAL_CASH, lo_open=True))
    #: Commission as a fraction of traded notional, charged on each side (0.002 = Bitfinex taker 0.2 %).
    commission: float = attrs.field(default=0.002, validator=_in_range(0, 1, hi_open=True))
    #: Slippage in basis points of the fill price, always against the trader (5 = 0.05 %).
    slippage: float = attrs.field(default=0.0, validator=_in_range(0, 10_000, hi_open=True))
    #: Position size as a fraction of equity; must be in (0, max_leverage].
    size: float = attrs.field(default=1.0, validator=_in_range(0, lo_open=True))
    #: Largest allowed position size as a multiple of equity.
    max_leverage: float = attrs.field(default=1.0, validator=_in_range(0, lo_open=True))
    #: Stop-loss distance from the entry price as a fraction (0.02 = 2 %); ``None`` = no stop.
    stop_loss: float | None = attrs.field(default=None, validator=_in_range(0, 1, lo_open=True, hi_open=True))
    #: Take-profit distance from the entry price as a fraction; ``None`` = no target.
    take_profit: float | None = attrs.field(default=None, validator=_in_range(0, lo_open=True))
    #: Where the HTML report goes (JSON and CSV files are written next to it); ``None`` = results/.
    output: str | None = None
    exchange: ExchangeConfig = attrs.field(factory=ExchangeConfig)
    features: FeaturesConfig = attrs.field(factory=FeaturesConfig)
    model: ModelConfig = attrs.field(factory=ModelConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    registry: RegistryConfig = attrs.field(factory=RegistryConfig)
    champion: ChampionConfig = attrs.field(factory=ChampionConfig)

    def __attrs_post_init__(self) -> None:
        if self.size > self.max_leverage:
            raise ValueError(f"size {self.size} exceeds max_leverage {self.max_leverage}; "
                             "size must be in (0, max_leverage]")

    @classmethod
    def from_file(cls, path: str | Path) -> RuntimeConfig:
        """Defaults overridden by the JSON object in ``path``."""
        return cls.load(path)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, str] | None = None) -> RuntimeConfig:
        """Resolve the config: defaults < ``path`` (or the seed file if present) < ``overrides``."""
        values: dict[str, Any] = {}
        if path is None and SEED_CONFIG.is_file():
            path = SEED_CONFIG
        if path is not None:
            values = read_json_config(path)
        values = _normalise(values)
        overrides = dict(overrides or {})
        # A strategy (model) chosen on the command line does not inherit the file's parameters, which
        # belong to the file's strategy (model); its own parameter overrides still apply (in any order).
        for section, default in (("strategy", StrategyConfig().name), ("model", ModelConfig().name)):
            for key in (section, f"{section}.name"):
                if key in overrides:
                    name = overrides.pop(key)
                    current = values.get(section)
                    if not isinstance(current, dict) or current.get("name", default) != name:
                        values[section] = {"name": name}
        for key, value in overrides.items():
            _apply_override(values, key, value)
        return build(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``RuntimeConfig.load`` of it gives back an equal config."""
        return attrs.asdict(self)


def read_json_config(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; a clear :class:`ConfigError` if unreadable or not an object."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object, not {type(data).__name__}")
    return data


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    values = dict(values)
    for section in ("strategy", "model"):
        named = values.get(section)
        if isinstance(named, str):  # "strategy": "ema_rsi" is short for {"name": "ema_rsi"}
            values[section] = {"name": named}
        elif isinstance(named, dict):
            values[section] = dict(named)
    return values


def _apply_override(values: dict[str, Any], key: str, value: str) -> None:
    parts = key.split(".")
    if parts[0] in ("strategy", "model"):
        section = parts[0]
        named = values.setdefault(section, {})
        if not isinstance(named, dict):
            raise ConfigError(f"config key {section!r}: expected an object, got {named!r}")
        if len(parts) == 1 or parts[1:] == ["name"]:
            named["name"] = value
            return
        rest = parts[2:] if parts[1] == "params" and len(parts) > 2 else parts[1:]
        if len(rest) != 1:
            example = "strategy.fast=10" if section == "strategy" else "model.C=0.1"
            raise ConfigError(f"config key {key!r}: {section} parameters are one level deep ({example})")
        # A model parameter with commas is a grid of candidates (model.C=0.01,0.1).
        is_grid = section == "model" and "," in value
        named.setdefault("params", {})[rest[0]] = [v.strip() for v in value.split(",")] if is_grid else value
        return
    target = values
    for part in parts[:-1]:
        nested = target.setdefault(part, {})
        if not isinstance(nested, dict):
            raise ConfigError(f"config key {key!r}: {part!r} is not an object")
        target = nested
    target[parts[-1]] = value


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["strategy=ema_rsi", "strategy.fast=10"]`` -> ``{"strategy": "ema_rsi", "strategy.fast": "10"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {item!r} (for example strategy=ema_rsi or strategy.fast=10)")
        out[key.strip()] = value.strip()
    return out


def make_params(params_cls: type, values: dict[str, Any], *, owner: str) -> Any:
    """Instantiate a plugin's ``Params`` attrs class from raw values, with the owner's name in errors."""
    try:
        return build(params_cls, values, prefix=f"{owner}.")
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("config key", "parameter")) from None

"""A trained model's calibrated probability as a strategy (docs/BACKTEST_GUIDE.md, "The ml_model strategy").

At the close of each bar the model sees its features of that bar, which use the candles up to that
bar only (:func:`genesis_fw.ml.features.compute`, the same definitions the model was trained on).
They are computed once over all bars in ``init``; that equals computing them bar by bar because every
feature is causal (prefix invariance, ``tests/test_features.py``), and ``check_strategy``'s prefix
runs show the decisions do not change when later bars are removed. The model gives the calibrated
probability ``p`` (0..1) that the price goes up over its horizon, and the target is LONG when ``p >=
threshold_long``, SHORT when ``p <= threshold_short``, FLAT between. A bar whose features are not all
defined yet (the first :func:`~genesis_fw.ml.features.warmup_bars` bars of the data, or a non-finite
value) is FLAT: no model, no position. The strategy asks the engine
for that warm-up as history bars, so a run with a ``start`` is ready on its first traded bar.

The model file is refused with a one-line :class:`~genesis_fw.errors.ModelFileError` when its
features are not what this framework computes for its feature parameters (another definitions'
hash or other feature names: the model was trained on other feature definitions), when it is
registered in its folder's model registry with another SHA-256 (tampered or replaced since it was
registered) and, in a backtest, when it was trained on another symbol or timeframe than the run's.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from genesis_fw.strategy import FLAT, LONG, SHORT, Bars, Strategy

if TYPE_CHECKING:
    from genesis_fw.ml.model_file import LoadedModel

#: Parts of a model's chronological split, in time order (``backtest --period``).
PARTS = ("train", "validation", "test")


def _model_ref(_inst, attribute, value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a model name like tBTCUSD_1h_v2 or a path to a model file")


@attrs.frozen
class MlModelParams:
    #: A model name ``{symbol}_{timeframe}_v{N}`` in the models folder (``--models-dir``,
    #: $GENESIS_MODELS_DIR, default config/models) or the path of a model file.
    model: str = attrs.field(default="tBTCUSD_1m_v1", validator=_model_ref)
    #: Long when the calibrated probability of an up move (0..1) is >= this.
    threshold_long: float = 0.55
    #: Short when the calibrated probability of an up move (0..1) is <= this. Needs
    #: 0 <= threshold_short <= threshold_long <= 1; equal thresholds mean always in the market
    #: (long at or above, short below), never flat once the features are defined.
    threshold_short: float = 0.45

    def __attrs_post_init__(self):
        lo, hi = self.threshold_short, self.threshold_long
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1):
            raise ValueError(f"need 0 <= threshold_short <= threshold_long <= 1, got {lo} and {hi}")


class MlModel(Strategy):
    """Long/short/flat on a trained model's calibrated up-probability (strategy.model=NAME or file)."""

    Params = MlModelParams

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._cache: dict[tuple[str, str], LoadedModel] = {}

    # -- the model file -------------------------------------------------------------------------------

    def loaded(self) -> LoadedModel:
        """The model file of ``params.model``, loaded and checked once per file path and content
        (SHA-256): a file replaced between calls is loaded again."""
        from genesis_fw.errors import ModelFileError
        from genesis_fw.ml import model_file
        from genesis_fw.registry.registry import check_registered, registered_but_missing

        folder = model_file.default_models_dir()
        try:
            path = Path(model_file.resolve(self.params.model, folder))
        except ModelFileError:
            registered_but_missing(str(self.params.model), folder)  # says "registered, its file is missing"
            raise
        try:
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        loaded = self._cache.get((str(path.resolve()), sha256))
        if loaded is None:
            loaded = model_file.load(path)
            check_registered(loaded)
            loaded.check_features()
            self._cache = {(str(path.resolve()), loaded.sha256): loaded}  # the latest file only
        return loaded

    def bind(self, symbol: str, timeframe: str) -> None:
        """Refuse a model trained on another symbol or timeframe than the run's."""
        from genesis_fw.errors import ModelFileError

        m = self.loaded()
        if (m.symbol, m.timeframe) != (symbol, timeframe):
            raise ModelFileError(
                f"model {m.name} was trained on {m.symbol} {m.timeframe}, the backtest runs on {symbol} {timeframe}: "
                f"backtest it with --symbol {m.symbol} --timeframe {m.timeframe}, or use a model of {symbol} "
                f"{timeframe}")

    def history_bars(self) -> int:
        """The features' warm-up (bars): with this much history the first traded bar has a prediction."""
        from genesis_fw.ml import features

        return int(features.warmup_bars(self.loaded().features_config()))

    def periods(self) -> dict[str, tuple[str, str]]:
        """The model's train / validation / test parts as ``(start, end)``, UTC ISO, ``end`` exclusive:
        from the part's first bar to the end of its last bar (that bar's open plus one timeframe), so
        every decision of the run is taken on a bar of that part and none on the next part's bars (the
        last position is closed at the last bar's close). Read from ``training_data.split.boundaries``."""
        from genesis_fw.data.timeframes import from_ms, parse_time, to_ms
        from genesis_fw.errors import ModelFileError
        from genesis_fw.ml.labels import add_bars

        m = self.loaded()
        data = m.doc.get("training_data")
        if not data:
            raise ModelFileError(f"model {m.name} has no training data (a hand-set baseline), so no train / "
                                 "validation / test period: give --start and --end instead")
        bounds = (data.get("split") or {}).get("boundaries") or {}
        out = {}
        for part in PARTS:
            first, last = bounds.get(f"{part}_start"), bounds.get(f"{part}_end")
            if not (isinstance(first, str) and isinstance(last, str)):
                raise ModelFileError(f"model {m.name} records no {part} boundaries (training_data.split.boundaries."
                                     f"{part}_start / {part}_end)")
            end = int(add_bars(to_ms(parse_time(last, what=f"{part}_end")), 1, m.timeframe))
            out[part] = (parse_time(first, what=f"{part}_start").isoformat(), from_ms(end).isoformat())
        return out

    # -- decisions ------------------------------------------------------------------------------------

    def init(self, bars: Bars) -> None:
        """Compute the model's features over ``bars`` (causal) and mark the bars where all are defined."""
        from genesis_fw.ml import features

        m = self.loaded()
        cfg = m.features_config()
        values = features.compute(_candles(bars), cfg)
        self._loaded = m
        self._X = np.column_stack([values[name] for name in m.feature_names]) if len(bars) else \
            np.empty((0, len(m.feature_names)))
        ok = np.isfinite(self._X).all(axis=1)
        ok[:features.warmup_bars(cfg)] = False  # seeding still matters there: not what the model was trained on
        self._ok = ok
        self._ok_list = ok.tolist()

    def probabilities(self) -> np.ndarray:
        """The calibrated up-probability of every bar given to :meth:`init` (NaN where undefined)."""
        p = np.full(len(self._ok), np.nan)
        if self._ok.any():
            p[self._ok] = self._loaded.predict_proba(self._X[self._ok])
        return p

    def _decide(self, p: np.ndarray) -> np.ndarray:
        t = np.full(p.shape, FLAT)
        t[p <= self.params.threshold_short] = SHORT  # NaN compares False: stays FLAT
        t[p >= self.params.threshold_long] = LONG  # long wins when the thresholds are equal
        return t

    def targets(self, bars: Bars) -> np.ndarray:
        """Fast path: every bar predicted at once."""
        return self._decide(self.probabilities())

    def next(self, i: int) -> float | None:
        """Per-bar path: bar ``i``'s features alone through the model."""
        if not self._ok_list[i]:
            return FLAT
        p = float(self._loaded.predict_proba(self._X[i:i + 1])[0])
        if p >= self.params.threshold_long:
            return LONG
        if p <= self.params.threshold_short:
            return SHORT
        return FLAT


def _candles(bars: Bars) -> Any:
    """``bars`` as a pyarrow table with the store's candle schema."""
    import pyarrow as pa

    from genesis_fw.data.store import SCHEMA

    return pa.table({
        "timestamp": pa.array(bars.timestamp, pa.timestamp("ms", tz="UTC")),
        **{k: pa.array(getattr(bars, k), pa.float64()) for k in ("open", "high", "low", "close", "volume")},
    }, schema=SCHEMA)

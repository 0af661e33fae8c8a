"""Forward-return labels (genesis_fw.ml.labels) on real candles, against an independent pandas version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import BTC_2D, ETH_2D

from genesis_fw.data.store import resample
from genesis_fw.errors import ConfigError, DataError
from genesis_fw.ml.labels import DROP_CAUSES, forward_labels, labels_for_table

SAMPLE = Path(__file__).resolve().parents[1] / "genesis_fw" / "sample" / "tBTCUSD_1m.parquet"
WIDTH = {"1m": 60_000, "1h": 3_600_000}


def _frame(table) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": table.column("timestamp").cast("int64").to_numpy(),
            "open": table.column("open").to_numpy(),
            "close": table.column("close").to_numpy(),
        }
    )


def _reference(df: pd.DataFrame, width: int, h: int, rule: str, dz_bps: float = 0.0) -> pd.DataFrame:
    """Labels the slow, obvious way: reindex on every grid slot, shift by h slots."""
    grid = pd.RangeIndex(int(df.ts.iloc[0]), int(df.ts.iloc[-1]) + width, width)
    g = df.set_index("ts").reindex(grid)
    entry = g.open.shift(-1).bfill()  # the open of the first candle that exists after t
    exit_ = g.close.shift(-h)  # NaN when the endpoint candle is missing or after the data
    full = g.close.notna().astype(int)[::-1].rolling(h).sum()[::-1].shift(-1) == h
    out = pd.DataFrame({"ret": exit_ / entry - 1.0, "full": full}).loc[df.ts.to_numpy()]
    out = out[out.ret.notna()]
    if rule == "strict":
        out = out[out.full]
    dz = dz_bps / 1e4
    out = out[(out.ret > dz) | (out.ret < -dz)]
    out["up"] = (out.ret > dz).astype(np.int8)
    return out


def _tables():
    btc = pq.read_table(BTC_2D)
    yield "btc 1m 2d", btc, "1m"
    yield "eth 1m 2d", pq.read_table(ETH_2D), "1m"
    yield "sample 1h", resample(SAMPLE, "1h"), "1h"


@pytest.mark.parametrize("rule", ["endpoint", "strict"])
@pytest.mark.parametrize("h", [1, 10, 20, 50])
@pytest.mark.parametrize("dz", [0.0, 5.0])
def test_labels_equal_independent_pandas_version_on_real_candles(rule, h, dz):
    for name, table, tf in _tables():
        labels = labels_for_table(table, tf, h, rule=rule, dead_zone_bps=dz)
        ref = _reference(_frame(table), WIDTH[tf], h, rule, dz)
        assert labels.timestamp_ms.tolist() == ref.index.tolist(), name
        assert np.array_equal(labels.ret, ref.ret.to_numpy()), name  # bit for bit: same two prices, same division
        assert np.array_equal(labels.price_up, ref.up.to_numpy()), name
        assert len(labels) + sum(labels.drops.values()) == table.num_rows, name


def test_real_fixture_has_gaps_so_the_rules_differ():
    """The fixtures have absent minutes: endpoint and strict rules give different counts (the test above bites)."""
    t = pq.read_table(BTC_2D)
    endpoint = labels_for_table(t, "1m", 20)
    strict = labels_for_table(t, "1m", 20, rule="strict")
    assert endpoint.drops["missing_endpoint"] > 0
    assert strict.drops["gap_in_horizon"] > 0
    assert len(strict) < len(endpoint)
    assert endpoint.drops["tie"] > 0  # zero returns happen on 1m
    assert endpoint.drops["end_of_data"] <= 20


@pytest.mark.parametrize("h", [1, 10, 20, 50])
def test_prefix_invariance_on_real_candles(h):
    """Labels on data cut at T equal those on the full data for every bar t <= T - h x timeframe."""
    for name, table, tf in _tables():
        df = _frame(table)
        full = labels_for_table(table, tf, h)
        full_strict = labels_for_table(table, tf, h, rule="strict")
        for frac in (0.2, 0.5, 0.77, 0.95):
            cut_t = int(df.ts.iloc[int(frac * len(df))])
            limit = cut_t - h * WIDTH[tf]
            part = table.slice(0, int((df.ts <= cut_t).sum()))
            for whole, rule in ((full, "endpoint"), (full_strict, "strict")):
                cut = labels_for_table(part, tf, h, rule=rule)
                a, b = whole.timestamp_ms <= limit, cut.timestamp_ms <= limit
                assert np.array_equal(whole.timestamp_ms[a], cut.timestamp_ms[b]), (name, frac, rule)
                assert np.array_equal(whole.ret[a], cut.ret[b]), (name, frac, rule)
                assert np.array_equal(whole.price_up[a], cut.price_up[b]), (name, frac, rule)
                assert not np.any(cut.timestamp_ms > limit)  # nothing later is labelled from the cut data


M = 60_000


def _lab(minutes, opens, closes, h, **kw):
    return forward_labels(np.asarray(minutes, dtype=np.int64) * M, opens, closes, "1m", h, **kw)


def test_entry_is_next_candle_open_and_exit_is_endpoint_close():
    # minutes 0 1 2 3 4 ; h=2: t=0 -> entry open[1], exit close[2]
    lab = _lab([0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [10.5, 11.5, 13.2, 13.5, 14.5], 2)
    assert lab.index.tolist() == [0, 1, 2]
    assert lab.ret.tolist() == [13.2 / 11 - 1, 13.5 / 12 - 1, 14.5 / 13 - 1]
    assert lab.price_up.tolist() == [1, 1, 1]
    assert lab.end_ms.tolist() == [2 * M, 3 * M, 4 * M]
    assert lab.drops == {"end_of_data": 2, "missing_endpoint": 0, "gap_in_horizon": 0, "tie": 0}


def test_gap_endpoint_rule_vs_strict_rule():
    # minute 2 is missing. h=2: t=0 -> endpoint 2 missing; t=1 -> endpoint 3 exists, gap at 2 inside;
    # entry of t=1 is the first candle after it, minute 3.
    minutes = [0, 1, 3, 4, 5]
    opens = [10, 11, 13, 14, 15]
    closes = [10, 11, 12.5, 14.5, 16]
    lab = _lab(minutes, opens, closes, 2)
    assert lab.timestamp_ms.tolist() == [1 * M, 3 * M]
    assert lab.ret.tolist() == [12.5 / 13 - 1, 16 / 14 - 1]
    assert lab.drops == {"end_of_data": 2, "missing_endpoint": 1, "gap_in_horizon": 0, "tie": 0}
    strict = _lab(minutes, opens, closes, 2, rule="strict")
    assert strict.timestamp_ms.tolist() == [3 * M]
    assert strict.drops == {"end_of_data": 2, "missing_endpoint": 1, "gap_in_horizon": 1, "tie": 0}


def test_ties_and_dead_zone():
    opens = [100.0, 100.0, 100.0, 100.0, 100.0, 100.0]
    closes = [100.0, 100.0, 100.04, 99.96, 100.06, 100.0]  # returns at h=1: 0, +4 bps, -4 bps, +6 bps, 0
    lab = _lab(range(6), opens, closes, 1)
    assert lab.index.tolist() == [1, 2, 3]
    assert lab.price_up.tolist() == [1, 0, 1]
    assert lab.drops["tie"] == 2
    wide = _lab(range(6), opens, closes, 1, dead_zone_bps=5)
    assert wide.index.tolist() == [3] and wide.price_up.tolist() == [1]
    assert wide.drops["tie"] == 4
    kept = _lab(range(6), opens, closes, 1, dead_zone_bps=5, keep_ties=True)
    assert kept.index.tolist() == [0, 1, 2, 3, 4]
    assert kept.price_up.tolist() == [0, 0, 0, 1, 0]
    assert kept.drops["tie"] == 0


def test_calendar_months():
    months = np.array(["2019-01", "2019-02", "2019-03", "2019-05", "2019-06"], dtype="datetime64[M]")
    ts = months.astype("datetime64[ms]").astype(np.int64)
    lab = forward_labels(ts, [1, 2, 3, 5, 6], [1.5, 2.5, 3.5, 5.5, 6.5], "1M", 1)
    # Jan -> Feb exists; Feb -> Mar; Mar -> Apr missing; May -> Jun; Jun -> end
    assert lab.index.tolist() == [0, 1, 3]
    assert lab.ret.tolist() == [2.5 / 2 - 1, 3.5 / 3 - 1, 6.5 / 6 - 1]
    assert lab.drops == {"end_of_data": 1, "missing_endpoint": 1, "gap_in_horizon": 0, "tie": 0}
    strict = forward_labels(ts, [1, 2, 3, 5, 6], [1.5, 2.5, 3.5, 5.5, 6.5], "1M", 2, rule="strict")
    assert strict.index.tolist() == [0]  # Jan -> Mar, Feb present; Mar -> May has April missing
    assert strict.drops["gap_in_horizon"] == 1


def test_drop_report_lists_every_cause():
    lab = labels_for_table(pq.read_table(BTC_2D), "1m", 10, rule="strict")
    text = lab.drop_report()
    assert all(cause in text for cause in DROP_CAUSES)
    assert str(lab.n_bars) in text


@pytest.mark.parametrize("h", [0, -3, 2.5, True, "10"])
def test_bad_horizon_is_a_config_error(h):
    with pytest.raises(ConfigError, match="horizon"):
        _lab([0, 1, 2], [1, 1, 1], [1, 1, 1], h)


def test_bad_options_and_data():
    with pytest.raises(ConfigError, match="rule"):
        _lab([0, 1, 2], [1, 1, 1], [1, 1, 1], 1, rule="loose")
    with pytest.raises(ConfigError, match="dead zone"):
        _lab([0, 1, 2], [1, 1, 1], [1, 1, 1], 1, dead_zone_bps=-1)
    with pytest.raises(DataError, match="increasing"):
        _lab([0, 2, 1], [1, 1, 1], [1, 1, 1], 1)
    with pytest.raises(DataError, match="grid"):
        forward_labels(np.array([0, 61_000]), [1, 1], [1, 1], "1m", 1)
    with pytest.raises(DataError, match="finite"):
        _lab([0, 1, 2], [1, 0, 1], [1, 1, 1], 1)


def test_empty_input_gives_no_labels():
    lab = _lab([], [], [], 5)
    assert len(lab) == 0 and sum(lab.drops.values()) == 0

"""The features cache seen from ``train`` and ``evaluate``: a failed command writes nothing into the store,
the cache is keyed by the candles it was built from (not by how a range was spelled), and a ranged run
never evicts the full-range file.

Real processes on the bundled sample imported into a temporary store, 1h bars resampled on the fly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli

import genesis_fw

SAMPLE = Path(genesis_fw.__file__).parent / "sample" / "tBTCUSD_1m.parquet"
H1 = ("--symbol", "tBTCUSD", "--timeframe", "1h")
QUICK = ("--horizon", "10", "model.C=0.1", "train.folds=3")


def _run(tmp: Path, *args: str):
    env = dict(os.environ, GENESIS_DATA_DIR=str(tmp / "store"), GENESIS_MODELS_DIR=str(tmp / "models"))
    return run_cli(*args, cwd=tmp, env=env)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of ``folder``: its bytes and modification time (ns)."""
    if not folder.exists():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding the bundled sample's 1m candles (no feature files yet)."""
    _ok(_run(tmp_path, "import", str(SAMPLE), "--symbol", "tBTCUSD", "--timeframe", "1m"))
    return tmp_path


def test_a_failed_ranged_train_leaves_the_features_folder_untouched(store: Path) -> None:
    assert "Wrote" in _ok(_run(store, "features", *H1)).stdout
    folder = store / "store" / "features"
    before = _snapshot(folder)
    assert set(before) == {"tBTCUSD_1h.parquet", "tBTCUSD_1h.json"}
    proc = _run(store, "train", *H1, "--horizon", "40", "--start", "2019-04-01", "--end", "2019-04-27")
    assert proc.returncode == 1 and "too few labelled rows" in proc.stderr, proc.stdout + proc.stderr
    assert _snapshot(folder) == before
    # The full-range cache is still the one in place.
    assert _ok(_run(store, "features", *H1)).stdout.startswith("cached")


def test_a_failed_train_writes_no_features_into_an_empty_store(store: Path) -> None:
    proc = _run(store, "train", *H1, "--horizon", "1800")
    assert proc.returncode == 1 and "Error: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (store / "store" / "features").exists()
    assert not (store / "models").exists()


def test_a_successful_train_caches_its_features_and_evaluate_reuses_them(store: Path) -> None:
    folder = store / "store" / "features"
    proc = _ok(_run(store, "train", *H1, *QUICK))
    assert "(features computed)" in proc.stdout
    after_train = _snapshot(folder)
    assert set(after_train) == {"tBTCUSD_1h.parquet", "tBTCUSD_1h.json"}
    assert _ok(_run(store, "features", *H1)).stdout.startswith("cached")
    # evaluate asks for the recorded range (first to last candle): the same candles, so the same file.
    _ok(_run(store, "evaluate", "tBTCUSD_1h_v1", "--no-report"))
    assert _snapshot(folder) == after_train
    assert _ok(_run(store, "features", *H1)).stdout.startswith("cached")
    assert _snapshot(folder) == after_train


def test_a_range_spelled_differently_over_the_same_candles_is_cached(store: Path) -> None:
    _ok(_run(store, "features", *H1))
    folder = store / "store" / "features"
    before = _snapshot(folder)
    r = _ok(_run(store, "features", *H1, "--start", "2019-01-01", "--end", "2020-01-01"))
    assert r.stdout.startswith("cached"), r.stdout
    proc = _ok(_run(store, "train", *H1, *QUICK, "--start", "2019-03-01T00:00", "--end", "2019-07-01"))
    assert "(features cached)" in proc.stdout
    assert _snapshot(folder) == before


def test_a_ranged_train_over_fewer_candles_keeps_the_full_range_cache(store: Path) -> None:
    _ok(_run(store, "features", *H1))
    folder = store / "store" / "features"
    before = _snapshot(folder)
    proc = _ok(_run(store, "train", *H1, *QUICK, "--start", "2019-04-15"))
    assert "(features computed in memory)" in proc.stdout
    assert _snapshot(folder) == before
    assert _ok(_run(store, "features", *H1)).stdout.startswith("cached")

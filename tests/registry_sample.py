"""Model files for the registry tests: versions of the shipped hand-set baselines.

``make(folder, timeframe, version)`` writes ``tBTCUSD_{timeframe}_v{version}.json`` into ``folder``: the
shipped version-1 baseline of that timeframe with its name and version changed and one coefficient set
to ``version / 100``, resealed, so every version is a distinct, valid model file (validated by
``model_file.load``) without training one.
"""

from __future__ import annotations

import json
from pathlib import Path

from genesis_fw.ml import model_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "models"


def make(folder: Path, timeframe: str = "1h", version: int = 2, *, symbol: str = "tBTCUSD") -> Path:
    doc = json.loads((SHIPPED / f"tBTCUSD_{timeframe}_v1.json").read_text(encoding="utf-8"))
    doc["symbol"] = symbol
    doc["name"], doc["version"] = f"{symbol}_{timeframe}_v{version}", version
    doc["state"]["coef"][0] = version / 100
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.json"
    path.write_text(model_file.dumps(model_file.seal(doc)), encoding="utf-8")
    return path


def tamper(path: Path) -> None:
    """Change one coefficient of the model file at ``path`` and reseal it: still a loadable model file,
    with another SHA-256 than the one registered."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["state"]["coef"][1] = doc["state"]["coef"][1] + 0.5
    path.write_text(model_file.dumps(model_file.seal(doc)), encoding="utf-8")


def four_versions(folder: Path) -> Path:
    """``folder`` holding tBTCUSD 1h v1..v4 model files (none registered, no registry yet)."""
    for v in (1, 2, 3, 4):
        make(folder, "1h", v)
    return folder


def champion_v1(folder: Path):
    """The registry of :func:`four_versions`' ``folder`` with v1 the champion of tBTCUSD 1h and v2, v3
    challengers."""
    from genesis_fw.registry.registry import Registry

    r = Registry.open(folder)
    for v in (1, 2, 3):
        r.register(f"tBTCUSD_1h_v{v}", reason="test")
    r.promote("tBTCUSD_1h_v1", reason="first champion")
    return r

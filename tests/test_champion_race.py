"""`champion select` against a champion changed by another process between its comparison and its promotion:
a deterministic interleaving with a real second process. The select process runs the real CLI with
Registry.promote wrapped so that, right before it, another process (`genesis-fw models promote`) changes
the champion; select must then refuse (nothing logged) instead of silently overriding it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from test_champion_select import (  # noqa: F401 - prepared and work are its fixtures
    NO_WF,
    _audit,
    _cli,
    _env,
    _market,
    _ok,
    _register,
    _store,
    fitted_on_test,
    prepared,
    work,
)

RACE = textwrap.dedent("""
    import subprocess, sys
    from genesis_fw.registry import registry as R

    original = R.Registry.promote

    def promote(self, name, **kw):
        # another process promotes the other challenger after select compared, before it promotes
        done = subprocess.run([sys.executable, "-m", "genesis_fw", "models", "promote", "tBTCUSD_1h_v2",
                               "--reason", "concurrent"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return original(self, name, **kw)

    R.Registry.promote = promote
    from genesis_fw.cli import main
    sys.argv = ["genesis-fw", *sys.argv[1:]]
    main()
""")


def test_select_refuses_when_another_process_changed_the_champion_after_the_comparison(work: Path) -> None:  # noqa: F811
    strong = fitted_on_test(work / "models" / "tBTCUSD_1h_v2.json", work / "models", _store(work))
    _register(work, strong)
    script = work / "race.py"
    script.write_text(RACE)
    proc = subprocess.run([sys.executable, str(script), "champion", "select", "tBTCUSD", "1h", NO_WF],
                          capture_output=True, text=True, cwd=work, env=_env(work), timeout=600)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    assert (f"the champion of tBTCUSD 1h changed to tBTCUSD_1h_v2 while promoting {strong.stem} (it was "
            "tBTCUSD_1h_v1 when compared") in errors[0], errors[0]
    assert "run champion select again" in errors[0]
    # the concurrent promotion stands, and it is the last entry: select logged nothing
    assert _market(work)["champion"]["name"] == "tBTCUSD_1h_v2"
    last = _audit(work)[-1]
    assert (last["action"], last["from"], last["to"], last["reason"]) == ("promote", "tBTCUSD_1h_v1",
                                                                          "tBTCUSD_1h_v2", "concurrent")
    _ok(_cli(work, "models", "audit", "--verify"))

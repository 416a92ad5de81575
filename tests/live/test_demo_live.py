"""The LIVE demo: Helios in LIVE mode against the exchange double on loopback, audit passed, a position protected on
the exchange through a SIGKILL of the service, kill switch works."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.service.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_demo_live_runs_helios_live_against_the_double() -> None:
    env = {**os.environ, "DOUBLE_PORT": str(free_port()), "API_PORT": str(free_port())}
    result = subprocess.run([str(ROOT / "scripts/demo-live.sh"), "--check"], capture_output=True, text=True,
                            env=env, timeout=180, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pre-live audit: PASSED" in result.stdout
    assert '"mode":"LIVE"' in result.stdout
    assert "open orders remaining  0 (confirmed by re-query)" in result.stdout
    assert "demo-live check passed" in result.stdout
    # a position protected on the exchange through a SIGKILL of the service, reconciled on start
    assert "held ON THE EXCHANGE: hp-" in result.stdout
    assert "Helios killed (SIGKILL" in result.stdout
    assert "after the restart Helios reconciled it: position closed, exit protective_stop_loss" in result.stdout

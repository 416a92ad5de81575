"""`molecule test` for the helios_server role (create -> converge -> idempotence -> verify -> destroy).

Needs root: ``pytest -m sandbox tests/ops/test_molecule.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="molecule's sandbox host needs root"),
]

REPO = Path(__file__).resolve().parents[2]


def test_molecule_default_scenario() -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(bin_dir / "molecule"), "test"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

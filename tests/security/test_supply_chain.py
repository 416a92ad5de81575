"""Issue 10, finding 8: bootstrap must fail loudly when an install fails (it used to hide pip's failure)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bootstrap_stops_with_pips_words_when_an_install_fails(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\ndependencies = ["helios-no-such-package-4f1c==1.0"]\n')
    (tmp_path / "constraints.txt").write_text("")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True)
    # a venv whose pip cannot reach any index: the install must fail, and bootstrap must say so
    env = {**os.environ, "PIP_NO_INDEX": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "scripts/bootstrap.sh", "--no-apt"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bootstrap: pip install --upgrade pip>=24 failed" in proc.stderr
    assert not list((tmp_path / ".venv").glob(".helios-deps-*"))  # nothing recorded as installed


def test_the_product_wheel_carries_no_exchange_double(tmp_path: Path) -> None:
    """Issue 10, finding 9: the double (with its default secret) is dev-only: demos, tests and benches import it from
    the checkout; production hosts never get it."""
    import zipfile

    from helios_double import DEFAULT_SECRET

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("helios-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert not [n for n in names if "double" in n], names
        assert any(n.startswith("helios/static/") for n in names)  # the wheel itself is whole
        for name in names:
            assert DEFAULT_SECRET.encode() not in zf.read(name), name

"""Issue 10 finding 8: the wheelhouse is resolved from constraints.txt, recorded with sha256 hashes in the release
manifest, and installed on hosts with ``pip install --require-hashes --no-index``: a tampered wheel is refused."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helios_ops import artifact
from helios_ops import deployctl as ctl


def _wheel(where: Path, name: str, version: str, body: str = "X = 1\n") -> Path:
    path = where / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.py", body)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def _pip_install(lock: str, wheels: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """The host's install, as install_release runs it (--no-index --require-hashes -r LOCK)."""
    lock_file = target.parent / "requirements.lock"
    lock_file.write_text(lock)
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--require-hashes", "--no-cache-dir",
         "--disable-pip-version-check", "--quiet", "--find-links", str(wheels), "--target", str(target),
         "-r", str(lock_file)],
        capture_output=True, text=True, timeout=120, check=False)


def test_a_tampered_wheel_is_refused_by_the_host_install(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    dep = _wheel(house, "tinydep", "1.0")
    own = _wheel(house, "helios", "0.9.0")
    lines = artifact.hash_lock(house)
    assert lines[1].startswith("tinydep==1.0 --hash=sha256:")
    meta = {"wheel": own.name, "wheel_sha256": artifact.file_sha256(own), "requirements": [lines[1]]}
    all_lock, _own_lock = ctl.requirements_lock(meta)
    ok = _pip_install(all_lock, house, tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    _wheel(house, "tinydep", "1.0", body="import os; os.system('id')\n")  # same name, other bytes
    assert dep.exists()
    bad = _pip_install(all_lock, house, tmp_path / "bad")
    assert bad.returncode != 0 and "DO NOT MATCH THE HASHES" in bad.stderr


@pytest.mark.parametrize("meta", [
    {"wheel": "helios-0.9.0-py3-none-any.whl", "requirements": []},
    {"wheel": "helios-0.9.0-py3-none-any.whl", "wheel_sha256": "0" * 64},
    {"wheel": "helios-0.9.0-py3-none-any.whl", "wheel_sha256": "0" * 64, "requirements": ["apprise>=1"]},
])
def test_a_manifest_without_hashes_is_refused(meta: dict[str, object]) -> None:
    with pytest.raises(ctl.Failure, match="rebuild"):
        ctl.requirements_lock(meta)


def test_the_wheelhouse_is_resolved_from_the_constraints(tmp_path: Path) -> None:
    argv = artifact.download_command("python3", tmp_path / "helios-1-py3-none-any.whl", tmp_path, "3.11", "x86_64",
                                     tmp_path / "constraints.txt")
    assert argv[argv.index("-c") + 1] == str(tmp_path / "constraints.txt")
    # a change of constraints is a new wheelhouse (never a stale one reused)
    assert artifact.deps_hash(["apprise>=1.9"], "3.11", "x86_64", "apprise==2.3.0") != artifact.deps_hash(
        ["apprise>=1.9"], "3.11", "x86_64", "apprise==2.2.0")

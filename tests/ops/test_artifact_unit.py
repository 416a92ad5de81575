"""Pure parts of helios_ops.artifact: release ids, paths, manifest, pip commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from helios_ops import artifact

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_release_id_is_utc_timestamp_and_sha7() -> None:
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert artifact.release_id(when, SHA) == "20250304T050607Z-0123456"
    sast = datetime(2025, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert artifact.release_id(sast, SHA) == "20250304T050607Z-0123456"


def test_release_id_rejects_naive_time_and_bad_sha() -> None:
    with pytest.raises(artifact.ArtifactError, match="timezone-aware"):
        artifact.release_id(datetime(2025, 1, 1), SHA)
    with pytest.raises(artifact.ArtifactError, match="not a git sha"):
        artifact.release_id(datetime(2025, 1, 1, tzinfo=UTC), "main")


def test_release_ids_sort_chronologically() -> None:
    ids = [artifact.release_id(datetime(2025, 1, d, tzinfo=UTC), SHA) for d in (3, 1, 2)]
    assert sorted(ids) == [ids[1], ids[2], ids[0]]


def test_release_paths() -> None:
    paths = artifact.release_paths("20250304T050607Z-0123456")
    assert paths["dir"] == "/opt/helios/releases/20250304T050607Z-0123456"
    assert paths["helios"] == "/opt/helios/releases/20250304T050607Z-0123456/venv/bin/helios"
    assert paths["manifest"].endswith("/release.json")
    with pytest.raises(artifact.ArtifactError, match="not a release id"):
        artifact.release_paths("../../etc")


def _artifact() -> artifact.Artifact:
    return artifact.Artifact(
        release_id="20250304T050607Z-0123456",
        version="0.1.0",
        git_sha=SHA,
        schema_version=3,
        built_at="2025-03-04T05:06:07Z",
        wheel="helios-0.1.0-py3-none-any.whl",
        wheelhouse="/w",
        python_version="3.11",
        arch="x86_64",
    )


def test_manifest_has_contract_fields() -> None:
    data = artifact.manifest(_artifact(), "ops@laptop")
    assert data["release_id"] == "20250304T050607Z-0123456"
    assert data["git_sha"] == SHA
    assert data["schema_version"] == 3
    assert data["deployed_by"] == "ops@laptop"
    assert {"version", "built_at"} <= data.keys()


def test_schema_version_from_source(tmp_path: Path) -> None:
    assert artifact.schema_version_from_source(tmp_path) == 1
    (tmp_path / "helios").mkdir()
    (tmp_path / "helios" / "journal.py").write_text('"""x"""\nSCHEMA_VERSION: int = 4\n')
    assert artifact.schema_version_from_source(tmp_path) == 4


def test_schema_version_of_this_checkout_matches_helios() -> None:
    try:
        from helios.journal import SCHEMA_VERSION
    except ImportError:
        pytest.skip("helios.journal not importable")
    assert artifact.schema_version_from_source(artifact.REPO_ROOT) == SCHEMA_VERSION


def test_download_command_targets_the_host_python() -> None:
    cmd = artifact.download_command("py", Path("h.whl"), Path("out"), "3.12", "aarch64")
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    assert "cp312" in cmd
    assert "manylinux2014_aarch64" in cmd
    assert cmd[-1] == "h.whl"
    with pytest.raises(artifact.ArtifactError, match="python version"):
        artifact.download_command("py", Path("h.whl"), Path("out"), "3", "x86_64")
    with pytest.raises(artifact.ArtifactError, match="architecture"):
        artifact.platform_tags("riscv64")


def test_artifact_dir_is_keyed_by_sha_python_arch(tmp_path: Path) -> None:
    assert artifact.artifact_dir(tmp_path, SHA, "3.11", "x86_64") == tmp_path / "0123456789ab-py3.11-x86_64"

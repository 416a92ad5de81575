"""helios_ops.provision: inventory selection, vault password handling, error lines (no SSH)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helios_ops import provision

REPO = Path(__file__).resolve().parents[2]


def test_production_needs_a_vault_password() -> None:
    assert provision.needs_vault(REPO / "inventory" / "production")
    with pytest.raises(provision.ProvisionError) as err:
        provision.playbook_argv("production", environ={})
    assert "vault-encrypted" in str(err.value) and "HELIOS_VAULT_PASSWORD_FILE" in str(err.value)


def test_missing_vault_password_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(provision.ProvisionError, match=f"vault password file {missing} does not exist"):
        provision.playbook_argv("production", environ={"HELIOS_VAULT_PASSWORD_FILE": str(missing)})


def test_production_argv_passes_the_password_file(tmp_path: Path) -> None:
    own = tmp_path / "vault-pass"
    own.write_text("my own long vault password\n")
    argv = provision.playbook_argv("production", environ={"HELIOS_VAULT_PASSWORD_FILE": str(own)})
    assert argv[argv.index("--vault-password-file") + 1] == str(own)
    assert argv[argv.index("-i") + 1] == str(REPO / "inventory" / "production")
    assert argv[-1].endswith("ansible/provision.yml") or "ansible/provision.yml" in " ".join(argv)


def test_example_vault_password_is_refused_outside_test_inventories() -> None:
    """Issue 10 finding 9: the published example password never unlocks a real inventory."""
    example = REPO / "inventory" / "production" / ".vault-pass.example"
    with pytest.raises(provision.ProvisionError, match="example vault password is public"):
        provision.playbook_argv("production", environ={"HELIOS_VAULT_PASSWORD_FILE": str(example)})
    assert provision.check_vault_password("sandbox", example) == example


def test_example_vault_decrypts_with_documented_password() -> None:
    example = REPO / "inventory" / "production" / ".vault-pass.example"
    assert example.read_text().strip() == "example-vault-password"
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "view",
            "--vault-password-file",
            str(example),
            str(REPO / "inventory" / "production" / "group_vars" / "all" / "vault.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "vault_helios_valr_api_key" in out and "example" in out


@pytest.mark.parametrize("name", ["", "../etc", ".hidden", "nope"])
def test_bad_inventory_names(name: str) -> None:
    with pytest.raises(provision.ProvisionError):
        provision.playbook_argv(name, environ={})


def test_exit_codes_are_explained() -> None:
    assert "unreachable" in provision.explain_exit(4)
    assert "task failed" in provision.explain_exit(2)
    line = provision.failure_line("sandbox", 4)
    assert "\n" not in line and "sandbox" in line and "unreachable" in line


def test_invoke_provision_production_without_password_fails_with_one_line() -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/root"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "inv"), "provision", "--inventory", "production"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("provision failed: inventory 'production' has vault-encrypted files")

"""Build the ansible-playbook command line for `invoke provision` (pure) -- see docs/ops-hosts.md."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INVENTORY_ROOT = REPO_ROOT / "inventory"
PLAYBOOK = REPO_ROOT / "ansible" / "provision.yml"
VAULT_PASSWORD_ENV = "HELIOS_VAULT_PASSWORD_FILE"  # noqa: S105 -- a variable name, not a password


class ProvisionError(RuntimeError):
    """Provisioning cannot start; the message names what is wrong."""


#: ansible-playbook exit codes -> what they mean for the operator.
EXIT_MEANINGS: dict[int, str] = {
    1: "ansible-playbook hit an error",
    2: "a task failed on at least one host",
    3: "at least one host was unreachable (check address, SSH port and key)",
    4: "at least one host was unreachable (check address, SSH port and key)",
    5: "bad command-line options",
    99: "interrupted",
    250: "unexpected ansible error",
}


def explain_exit(code: int) -> str:
    return EXIT_MEANINGS.get(code, f"ansible-playbook exited {code}")


def inventory_dir(name: str, root: Path = INVENTORY_ROOT) -> Path:
    """``name`` under ``inventory/`` (operators), or an absolute directory path (tests)."""
    if name.startswith("/"):
        path = Path(name)
        if not (path / "hosts.yml").is_file():
            raise ProvisionError(f"inventory directory {path} has no hosts.yml")
        return path
    if not name or "/" in name or name.startswith("."):
        raise ProvisionError(f"invalid inventory name {name!r} (use a directory name under inventory/)")
    path = root / name
    if not path.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) if root.is_dir() else "none"
        raise ProvisionError(f"no inventory named {name!r} under {root} (known: {known})")
    if name == "sandbox" and not (path / "hosts.yml").exists():
        raise ProvisionError("inventory/sandbox/hosts.yml is missing: run `invoke sandbox.up` first")
    return path


def needs_vault(path: Path) -> bool:
    """True when any file of the inventory is ansible-vault encrypted."""
    for file in path.rglob("*.yml"):
        try:
            with file.open("rb") as handle:
                if handle.read(14) == b"$ANSIBLE_VAULT":
                    return True
        except OSError:
            continue
    return False


EXAMPLE_VAULT_PASSWORD = "example-vault-password"  # noqa: S105 -- the published example, refused below
TEST_INVENTORIES = frozenset({"sandbox", "deploytest", "molecule"})


def check_vault_password(inventory: str, password_file: Path) -> Path:
    """The example vault password (published in this repository) is refused for every real inventory."""
    if not password_file.is_file():
        raise ProvisionError(f"vault password file {password_file} does not exist")
    if inventory not in TEST_INVENTORIES and password_file.read_text().strip() == EXAMPLE_VAULT_PASSWORD:
        raise ProvisionError(
            f"inventory {inventory!r}: the example vault password is public; re-encrypt the vault with your own "
            "(ansible-vault rekey) and point HELIOS_VAULT_PASSWORD_FILE at it"
        )
    return password_file


def vault_password_file(environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    value = env.get(VAULT_PASSWORD_ENV) or env.get("ANSIBLE_VAULT_PASSWORD_FILE")
    return Path(value) if value else None


def playbook_argv(
    inventory: str,
    *,
    limit: str | None = None,
    check: bool = False,
    extra_vars: str | None = None,
    playbook: Path = PLAYBOOK,
    root: Path = INVENTORY_ROOT,
    environ: dict[str, str] | None = None,
) -> list[str]:
    path = inventory_dir(inventory, root)
    binary = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
    argv = [binary, "-i", str(path), str(playbook)]
    if needs_vault(path):
        password_file = vault_password_file(environ)
        if password_file is None:
            raise ProvisionError(
                f"inventory {inventory!r} has vault-encrypted files but no vault password: set "
                f"{VAULT_PASSWORD_ENV}=/path/to/password-file"
            )
        argv += ["--vault-password-file", str(check_vault_password(inventory, password_file))]
    if limit:
        argv += ["--limit", limit]
    if check:
        argv += ["--check", "--diff"]
    if extra_vars:
        argv += ["--extra-vars", extra_vars]
    return argv


def playbook_env() -> dict[str, str]:
    return {"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible" / "ansible.cfg")}


def run_playbook(argv: Sequence[str], *, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook with the repo's ansible.cfg."""
    return subprocess.run(
        list(argv), env={**os.environ, **playbook_env()}, capture_output=capture, text=True, check=False
    )


def failure_line(inventory: str, code: int) -> str:
    return (
        f"provision failed on inventory {inventory!r}: {explain_exit(code)} (exit {code}); "
        "the env file is validated before it replaces the live one, so hosts keep their previous config"
    )


def shell_join(argv: Sequence[str]) -> str:
    return shlex.join(argv)

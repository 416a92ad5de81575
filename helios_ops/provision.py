"""Build the ansible-playbook command line for `invoke provision` (pure) -- see docs/ops-hosts.md."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INVENTORY_ROOT = REPO_ROOT / "inventory"
PLAYBOOK = REPO_ROOT / "ansible" / "provision.yml"
VAULT_PASSWORD_ENV = "HELIOS_VAULT_PASSWORD_FILE"  # noqa: S105 -- a variable name, not a password


class ProvisionError(RuntimeError):
    """Provisioning cannot start; the message names what is wrong."""


def inventory_dir(name: str, root: Path = INVENTORY_ROOT) -> Path:
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


def vault_password_file(environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    value = env.get(VAULT_PASSWORD_ENV) or env.get("ANSIBLE_VAULT_PASSWORD_FILE")
    return Path(value) if value else None


def playbook_argv(
    inventory: str,
    *,
    limit: str | None = None,
    check: bool = False,
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
        if not password_file.is_file():
            raise ProvisionError(f"vault password file {password_file} does not exist")
        argv += ["--vault-password-file", str(password_file)]
    if limit:
        argv += ["--limit", limit]
    if check:
        argv += ["--check", "--diff"]
    return argv


def playbook_env() -> dict[str, str]:
    return {"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible" / "ansible.cfg")}


def shell_join(argv: Sequence[str]) -> str:
    return shlex.join(argv)

"""Inventories: the one reader of inventory/<name>/ (hosts.yml + group_vars/all) for the SSH calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from helios_ops import provision as provision_mod

REPO_ROOT = Path(__file__).resolve().parent.parent
INVENTORY_ROOT = REPO_ROOT / "inventory"


class OpsError(RuntimeError):
    """An operator task cannot run; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class Host:
    """One inventory host, as SSH needs it."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    api_port: int = 8100
    become: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    known_hosts: str | None = None  # inventory/<name>/known_hosts: the only host keys accepted


def check_inventory_name(name: str) -> str:
    """Inventory names are plain directory names under inventory/; production is never implied."""
    if not name or "/" in name or name.startswith("."):
        raise OpsError(f"invalid inventory name {name!r} (use a directory name under inventory/)")
    return name


def hosts_from_inventory(data: Mapping[str, Any], group_vars: Mapping[str, Any] | None = None) -> list[Host]:
    """Hosts of a YAML inventory (``all`` with nested ``children``), group vars applied from the top down."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Mapping[str, Any], inherited: Mapping[str, Any]) -> None:
        merged = {**inherited, **(node.get("vars") or {})}
        for name, hvars in (node.get("hosts") or {}).items():
            found[name] = {**merged, **(found.get(name) or {}), **(hvars or {})}
        for child in (node.get("children") or {}).values():
            walk(child or {}, merged)

    walk(data.get("all") or {}, dict(group_vars or {}))
    hosts = []
    for name, v in sorted(found.items()):
        user = str(v.get("ansible_user", "root"))
        hosts.append(
            Host(
                name=name,
                address=str(v.get("ansible_host", name)),
                port=int(v.get("ansible_port", 22)),
                user=user,
                key_file=v.get("ansible_ssh_private_key_file"),
                api_port=int(v.get("helios_api_port", 8100)),
                become=user != "root",
            )
        )
    return hosts


def inventory_path(name: str) -> Path:
    check_inventory_name(name)
    try:
        return provision_mod.inventory_dir(name, INVENTORY_ROOT)
    except provision_mod.ProvisionError as exc:
        raise OpsError(str(exc)) from None


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        if handle.read(14) == b"$ANSIBLE_VAULT":
            return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def inventory_hosts(name: str) -> list[Host]:
    """Hosts of inventory/<name> (hosts.yml + group_vars/all)."""
    path = inventory_path(name)
    hosts_file = next((p for p in (path / "hosts.yml", path / "hosts.yaml") if p.is_file()), None)
    if hosts_file is None:
        raise OpsError(f"inventory {name!r} has no hosts.yml")
    group_vars: dict[str, Any] = {}
    gv = path / "group_vars" / "all"
    single = gv.with_suffix(".yml")
    files = sorted(gv.glob("*.yml")) if gv.is_dir() else ([single] if single.is_file() else [])
    for file in files:
        group_vars.update(_load_yaml(file))
    hosts = hosts_from_inventory(_load_yaml(hosts_file), group_vars)
    if not hosts:
        raise OpsError(f"inventory {name!r} lists no hosts")
    return [replace(h, known_hosts=str(path / "known_hosts")) for h in hosts]

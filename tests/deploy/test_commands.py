"""Unit tests of the pure builders (helios_ops.commands, the helper's pure functions, artifact keys): no SSH."""

from __future__ import annotations

from pathlib import Path

import pytest

from helios_ops import artifact, deployctl
from helios_ops import commands as cmd
from helios_ops import inventory as inv

REPO = Path(__file__).resolve().parents[2]


ctl = deployctl

ENV = (
    "# Ansible managed\n"
    "ENABLE_PAPER_TRADING='false'\n"
    "HELIOS_API_TOKEN='tok-123456789012345'\n"
    "MAX_POSITION_SIZE_ZAR='300'\n"
    "TRADING_MODE='LIVE'\n"
    'VALR_API_SECRET="s3cr3t"\n'
)


def test_rewrite_mode_changes_only_the_two_keys() -> None:
    out = ctl.rewrite_mode(ENV, "PAPER")
    old, new = ENV.splitlines(keepends=True), out.splitlines(keepends=True)
    assert len(old) == len(new)
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert changed == [
        ("ENABLE_PAPER_TRADING='false'\n", "ENABLE_PAPER_TRADING='true'\n"),
        ("TRADING_MODE='LIVE'\n", "TRADING_MODE='PAPER'\n"),
    ]
    assert ctl.rewrite_mode(out, "LIVE") == ENV


def test_rewrite_mode_appends_missing_keys_and_keeps_crlf() -> None:
    assert ctl.rewrite_mode("A=1", "LIVE") == "A=1\nTRADING_MODE='LIVE'\nENABLE_PAPER_TRADING='false'\n"
    assert ctl.rewrite_mode("TRADING_MODE=PAPER\r\nB=2\r\n", "LIVE").startswith("TRADING_MODE=LIVE\r\nB=2\r\n")
    with pytest.raises(ctl.Failure):
        ctl.rewrite_mode(ENV, "live")


def test_masked_diff_never_shows_secrets() -> None:
    new = ENV.replace("s3cr3t", "n3w") + "ALERT_URLS='https://hooks.example/abc'\n"
    lines = ctl.masked_diff(ENV, ctl.rewrite_mode(new, "PAPER"))
    text = "\n".join(lines)
    assert "s3cr3t" not in text and "n3w" not in text and "hooks.example" not in text
    assert "~ TRADING_MODE: LIVE -> PAPER" in lines
    assert "~ VALR_API_SECRET=**** (changed)" in lines
    assert "+ ALERT_URLS=****" in lines


def test_pick_previous_skips_bad_and_newer() -> None:
    rs = [
        "20260101T000000Z-aaaaaaa",
        "20260102T000000Z-bbbbbbb",
        "20260103T000000Z-ccccccc",
        "20260104T000000Z-ddddddd",
    ]
    assert ctl.pick_previous(rs, rs[3], set()) == rs[2]
    assert ctl.pick_previous(rs, rs[3], {rs[2]}) == rs[1]
    assert ctl.pick_previous(rs, rs[2], {rs[1]}) == rs[0]  # rs[3] is newer than current: never a rollback target
    assert ctl.pick_previous(rs, rs[0], set()) is None


def test_prune_plan_keeps_current_last_good_and_newest() -> None:
    rs = [f"2026010{i}T000000Z-aaaaaaa" for i in range(1, 9)]
    remove = ctl.prune_plan(rs, 5, current=rs[0], last_good=rs[1], bad=set())
    assert rs[0] not in remove and rs[1] not in remove
    assert remove == rs[2:3]  # 8 releases, newest 5 kept + current + last good
    assert ctl.prune_plan(rs, 5, current=rs[-1], last_good=rs[-1], bad=set()) == rs[:3]


def test_backups_to_remove_only_timestamp_dirs() -> None:
    names = ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z", ".x.partial", "notes"]
    assert ctl.backups_to_remove(names, 2) == ["20260101T000000Z"]
    assert ctl.backups_to_remove(names, 5) == []


def test_hosts_from_inventory_applies_group_vars() -> None:
    data = {
        "all": {
            "children": {
                "web": {
                    "vars": {"ansible_host": "127.0.0.1", "ansible_user": "root"},
                    "hosts": {
                        "h1": {"ansible_port": 2421, "helios_api_port": 8301},
                        "h2": {"ansible_port": 2422, "ansible_user": "deploy"},
                    },
                }
            }
        }
    }
    hosts = inv.hosts_from_inventory(data, {"ansible_ssh_private_key_file": "/k"})
    assert [(h.name, h.port, h.user, h.become, h.key_file, h.api_port) for h in hosts] == [
        ("h1", 2421, "root", False, "/k", 8301),
        ("h2", 2422, "deploy", True, "/k", 8100),
    ]


def test_playbook_argv_and_env() -> None:
    argv = cmd.playbook_argv("ansible-playbook", Path("/inv/prod"), "deploy.yml", Path("/tmp/v.yml"), limit="h1")
    assert argv[:4] == ["ansible-playbook", "-i", "/inv/prod", str(cmd.ANSIBLE_DIR / "deploy.yml")]
    assert argv[4:] == ["--limit", "h1", "-e", "@/tmp/v.yml"]
    text = cmd.extra_vars_text({"helios_reason": "x", "helios_rollback_to": None, "n": 1})
    assert text == '---\nhelios_reason: !unsafe "x"\nn: 1\n'
    env = cmd.playbook_env(Path("/tmp/r.json"), "me@box")
    assert env["ANSIBLE_STDOUT_CALLBACK"] == "helios_steps" and env["HELIOS_ACTOR"] == "me@box"


def test_ssh_commands_are_quoted_and_sudo_aware() -> None:
    line = cmd.flow_command("estop", "20260101T000000Z-0123abcd", "me", "runaway; rm -rf /", ["--reason=x; rm -rf /"])
    assert line == (
        "/usr/local/lib/helios/helios-deployctl start estop --flow-id 20260101T000000Z-0123abcd --who=me "
        "'--why=runaway; rm -rf /' -- '--reason=x; rm -rf /'"
    )
    assert cmd.status_command(sudo=True).startswith("sudo -n /usr/local/lib/helios/helios-deployctl status")
    assert cmd.follow_command("x").endswith("follow x") and cmd.follow_command(None).endswith("follow")
    assert cmd.logs_command(50, follow=True).endswith("helios-deployctl logs --lines=50 --follow")
    with pytest.raises(inv.OpsError):
        cmd.resume_args("  ")
    with pytest.raises(inv.OpsError):
        cmd.flow_command("rm", "20260101T000000Z-0123abcd", "me", "", [])
    with pytest.raises(inv.OpsError):
        inv.check_inventory_name("../production")


def test_deploy_plan_header_lists_hosts_in_order() -> None:
    hosts = [inv.Host("a", "10.0.0.1"), inv.Host("b", "10.0.0.2")]
    plan = cmd.deploy_plan_header(hosts, "20260101T000000Z-abcdef1", "HEAD", "production")
    assert plan.index("host 1/2: a") < plan.index("host 2/2: b")


def test_status_render_and_tunnel_hint() -> None:
    remote = inv.Host("vps", "203.0.113.10", 22, "deploy", "/k", 8100, True)
    assert cmd.service_url(remote) is None
    assert "ssh -N -L 8100:127.0.0.1:8100 -i /k -p 22 deploy@203.0.113.10" in cmd.tunnel_hint(remote)
    text = cmd.render_status(
        remote,
        {
            "release": "r1",
            "last_good": "r1",
            "service": {
                "mode": "LIVE",
                "trading_state": "HALTED",
                "healthy": True,
                "pnl": {"today_total_zar": "1.00"},
                "positions": [{"pair": "BTCZAR", "quantity": "0.1"}],
                "open_orders": 0,
            },
            "lock": {"held": False},
        },
    )
    assert "HALTED" in text and "BTCZAR 0.1" in text and "via SSH tunnel" in text
    assert cmd.mask_env_line("VALR_API_SECRET=abc") == "VALR_API_SECRET=****"
    assert cmd.mask_env_line("TRADING_MODE=LIVE") == "TRADING_MODE=LIVE"


def test_render_estop() -> None:
    line = cmd.render_estop(
        "h1",
        {
            "ok": True,
            "trading_state": "HALTED",
            "path": "direct",
            "unit_stopped": True,
            "orders_cancelled": 2,
            "open_orders_remaining": 0,
            "zero_open_orders_confirmed": True,
            "open_positions": [],
        },
    )
    assert "HALTED via direct; unit stopped" in line and "remaining 0 (confirmed" in line
    assert "FAILED" in cmd.render_estop("h1", {"ok": False, "error": "ssh refused"})


def test_artifact_deps_hash_is_stable_and_sensitive() -> None:
    a = artifact.deps_hash(["fastapi<1,>=0.115", "requests<3"], "3.11", "x86_64")
    assert a == artifact.deps_hash(["requests<3", "fastapi<1,>=0.115"], "3.11", "x86_64")
    assert a != artifact.deps_hash(["requests<3"], "3.11", "x86_64")
    assert a != artifact.deps_hash(["fastapi<1,>=0.115", "requests<3"], "3.12", "x86_64")


def test_every_operator_task_defaults_to_the_sandbox_inventory() -> None:
    import inspect

    from helios_ops import tasks_deploy

    tasks = [
        tasks_deploy.deploy,
        tasks_deploy.rollback,
        tasks_deploy.releases,
        tasks_deploy.to_paper,
        tasks_deploy.to_live,
        tasks_deploy.emergency_stop,
        tasks_deploy.resume,
        tasks_deploy.status,
        tasks_deploy.logs,
        tasks_deploy.backup,
        tasks_deploy.backups,
        tasks_deploy.restore,
        tasks_deploy.audit_,
        tasks_deploy.lock_status,
        tasks_deploy.lock_release,
    ]
    for t in tasks:
        default = inspect.signature(t.body).parameters["inventory"].default
        assert default == "sandbox", t.name  # production is only ever used when named

"""Issue 10 finding 5: operator strings (reason, who, confirmations) are data on their way to Ansible and the host.

No host needed: the real extra-vars file that ``helios_ops.runner.run_playbook`` writes is fed to a real
``ansible-playbook`` on localhost, and the host helper's argument parser is checked directly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helios_ops import commands as cmd
from helios_ops import deployctl as ctl
from helios_ops.inventory import OpsError

JINJA = "{{ lookup('ansible.builtin.pipe', 'touch MARKER') }} {{ vault_api_secret }} {% raw %}x"


def test_extra_vars_file_keeps_jinja_literal_through_ansible(tmp_path: Path) -> None:
    marker = tmp_path / "jinja-ran"
    reason = JINJA.replace("MARKER", str(marker))
    vars_file = tmp_path / "extra-vars.yml"
    vars_file.write_text(cmd.extra_vars_text({"helios_reason": reason, "helios_flow_id": "f", "n": 2}))
    out_file = tmp_path / "seen.txt"
    playbook = tmp_path / "p.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.copy:\n"
        f"        dest: {out_file}\n"
        "        content: \"{{ '--reason=' ~ helios_reason }}|{{ n + 1 }}\"\n"
        "        mode: '0600'\n"
    )
    argv = cmd.playbook_argv(str(Path(sys.executable).parent / "ansible-playbook"), Path("localhost,"),
                             str(playbook), vars_file)
    proc = subprocess.run([*argv, "-c", "local"], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "ANSIBLE_LOCALHOST_WARNING": "False", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert out_file.read_text() == f"--reason={reason}|3"
    assert not marker.exists()


@pytest.mark.parametrize("bad", ["a\nb", "tab\there", "esc\x1b[31m", "x" * 501, "nul\x00"])
def test_operator_strings_are_validated(bad: str) -> None:
    with pytest.raises(OpsError, match="nothing was done"):
        cmd.operator_text(bad, "--reason")
    with pytest.raises(OpsError):
        cmd.flow_command("estop", "20260101T000000Z-0123abcd", "me", "why", [f"--reason={bad}"])
    with pytest.raises(OpsError):
        cmd.extra_vars_text({"helios_reason": bad})
    with pytest.raises(SystemExit):  # the host helper refuses it too (the Ansible twin bypasses invoke)
        ctl.flow_parser("estop").parse_args([f"--reason={bad}"])


@pytest.mark.parametrize("reason", ["-x", "--urgent now", "-", "{{ inventory_hostname }}", "x" * 500, "ünï €"])
def test_reasons_reach_the_host_helper_as_one_value(reason: str) -> None:
    assert cmd.operator_text(reason, "--reason") == reason
    line = cmd.flow_command("estop", "20260101T000000Z-0123abcd", "me", reason, [f"--reason={reason}"])
    assert f"--reason={reason}" in __import__("shlex").split(line)
    assert ctl.flow_parser("estop").parse_args([f"--reason={reason}"]).reason == reason
    assert ctl.build_parser().parse_args(["start", "estop", f"--why={reason}", f"--who={reason}"]).why == reason

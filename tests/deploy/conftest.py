"""Fixtures for the deploy tests: one real systemd-nspawn host (sandbox group ``deploytest``, ssh 2421, api 8301),
provisioned with ansible/provision.yml, plus the VALR exchange double on 127.0.0.1:8390 for the LIVE scenarios.

The host is shared by the whole session
(test_deploy_sandbox.py, then test_flow_faults.py; scenarios run in file order and leave it healthy).
Throughout, a sampler
counts ``helios run`` processes on the host every 100 ms, and every operator command's output is kept so the last
test can check that no secret ever appeared in it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helios.attest import REQUIRED
from helios_ops import sandbox as sandbox_mod
from tests.hostapi import Run, api_get, wait_healthy

TO_LIVE_SIGNOFFS = REQUIRED["to-live"]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "deploytest"
DOUBLE_PORT = 8390
API_PORT = 8301
VALR_KEY = "deploytest-valr-key-5d1e"
VALR_SECRET = "deploytest-valr-secret-9b7c41e2a0f3"
API_TOKEN = "deploytest-api-token-c83f5a27e9d1"
SECRETS = (VALR_SECRET, API_TOKEN)


def deploytest_sandbox() -> Any:
    from helios_ops import sandbox as sb

    spec = sb.GroupSpec(group="deploytest", prefix="deploy", ssh_base=2420, api_base=8300)
    return sb.Sandbox(
        spec=spec,
        state_dir=REPO / ".sandbox" / "deploytest",
        inventory_file=REPO / "inventory" / "deploytest" / "hosts.yml",
    )


@dataclass
class Host:
    key: Path
    port: int = 2421
    outputs: list[str] = field(default_factory=list)
    engine_samples: list[int] = field(default_factory=list)
    journal_history: list[dict[str, int]] = field(default_factory=list)
    samplers: list[Any] = field(default_factory=list)  # EngineSampler sessions (a power cycle needs a new one)

    # -- operator side -------------------------------------------------------------------------------------------
    def invoke(self, *args: str, timeout: float = 300) -> Run:
        started = time.monotonic()
        argv = [str(VENV_BIN / "invoke"), *args]
        if "--inventory" not in args:
            argv += ["--inventory", INVENTORY]
        proc = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
        out = proc.stdout + proc.stderr
        self.outputs.append(out)
        return Run(proc.returncode, out, time.monotonic() - started)

    def playbook(
        self, playbook: str, *extra: str, timeout: float = 300, extra_env: dict[str, str] | None = None
    ) -> Run:
        started = time.monotonic()
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"), **(extra_env or {})}
        proc = subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(REPO / "inventory" / INVENTORY),
                str(REPO / "ansible" / playbook),
                *extra,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
        out = proc.stdout + proc.stderr
        self.outputs.append(out)
        return Run(proc.returncode, out, time.monotonic() - started)

    # -- host side ------------------------------------------------------------------------------------------------
    def ssh_argv(self, command: str) -> list[str]:
        return sandbox_mod.ssh_command(self.key, self.port, [command])

    def ssh(self, command: str, check: bool = True, timeout: float = 60) -> str:
        proc = subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def helper(self, *args: str) -> dict[str, Any]:
        out = self.ssh("/usr/local/lib/helios/helios-deployctl " + " ".join(args), check=False)
        return dict(json.loads(out.strip().splitlines()[-1]))

    def api(self, path: str) -> dict[str, Any]:
        return api_get(API_PORT, path)

    def current(self) -> str:
        return self.ssh("basename $(readlink /opt/helios/current)").strip()

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.ssh("cat /var/log/helios/audit.jsonl").splitlines() if x.strip()]

    def env_file(self) -> bytes:
        proc = subprocess.run(self.ssh_argv("cat /etc/helios/helios.env"), capture_output=True, check=True)
        return proc.stdout

    def journal_counts(self) -> dict[str, int]:
        """Total rows per journal file, read as the service user (root must not create -shm files)."""
        script = (
            "import glob,json,sqlite3\n"
            "out={}\n"
            "for p in sorted(glob.glob('/var/lib/helios/journal-*.sqlite')):\n"
            "    c=sqlite3.connect('file:'+p+'?mode=ro',uri=True)\n"
            "    t=[r[0] for r in c.execute(\"select name from sqlite_master where type='table'\")]\n"
            "    out[p.rsplit('/',1)[1]]=sum(c.execute('select count(*) from \"%s\"'%x).fetchone()[0] for x in t)\n"
            "    c.close()\n"
            "print(json.dumps(out))\n"
        )
        out = self.ssh(f"runuser -u helios -- python3 -c {shlex.quote(script)}")
        counts: dict[str, int] = json.loads(out)
        self.journal_history.append(counts)
        return counts

    def assert_journal_never_lost_rows(self) -> None:
        """Each journal's row count never went down between two samples."""
        best: dict[str, int] = {}
        for sample in self.journal_history:
            for name, rows in sample.items():
                assert rows >= best.get(name, 0), f"{name} lost rows: {best[name]} -> {rows}"
                best[name] = rows

    def wait_healthy(self, timeout: float = 30) -> dict[str, Any]:
        return wait_healthy(self.api, timeout)


class EngineSampler:
    """Counts `helios run` processes on the host every ~100 ms over one long-lived SSH session."""

    def __init__(self, host: Host) -> None:
        self.host = host
        cmd = "while :; do pgrep -fc '[h]elios run' || true; sleep 0.1; done"
        self.proc = subprocess.Popen(host.ssh_argv(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.host.engine_samples.append(int(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


def _start_double() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helios_double",
            "--port",
            str(DOUBLE_PORT),
            "--key",
            f"{VALR_KEY}:{VALR_SECRET}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO,  # the double is a dev-only package of the checkout, not part of the product wheel
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{DOUBLE_PORT}/_double/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("exchange double did not start")


def double_admin(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{DOUBLE_PORT}/_double{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def _up(box: Any) -> None:
    from helios_ops import sandbox as sb

    try:
        box.up(1)
    except sb.SandboxError:
        # Seen once: sshd lost a bind race at boot. Restart it inside the container and wait again.
        state = next(s for s in box.recorded() if s.name == "deploy1")
        children = Path(f"/proc/{state.pid}/task/{state.pid}/children").read_text().split()
        subprocess.run(["nsenter", "-t", children[0], "-a", "systemctl", "restart", "ssh"], check=False)
        box.up(1)



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A scenario that adds deploy2 to the deploytest inventory leaves it there (every later invoke then acts on two
    hosts), so such scenarios run after every other one, whichever file they are in."""
    last = [item for item in items if item.get_closest_marker("second_host")]
    items[:] = [item for item in items if not item.get_closest_marker("second_host")] + last

@pytest.fixture(scope="session")
def host() -> Iterator[Host]:
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        pytest.skip("needs root and systemd-nspawn")
    box = deploytest_sandbox()
    double = _start_double()
    started: Host | None = None
    try:
        _up(box)
        h = Host(key=box.key_file)
        prov = h.playbook("provision.yml")
        assert prov.rc == 0, prov.out[-3000:]
        h.wait_healthy()
        # The operator's sign-offs before any to-live (helios audit requires them), recorded as an operator would.
        for item in TO_LIVE_SIGNOFFS:
            h.ssh(f"/opt/helios/current/venv/bin/helios attest {item} --by deploy-tests"
                  " --env-file /etc/helios/helios.env")
        started = h
        h.samplers.append(EngineSampler(h))
        h.journal_counts()
        yield h
    finally:
        if started is not None:
            for each in started.samplers:
                each.stop()
        os.killpg(double.pid, 15)
        double.wait(10)
        if not os.environ.get("HELIOS_KEEP_DEPLOYTEST"):
            box.down()


# ----------------------------------------------------------------------------------------------------------------
# Scratch sources: clones of this repository with a commit on top (a different release each), optionally broken.
# ----------------------------------------------------------------------------------------------------------------
def scratch_source(tmp: Path, name: str, patch: dict[str, tuple[str, str]] | None = None) -> Path:
    """``git clone --shared`` of HEAD plus one commit (``patch``: path -> (old, new) text replacement)."""
    dest = tmp / name
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(dest)], check=True)
    for rel, (old, new) in (patch or {}).items():
        file = dest / rel
        text = file.read_text()
        assert old in text, f"{rel}: patch anchor {old!r} not found"
        file.write_text(text.replace(old, new, 1))
    git = ["git", "-C", str(dest), "-c", "user.name=deploy-tests", "-c", "user.email=deploy-tests@localhost"]
    subprocess.run([*git, "commit", "-q", "-a", "--allow-empty", "-m", f"test release {name}"], check=True)
    return dest


BROKEN: dict[str, dict[str, tuple[str, str]]] = {
    # helios.service is imported only by `helios run`, so check-config passes and the failure shows at start.
    "import_error": {
        "helios/service.py": (
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nimport helios_no_such_module  # noqa\n",
        )
    },
    "crash_loop": {
        "helios/service.py": (
            '    """The service\'s whole life. Returns the process exit code."""\n',
            '    """The service\'s whole life. Returns the process exit code."""\n'
            '    raise RuntimeError("broken on purpose: crash at start")\n',
        )
    },
    "never_healthy": {
        "helios/service.py": ("        reasons = []\n", '        reasons = ["broken on purpose: never healthy"]\n')
    },
}

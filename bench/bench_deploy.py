"""Deploy benchmarks on one sandbox host (issue 9 targets in brackets), median of --rounds (default 5).

    sudo .venv/bin/python bench/bench_deploy.py [--keep] [--rounds 5]

* deploy with unchanged dependencies, operator command -> healthy and promoted   [<= 8 s]
* rollback, operator command -> healthy and promoted                               [<= 2.5 s]
* emergency stop, operator command -> zero open orders confirmed (LIVE)           [<= 0.3 s]
* no-engine window during a deploy: helper (stop issued -> new release healthy) and sampled (no
  `helios run` process on the host, 100 ms sampling)                               [<= 0.5 s]

"before" is the median measured with this script on b61261d (same machine, 5 rounds), printed beside each result.

Uses the "deploytest" sandbox host and the exchange double from tests/deploy/conftest.py; tears them down unless
--keep.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.deploy.conftest import (  # noqa: E402
    TO_LIVE_SIGNOFFS,
    Host,
    _start_double,
    _up,
    deploytest_sandbox,
    double_admin,
    scratch_source,
)


class TimedSampler:
    """(monotonic time, helios-run count) every ~100 ms over one SSH session."""

    def __init__(self, host: Host) -> None:
        import subprocess

        cmd = "while :; do pgrep -fc '[h]elios run' || true; sleep 0.1; done"
        self.samples: list[tuple[float, int]] = []
        self.proc = subprocess.Popen(host.ssh_argv(cmd), stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.samples.append((time.monotonic(), int(line)))

    def longest_gap(self, since: float) -> float:
        gap, start = 0.0, None
        for t, n in self.samples:
            if t < since:
                continue
            if n == 0 and start is None:
                start = t
            elif n > 0 and start is not None:
                gap, start = max(gap, t - start), None
        return gap

    def stop(self) -> None:
        self.proc.terminate()


UNIT_COSTS = r"""
import json, subprocess, sys, time
def t(argv):
    started = time.perf_counter(); subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started
n = int(sys.argv[1])
out = {
 "unit_wait": [t(["systemd-run", "--wait", "--quiet", "--collect", "/bin/true"]) for _ in range(n)],
 "unit_no_block": [t(["systemd-run", "--no-block", "--quiet", "--collect", "/bin/true"]) for _ in range(n)],
 "python_helper": [t(["/usr/bin/python3", "/usr/local/lib/helios/helios-deployctl", "plan", "estop"])
                   for _ in range(n)],
}
print(json.dumps(out))
"""


def unit_costs(host: Host, rounds: int) -> dict[str, list[float]]:
    """On the host: a transient unit started and waited for (systemd-run --wait), started without waiting
    (--no-block), and one helper process (interpreter + imports), for the emergency stop's design."""
    import json
    import shlex

    return dict(json.loads(host.ssh(f"python3 -c {shlex.quote(UNIT_COSTS)} {rounds}").strip().splitlines()[-1]))


def estop_pieces(host: Host, results: dict[str, list[float]], out: str) -> None:
    """Where an operator's emergency stop spends its time: Invoke's start-up (to the task's first line), one command
    over the reused SSH master, and on the host the stop flow (record written -> outcome) and its API call."""
    import json
    import re
    import subprocess

    from helios_ops import runner
    from helios_ops.inventory import inventory_hosts

    started = time.monotonic()
    subprocess.run([sys.executable.replace("python", "invoke"), "--help", "emergency-stop"], cwd=REPO,
                   capture_output=True, check=True)
    results["estop_invoke_startup"].append(time.monotonic() - started)
    target = inventory_hosts("deploytest")[0]
    res = runner.ssh_run(target, "true")
    assert res.rc == 0, res.stderr
    results["estop_ssh_true"].append(res.seconds)
    match = re.search(r"estop ([0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}): OK", out)
    assert match, out
    record = json.loads(host.ssh(f"cat /var/lib/helios-deploy/flows/{match.group(1)}.json"))
    api = next(x for x in record["steps"] if x["step"] == "api")
    results["estop_api"].append(float(api["seconds"]))
    results["estop_host_flow"].append(float(record["ended_epoch"]) - float(record["started_epoch"]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="leave the host and the double running")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="print each command's output")
    parser.add_argument("--estop-only", action="store_true", help="skip the deploy/rollback rounds")
    args = parser.parse_args()
    box = deploytest_sandbox()
    double = _start_double()
    results: dict[str, list[float]] = {
        "deploy": [],
        "rollback": [],
        "estop": [],
        "window_helper": [],
        "window_sampled": [],
        "estop_invoke_startup": [],
        "estop_ssh_true": [],
        "estop_host_flow": [],
        "estop_api": [],
    }
    try:
        _up(box)
        host = Host(key=box.key_file)
        assert host.playbook("provision.yml").rc == 0
        host.wait_healthy()
        for item in TO_LIVE_SIGNOFFS:  # the operator's sign-offs (helios audit requires them before to-live)
            host.ssh(f"/opt/helios/current/venv/bin/helios attest {item} --by bench --env-file /etc/helios/helios.env")
        sampler = TimedSampler(host)
        with tempfile.TemporaryDirectory() as tmp:
            sources = [scratch_source(Path(tmp), f"b{i}") for i in range(args.rounds + 1)]
            warm = host.invoke("deploy", "--source", str(sources[0]))  # wheelhouse now on the host
            assert warm.rc == 0, warm.out[-2000:]
            for src in sources[1:] if not args.estop_only else []:
                t0 = time.monotonic()
                r = host.invoke("deploy", "--source", str(src))
                assert r.rc == 0, r.out[-2000:]
                results["deploy"].append(r.seconds)
                results["window_sampled"].append(sampler.longest_gap(t0))
                line = next(x for x in reversed(host.audit_lines()) if x["event"] == "deploy")
                results["window_helper"].append(float(line["no_engine_seconds"]))
                rb = host.invoke("rollback")
                assert rb.rc == 0, rb.out[-2000:]
                results["rollback"].append(rb.seconds)
                print(f"deploy {r.seconds:.2f}s (window {results['window_helper'][-1]:.3f}s helper, "
                      f"{results['window_sampled'][-1]:.2f}s sampled; {(line.get('install') or {}).get('venv')}), "
                      f"rollback {rb.seconds:.2f}s", flush=True)
                if args.verbose:
                    print(r.out[-3000:], rb.out[-1500:], sep="\n", flush=True)
        double_admin("POST", "/balance", {"balances": {"ZAR": "900", "ETH": "0", "BTC": "0"}})
        live = host.invoke("to-live", "--confirm", "deploy1")
        assert live.rc == 0, live.out[-2000:]
        for _ in range(args.rounds):
            for _ in range(3):
                double_admin(
                    "POST", "/orders/seed", {"pair": "BTCZAR", "side": "BUY", "quantity": "0.0001", "price": "100000"}
                )
            r = host.invoke("emergency-stop", "--reason", "bench")
            assert r.rc == 0 and "open orders remaining 0" in r.out, r.out
            assert double_admin("GET", "/orders?open=1") == []
            estop_pieces(host, results, r.out)
            results["estop"].append(r.seconds)
            print(f"emergency stop {r.seconds:.3f}s", flush=True)
            if args.verbose:
                print(r.out, flush=True)
            assert host.invoke("resume", "--reason", "bench").rc == 0
        assert host.invoke("to-paper").rc == 0
        sampler.stop()
        results.update(unit_costs(host, args.rounds))
    finally:
        os.killpg(double.pid, 15)
        if not args.keep:
            box.down()
    targets = {"deploy": 8, "rollback": 2.5, "estop": 0.3, "window_helper": 0.5, "window_sampled": 0.5}
    # b61261d (the start); 059c31f measured 15.9 / 2.70 / 0.77 / 1.13 / 0.23 with this script
    before = {"deploy": 24.90, "rollback": 7.29, "estop": 0.70, "window_helper": 0.95, "window_sampled": 0.11}
    labels = {
        "deploy": "deploy, unchanged deps (invoke -> healthy, promoted)",
        "rollback": "rollback (invoke -> healthy, promoted)",
        "estop": "emergency stop (invoke -> 0 open orders confirmed)",
        "window_helper": "no-engine window (stop issued -> new healthy)",
        "window_sampled": "no-engine window (no helios process, sampled)",
        "unit_wait": "host: systemd-run --wait /bin/true",
        "unit_no_block": "host: systemd-run --no-block /bin/true",
        "python_helper": "host: helios-deployctl plan (interpreter + imports)",
        "estop_invoke_startup": "estop piece: invoke start-up (invoke --help)",
        "estop_ssh_true": "estop piece: ssh 'true' over the reused master",
        "estop_host_flow": "estop piece: host flow (record -> outcome)",
        "estop_api": "estop piece: POST /api/emergency-stop",
    }
    print(f"\n{'benchmark':<52} {'before':>7} {'best':>7} {'median':>7} {'worst':>7} {'target':>7}")
    for key, values in results.items():
        if not values:
            continue
        values = sorted(values)
        median = values[len(values) // 2]
        target = targets.get(key)
        flag = "" if target is None or median <= target else "  OVER"
        print(f"{labels[key]:<52} {before.get(key, float('nan')):7.2f} {values[0]:7.3f} {median:7.3f} "
              f"{values[-1]:7.3f} {target if target is not None else '':>7}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Compact, timed Ansible output for the Helios operator tasks (``ANSIBLE_STDOUT_CALLBACK=helios_steps``).

One line per task and host with its duration, the helper's own step lines (``step ...`` on stderr) indented
under it, a one-line failure message, and -- when ``HELIOS_RESULT_FILE`` is set -- a JSON summary (per host:
failed/unreachable, the last failure message, and the JSON the helper printed per task) for ``invoke`` to read.
Secret-bearing tasks use ``no_log``; Ansible censors their results before they reach this plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: helios_steps
    type: stdout
    short_description: one timed line per task and host (Helios operator output)
    description:
      - Prints each task with its duration and the helper's step lines; writes a JSON summary to
        HELIOS_RESULT_FILE when set.
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "helios_steps"

    def __init__(self) -> None:
        super().__init__()
        self._task_started: dict[str, float] = {}
        self._run_started = time.monotonic()
        self._hosts: dict[str, dict[str, Any]] = {}

    # -- helpers -----------------------------------------------------------------------------------------------
    def _out(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def _host(self, name: str) -> dict[str, Any]:
        return self._hosts.setdefault(name, {"failed": False, "unreachable": False, "message": "", "results": {}})

    def _line(self, result: Any, status: str) -> None:
        host = result._host.get_name()
        task = result._task
        started = self._task_started.get(task._uuid, time.monotonic())
        seconds = time.monotonic() - started
        self._task_started[task._uuid] = time.monotonic()  # next host of the same task (parallel plays)
        self._out(f"{time.strftime('%H:%M:%S')} {host:<12} {seconds:6.2f}s {status:<8} {task.get_name()}")
        res = result._result
        for line in res.get("stderr_lines", []) or []:
            if line.startswith("step "):
                self._out(f"{'':>31}  {line}")
        stdout = res.get("stdout", "")
        if isinstance(stdout, str) and stdout.startswith("{"):
            with contextlib.suppress(ValueError):
                self._host(host)["results"][task.get_name()] = json.loads(stdout)
        if task.action in ("debug", "ansible.builtin.debug") and "msg" in res:
            msg = res["msg"]
            lines = msg if isinstance(msg, list) else str(msg).splitlines()
            for line in lines:
                self._out(f"{'':>31}  {line}")

    # -- events ------------------------------------------------------------------------------------------------
    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._out(f"== {play.get_name().strip()}")

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._task_started[task._uuid] = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._task_started[task._uuid] = time.monotonic()

    def v2_runner_on_ok(self, result: Any) -> None:
        self._line(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._line(result, "ignored" if ignore_errors else "FAILED")
        if ignore_errors:
            return
        res = result._result
        message = str(res.get("msg") or "").strip()
        if not message or message.startswith("non-zero return code"):
            stdout = res.get("stdout", "")
            if isinstance(stdout, str) and stdout.startswith("{"):
                with contextlib.suppress(ValueError):
                    message = str(json.loads(stdout).get("error") or message)
            tail = [line for line in res.get("stderr_lines", []) or [] if line.strip()]
            if (not message or message.startswith("non-zero")) and tail:
                message = tail[-1]
        message = " ".join(message.split())
        host = self._host(result._host.get_name())
        host.update(failed=True, message=message)
        self._out(f"{'':>31}  -> {message}")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._line(result, "UNREACH")
        message = " ".join(str(result._result.get("msg", "unreachable")).split())
        self._host(result._host.get_name()).update(unreachable=True, failed=True, message=message)
        self._out(f"{'':>31}  -> {message}")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._task_started[result._task._uuid] = time.monotonic()

    def v2_playbook_on_stats(self, stats: Any) -> None:
        total = time.monotonic() - self._run_started
        for host in sorted(stats.processed.keys()):
            summary = stats.summarize(host)
            entry = self._host(host)
            if summary.get("failures") or summary.get("unreachable"):
                entry["failed"] = True
            state = "FAILED" if entry["failed"] else "ok"
            self._out(
                f"== {host}: {state} ({summary.get('ok', 0)} ok, {summary.get('changed', 0)} changed, "
                f"{summary.get('failures', 0)} failed) in {total:.1f}s"
            )
        path = os.environ.get("HELIOS_RESULT_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"seconds": round(total, 3), "hosts": self._hosts}, handle, default=str)

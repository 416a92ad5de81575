"""Alerts through apprise: fire-and-forget notifications that never block the order path.

``ALERT_URLS`` is a comma-separated list of apprise URLs (https://github.com/caronc/apprise/wiki), the one format
operators already know, for example:

* ``json://host/path`` / ``jsons://host/path`` - a webhook: JSON POST ``{"version", "title", "message", "type"}``
  (``form://``, ``xml://`` likewise; relays for SMS gateways, ntfy, ...).
* ``tgram://<bot-token>/<chat-id>`` - Telegram; ``slack://...``, ``discord://...``, ``ntfy://...``, ...
* ``mailto://user:pass@host:port?from=a@b&to=c@d`` (plain SMTP) / ``mailtos://...`` (STARTTLS or SSL) - email.
* ``file:///path/alerts.jsonl`` - Helios' own apprise plugin: append one JSON line (local audit, demo, tests).

One validator: a destination is accepted exactly when apprise can build a notifier from it
(:func:`validate_alert_url`); ``helios run``, ``helios alert`` and ``helios audit`` all go through it.

Destination URLs carry tokens and passwords, so they are never logged: apprise's own logger is silenced (it would
name hosts and paths) and failures name only the URL scheme. Every alert is also written to the service log.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import apprise
from apprise.decorators import notify as apprise_plugin

from helios.config import ConfigError

log = logging.getLogger("helios.alerts")

_apprise_log = logging.getLogger("apprise")
_apprise_log.propagate = False  # apprise names hosts, paths and sometimes tokens: none of it may reach our logs
_apprise_log.addHandler(logging.NullHandler())

LEVELS: dict[str, apprise.NotifyType] = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "critical": apprise.NotifyType.FAILURE,
}


class AlertError(ConfigError):
    """A bad ALERT_URLS entry: a configuration error (one line, exit 2, before anything else starts)."""


def _file_destination(body: str, title: str, notify_type: str, meta: dict[str, Any], *args: Any,
                      **kwargs: Any) -> bool:
    """``file:///path``: append ``{"title", "type", "body", "at"}`` as one JSON line."""
    # apprise parses ``file:///var/lib/x.jsonl`` as host "var" + path "/lib/x.jsonl": put the path back together.
    path = Path("/" + unquote(str(meta.get("host") or "")).strip("/") + unquote(str(meta.get("fullpath") or "")))
    if path.name == "":
        return False
    line = {"title": title, "type": str(notify_type), "body": body, "at": datetime.now(UTC).isoformat()}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
    return True


# Register ``file://`` with apprise itself, so that apprise stays the one judge of what ALERT_URLS may hold.
_register_plugin = cast(Callable[..., Callable[[Callable[..., bool]], object]], apprise_plugin)
_register_plugin(on="file", name="Helios JSON-lines file")(_file_destination)


def _scheme(url: str) -> str:
    return urlsplit(url).scheme or "none"


def _notifier(url: str) -> Any:
    return apprise.Apprise.instantiate(url, asset=apprise.AppriseAsset(secure_logging=True),
                                       suppress_exceptions=True)


def validate_alert_url(url: str) -> None:
    """Accept exactly what apprise accepts; the error names only the scheme (URLs carry secrets)."""
    if _notifier(url) is None:
        raise AlertError(f"ALERT_URLS: apprise cannot use this destination (scheme {_scheme(url)!r}); "
                         "see https://github.com/caronc/apprise/wiki for the URL formats")


def parse_alert_urls(value: str | None) -> list[str]:
    urls = [u.strip() for u in (value or "").split(",") if u.strip()]
    for url in urls:
        validate_alert_url(url)
    return urls


def render_body(level: str, title: str, detail: dict[str, Any], service: str, at: str) -> str:
    """The message text every destination receives: a readable header, then the detail as JSON."""
    return (f"[{level.upper()}] {service}: {title}\nat {at}\n"
            f"{json.dumps(detail, default=str, sort_keys=True)}")


@dataclass
class AlertTestResult:
    """What ``Alerter.test_alert`` saw: delivered means every destination accepted the alert."""

    destinations: int
    delivered: int
    failed_schemes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.destinations > 0 and self.delivered == self.destinations

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "destinations": self.destinations, "delivered": self.delivered,
                "failed_schemes": self.failed_schemes}


class Alerter:
    """Queues alerts and delivers them from one background thread (``send``); ``test_alert`` delivers at once."""

    def __init__(self, urls: list[str], *, service: str = "helios") -> None:
        for url in urls:
            validate_alert_url(url)
        self.urls = urls
        self._service = service
        self._queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue(maxsize=1000)
        self.sent = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        if urls:
            self._thread = threading.Thread(target=self._run, name="helios-alerts", daemon=True)
            self._thread.start()

    def _message(self, level: str, title: str, detail: dict[str, Any] | None) -> tuple[str, str, str]:
        if level not in LEVELS:
            raise AlertError(f"alert level must be one of {', '.join(LEVELS)}, got {level!r}")
        at = datetime.now(UTC).isoformat()
        return level, f"Helios {level}: {title}", render_body(level, title, detail or {}, self._service, at)

    def send(self, level: str, title: str, detail: dict[str, Any] | None = None) -> None:
        message = self._message(level, title, detail)
        log.warning("alert: %s", title, extra={"alert": {"level": level, "title": title, "detail": detail or {}}})
        if not self.urls:
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.failed += 1
            log.error("alert queue full; dropped: %s", title)

    def _deliver_all(self, level: str, title: str, body: str) -> list[str]:
        """Deliver to every destination; returns the schemes that failed (a broken one never stops the others)."""
        failed: list[str] = []
        for url in self.urls:
            ok = False
            try:
                notifier = _notifier(url)
                ok = bool(notifier is not None and notifier.notify(body=body, title=title,
                                                                   notify_type=LEVELS[level]))
            except Exception as exc:  # apprise plugins may raise; never let it reach the caller
                log.error("alert delivery to a %s destination raised %s", _scheme(url), type(exc).__name__)
            if ok:
                self.sent += 1
            else:
                self.failed += 1
                failed.append(_scheme(url))
                log.error("alert delivery to a %s destination failed", _scheme(url))
        return failed

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is None:
                    return
                self._deliver_all(*message)
            finally:
                self._queue.task_done()

    def test_alert(self) -> AlertTestResult:
        """Send a test alert to every destination now and report which accepted it (``helios audit`` needs ok)."""
        level, title, body = self._message("info", "test alert (helios audit)", {"test": True})
        failed = self._deliver_all(level, title, body)
        return AlertTestResult(destinations=len(self.urls), delivered=len(self.urls) - len(failed),
                               failed_schemes=failed)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued alerts are delivered (shutdown, tests); returns False on timeout."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join(timeout=15)
            self._thread = None

"""Alerts: fire-and-forget notifications that never block the order path.

``ALERT_URLS`` is a comma-separated list of destinations:

* ``https://...`` / ``http://...`` - a webhook: JSON POST ``{"level", "title", "detail", "at", "service"}``
  (Slack/Discord/ntfy-style relays, SMS gateways).
* ``telegram://<bot-token>@<chat-id>`` - Telegram Bot API ``sendMessage``.
* ``mailto:<to>?smtp=<host>:<port>&from=<addr>`` - plain SMTP email.
* ``file:///path/alerts.jsonl`` - append one JSON line (local audit, tests).

Destination URLs can carry tokens and passwords, so they are never logged: failures name only the scheme.
Every alert is also written to the service log.
"""

from __future__ import annotations

import json
import logging
import queue
import smtplib
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

log = logging.getLogger("helios.alerts")

TELEGRAM_API = "https://api.telegram.org"


class AlertError(Exception):
    pass


def validate_alert_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return
    if parts.scheme == "telegram" and parts.username and parts.hostname:
        return
    if parts.scheme == "mailto" and parts.path and "smtp" in parse_qs(parts.query):
        return
    if parts.scheme == "file" and parts.path:
        return
    raise AlertError(f"ALERT_URLS: unsupported destination (scheme {parts.scheme or 'none'!r})")


def parse_alert_urls(value: str | None) -> list[str]:
    urls = [u.strip() for u in (value or "").split(",") if u.strip()]
    for url in urls:
        validate_alert_url(url)
    return urls


def _deliver(url: str, payload: dict[str, Any], timeout: float, telegram_api: str) -> None:
    parts = urlsplit(url)
    text = f"[{payload['level'].upper()}] {payload['title']}\n{json.dumps(payload['detail'], default=str)}"
    if parts.scheme in ("http", "https"):
        requests.post(url, json=payload, timeout=timeout).raise_for_status()
    elif parts.scheme == "telegram":
        token = parts.username if parts.password is None else f"{parts.username}:{parts.password}"  # "123:ABC"
        api = f"{telegram_api}/bot{token}/sendMessage"
        requests.post(api, json={"chat_id": parts.hostname, "text": text}, timeout=timeout).raise_for_status()
    elif parts.scheme == "mailto":
        query = parse_qs(parts.query)
        host, _, port = query["smtp"][0].partition(":")
        message = EmailMessage()
        message["To"] = parts.path
        message["From"] = query.get("from", ["helios@localhost"])[0]
        message["Subject"] = f"Helios {payload['level']}: {payload['title']}"
        message.set_content(text)
        with smtplib.SMTP(host, int(port or 25), timeout=timeout) as smtp:
            smtp.send_message(message)
    elif parts.scheme == "file":
        with Path(parts.path).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, default=str, sort_keys=True) + "\n")


class Alerter:
    """Queues alerts and delivers them from one background thread."""

    def __init__(self, urls: list[str], *, service: str = "helios", timeout: float = 5.0,
                 telegram_api: str = TELEGRAM_API) -> None:
        self.urls = urls
        self._service = service
        self._timeout = timeout
        self._telegram_api = telegram_api
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self.sent = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        if urls:
            self._thread = threading.Thread(target=self._run, name="helios-alerts", daemon=True)
            self._thread.start()

    def send(self, level: str, title: str, detail: dict[str, Any] | None = None) -> None:
        payload = {"level": level, "title": title, "detail": detail or {}, "service": self._service,
                   "at": datetime.now(UTC).isoformat()}
        log.warning("alert: %s", title, extra={"alert": payload})
        if not self.urls:
            return
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.failed += 1
            log.error("alert queue full; dropped: %s", title)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            for url in self.urls:
                try:
                    _deliver(url, payload, self._timeout, self._telegram_api)
                    self.sent += 1
                except Exception as exc:  # a broken destination must never stop the others
                    self.failed += 1
                    log.error("alert delivery to a %s destination failed: %s",
                              urlsplit(url).scheme, type(exc).__name__)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued alerts are delivered (shutdown, tests)."""
        if self._thread is None:
            return
        done = threading.Event()
        deadline = datetime.now(UTC).timestamp() + timeout
        while not self._queue.empty() and datetime.now(UTC).timestamp() < deadline:
            done.wait(0.02)
        done.wait(0.05)

    def close(self) -> None:
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join(timeout=15)

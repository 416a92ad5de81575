"""Alerts reach real destinations (a webhook server on loopback, a file) and never leak their URLs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helios.alerts import Alerter, AlertError, parse_alert_urls


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_alerts_are_delivered_to_webhook_telegram_and_file(webhook: tuple[str, list[dict[str, Any]]],
                                                           tmp_path: Path) -> None:
    url, received = webhook
    alert_file = tmp_path / "alerts.jsonl"
    alerter = Alerter([f"{url}/hook", "telegram://123:SECRETBOT@4567", f"file://{alert_file}"],
                      telegram_api=url)
    alerter.send("critical", "EMERGENCY STOP", {"orders_cancelled": 3})
    alerter.close()
    paths = sorted(r["path"] for r in received)
    assert paths == ["/bot123:SECRETBOT/sendMessage", "/hook"]
    hook = next(r for r in received if r["path"] == "/hook")["body"]
    assert hook["level"] == "critical" and hook["detail"] == {"orders_cancelled": 3}
    telegram = next(r for r in received if r["path"].endswith("sendMessage"))["body"]
    assert telegram["chat_id"] == "4567" and "EMERGENCY STOP" in telegram["text"]
    assert json.loads(alert_file.read_text())["title"] == "EMERGENCY STOP"
    assert alerter.sent == 3 and alerter.failed == 0


def test_a_failing_destination_is_logged_without_its_url(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter(["http://127.0.0.1:9/hook?token=SUPERSECRET"])
    with caplog.at_level(logging.ERROR):
        alerter.send("warning", "test")
        alerter.close()
    assert alerter.failed == 1
    assert "SUPERSECRET" not in caplog.text and "http destination failed" in caplog.text


def test_unsupported_destinations_are_refused() -> None:
    with pytest.raises(AlertError, match="ALERT_URLS"):
        parse_alert_urls("sms:12345")
    assert parse_alert_urls(" https://h/x , file:///tmp/a ") == ["https://h/x", "file:///tmp/a"]


def test_helios_alert_command_uses_the_service_destinations(tmp_path: Path) -> None:
    import subprocess
    import sys

    alert_file = tmp_path / "alerts.jsonl"
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(tmp_path), "ALERT_URLS": f"file://{alert_file}"}
    result = subprocess.run([sys.executable, "-m", "helios.cli", "alert", "--title", "deploy rolled back",
                             "--detail-json", '{"release": "r2"}'], capture_output=True, text=True, env=env,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    payload = json.loads(alert_file.read_text())
    assert (payload["level"], payload["title"], payload["detail"]) == ("critical", "deploy rolled back",
                                                                       {"release": "r2"})
    bad = subprocess.run([sys.executable, "-m", "helios.cli", "alert", "--title", "x", "--detail-json", "[1]"],
                         capture_output=True, text=True, env=env, check=False, timeout=60)
    assert bad.returncode == 2 and "--detail-json" in bad.stderr

"""Alerts go through apprise and reach real receivers on loopback: a JSON webhook (HTTP server), Telegram's Bot API
(pointed at the loopback server), email over plain SMTP and over STARTTLS with a login (aiosmtpd), and a file.
URLs carry secrets: they never reach the logs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from apprise.plugins.telegram import NotifyTelegram

from helios.alerts import Alerter, AlertError, parse_alert_urls, validate_alert_url

from .conftest import free_port


class Receiver:
    """A loopback HTTP server that records every POST and signals each arrival."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true, "result": {}}')
                receiver.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.messages.append((envelope, message_from_bytes(content)))
        return "250 Message accepted for delivery"


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture
def smtp_plain() -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, box
    controller.stop()


@pytest.fixture
def smtp_starttls(tmp_path: Path) -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()

    def authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"helios", b"MAILPASS-SECRET")
        if ok:
            box.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    controller = Controller(box, hostname="127.0.0.1", port=free_port(), tls_context=_self_signed(tmp_path),
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)
    controller.start()
    yield controller.port, box
    controller.stop()


def test_json_webhook_receives_each_level(receiver: Receiver) -> None:
    alerter = Alerter([f"json://127.0.0.1:{receiver.port}/hook"], service="helios-live")
    alerter.send("critical", "EMERGENCY STOP", {"orders_cancelled": 3})
    alerter.send("warning", "daily loss limit reached", {"loss_zar": "501.00"})
    alerter.send("info", "LIVE position closed", {"pair": "BTCZAR"})
    assert alerter.flush(30)
    alerter.close()
    assert [r["path"] for r in receiver.received] == ["/hook"] * 3
    bodies = [r["body"] for r in receiver.received]
    assert [b["type"] for b in bodies] == ["failure", "warning", "info"]
    assert bodies[0]["title"] == "Helios critical: EMERGENCY STOP"
    assert '"orders_cancelled": 3' in bodies[0]["message"] and "helios-live" in bodies[0]["message"]
    assert (alerter.sent, alerter.failed) == (3, 0)


def test_telegram_bot_api_receives_the_alert(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # apprise's Telegram plugin talks to api.telegram.org; point it at the loopback receiver instead.
    monkeypatch.setattr(NotifyTelegram, "notify_url", f"http://127.0.0.1:{receiver.port}/bot")
    alerter = Alerter(["tgram://123456789:AABBCCDDEEFFGGHHIIJJKKLLMMNNOOPPQQRR/4567"])
    alerter.send("critical", "red flag: 3 consecutive losing days", {"days": 3})
    alerter.close()
    sent = [r for r in receiver.received if r["path"].endswith("/sendMessage")]
    assert len(sent) == 1
    assert sent[0]["path"] == "/bot123456789:AABBCCDDEEFFGGHHIIJJKKLLMMNNOOPPQQRR/sendMessage"
    assert str(sent[0]["body"]["chat_id"]) == "4567" and "3 consecutive losing days" in sent[0]["body"]["text"]
    assert (alerter.sent, alerter.failed) == (1, 0)


def test_email_over_plain_smtp_is_delivered(smtp_plain: tuple[int, Mailbox]) -> None:
    port, box = smtp_plain
    alerter = Alerter([f"mailto://127.0.0.1:{port}?from=helios@example.com&to=ops@example.com"])
    alerter.send("critical", "HALTED: win rate below 40%", {"win_rate_pct": "30.0"})
    alerter.close()
    assert len(box.messages) == 1
    envelope, message = box.messages[0]
    assert envelope.rcpt_tos == ["ops@example.com"] and envelope.mail_from == "helios@example.com"
    assert message["Subject"] == "Helios critical: HALTED: win rate below 40%"
    assert "30.0" in str(envelope.content)


def test_email_over_starttls_with_login_is_delivered(smtp_starttls: tuple[int, Mailbox],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    port, box = smtp_starttls
    url = (f"mailtos://helios:MAILPASS-SECRET@127.0.0.1:{port}?mode=starttls&verify=no"
           "&from=helios@example.com&to=ops@example.com")
    with caplog.at_level(logging.DEBUG):
        alerter = Alerter([url])
        alerter.send("critical", "orders not executing", {"failed_orders": 3})
        alerter.close()
    assert box.logins == ["helios"] and len(box.messages) == 1
    assert box.messages[0][1]["Subject"] == "Helios critical: orders not executing"
    assert "MAILPASS-SECRET" not in caplog.text


def test_file_destination_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    alerter = Alerter([f"file://{path}"])
    alerter.send("warning", "first", {"n": 1})
    alerter.send("critical", "second", {"n": 2})
    alerter.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["title"], x["type"]) for x in lines] == [("Helios warning: first", "warning"),
                                                        ("Helios critical: second", "failure")]
    assert '"n": 2' in lines[1]["body"]


def test_a_failing_destination_is_logged_without_its_secrets(receiver: Receiver,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    good = f"json://127.0.0.1:{receiver.port}/ok"
    bad = "jsons://user:SUPERSECRET@127.0.0.1:9/hook?token=SUPERSECRET2"
    with caplog.at_level(logging.DEBUG):
        alerter = Alerter([bad, good])
        alerter.send("warning", "test")
        alerter.close()
    assert (alerter.sent, alerter.failed) == (1, 1)
    assert len(receiver.received) == 1  # a broken destination does not stop the others
    assert "SUPERSECRET" not in caplog.text and "jsons destination failed" in caplog.text


def test_test_alert_reports_delivery_per_destination(receiver: Receiver) -> None:
    ok = Alerter([f"json://127.0.0.1:{receiver.port}/audit"]).test_alert()
    assert ok.ok and ok.to_json() == {"ok": True, "destinations": 1, "delivered": 1, "failed_schemes": []}
    assert receiver.received[0]["body"]["title"] == "Helios info: test alert (helios audit)"
    bad = Alerter([f"json://127.0.0.1:{receiver.port}/audit", "json://127.0.0.1:9/down"]).test_alert()
    assert not bad.ok and bad.delivered == 1 and bad.failed_schemes == ["json"]
    assert not Alerter([]).test_alert().ok  # no destination is not a delivered alert


@pytest.mark.parametrize("url", ["json://127.0.0.1:8080/x", "jsons://hooks.example/abc", "tgram://123:ABC/4567",
                                 "mailto://smtp.example.com?from=a@example.com&to=b@example.com",
                                 "ntfy://helios-alerts", "file:///var/lib/helios/alerts.jsonl"])
def test_the_validator_accepts_what_apprise_accepts(url: str) -> None:
    validate_alert_url(url)  # issue 11: json:// passed audit but `helios run` refused it


@pytest.mark.parametrize("url", ["sms:12345", "https://alerts.example/hook", "telegram://123:ABC@4567",
                                 "nonsense", "mailto://no-host-or-address"])
def test_the_validator_refuses_what_apprise_refuses_naming_only_the_scheme(url: str) -> None:
    with pytest.raises(AlertError, match="ALERT_URLS") as excinfo:
        parse_alert_urls(f"json://127.0.0.1/x, {url}")
    assert url not in str(excinfo.value)


def test_helios_alert_command_uses_the_service_destinations(tmp_path: Path, receiver: Receiver) -> None:
    alert_file = tmp_path / "alerts.jsonl"
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(tmp_path),
           "ALERT_URLS": f"file://{alert_file},json://127.0.0.1:{receiver.port}/deploy"}
    result = subprocess.run([sys.executable, "-m", "helios.cli", "alert", "--title", "deploy rolled back",
                             "--detail-json", '{"release": "r2"}'], capture_output=True, text=True, env=env,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "alert sent to 2 of 2 destination(s)" in result.stdout
    payload = json.loads(alert_file.read_text())
    assert (payload["type"], payload["title"]) == ("failure", "Helios critical: deploy rolled back")
    assert '"release": "r2"' in payload["body"]
    assert receiver.received[0]["body"]["title"] == "Helios critical: deploy rolled back"
    bad = subprocess.run([sys.executable, "-m", "helios.cli", "alert", "--title", "x", "--detail-json", "[1]"],
                         capture_output=True, text=True, env=env, check=False, timeout=60)
    assert bad.returncode == 2 and "--detail-json" in bad.stderr


@pytest.mark.parametrize("command", [["run"], ["alert", "--title", "x"]])
def test_a_destination_apprise_refuses_is_one_configuration_line_not_a_traceback(tmp_path: Path,
                                                                                 command: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(tmp_path / "state"), "HELIOS_API_PORT": str(free_port()),
           "ALERT_URLS": "https://user:HOOKSECRET@alerts.example/hook"}
    result = subprocess.run([sys.executable, "-m", "helios.cli", *command], capture_output=True, text=True, env=env,
                            check=False, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "helios: configuration error: ALERT_URLS: apprise cannot use this destination (scheme 'https'); "
        "see https://github.com/caronc/apprise/wiki for the URL formats"]
    assert "HOOKSECRET" not in result.stderr + result.stdout

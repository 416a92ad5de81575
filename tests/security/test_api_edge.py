"""Issue 10, finding 7: the API's edge. A real ``helios run`` process (real uvicorn) on loopback for what a hostile
client can send over a socket; the middleware itself, called as an ASGI app, for the policy matrix."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helios.api_edge import CONTENT_SECURITY_POLICY, EdgeGuard, EdgePolicy, host_of
from tests.service.conftest import TOKEN, ServiceProcess

BIG = 50 * 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_request(port: int, head: bytes, body_chunks: int = 0, chunk: bytes = b"", chunked: bool = False) -> bytes:
    """Send ``head`` then up to ``body_chunks`` chunks; stop sending as soon as the server answers or closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for _ in range(body_chunks):
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            except ConnectionError:
                break
            if answer:
                break
            piece = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk
            try:
                sock.settimeout(30)
                sock.sendall(piece)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            if chunked and body_chunks:
                with contextlib.suppress(OSError):
                    sock.settimeout(30)
                    sock.sendall(b"0\r\n\r\n")
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionError:
            pass
        return answer


@pytest.fixture
def service(service_factory: Callable[..., ServiceProcess]) -> ServiceProcess:
    svc = service_factory()
    svc.wait_healthy()
    return svc


def _port(svc: ServiceProcess) -> int:
    return int(svc.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_unauthenticated_50mb_post_is_413_before_the_body_is_read(service: ServiceProcess, chunked: bool) -> None:
    port = _port(service)
    before = rss_kib(service.proc.pid)
    length = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {BIG}\r\n".encode()
    head = (b"POST /api/emergency-stop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + length + b"\r\n")
    answer = raw_request(port, head, body_chunks=BIG // 65536, chunk=b"x" * 65536, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    after = rss_kib(service.proc.pid)
    assert after - before < 8 * 1024, f"RSS grew by {after - before} KiB"
    assert service.get("/api/health").status_code == 200
    assert service.get("/api/status").json()["trading_state"] == "ACTIVE"  # nothing was stopped


def test_a_foreign_host_header_is_refused(service: ServiceProcess) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not read the account."""
    answer = raw_request(_port(service), b"GET /api/status HTTP/1.1\r\nHost: evil.example:8100\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 421"), answer[:200]
    assert b"evil" not in answer.split(b"\r\n\r\n", 1)[0]
    assert service.get("/api/status", headers={"Host": "localhost:8100"}).status_code == 200


def test_docs_pages_are_off_and_openapi_stays(service: ServiceProcess) -> None:
    assert service.get("/docs").status_code == 404
    assert service.get("/redoc").status_code == 404
    assert service.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("path", ["/dashboard.html", "/api/status", "/static/dashboard.js", "/openapi.json"])
def test_security_headers_on_every_answer(service: ServiceProcess, path: str) -> None:
    response = service.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self';" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_dashboard_loads_no_script_from_elsewhere(service: ServiceProcess) -> None:
    html = service.get("/dashboard.html").text
    assert "<script>" not in html  # inline script would need 'unsafe-inline'
    assert '<script src="/static/dashboard.js">' in html
    assert "http://" not in html and "https://" not in html


# --- the policy matrix, on the middleware alone ---------------------------------------------------------------
def call(guard: EdgeGuard, path: str, *, host: str = "127.0.0.1:8100",
         headers: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[int, bool]:
    """(status, whether the application behind the guard was reached)."""
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard.app = app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path,
             "headers": [(b"host", host.encode()), *headers]}
    asyncio.run(guard(scope, receive, send))
    return int(sent[0]["status"]), bool(reached)


def noop_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # replaced in call()
        raise AssertionError("unused")
    return app


@pytest.mark.parametrize("path", ["/api/status", "/api/health", "/api/orders", "/metrics", "/openapi.json",
                                  "/api/emergency-stop"])
def test_non_loopback_bind_authenticates_every_data_endpoint(path: str) -> None:
    guard = EdgeGuard(noop_app(), EdgePolicy(api_host="192.0.2.10", token=TOKEN))
    assert call(guard, path, host="192.0.2.10:8100") == (401, False)
    assert call(guard, path, host="192.0.2.10:8100",
                headers=((b"authorization", f"Bearer {TOKEN}".encode()),)) == (200, True)
    assert call(guard, "/dashboard.html", host="192.0.2.10:8100") == (200, True)  # data-free page shell


def test_loopback_bind_keeps_reads_open() -> None:
    guard = EdgeGuard(noop_app(), EdgePolicy(api_host="127.0.0.1", token=TOKEN))
    assert call(guard, "/api/status") == (200, True)
    assert call(guard, "/api/status", host="[::1]:8100") == (200, True)
    assert call(guard, "/api/status", host="attacker.test") == (421, False)


def test_wildcard_bind_trusts_only_loopback_names() -> None:
    guard = EdgeGuard(noop_app(), EdgePolicy(api_host="0.0.0.0", token=TOKEN))
    assert call(guard, "/api/status", host="0.0.0.0:8100")[0] == 421
    assert call(guard, "/api/status", headers=((b"authorization", f"Bearer {TOKEN}".encode()),)) == (200, True)
    assert call(guard, "/api/status") == (401, False)


@pytest.mark.parametrize(("header", "expected"), [("127.0.0.1:8100", "127.0.0.1"), ("LOCALHOST", "localhost"),
                                                  ("[::1]:8100", "::1"), ("evil.example:80", "evil.example"),
                                                  ("", "")])
def test_host_of(header: str, expected: str) -> None:
    assert host_of(header) == expected

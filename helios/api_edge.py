"""The API's edge: what every request passes before any handler, authentication or body parsing runs.

One ASGI middleware, in this order:

1. **Host allow-list** (DNS rebinding): the ``Host`` header must name loopback or the configured API host;
   anything else is answered 421 without touching the application.
2. **Body-size cap** (default 16 KiB): a declared ``Content-Length`` above the cap is answered 413 before a byte of
   the body is read; a body without a length (chunked) is read only up to the cap, then refused the same way.
   Memory stays bounded whatever an unauthenticated client sends.
3. **Authentication of everything on a non-loopback bind**: when the API listens beyond loopback, every data and
   control path needs the bearer token, read paths included; only the dashboard's data-free page shell is open.
4. **Security headers** on every answer: a strict Content-Security-Policy (no third-party script or style, no
   framing), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 16 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
#: Paths that carry no account data: open even on a non-loopback bind (the page then asks for the token).
DATA_FREE_PATHS = frozenset({"/dashboard.html", "/favicon.ico"})
DATA_FREE_PREFIXES = ("/static/",)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(api_host: str) -> frozenset[str]:
    """Host names a browser may put in ``Host`` for this service (without the port)."""
    names = {"127.0.0.1", "localhost", "::1"}
    if api_host not in ("0.0.0.0", "::"):  # a wildcard bind names no host: only loopback names are trusted
        names.add(api_host.strip("[]").lower())
    return frozenset(names)


def host_of(header: str) -> str:
    """``Host`` header value without its port, lower-case; IPv6 brackets removed."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class EdgePolicy:
    api_host: str
    token: str | None
    max_body_bytes: int = MAX_BODY_BYTES

    @property
    def auth_everything(self) -> bool:
        return not is_loopback(self.api_host)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _authorised(scope: Scope, token: str | None) -> bool:
    if token is None:
        return False
    scheme, _, presented = (_header(scope, b"authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


class EdgeGuard:
    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app = app
        self.policy = policy
        self.hosts = allowed_hosts(policy.api_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        host = host_of(_header(scope, b"host") or "")
        if host not in self.hosts:
            await _answer(send_with_headers, 421, "unknown Host header: this service answers only to "
                                                  + ", ".join(sorted(self.hosts)))
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send_with_headers, 400, "Content-Length: not a number")
                return
            if int(declared) > self.policy.max_body_bytes:
                await _answer(send_with_headers, 413,
                              f"request body over {self.policy.max_body_bytes} bytes")
                return
        path = str(scope.get("path", ""))
        data_free = path in DATA_FREE_PATHS or path.startswith(DATA_FREE_PREFIXES)
        if self.policy.auth_everything and not data_free and not _authorised(scope, self.policy.token):
            await _answer(send_with_headers, 401, "this API listens beyond loopback: every endpoint needs the "
                                                  "bearer token", extra=((b"www-authenticate", b"Bearer"),))
            return
        if declared is None and _header(scope, b"transfer-encoding") is not None:
            body = await _read_capped(receive, self.policy.max_body_bytes)
            if body is None:
                await _answer(send_with_headers, 413, f"request body over {self.policy.max_body_bytes} bytes")
                return
            receive = _replay(body)
        await self.app(scope, receive, send_with_headers)


async def _read_capped(receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``cap`` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _answer(send: Send, status: int, detail: str,
                  extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"), *extra],
    })
    await send({"type": "http.response.body", "body": body})

"""A loopback HTTP server that answers with VALR's documented examples verbatim (no logic, no signing checks).

The exchange double has logic; this replays exactly what VALR's documents show, so a client test against it
proves the client reads VALR's own shapes, not the double's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Replay:
    """Routes ``(METHOD, path without query)`` -> a list of answers (the last one repeats)."""

    routes: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    received: list[tuple[str, str, bytes]] = field(default_factory=list)
    url: str = ""

    def on(self, method: str, path: str, *answers: Answer) -> Replay:
        self.routes[(method.upper(), path)] = list(answers)
        return self

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.received if m == method and urlsplit(p).path == path)


@contextmanager
def replay_server(replay: Replay) -> Iterator[Replay]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with lock:
                replay.received.append((self.command, self.path, raw))
                queue = replay.routes.get((self.command, urlsplit(self.path).path))
                answer = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Answer(599, None)
            data = b"" if answer.body is None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    replay.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield replay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""What every real-host test (deploytest and security) shares: an operator command's result, and the two read-only
views it takes of a sandbox host's Helios API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    """An operator command's exit code, its combined output and how long it took."""

    rc: int
    out: str
    seconds: float


def api_get(port: int, path: str) -> dict[str, Any]:
    """GET a JSON endpoint on 127.0.0.1:port; an error body as it is, ``{}`` while the service restarts."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}"))
    except OSError:  # restarting: refused / reset
        return {}


def wait_healthy(api: Callable[[str], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """Poll /api/health until it says ok (the service's own answer is the event), else fail with its last body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api("/api/health")
        if body.get("status") == "ok":
            return body
        time.sleep(0.5)
    raise AssertionError(f"not healthy: {body}")

"""Shared helpers for the bench scripts (numbers printed, never asserted)."""

from __future__ import annotations

import socket
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, values: Sequence[float], unit: str, target: str = "") -> str:
    return (f"{name:<48} n={len(values):<6} p50={percentile(values, 50):9.3f}{unit} "
            f"p99={percentile(values, 99):9.3f}{unit} max={max(values):9.3f}{unit} "
            f"mean={statistics.fmean(values):9.3f}{unit}" + (f"   target {target}" if target else ""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

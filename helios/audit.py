"""Pre-live audit (``helios audit``). The full LIVE audit arrives with the VALR client."""

from __future__ import annotations

from typing import Any

from helios.config import Settings


def run_audit(settings: Settings) -> dict[str, Any]:
    checks = [{"name": "mode", "ok": settings.mode.value == "LIVE", "required": True,
               "detail": f"TRADING_MODE={settings.mode.value}"}]
    return {"passed": all(c["ok"] for c in checks if c["required"]), "checks": checks}


def render_audit(result: dict[str, Any]) -> str:
    return "\n".join(f"{'PASS' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}" for c in result["checks"])

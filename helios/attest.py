"""Sign-offs: the plan's human checks, recorded in the journal (``helios attest ITEM --by NAME [--note N]``).

``missing_signoffs`` is pure: given the recorded sign-offs, it lists what ``helios audit`` (before ``to-live``) and
``helios ramp`` (before each raise) still need. A ramp's sign-offs must be newer than the current stage.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

ITEMS: dict[str, str] = {
    "code-review": "trading execution code reviewed (plan: Code Review, 'get second opinion')",
    "api-key-permissions": "VALR API key permissions checked: trade and view only, no withdrawals",
    "balance-check": "starting VALR account balance verified and recorded",
    "emergency-contacts": "emergency contacts listed",
    "rollback-plan": "rollback plan read and understood (invoke rollback, invoke to-paper)",
    "kill-switch-test": "emergency stop tested (dashboard and helios emergency-stop --direct)",
    "manual-test-trade": "1-2 minimal manual test trades placed and checked on VALR",
    "stop-loss-test": "a stop-loss exit observed on VALR and in the journal",
    "take-profit-test": "a take-profit exit observed on VALR and in the journal",
    "daily-review": "the day's trades and P&L reviewed against VALR",
    "weekly-review": "the week's trades, P&L reconciliation and win rate reviewed",
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "to-live": ("code-review", "api-key-permissions", "balance-check", "emergency-contacts", "rollback-plan",
                "kill-switch-test"),
    "ramp": ("weekly-review",),
}

Purpose = Literal["to-live", "ramp"]


class AttestError(Exception):
    pass


def validate_item(item: str) -> str:
    if item not in ITEMS:
        raise AttestError(f"ITEM: unknown sign-off {item!r} (one of: {', '.join(ITEMS)})")
    return item


def missing_signoffs(for_: Purpose, signed: Iterable[tuple[str, datetime]],
                     since: datetime | None = None) -> list[str]:
    """Required items with no sign-off (at or after ``since`` when given), in the order REQUIRED lists them."""
    have = {item for item, at in signed if since is None or at >= since}
    return [item for item in REQUIRED[for_] if item not in have]

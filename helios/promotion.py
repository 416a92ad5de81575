"""Is this release promoted? A deployed release starts with NEW ENTRIES BLOCKED until the deploy flow promotes it
after its health gate (issue 9): a release failing its gate never opens a position.

The deploy helper (helios_ops/deployctl.py) writes the promoted release id into a root-owned file
(``/opt/helios/promoted``, from helios_ops/layout.json); the service only reads it. A process that does not run from
a deployed release (tests, the demo from a checkout) is not subject to promotion.

Exits (stop-loss, take-profit) are never blocked: an un-promoted release trades as if REDUCING.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from helios.models import TradingState

PROMOTED_FILE = Path("/opt/helios/promoted")
_RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7}")


def running_release(prefix: str = sys.prefix) -> str | None:
    """The release id of the venv this process runs from (``/opt/helios/releases/<id>/venv``), else None."""
    name = Path(prefix).parent.name
    return name if _RELEASE_ID.fullmatch(name) else None


def gate_state(state: TradingState, release: str | None, promoted: str | None) -> TradingState:
    """The trading state the safety gates see: ACTIVE becomes REDUCING (no new entries, exits run) while a deployed
    release is not the promoted one."""
    if release is None or release == promoted or state is not TradingState.ACTIVE:
        return state
    return TradingState.REDUCING


def read_promoted(path: Path = PROMOTED_FILE) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def effective_state(state: TradingState) -> TradingState:
    """``gate_state`` for this process, reading the promotion file (tiny, read per order decision)."""
    release = running_release()
    return state if release is None else gate_state(state, release, read_promoted())

"""The one owner of the trading state: the transition table and the one ``transition()`` that writes it.

    ACTIVE   --daily loss / reconciliation-->  REDUCING   (no new entries; exits still run)
    ACTIVE | REDUCING --emergency stop-->  HALTED          (open orders cancelled; nothing new is sent)
    REDUCING | HALTED --authenticated resume-->  ACTIVE

Every writer (the engine, the API, ``helios emergency-stop --direct``, ``helios resume --direct``) calls
``transition()``. It is a compare-and-set against the durable state, inside one SQLite write transaction
(``BEGIN IMMEDIATE``), fsynced at commit (``synchronous=FULL``). The durable state's *version* is the id of the last
``state_changes`` row: a resume carries the version it saw before it started reconciling, and cannot commit when
anything changed since (a stop that arrived meanwhile wins). HALTED always wins: nothing but a resume leaves it.

A refusal raises ``TransitionRefused`` with a named ``reason`` and the durable state it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from helios.models import TradingState

if TYPE_CHECKING:
    from helios.journal import Journal

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED

#: (from, to) -> who may take it. "resume" needs an authenticated, reconciled ``Resume``.
TRANSITIONS: dict[tuple[TradingState, TradingState], str] = {
    (ACTIVE, REDUCING): "engine",
    (ACTIVE, HALTED): "stop",
    (REDUCING, HALTED): "stop",
    (REDUCING, ACTIVE): "resume",
    (HALTED, ACTIVE): "resume",
}

#: Refusal reasons (stable names: the API and the CLI show them).
NOT_ALLOWED = "transition_not_allowed"
HALTED_WINS = "halted_wins"
RESUME_REQUIRED = "resume_required"
STATE_CHANGED = "state_changed_since_resume_started"
JOURNAL_UNAVAILABLE = "journal_unavailable"


class TransitionRefused(Exception):
    """The transition was not written. ``reason`` is one of the names above; ``current`` the durable state seen
    (None when the journal could not be read)."""

    def __init__(self, reason: str, detail: str, current: TradingState | None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.current = current


@dataclass(frozen=True)
class Snapshot:
    state: TradingState
    version: int  # id of the last state_changes row; 0 before the first change


@dataclass(frozen=True)
class Resume:
    """An authenticated resume: who asked, and the durable version seen when its reconciliation started."""

    actor: str
    seen_version: int


@dataclass(frozen=True)
class Transition:
    previous: TradingState
    state: TradingState
    version: int
    changed: bool  # False when nothing was written (the state already was the target; a stop always writes)


def check(current: Snapshot, target: TradingState, resume: Resume | None) -> None:
    """Raise ``TransitionRefused`` unless the table allows ``current -> target`` for this writer."""
    if target is ACTIVE:
        if resume is None:
            raise TransitionRefused(RESUME_REQUIRED, "only an authenticated resume may set ACTIVE", current.state)
        if resume.seen_version != current.version:
            raise TransitionRefused(
                STATE_CHANGED,
                f"the trading state changed to {current.state.value} while the resume was reconciling "
                f"(version {resume.seen_version} -> {current.version}): resume again",
                current.state,
            )
        return
    if current.state is target:
        return
    if current.state is HALTED:
        raise TransitionRefused(HALTED_WINS, f"trading is HALTED: only a resume leaves it (not {target.value})",
                                current.state)
    if (current.state, target) not in TRANSITIONS:
        raise TransitionRefused(NOT_ALLOWED, f"{current.state.value} -> {target.value} is not allowed",
                                current.state)


def read(journal: Journal) -> Snapshot:
    state, version = journal.read_state_version()
    return Snapshot(state, version)


def transition(
    journal: Journal,
    target: TradingState,
    *,
    reason: str,
    actor: str,
    now: datetime,
    resume: Resume | None = None,
    busy_timeout_s: float = 10.0,
) -> Transition:
    """Compare-and-set the durable state to ``target``; durable at return. Raises ``TransitionRefused``."""
    if not reason.strip():
        raise TransitionRefused(NOT_ALLOWED, "a state change needs a reason", None)

    def decide(state: TradingState, version: int) -> bool:
        check(Snapshot(state, version), target, resume)
        # Every stop is written, even over HALTED: it bumps the version, so a resume begun before it cannot commit.
        return state is not target or target is HALTED

    try:
        previous, version, changed = journal.compare_and_set_state(
            decide, target, reason, actor, now, busy_timeout_s=busy_timeout_s,
        )
    except TransitionRefused:
        raise
    except Exception as exc:  # locked, disk full, corrupt: the caller decides (a stop still cancels)
        raise TransitionRefused(JOURNAL_UNAVAILABLE, f"{type(exc).__name__}: {exc}", None) from exc
    return Transition(previous=previous, state=target, version=version, changed=changed)

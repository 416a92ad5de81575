"""Capital stages and the ramp between them: pure decisions over facts read from the journal.

Stages (defaults from the plan: R1,000 -> R5,000 -> R10,000, then steps the operator configures) are recorded in
the journal's ``capital_stages`` table by ``helios ramp --to ZAR --reason R``. ``ramp_decision`` accepts a raise only
when every condition holds, and otherwise names each one that does not:

* ``next_stage``   - the target is the next configured stage (no skipping; lowering is always accepted);
* ``min_time``     - the current stage has run its minimum time (24 h for the first, 1 week after that);
* ``metrics``      - every success metric of the stage's phase passed in the stage's window (no data is no pass);
* ``red_flags``    - no red flag fired since the stage began;
* ``reconciliation`` - reconciliation with VALR was clean throughout the stage;
* ``signoff``      - the sign-offs ``helios.attest`` requires for a ramp, recorded during the stage.

``capital_at_risk_gate`` keeps capital at risk (open positions at market + pending entries + the new order) within
the current stage's limit; it returns a named rejection for the engine's gates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from helios.metrics import Check, Outcome

DEFAULT_STAGES = (Decimal(1000), Decimal(5000), Decimal(10000))
DEFAULT_MIN_TIMES = (timedelta(hours=24), timedelta(weeks=1))  # the last one applies to every later stage
GATE_NAME = "capital_stage"


@dataclass(frozen=True)
class StageConfig:
    steps: tuple[Decimal, ...] = DEFAULT_STAGES
    min_times: tuple[timedelta, ...] = DEFAULT_MIN_TIMES

    def __post_init__(self) -> None:
        if not self.steps or any(s <= 0 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError("capital stages must be positive and strictly increasing")
        if not self.min_times:
            raise ValueError("capital stages need at least one minimum time")

    def min_time(self, index: int) -> timedelta:
        return self.min_times[min(index, len(self.min_times) - 1)]

    def index_of(self, limit_zar: Decimal) -> int | None:
        return self.steps.index(limit_zar) if limit_zar in self.steps else None


@dataclass(frozen=True)
class CurrentStage:
    limit_zar: Decimal
    entered_at: datetime


def current_stage(history: Sequence[tuple[Decimal, datetime]]) -> CurrentStage | None:
    """The stage in force: the last one recorded (``history`` oldest first)."""
    if not history:
        return None
    limit, at = history[-1]
    return CurrentStage(limit, at)


@dataclass(frozen=True)
class Accept:
    to_zar: Decimal


@dataclass(frozen=True)
class Refusal:
    reasons: tuple[tuple[str, str], ...]  # (condition, what is wrong)

    def __str__(self) -> str:
        return "; ".join(f"{name}: {detail}" for name, detail in self.reasons)


@dataclass(frozen=True)
class RampFacts:
    """What the stage achieved, for ``ramp_decision`` (collected from the journal by ``helios.report``)."""

    checks: Sequence[Check] = ()
    red_flags: Sequence[str] = ()
    reconciliation_issues: Sequence[str] = ()
    missing_signoffs: Sequence[str] = field(default_factory=list)


def ramp_decision(*, stage: CurrentStage | None, to_zar: Decimal, now: datetime, facts: RampFacts,
                  cfg: StageConfig | None = None) -> Accept | Refusal:
    config = cfg or StageConfig()
    if to_zar <= 0:
        return Refusal((("next_stage", f"R{to_zar} is not a capital amount"),))
    if stage is None:
        if to_zar == config.steps[0]:
            return Accept(to_zar)
        return Refusal((("next_stage", f"no stage yet: the first stage is R{config.steps[0]}"),))
    if to_zar <= stage.limit_zar:
        return Accept(to_zar)  # lowering the capital at risk is always allowed
    index = config.index_of(stage.limit_zar)
    if index is None:
        return Refusal((("next_stage", f"the current stage R{stage.limit_zar} is not a configured stage "
                                       f"({', '.join(f'R{s}' for s in config.steps)})"),))
    if index + 1 >= len(config.steps):
        return Refusal((("next_stage", f"R{stage.limit_zar} is the last configured stage: configure the next "
                                       "steps first"),))
    wanted = config.steps[index + 1]
    reasons: list[tuple[str, str]] = []
    if to_zar != wanted:
        reasons.append(("next_stage", f"the next stage after R{stage.limit_zar} is R{wanted}, not R{to_zar}"))
    needed = config.min_time(index)
    ran = now - stage.entered_at
    if ran < needed:
        reasons.append(("min_time", f"the stage has run {_hours(ran)} of the {_hours(needed)} it needs"))
    not_passed = [c for c in facts.checks if c.outcome is not Outcome.PASS]
    if not facts.checks:
        reasons.append(("metrics", "no success metric was evaluated"))
    elif not_passed:
        reasons.append(("metrics", ", ".join(f"{c.name} {c.outcome.value} ({c.detail})" for c in not_passed)))
    if facts.red_flags:
        reasons.append(("red_flags", "; ".join(facts.red_flags)))
    if facts.reconciliation_issues:
        reasons.append(("reconciliation", "; ".join(facts.reconciliation_issues)))
    if facts.missing_signoffs:
        reasons.append(("signoff", "missing: " + ", ".join(facts.missing_signoffs)
                        + " (helios attest ITEM --by NAME)"))
    return Refusal(tuple(reasons)) if reasons else Accept(to_zar)


def _hours(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(frozen=True)
class StageRejection:
    gate: str
    detail: str


def capital_at_risk(positions: Iterable[tuple[Decimal, Decimal]],
                    pending_entries: Iterable[tuple[Decimal, Decimal]]) -> Decimal:
    """Open positions at market plus pending entries, as (quantity, price) pairs, in ZAR."""
    return (sum((q * p for q, p in positions), Decimal(0))
            + sum((q * p for q, p in pending_entries), Decimal(0)))


def capital_at_risk_gate(*, stage_limit_zar: Decimal | None, positions: Iterable[tuple[Decimal, Decimal]],
                         pending_entries: Iterable[tuple[Decimal, Decimal]],
                         order_value_zar: Decimal) -> StageRejection | None:
    """Refuse an entry that would take capital at risk above the current stage (no stage: nothing may enter)."""
    if stage_limit_zar is None:
        return StageRejection(GATE_NAME, "no capital stage recorded (helios ramp --to 1000 --reason go-live)")
    at_risk = capital_at_risk(positions, pending_entries)
    if at_risk + order_value_zar > stage_limit_zar:
        return StageRejection(GATE_NAME, f"capital at risk R{at_risk:.2f} + this order R{order_value_zar:.2f} "
                                         f"would exceed the stage limit R{stage_limit_zar}")
    return None

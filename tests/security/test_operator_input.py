"""Issue 10, finding 6: a reason that starts with "-" must not make an emergency stop fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helios import cli
from helios.journal import Journal
from helios.models import Mode, TradingState
from tests.service.conftest import base_env


@pytest.mark.parametrize("reason", ["-urgent", "--urgent now", "-"])
def test_direct_emergency_stop_accepts_a_reason_starting_with_a_dash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], reason: str) -> None:
    state = tmp_path / "state"
    for key, value in base_env(state).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HELIOS_ENV_FILE", raising=False)
    code = cli.main(["emergency-stop", "--direct", "--json", "--reason", reason])
    assert code == 0, capsys.readouterr()
    journal = Journal.open(state, Mode.PAPER)
    try:
        assert journal.read_state() is TradingState.HALTED
        assert journal.last_state_change()["reason"] == reason  # type: ignore[index]
    finally:
        journal.close()
    assert json.loads(capsys.readouterr().out)["trading_state"] == "HALTED"


def test_a_real_option_after_reason_is_not_swallowed() -> None:
    parser = cli.build_parser()
    known = cli._option_strings(parser)
    assert cli.join_free_text_values(["emergency-stop", "--reason", "--direct"], known) == [
        "emergency-stop", "--reason", "--direct"]
    assert cli.join_free_text_values(["resume", "--reason", "-x", "--direct"], known) == [
        "resume", "--reason=-x", "--direct"]

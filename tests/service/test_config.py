"""Configuration is fail-closed: every invalid variable refuses to start with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helios.config import ConfigError, load_settings, parse_env_file
from helios.models import Mode

LIVE = {
    "TRADING_MODE": "LIVE",
    "ENABLE_PAPER_TRADING": "false",
    "VALR_API_KEY": "k" * 32,
    "VALR_API_SECRET": "s" * 64,
    "HELIOS_API_TOKEN": "t" * 32,
    "HELIOS_STATE_DIR": "/tmp/helios-test",
}


def test_defaults_are_paper_and_the_contract_values() -> None:
    settings = load_settings({})
    assert settings.mode is Mode.PAPER
    assert not settings.live_explicitly_enabled
    assert str(settings.max_position_size_zar) == "1000"
    assert str(settings.max_portfolio_risk_pct) == "10"
    assert str(settings.max_daily_loss_zar) == "500"
    assert settings.max_open_positions == 3
    assert settings.pairs == ("BTCZAR",)
    assert settings.helios_market_data == "valr"
    assert str(settings.helios_state_dir) == "/var/lib/helios"
    assert (settings.helios_api_host, settings.helios_api_port) == ("127.0.0.1", 8100)
    assert settings.valr_base_url == "https://api.valr.com"


def test_the_explicit_live_configuration_is_live() -> None:
    settings = load_settings(LIVE)
    assert settings.mode is Mode.LIVE and settings.live_explicitly_enabled


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TRADING_MODE": "live"}, "TRADING_MODE"),
        ({"TRADING_MODE": "PAPERX"}, "TRADING_MODE"),
        ({"TRADING_MODE": ""}, "TRADING_MODE"),
        ({"ENABLE_PAPER_TRADING": "maybe"}, "ENABLE_PAPER_TRADING"),
        ({"ENABLE_PAPER_TRADING": "false"}, "ENABLE_PAPER_TRADING"),  # PAPER with paper disabled: disagreement
        ({**LIVE, "ENABLE_PAPER_TRADING": "true"}, "ENABLE_PAPER_TRADING"),  # LIVE with paper enabled
        ({**LIVE, "VALR_API_KEY": ""}, "VALR_API_KEY"),
        ({**LIVE, "VALR_API_SECRET": "  "}, "VALR_API_SECRET"),
        ({**LIVE, "HELIOS_API_TOKEN": ""}, "HELIOS_API_TOKEN"),
        ({"HELIOS_API_TOKEN": "short"}, "HELIOS_API_TOKEN"),
        ({**LIVE, "VALR_BASE_URL": "http://api.valr.com"}, "VALR_BASE_URL"),
        ({"VALR_BASE_URL": "ftp://x"}, "VALR_BASE_URL"),
        ({"MAX_POSITION_SIZE_ZAR": "0"}, "MAX_POSITION_SIZE_ZAR"),
        ({"MAX_POSITION_SIZE_ZAR": "-5"}, "MAX_POSITION_SIZE_ZAR"),
        ({"MAX_POSITION_SIZE_ZAR": "abc"}, "MAX_POSITION_SIZE_ZAR"),
        ({"MAX_POSITION_SIZE_ZAR": "NaN"}, "MAX_POSITION_SIZE_ZAR"),
        ({"MAX_POSITION_SIZE_ZAR": "Infinity"}, "MAX_POSITION_SIZE_ZAR"),
        ({"MAX_PORTFOLIO_RISK_PCT": "0"}, "MAX_PORTFOLIO_RISK_PCT"),
        ({"MAX_PORTFOLIO_RISK_PCT": "100.01"}, "MAX_PORTFOLIO_RISK_PCT"),
        ({"MAX_DAILY_LOSS_ZAR": "0"}, "MAX_DAILY_LOSS_ZAR"),
        ({"MAX_OPEN_POSITIONS": "0"}, "MAX_OPEN_POSITIONS"),
        ({"MAX_OPEN_POSITIONS": "2.5"}, "MAX_OPEN_POSITIONS"),
        ({"HELIOS_PAIRS": ""}, "HELIOS_PAIRS"),
        ({"HELIOS_PAIRS": "BTCUSD"}, "HELIOS_PAIRS"),
        ({"HELIOS_PAIRS": "btczar"}, "HELIOS_PAIRS"),
        ({"HELIOS_PAIRS": "BTCZAR,BTCZAR"}, "HELIOS_PAIRS"),
        ({"HELIOS_MARKET_DATA": "random"}, "HELIOS_MARKET_DATA"),
        ({"HELIOS_STATE_DIR": "relative/dir"}, "HELIOS_STATE_DIR"),
        ({"HELIOS_API_PORT": "70000"}, "HELIOS_API_PORT"),
        ({"HELIOS_API_PORT": "http"}, "HELIOS_API_PORT"),
        ({"HELIOS_API_HOST": "0.0.0.0"}, "HELIOS_API_TOKEN"),  # exposed without a token
        ({"HELIOS_MAX_POSITON_SIZE": "5"}, "HELIOS_MAX_POSITON_SIZE"),  # typo of a Helios variable
        # issue 12: the rollout settings
        ({"HELIOS_CAPITAL_STAGES_ZAR": "5000,1000"}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_CAPITAL_STAGES_ZAR": "1000,1000"}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_CAPITAL_STAGES_ZAR": "0,1000"}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_CAPITAL_STAGES_ZAR": "1000,,5000"}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_CAPITAL_STAGES_ZAR": "R1000"}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_CAPITAL_STAGES_ZAR": "1000,Infinity"}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_CAPITAL_STAGES_ZAR": ""}, "HELIOS_CAPITAL_STAGES_ZAR"),
        ({"HELIOS_STAGE_MIN_HOURS": "24,-1"}, "HELIOS_STAGE_MIN_HOURS"),
        ({"HELIOS_STAGE_MIN_HOURS": "a day"}, "HELIOS_STAGE_MIN_HOURS"),
        ({"HELIOS_REDFLAG_MIN_TRADES": "0"}, "HELIOS_REDFLAG_MIN_TRADES"),
        ({"HELIOS_REDFLAG_WIN_RATE_PCT": "101"}, "HELIOS_REDFLAG_WIN_RATE_PCT"),
        ({"HELIOS_REDFLAG_WIN_RATE_PCT": "NaN"}, "HELIOS_REDFLAG_WIN_RATE_PCT"),
        ({"HELIOS_REDFLAG_LOSING_DAYS": "0"}, "HELIOS_REDFLAG_LOSING_DAYS"),
        ({"HELIOS_REDFLAG_FAILED_ORDERS": "-1"}, "HELIOS_REDFLAG_FAILED_ORDERS"),
        ({"HELIOS_REDFLAG_RESTARTS": "2.5"}, "HELIOS_REDFLAG_RESTARTS"),
        ({"HELIOS_REDFLAG_PAPER": "maybe"}, "HELIOS_REDFLAG_PAPER"),
        ({"HELIOS_REDFLAG_WINRATE_PCT": "40"}, "HELIOS_REDFLAG_WINRATE_PCT"),  # typo: refused, never defaulted
    ],
)
def test_every_invalid_variable_refuses_with_one_line_naming_it(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(variable + ":"), message


def test_secrets_never_appear_in_errors_repr_or_masked_output() -> None:
    env = {**LIVE, "VALR_API_KEY": "KEY-abcdefghijklmnop-1234", "VALR_API_SECRET": "SECRET-zyxwvutsrqponmlk"}
    settings = load_settings(env)
    text = repr(settings) + str(settings.masked())
    assert "SECRET-zyxwvutsrqponmlk" not in text
    assert "KEY-abcdefghijklmnop" not in text and "t" * 32 not in text
    assert settings.masked()["VALR_API_KEY"] == "****1234"
    with pytest.raises(ConfigError) as excinfo:
        load_settings({**env, "HELIOS_API_TOKEN": "tooshort"})
    assert "tooshort" not in str(excinfo.value)


def test_env_file_parsing_handles_quotes_comments_and_rejects_garbage() -> None:
    values = parse_env_file("# comment\nTRADING_MODE=PAPER\nexport HELIOS_PAIRS='BTCZAR,ETHZAR'\n\n"
                            'ALERT_URLS="file:///tmp/a.jsonl"\n')
    assert values == {"TRADING_MODE": "PAPER", "HELIOS_PAIRS": "BTCZAR,ETHZAR", "ALERT_URLS": "file:///tmp/a.jsonl"}
    with pytest.raises(ConfigError, match="line 2"):
        parse_env_file("A=1\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match="TRADNG_MODE: unknown variable"):
        load_settings({"TRADNG_MODE": "LIVE"}, strict_unknown=True)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "helios.cli", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60, check=False)


def test_check_config_prints_masked_config_and_exits_zero(tmp_path: Path) -> None:
    env_file = tmp_path / "helios.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in LIVE.items()) + "\n")
    result = _cli("check-config", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    assert "configuration OK (LIVE)" in result.stdout
    assert "s" * 64 not in result.stdout and "t" * 32 not in result.stdout
    assert "VALR_API_SECRET=****" in result.stdout


def test_run_refuses_bad_config_before_anything_with_one_line(tmp_path: Path) -> None:
    result = _cli("run", env={"TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "true",
                              "HELIOS_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "ENABLE_PAPER_TRADING" in result.stderr
    assert not (tmp_path / "state").exists(), "nothing was created: no journal, no lock"


# --- issue 8, finding 12: a misspelt limit was silently replaced by its default --------------------------------------
@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("MAX_POSITON_SIZE_ZAR", "MAX_POSITION_SIZE_ZAR"),
        ("TRADING_MOD", "TRADING_MODE"),
        ("ENABLE_PAPER_TRADNG", "ENABLE_PAPER_TRADING"),
        ("VALR_API_SECRT", "VALR_API_SECRET"),
        ("ALERT_URL", "ALERT_URLS"),
        ("HELIOS_EMERGENCY_STOP_TIMEOUT", "HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS"),
    ],
)
def test_unknown_variable_in_a_reserved_prefix_is_refused_naming_its_closest_valid_name(
    variable: str, closest: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings({"TRADING_MODE": "PAPER", variable: "300"})  # as `helios run` reads the process environment
    message = str(excinfo.value)
    assert message.startswith(f"{variable}:") and closest in message and "\n" not in message


def test_lower_case_duplicate_of_a_variable_is_refused_in_the_environment_and_in_env_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^trading_mode: .*TRADING_MODE"):
        load_settings({"TRADING_MODE": "PAPER", "trading_mode": "LIVE"})
    with pytest.raises(ConfigError, match=r"^max_position_size_zar: .*MAX_POSITION_SIZE_ZAR"):
        load_settings({"max_position_size_zar": "300"})  # instead of the upper-case name
    env_file = tmp_path / "helios.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in LIVE.items()) + "\nTrading_Mode=PAPER\n")
    result = _cli("check-config", "--env-file", str(env_file))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "Trading_Mode" in result.stderr and "TRADING_MODE" in result.stderr


def test_run_from_the_process_environment_refuses_a_misspelt_limit(tmp_path: Path) -> None:
    result = _cli("run", env={"TRADING_MODE": "PAPER", "ENABLE_PAPER_TRADING": "true",
                              "HELIOS_STATE_DIR": str(tmp_path / "state"), "MAX_POSITON_SIZE_ZAR": "300"})
    assert result.returncode == 2, result.stderr
    assert "MAX_POSITON_SIZE_ZAR" in result.stderr and "MAX_POSITION_SIZE_ZAR" in result.stderr
    assert not (tmp_path / "state").exists()


def test_unrelated_variables_outside_the_reserved_prefixes_are_ignored() -> None:
    settings = load_settings({"TRADING_MODE": "PAPER", "MAXIMUM": "1", "PATH": "/usr/bin", "HOME": "/root"})
    assert settings.mode is Mode.PAPER


def test_rollout_settings_default_to_the_plan_and_parse() -> None:
    from datetime import timedelta
    from decimal import Decimal

    defaults = load_settings({})
    assert defaults.capital_stages == (Decimal(1000), Decimal(5000), Decimal(10000))
    assert defaults.stage_min_times == (timedelta(hours=24), timedelta(hours=168))
    d = defaults
    assert (d.helios_redflag_min_trades, d.helios_redflag_win_rate_pct, d.helios_redflag_losing_days,
            d.helios_redflag_failed_orders, d.helios_redflag_restarts) == (10, Decimal(40), 3, 3, 3)
    assert not defaults.red_flags_in_paper
    custom = load_settings({"HELIOS_CAPITAL_STAGES_ZAR": " 500, 1000 ,20000", "HELIOS_STAGE_MIN_HOURS": "12"})
    assert custom.capital_stages == (Decimal(500), Decimal(1000), Decimal(20000))
    assert custom.stage_min_times == (timedelta(hours=12),)

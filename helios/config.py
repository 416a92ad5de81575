"""Service configuration: exactly the variables of CONTRACT.md, validated fail-closed.

Every problem becomes one ``ConfigError`` line that names the variable and the rule it broke. Nothing else in
Helios reads the environment: the rest of the code is handed a ``Settings``.

Rules that protect money:
* LIVE only when ``TRADING_MODE=LIVE`` *and* ``ENABLE_PAPER_TRADING=false`` *and* the VALR key, secret and API
  token are present. Any disagreement refuses to start: never guess a mode.
* Secrets are ``SecretStr``: their value never appears in ``repr``, logs or ``check-config`` output.
* A LIVE service only talks to VALR over HTTPS, except to a loopback address (the exchange double).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from helios.models import Mode

PAIR_RE = re.compile(r"^[A-Z0-9]{2,12}ZAR$")
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
SECRET_FIELDS = ("valr_api_key", "valr_api_secret", "helios_api_token")
MIN_TOKEN_LENGTH = 16


def _decimal_list(value: str) -> list[Decimal]:
    """``"1000, 5000"`` -> [1000, 5000]; raises ValueError naming the bad item."""
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise ValueError(f"must be a comma-separated list of numbers, got {value!r}")
    out = []
    for item in items:
        try:
            number = Decimal(item)
        except ArithmeticError:
            raise ValueError(f"{item!r} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"{item!r} is not a finite number")
        out.append(number)
    return out


class ConfigError(Exception):
    """A configuration problem, as one line: ``VARIABLE: rule``."""


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Effective configuration. Field ``x_y`` is environment variable ``X_Y``."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="forbid", frozen=True)

    # --- CONTRACT.md variables -------------------------------------------------------------------------------
    trading_mode: str = "PAPER"
    enable_paper_trading: str = "true"
    valr_api_key: SecretStr | None = None
    valr_api_secret: SecretStr | None = None
    valr_base_url: str = "https://api.valr.com"
    max_position_size_zar: Decimal = Field(Decimal(1000), gt=0, allow_inf_nan=False)
    max_portfolio_risk_pct: Decimal = Field(Decimal(10), gt=0, le=100, allow_inf_nan=False)
    max_daily_loss_zar: Decimal = Field(Decimal(500), gt=0, allow_inf_nan=False)
    max_open_positions: int = Field(3, ge=1, strict=False)
    helios_pairs: str = "BTCZAR"
    helios_market_data: str = "valr"
    helios_state_dir: Path = Path("/var/lib/helios")
    helios_api_host: str = "127.0.0.1"
    helios_api_port: int = Field(8100, ge=1, le=65535)
    helios_api_token: SecretStr | None = None
    alert_urls: SecretStr | None = None  # URLs may carry bot tokens or passwords: treated as secret

    # --- Tuning (documented in the README; all optional) -------------------------------------------------------
    helios_tick_seconds: Decimal = Field(Decimal(1), gt=0, le=60, allow_inf_nan=False)
    helios_max_ticker_age_seconds: Decimal = Field(Decimal(10), gt=0, allow_inf_nan=False)
    helios_max_orders_per_minute: int = Field(10, ge=1)
    helios_paper_starting_zar: Decimal = Field(Decimal(1000), gt=0, allow_inf_nan=False)
    helios_paper_maker_fee_pct: Decimal = Field(Decimal("0.1"), ge=0, le=5, allow_inf_nan=False)
    helios_paper_taker_fee_pct: Decimal = Field(Decimal("0.1"), ge=0, le=5, allow_inf_nan=False)
    helios_paper_slippage_bps: Decimal = Field(Decimal(5), ge=0, le=500, allow_inf_nan=False)
    helios_paper_fill_pct: Decimal = Field(Decimal(50), gt=0, le=100, allow_inf_nan=False)
    helios_sim_seed: int = 7
    helios_stop_loss_pct: Decimal = Field(Decimal("1.5"), gt=0, lt=50, allow_inf_nan=False)
    helios_take_profit_pct: Decimal = Field(Decimal("2.0"), gt=0, lt=100, allow_inf_nan=False)
    helios_order_size_zar: Decimal | None = Field(None, gt=0, allow_inf_nan=False)
    helios_entry_order_ttl_seconds: Decimal = Field(Decimal(60), gt=0, allow_inf_nan=False)
    helios_emergency_stop_timeout_seconds: Decimal = Field(Decimal(5), gt=0, le=60, allow_inf_nan=False)
    helios_shutdown_timeout_seconds: Decimal = Field(Decimal(20), gt=0, le=120, allow_inf_nan=False)
    helios_balance_tolerance_zar: Decimal = Field(Decimal(5), ge=0, allow_inf_nan=False)
    helios_balance_check_seconds: Decimal = Field(Decimal(60), ge=1, allow_inf_nan=False)
    # with the account WebSocket connected, the full REST order/trade poll (the safety net) runs this often
    helios_rest_safety_poll_seconds: Decimal = Field(Decimal(15), ge=1, le=300, allow_inf_nan=False)
    # go-live caps that `helios audit` enforces (the operator plan's numbers)
    helios_golive_max_position_zar: Decimal = Field(Decimal(300), gt=0, allow_inf_nan=False)
    helios_golive_max_risk_pct: Decimal = Field(Decimal(10), gt=0, le=100, allow_inf_nan=False)
    helios_golive_max_daily_loss_zar: Decimal = Field(Decimal(500), gt=0, allow_inf_nan=False)
    helios_golive_max_open_positions: int = Field(3, ge=1)
    helios_golive_max_capital_zar: Decimal = Field(Decimal(1000), gt=0, allow_inf_nan=False)
    helios_golive_max_clock_skew_ms: int = Field(1000, ge=1)
    helios_release: str = ""  # set by the deploy tooling (release id); informational
    # --- rollout discipline (issue 12): capital stages, red flags, paper shadow -------------------------------
    helios_capital_stages_zar: str = "1000,5000,10000"  # strictly increasing ZAR limits; the first is go-live's
    helios_stage_min_hours: str = "24,168"  # minimum hours in stage 1, 2, ... (the last applies to later stages)
    helios_redflag_min_trades: int = Field(10, ge=1)
    helios_redflag_win_rate_pct: Decimal = Field(Decimal(40), ge=0, le=100, allow_inf_nan=False)
    helios_redflag_losing_days: int = Field(3, ge=1)
    helios_redflag_failed_orders: int = Field(3, ge=1)
    helios_redflag_restarts: int = Field(3, ge=1)
    helios_redflag_paper: str = "false"  # evaluate red flags in PAPER too (a rehearsal); LIVE always does
    helios_shadow: str = "true"  # LIVE: run the paper shadow book beside the real one
    helios_shadow_alert_pct: Decimal = Field(Decimal(5), gt=0, le=100, allow_inf_nan=False)
    # VALR subaccount a MAIN-account key acts for (X-VALR-SUB-ACCOUNT-ID); empty: the key's own account
    valr_subaccount_id: str = Field("", max_length=64, pattern=r"^[0-9A-Za-z-]*$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what ``load_settings`` hands over: the environment is read in exactly one place.
        return (init_settings,)

    @field_validator("trading_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in (Mode.PAPER.value, Mode.LIVE.value):
            raise ValueError(f"must be PAPER or LIVE, got {value!r}")
        return value

    @field_validator("enable_paper_trading", "helios_redflag_paper", "helios_shadow")
    @classmethod
    def _paper_flag(cls, value: str) -> str:
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return "true"
        if word in FALSE_WORDS:
            return "false"
        raise ValueError(f"must be true or false, got {value!r}")

    @field_validator("helios_pairs")
    @classmethod
    def _pairs(cls, value: str) -> str:
        pairs = [p.strip() for p in value.split(",") if p.strip()]
        if not pairs:
            raise ValueError("must name at least one pair, e.g. BTCZAR")
        for pair in pairs:
            if not PAIR_RE.match(pair):
                raise ValueError(f"{pair!r} is not a VALR ZAR pair (upper case, e.g. BTCZAR)")
        if len(set(pairs)) != len(pairs):
            raise ValueError("lists a pair twice")
        return ",".join(pairs)

    @field_validator("helios_market_data")
    @classmethod
    def _market_data(cls, value: str) -> str:
        if value not in ("valr", "sim"):
            raise ValueError(f"must be valr or sim, got {value!r}")
        return value

    @field_validator("helios_capital_stages_zar")
    @classmethod
    def _stages(cls, value: str) -> str:
        steps = _decimal_list(value)
        if any(s <= 0 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"must be positive ZAR amounts in strictly increasing order, got {value!r}")
        return ",".join(str(s) for s in steps)

    @field_validator("helios_stage_min_hours")
    @classmethod
    def _stage_hours(cls, value: str) -> str:
        hours = _decimal_list(value)
        if any(h <= 0 for h in hours):
            raise ValueError(f"must be positive numbers of hours, got {value!r}")
        return ",".join(str(h) for h in hours)

    @field_validator("valr_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("helios_state_dir")
    @classmethod
    def _state_dir(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"must be an absolute path, got {str(value)!r}")
        return value

    @field_validator("valr_api_key", "valr_api_secret", "helios_api_token", "alert_urls")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        paper_flag = self.enable_paper_trading == "true"
        if self.trading_mode == Mode.LIVE and paper_flag:
            raise ValueError("ENABLE_PAPER_TRADING: must be false when TRADING_MODE=LIVE (the two disagree)")
        if self.trading_mode == Mode.PAPER and not paper_flag:
            raise ValueError("ENABLE_PAPER_TRADING: must be true when TRADING_MODE=PAPER (the two disagree)")
        if self.helios_api_token is not None and len(self.helios_api_token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"HELIOS_API_TOKEN: must be at least {MIN_TOKEN_LENGTH} characters")
        if not _is_loopback_host(self.helios_api_host) and self.helios_api_token is None:
            raise ValueError("HELIOS_API_TOKEN: required when HELIOS_API_HOST is not a loopback address")
        if self.trading_mode == Mode.LIVE:
            for name in ("valr_api_key", "valr_api_secret", "helios_api_token"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name.upper()}: required when TRADING_MODE=LIVE")
            url = urlsplit(self.valr_base_url)
            if url.scheme != "https" and not _is_loopback_host(url.hostname or ""):
                raise ValueError("VALR_BASE_URL: LIVE sends signed requests only over https (or to loopback)")
        return self

    # --- derived, read-only views ---------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return Mode(self.trading_mode)

    @property
    def live_explicitly_enabled(self) -> bool:
        """True only for the one configuration that may trade real money."""
        return (
            self.trading_mode == Mode.LIVE
            and self.enable_paper_trading == "false"
            and self.valr_api_key is not None
            and self.valr_api_secret is not None
            and self.helios_api_token is not None
        )

    @property
    def pairs(self) -> tuple[str, ...]:
        return tuple(self.helios_pairs.split(","))

    @property
    def order_size_zar(self) -> Decimal:
        """The default strategy's order size: HELIOS_ORDER_SIZE_ZAR or half the position limit."""
        if self.helios_order_size_zar is not None:
            return min(self.helios_order_size_zar, self.max_position_size_zar)
        return self.max_position_size_zar / 2

    @property
    def capital_stages(self) -> tuple[Decimal, ...]:
        return tuple(Decimal(s) for s in self.helios_capital_stages_zar.split(","))

    @property
    def stage_min_times(self) -> tuple[timedelta, ...]:
        return tuple(timedelta(hours=float(h)) for h in self.helios_stage_min_hours.split(","))

    @property
    def red_flags_in_paper(self) -> bool:
        return self.helios_redflag_paper == "true"

    @property
    def shadow_enabled(self) -> bool:
        return self.helios_shadow == "true"

    @property
    def api_url(self) -> str:
        host = self.helios_api_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.helios_api_port}"

    def secret_values(self) -> list[str]:
        """Every secret's value, for log redaction."""
        values = []
        for name in (*SECRET_FIELDS, "alert_urls"):
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return values

    def masked(self) -> dict[str, str]:
        """The effective configuration as ENV_NAME -> printable value, with every secret masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "****" + value.get_secret_value()[-4:] if name == "valr_api_key" else "****"
                # The API key's last four characters help an operator tell keys apart; never the secret.
                if len(value.get_secret_value()) < 12:
                    shown = "****"
                out[name.upper()] = shown
            elif value is None:
                out[name.upper()] = "(unset)"
            else:
                out[name.upper()] = str(value)
        return out


KNOWN_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)


def _first_error_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(part) for part in err.get("loc", ()) if part != "__root__"]
    message = str(err.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if loc:
        name = loc[0].upper()
        value = err.get("input")
        if name in {f.upper() for f in SECRET_FIELDS} or name == "ALERT_URLS":
            return f"{name}: {message}"
        if err.get("type") == "extra_forbidden":
            return _unknown(name)
        shown = f" (got {value!r})" if isinstance(value, str | int) and "got" not in message else ""
        return f"{name}: {message}{shown}"
    return message


#: Every variable whose name starts with one of these belongs to Helios: an unknown one is a typo, refused.
RESERVED_PREFIXES = ("TRADING_", "ENABLE_", "VALR_", "MAX_", "HELIOS_", "ALERT_")


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name.upper(), sorted(KNOWN_VARIABLES), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{name}: unknown variable (typo?){hint}"


def load_settings(environ: Mapping[str, str] | None = None, *, strict_unknown: bool = False) -> Settings:
    """Build ``Settings`` from an environment mapping (default: ``os.environ``).

    Only Helios' own variables are taken, spelt exactly (upper case). Refused, naming the variable and its closest
    valid name: an unknown variable in a reserved prefix (``RESERVED_PREFIXES``; a typo in a limit must not silently
    fall back to a default), and any other spelling of a known name (``trading_mode``, beside or instead of
    ``TRADING_MODE``). ``strict_unknown`` refuses every unknown key (used for env files).
    """
    source = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for key, value in source.items():
        upper = key.upper()
        if key in KNOWN_VARIABLES:
            values[key.lower()] = value
        elif upper in KNOWN_VARIABLES:
            also = " (it is also set as " + upper + ")" if upper in source else ""
            raise ConfigError(f"{key}: variable names are upper case: write {upper}{also}")
        elif upper.startswith(RESERVED_PREFIXES) or strict_unknown:
            raise ConfigError(_unknown(key))
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_first_error_line(exc)) from None


def parse_env_file(text: str) -> dict[str, str]:
    """Parse a systemd ``EnvironmentFile`` (KEY=VALUE lines, # comments, optional quotes)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"env file line {number}: not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"env file {path}: cannot read ({exc.strerror})") from None
    return parse_env_file(text)

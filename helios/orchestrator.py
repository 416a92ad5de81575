"""Mode orchestrator: the only place that turns a configuration into an exchange client.

LIVE never falls back to paper, and paper is never handed out for LIVE: the operator's original bot returned the
paper client for ``mode == "LIVE"`` by mistake. Here each mode has exactly one branch, and anything that is not the
explicit LIVE configuration cannot reach the LIVE branch.
"""

from __future__ import annotations

from pathlib import Path

from helios.config import ConfigError, Settings
from helios.exchange.base import ExchangeClient
from helios.exchange.paper import PaperExchange
from helios.models import Clock, Mode, utcnow


def paper_exchange_path(state_dir: Path) -> Path:
    return state_dir / "paper-exchange.sqlite"


def build_exchange_client(settings: Settings, *, clock: Clock = utcnow) -> ExchangeClient:
    if settings.mode is Mode.LIVE:
        if not settings.live_explicitly_enabled:
            raise ConfigError("TRADING_MODE: LIVE requested without the complete explicit LIVE configuration")
        return _build_live_client(settings)
    if settings.mode is Mode.PAPER:
        return PaperExchange(
            paper_exchange_path(settings.helios_state_dir),
            starting_zar=settings.helios_paper_starting_zar,
            maker_fee_pct=settings.helios_paper_maker_fee_pct,
            taker_fee_pct=settings.helios_paper_taker_fee_pct,
            slippage_bps=settings.helios_paper_slippage_bps,
            fill_pct=settings.helios_paper_fill_pct,
            clock=clock,
        )
    raise ConfigError(f"TRADING_MODE: no exchange client for {settings.mode!r}")


def _build_live_client(settings: Settings) -> ExchangeClient:
    try:
        from helios.exchange.valr import ValrClient
    except ImportError:
        raise ConfigError("TRADING_MODE: LIVE is not available in this release (no VALR client)") from None
    assert settings.valr_api_key is not None and settings.valr_api_secret is not None
    client: ExchangeClient = ValrClient(
        api_key=settings.valr_api_key.get_secret_value(),
        api_secret=settings.valr_api_secret.get_secret_value(),
        base_url=settings.valr_base_url,
        subaccount_id=settings.valr_subaccount_id,
    )
    if client.mode is not Mode.LIVE:
        raise ConfigError("TRADING_MODE: the LIVE client does not report LIVE mode")
    return client

"""Property tests: over configurations, no mode but the explicit LIVE one yields a LIVE client; over order
streams, no accepted order ever breaks a limit."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helios.config import ConfigError, load_settings
from helios.engine import Engine
from helios.exchange.paper import PaperExchange
from helios.journal import Journal
from helios.marketdata import ScriptedMarketData
from helios.models import Mode, OrderPurpose, OrderStatus, OrderType, Side
from helios.orchestrator import build_exchange_client, paper_exchange_path

from .conftest import FakeClock, ScriptedStrategy

MODE_VALUES = st.sampled_from(["PAPER", "LIVE", "live", "Paper", "", "LIVE ", "TEST"])
FLAG_VALUES = st.sampled_from(["true", "false", "True", "False", "1", "0", "yes", "no", "", "maybe"])
MAYBE_SECRET = st.one_of(st.none(), st.just(""), st.just("x" * 40))


@settings(max_examples=300, deadline=None)
@given(mode=st.one_of(st.none(), MODE_VALUES), flag=st.one_of(st.none(), FLAG_VALUES), key=MAYBE_SECRET,
       secret=MAYBE_SECRET, token=MAYBE_SECRET,
       url=st.sampled_from(["https://api.valr.com", "http://127.0.0.1:9", "http://example.com"]))
def test_only_the_explicit_live_configuration_yields_a_live_client(
    mode: str | None, flag: str | None, key: str | None, secret: str | None, token: str | None, url: str
) -> None:
    env = {"HELIOS_STATE_DIR": tempfile.mkdtemp(prefix="helios-prop-"), "VALR_BASE_URL": url}
    for name, value in [("TRADING_MODE", mode), ("ENABLE_PAPER_TRADING", flag), ("VALR_API_KEY", key),
                        ("VALR_API_SECRET", secret), ("HELIOS_API_TOKEN", token)]:
        if value is not None:
            env[name] = value
    explicit_live = (mode == "LIVE" and flag is not None and flag.lower() in ("false", "0", "no")
                     and bool(key) and bool(secret) and bool(token) and not url.startswith("http://example"))
    try:
        config = load_settings(env)
    except ConfigError:
        assert not explicit_live, "the explicit LIVE configuration must load"
        return
    client = build_exchange_client(config)
    try:
        assert (client.mode is Mode.LIVE) == explicit_live
        if config.mode is Mode.LIVE:
            assert client.mode is Mode.LIVE, "LIVE never falls back to paper"
    finally:
        client.close()


ORDER = st.tuples(
    st.sampled_from(["BTCZAR", "ETHZAR", "XRPZAR", "SOLZAR"]),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("0.01"), places=4),  # quantity scale
    st.integers(min_value=1, max_value=30),  # stop distance, % of price
    st.booleans(),  # limit (rests) or market (fills now)
)
PRICES = {"BTCZAR": Decimal(1_000_000), "ETHZAR": Decimal(40_000), "XRPZAR": Decimal(10), "SOLZAR": Decimal(2_500)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=st.lists(ORDER, min_size=1, max_size=25),
    max_position=st.sampled_from(["200", "1000", "5000"]),
    max_risk=st.sampled_from(["1", "5", "10", "50"]),
    max_positions=st.integers(min_value=1, max_value=4),
)
def test_no_accepted_order_ever_breaks_a_limit(
    orders: list[tuple[str, Decimal, int, bool]], max_position: str, max_risk: str, max_positions: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        config = load_settings({
            "HELIOS_STATE_DIR": str(state), "HELIOS_PAIRS": ",".join(PRICES), "MAX_POSITION_SIZE_ZAR": max_position,
            "MAX_PORTFOLIO_RISK_PCT": max_risk, "MAX_OPEN_POSITIONS": str(max_positions),
            "HELIOS_MAX_ORDERS_PER_MINUTE": "1000", "HELIOS_PAPER_STARTING_ZAR": "20000",
            "HELIOS_PAPER_SLIPPAGE_BPS": "0",
        })
        clock = FakeClock(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
        journal = Journal.open(state, Mode.PAPER)
        exchange = PaperExchange(paper_exchange_path(state), starting_zar=Decimal(20000), clock=clock,
                                 slippage_bps=Decimal(0))
        engine = Engine(settings=config, journal=journal, client=exchange,
                        market=ScriptedMarketData({p: [v] for p, v in PRICES.items()}, clock=clock),
                        strategy=ScriptedStrategy(), clock=clock)
        try:
            engine.start_up()
            engine.step()
            for pair, scale, stop_pct, rests in orders:
                price = PRICES[pair]
                quantity = (scale * Decimal(100_000) / price).quantize(Decimal("0.00000001"))
                if quantity <= 0:
                    continue
                limit = price * Decimal("0.99") if rests else None
                record = engine.submit_order(
                    pair=pair, side=Side.BUY, order_type=OrderType.LIMIT if rests else OrderType.MARKET,
                    quantity=quantity, price=limit, purpose=OrderPurpose.ENTRY,
                    stop_loss=(limit or price) * (1 - Decimal(stop_pct) / 100), take_profit=price * 2,
                )
                clock.advance(1)
                engine.step()
                if record.status is OrderStatus.REJECTED:
                    continue
                # Invariants after every accepted order, on the journal's and the exchange's view:
                exposed = set(engine.positions) | {o.pair for o in engine.active.values()}
                assert len(exposed) <= config.max_open_positions
                for p in exposed:
                    position = engine.positions.get(p)
                    value = position.quantity * position.avg_entry_price if position else Decimal(0)
                    value += sum(((o.quantity - o.filled_quantity) * (o.price or o.reference_price)
                                  for o in engine.active.values() if o.pair == p), Decimal(0))
                    assert value <= config.max_position_size_zar * Decimal("1.0001")
                ctx = engine.gate_context(pair, clock())
                assert ctx.portfolio_risk_zar <= ctx.equity_zar * config.max_portfolio_risk_pct / 100 * Decimal(
                    "1.01")
        finally:
            exchange.close()
            journal.close()

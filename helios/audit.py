"""Pre-live audit (``helios audit``): the operator plan's "Pre-LIVE Audit" checklist, machine-checked.

Each check is a pure function of the configuration and what the exchange said, returning a ``Check``. Required
checks must pass for ``to-live``; warnings are shown but do not block. Every run is journaled in the LIVE journal,
and a passing balance check records the account's balances as the starting point of balance reconciliation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from helios.config import Settings
from helios.exchange.errors import ExchangeError
from helios.journal import Journal
from helios.models import Balance, KeyInfo, Mode
from helios.privileges import drop_to_state_owner
from helios.reconcile import encode_balances

FORBIDDEN_PERMISSIONS = ("withdraw", "transfer", "internal transfer", "link bank account", "link bank")
REQUIRED_PERMISSIONS = ("view", "trade")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    required: bool
    detail: str


def _perm(name: str) -> str:
    folded = " ".join(name.lower().split())
    return {"view access": "view", "internal transfer": "transfer"}.get(folded, folded)


def check_mode(settings: Settings) -> Check:
    ok = settings.live_explicitly_enabled
    return Check("mode", ok, True, "TRADING_MODE=LIVE with ENABLE_PAPER_TRADING=false" if ok
                 else f"not the explicit LIVE configuration (TRADING_MODE={settings.mode.value})")


def check_api_token(settings: Settings) -> Check:
    ok = settings.helios_api_token is not None
    return Check("api_token", ok, True, "HELIOS_API_TOKEN is set" if ok else "HELIOS_API_TOKEN is missing")


def check_alerts(settings: Settings) -> Check:
    urls = [] if settings.alert_urls is None else [
        u for u in settings.alert_urls.get_secret_value().split(",") if u.strip()]
    ok = bool(urls)
    return Check("alerts", ok, True, f"{len(urls)} alert destination(s)" if ok else "ALERT_URLS is empty")


def check_limits(settings: Settings) -> list[Check]:
    pairs = [
        ("max_position_size", settings.max_position_size_zar, settings.helios_golive_max_position_zar,
         "MAX_POSITION_SIZE_ZAR", "R"),
        ("max_portfolio_risk", settings.max_portfolio_risk_pct, settings.helios_golive_max_risk_pct,
         "MAX_PORTFOLIO_RISK_PCT", "%"),
        ("max_daily_loss", settings.max_daily_loss_zar, settings.helios_golive_max_daily_loss_zar,
         "MAX_DAILY_LOSS_ZAR", "R"),
        ("max_open_positions", Decimal(settings.max_open_positions),
         Decimal(settings.helios_golive_max_open_positions), "MAX_OPEN_POSITIONS", ""),
    ]
    return [Check(f"limit_{name}", value <= cap, True,
                  f"{var}={value} (go-live cap {'R' if unit == 'R' else ''}{cap}{'%' if unit == '%' else ''})")
            for name, value, cap, var, unit in pairs]


def check_key_permissions(key: KeyInfo) -> list[Check]:
    held = {_perm(p) for p in key.permissions}
    missing = [p for p in REQUIRED_PERMISSIONS if p not in held]
    dangerous = sorted(p for p in held if p in FORBIDDEN_PERMISSIONS or p.startswith("link bank"))
    return [
        Check("key_can_trade", not missing, True,
              "key has View and Trade" if not missing else f"key lacks {', '.join(missing)}"),
        Check("key_cannot_move_funds", not dangerous, True,
              "key has no Withdraw/Transfer/Link-bank permission" if not dangerous
              else f"key can {', '.join(dangerous)}: create a View+Trade-only key"),
        Check("key_ip_allowlist", bool(key.allowed_ip_cidr), False,
              f"key restricted to {key.allowed_ip_cidr}" if key.allowed_ip_cidr
              else "key has no IP allowlist (recommended: restrict it to this server's address)"),
    ]


def check_balances(balances: list[Balance], prices_zar: dict[str, Decimal], cap: Decimal) -> list[Check]:
    zar_value = Decimal(0)
    unvalued = []
    for balance in balances:
        if balance.currency == "ZAR":
            zar_value += balance.total
        elif balance.total and balance.currency in prices_zar:
            zar_value += balance.total * prices_zar[balance.currency]
        elif balance.total:
            unvalued.append(balance.currency)
    known = bool(balances) and zar_value > 0
    return [
        Check("balance_known", known, True,
              f"account holds R{zar_value:.2f}" + (f" plus {', '.join(unvalued)}" if unvalued else "")
              if known else "account balance unknown or empty"),
        Check("starting_capital_cap", known and zar_value <= cap and not unvalued, True,
              f"starting capital R{zar_value:.2f} (go-live cap R{cap})"),
    ]


# --- rollout (issue 12): the plan's sign-offs and a delivered test alert ------------------------------------------
def check_signoffs(settings: Settings) -> Check:
    """The sign-offs the plan asks a human to make before LIVE (``helios attest ITEM --by NAME``)."""
    from helios.attest import missing_signoffs
    from helios.journal import journal_path

    drop_to_state_owner(settings.helios_state_dir)  # as ``_record`` does: files made here stay the service's
    signed: list[tuple[str, datetime]] = []
    if journal_path(settings.helios_state_dir, Mode.LIVE).exists():
        journal = Journal.open(settings.helios_state_dir, Mode.LIVE)
        try:
            signed = [(item, at) for item, _, _, at in journal.signoffs()]
        finally:
            journal.close()
    missing = missing_signoffs("to-live", signed)
    return Check("signoffs", not missing, True, "every to-live sign-off is recorded" if not missing
                 else f"missing sign-offs: {', '.join(missing)} (helios attest ITEM --by NAME)")


def check_test_alert(settings: Settings) -> list[Check]:
    """Send a test alert to every ALERT_URLS destination now; every one must accept it (none: see ``alerts``)."""
    from helios.alerts import Alerter, AlertError, parse_alert_urls

    try:
        urls = parse_alert_urls(None if settings.alert_urls is None else settings.alert_urls.get_secret_value())
    except AlertError as exc:
        return [Check("alert_delivered", False, True, str(exc))]
    if not urls:
        return []
    alerter = Alerter(urls, service=f"helios-{settings.mode.value.lower()}")
    try:
        result = alerter.test_alert()
    finally:
        alerter.close()
    return [Check("alert_delivered", result.ok, True,
                  f"test alert delivered to {result.delivered} of {result.destinations} destination(s)"
                  + (f"; failed: {', '.join(result.failed_schemes)}" if result.failed_schemes else ""))]


def check_account(client: object) -> list[Check]:
    """VALR only: margin and futures disabled and nothing borrowed (``account_guards``), and which account the key
    acts for (main account or subaccount; a dedicated subaccount holding only the bot's capital is recommended)."""
    guards = getattr(client, "account_guards", None)
    identity = getattr(client, "account_identity", None)
    if guards is None or identity is None:
        return []
    checks: list[Check] = []
    try:
        problems: list[str] = guards()
        checks.append(Check("account_spot_only", not problems, True,
                            "; ".join(problems) if problems else "margin and futures disabled, nothing borrowed"))
    except ExchangeError as exc:
        checks.append(Check("account_spot_only", False, True, f"margin status unavailable: {exc.message}"))
    try:
        who = identity()
        label = {"main-account": "the MAIN account (a dedicated subaccount holding only the bot's capital is "
                                 "recommended)",
                 "subaccount-key": "a subaccount (its own key)",
                 "subaccount-via-main-key": f"subaccount {who.subaccount_id} (main-account key)",
                 }.get(who.kind, who.kind)
        checks.append(Check("account_identity", True, False, f"the key acts for {label}"))
    except ExchangeError as exc:
        checks.append(Check("account_identity", False, True, f"account identity unavailable: {exc.message}"))
    return checks


def run_audit(settings: Settings, *, record: bool = True) -> dict[str, Any]:
    from helios.orchestrator import build_exchange_client

    checks: list[Check] = [check_mode(settings), check_api_token(settings), check_alerts(settings),
                           *check_limits(settings)]
    checks += check_test_alert(settings)  # rollout: a test alert every destination accepted
    checks.append(check_signoffs(settings))  # rollout: the plan's to-live sign-offs
    balances: list[Balance] = []
    if settings.live_explicitly_enabled:
        client = build_exchange_client(settings)
        try:
            reachable = client.ping()
            checks.append(Check("exchange_reachable", reachable, True,
                                f"{settings.valr_base_url} answered online" if reachable
                                else f"{settings.valr_base_url} unreachable or not online"))
            offset = getattr(client, "clock_offset_ms", None)
            skew_ok = reachable and offset is not None and abs(offset) <= settings.helios_golive_max_clock_skew_ms
            checks.append(Check("clock_skew", skew_ok, True,
                                f"clock offset {offset} ms (limit {settings.helios_golive_max_clock_skew_ms} ms)"))
            try:
                checks += check_key_permissions(client.key_info())
            except ExchangeError as exc:
                checks.append(Check("key_can_trade", False, True, f"key info unavailable: {exc.message}"))
            checks += check_account(client)
            try:
                balances = client.balances()
                prices = {}
                for pair in settings.pairs:
                    ticker = getattr(client, "ticker", None)
                    if ticker is not None:
                        prices[pair.removesuffix("ZAR")] = ticker(pair).bid
                checks += check_balances(balances, prices, settings.helios_golive_max_capital_zar)
            except ExchangeError as exc:
                checks.append(Check("balance_known", False, True, f"balances unavailable: {exc.message}"))
        finally:
            client.close()
    passed = all(c.ok for c in checks if c.required)
    result: dict[str, Any] = {
        "passed": passed,
        "at": datetime.now(UTC).isoformat(),
        "mode": settings.mode.value,
        "checks": [asdict(c) for c in checks],
        "failed": [c.name for c in checks if c.required and not c.ok],
        "warnings": [c.name for c in checks if not c.required and not c.ok],
    }
    if record and settings.mode is Mode.LIVE:
        _record(settings, result, balances)
    return result


def _record(settings: Settings, result: dict[str, Any], balances: list[Balance]) -> None:
    drop_to_state_owner(settings.helios_state_dir)
    journal = Journal.open(settings.helios_state_dir, Mode.LIVE)
    try:
        journal.record_event("audit", result, datetime.now(UTC))
        if result["passed"] and balances:
            # Re-baselining: from now on only later fills and capital flows move the implied balances.
            journal.record_baseline(encode_balances(balances), datetime.now(UTC))
            journal.record_event("starting_balances", {b.currency: str(b.total) for b in balances},
                                 datetime.now(UTC))
            result["starting_balances_recorded"] = {b.currency: str(b.total) for b in balances}
    finally:
        journal.close()


def render_audit(result: dict[str, Any]) -> str:
    lines = [f"pre-live audit: {'PASSED' if result['passed'] else 'FAILED'}"]
    for check in result["checks"]:
        mark = "PASS" if check["ok"] else ("FAIL" if check["required"] else "WARN")
        lines.append(f"  {mark}  {check['name']:<26} {check['detail']}")
    if result.get("starting_balances_recorded"):
        lines.append(f"  starting balances recorded: {result['starting_balances_recorded']}")
    return "\n".join(lines)

"""The ``helios`` command.

    helios run                       the service (systemd runs this)
    helios check-config [--json]     validate and print the effective configuration, secrets masked
    helios status [--json]           ask the running service
    helios emergency-stop [--reason R] [--direct] [--cancel-protective]
    helios resume --reason R [--direct]
    helios report [--window day|week|month] [--compare] [--restarts N] [--json]
                                     windowed success metrics and red flags (exit 1 when a threshold fails)
    helios ramp --to ZAR --reason R  next capital stage (refused unless every condition holds)
    helios attest ITEM --by NAME [--note N]   record a sign-off
    helios audit [--json]            pre-live audit
    helios journal-info [--json]     journal schema and row counts (deploy and rollback checks)
    helios capital deposit|withdraw AMOUNT CURRENCY --reason R     record money moved in or out of the account
    helios capital classify-history --adopt|--ignore --reason R    classify trades from before the baseline, once
    helios orders resolve-lost CID --reason R    a lost order the exchange does not know: FAILED (service stopped)

Operator commands read ``--env-file`` (default: ``$HELIOS_ENV_FILE`` or ``/etc/helios/helios.env`` when it exists,
else the process environment). ``run`` reads the process environment (systemd's ``EnvironmentFile``).

Exit codes: 0 ok, 1 the action failed, 2 bad configuration or usage, 3 another instance is running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import requests

from helios import __version__
from helios.config import ConfigError, Settings, load_env_file, load_settings
from helios.journal import Journal, JournalError, journal_path, read_schema_info
from helios.models import Mode, OrderStatus, TradingState
from helios.privileges import drop_to_state_owner
from helios.statelock import AlreadyRunning, StateLock

DEFAULT_ENV_FILE = Path("/etc/helios/helios.env")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_RUNNING = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _readable(path: Path) -> bool:
    """True when ``path`` exists and this user may read it (``/etc/helios`` is 0700: not for other users)."""
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:
        return False


def _settings(args: argparse.Namespace, *, operator: bool = True) -> Settings:
    env_file: Path | None = getattr(args, "env_file", None)
    if env_file is None and operator:
        candidate = os.environ.get("HELIOS_ENV_FILE")
        if candidate:
            env_file = Path(candidate)
        elif _readable(DEFAULT_ENV_FILE):
            env_file = DEFAULT_ENV_FILE
    environ = {k: v for k, v in os.environ.items() if k != "HELIOS_ENV_FILE"}
    if env_file is not None:
        return load_settings(load_env_file(env_file), strict_unknown=True)
    return load_settings(environ)


def _print(data: Any, as_json: bool, human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else human)


def _api(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    headers = {}
    if settings.helios_api_token is not None:
        headers["Authorization"] = f"Bearer {settings.helios_api_token.get_secret_value()}"
    try:
        response = requests.request(method, settings.api_url + path, json=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise CliError(f"the service at {settings.api_url} did not answer ({type(exc).__name__})") from None
    try:
        data: dict[str, Any] = response.json()
    except ValueError:
        data = {"detail": response.text[:200]}
    return response.status_code, data


# ---------------------------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from helios.logsetup import configure_logging
    from helios.service import run_service

    settings = _settings(args, operator=False)
    configure_logging(settings.secret_values())
    return run_service(settings)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    data: dict[str, Any] = {"valid": True, "mode": settings.mode.value, "config": settings.masked()}
    path = journal_path(settings.helios_state_dir, settings.mode)
    if path.exists():
        try:
            info = read_schema_info(path)
        except JournalError as exc:
            raise CliError(str(exc), EXIT_CONFIG) from None
        from helios.journal import SCHEMA_VERSION

        data["journal"] = {"path": str(path), **info, "release_reads_up_to": SCHEMA_VERSION}
        if info["min_reader_version"] > SCHEMA_VERSION:
            raise CliError(f"journal {path}: schema v{info['schema_version']} is too new for this release "
                           f"(reads up to v{SCHEMA_VERSION})", EXIT_CONFIG)
    human = "\n".join([f"configuration OK ({settings.mode.value})",
                       *(f"  {k}={v}" for k, v in data["config"].items())])
    _print(data, args.json, human)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    code, data = _api(settings, "GET", "/api/status")
    if code != 200:
        raise CliError(f"status: HTTP {code}: {data.get('detail')}")
    pnl = data.get("pnl", {})
    human = "\n".join([
        f"mode            {data['mode']}",
        f"release         {data.get('release') or '-'} (helios {data.get('version')})",
        f"trading state   {data['trading_state']}",
        f"health          {'ok' if data['healthy'] else 'UNHEALTHY: ' + '; '.join(data['health']['reasons'])}",
        f"P&L today       R{pnl.get('today_total_zar')} (realised R{pnl.get('today_realised_zar')})",
        f"open positions  {len(data['positions'])}",
        f"open orders     {data['open_orders']}",
        f"url             {settings.api_url}",
    ])
    _print(data, args.json, human)
    return EXIT_OK


def _stop_report_human(data: dict[str, Any]) -> str:
    remaining = data.get("open_orders_remaining")
    return "\n".join([
        f"trading state          {data.get('trading_state')}",
        f"orders cancelled       {data.get('orders_cancelled')}",
        f"open orders remaining  {remaining if remaining is not None else 'UNKNOWN (exchange did not answer)'}"
        f"{' (confirmed by re-query)' if data.get('zero_open_orders_confirmed') else ''}",
        f"orders unknown state   {len(data.get('orders_in_unknown_state') or [])}",
        ("protective exits       cancelled (--cancel-protective)" if data.get("cancel_protective") else
         f"protective exits left  {len(data.get('protective_exits_left') or [])} (stop-losses held on the exchange;"
         " --cancel-protective removes them)"),
        "journal recorded       "
        + ("yes" if data.get("journal_recorded", True) else f"NO: {data.get('journal_error')}"),
        f"open positions         {len(data.get('open_positions', []))}"
        + "".join(f"\n  {p['pair']} {p['quantity']}" for p in data.get("open_positions", [])),
    ])


def direct_emergency_stop(settings: Settings, reason: str, actor: str, *,
                          cancel_protective: bool = False) -> dict[str, Any]:
    """Straight to the exchange and the journal, for when the service is down or not answering.

    The exchange client is built first and the cancels never wait on the journal: HALTED is tried once with a short
    lock wait (a running service then sends nothing new), the account is swept, and a failed journal write is
    retried until the stop's deadline. A journal that cannot be opened or written is reported, not fatal.
    """
    import time

    from helios.exchange.base import call_deadline
    from helios.killswitch import cancel_everything, record_cancellations
    from helios.orchestrator import build_exchange_client
    from helios.trading_state import TransitionRefused, transition

    started = time.monotonic()
    timeout = float(settings.helios_emergency_stop_timeout_seconds)
    deadline = started + timeout
    drop_to_state_owner(settings.helios_state_dir)
    client = build_exchange_client(settings)  # before the journal: a broken journal must not stop the cancels
    journal: Journal | None = None
    journal_error: str | None = None
    recorded = False

    def write_halted(busy_timeout_s: float) -> None:
        nonlocal recorded, journal_error
        if journal is None or recorded:
            return
        try:
            transition(journal, TradingState.HALTED, reason=reason, actor=actor, now=datetime.now(UTC),
                       busy_timeout_s=busy_timeout_s)
            recorded, journal_error = True, None
        except TransitionRefused as exc:
            journal_error = str(exc)

    try:
        try:
            journal = Journal.open(settings.helios_state_dir, settings.mode)
        except Exception as exc:
            journal_error = f"cannot open the journal: {type(exc).__name__}: {exc}"
        write_halted(min(0.25, timeout / 10))
        pending: list[tuple[str, str]] = []
        if journal is not None:
            try:
                pending = [(o.pair, o.customer_order_id) for o in journal.active_orders()
                           if o.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN)]
            except Exception as exc:
                journal_error = journal_error or f"cannot read the journal: {type(exc).__name__}: {exc}"
        sweep = cancel_everything(client, timeout_s=max(0.0, deadline - time.monotonic()),
                                  pending=lambda: pending, cancel_protective=cancel_protective)
        write_halted(max(0.05, deadline - time.monotonic()))
        positions: list[dict[str, str]] = []
        report: dict[str, Any] = {
            "trading_state": TradingState.HALTED.value, "mode": settings.mode.value, "direct": True,
            **sweep.to_json(), "open_positions": positions, "reason": reason, "actor": actor,
            "at": datetime.now(UTC).isoformat(), "journal_recorded": recorded, "journal_error": journal_error,
        }
        if journal is not None and recorded:
            try:
                with call_deadline(deadline):  # bookkeeping never stretches the stop's time bound
                    record_cancellations(journal, client, datetime.now(UTC))
                positions += [{"pair": p.pair, "quantity": str(p.quantity)} for p in journal.positions().values()]
                journal.record_event("emergency_stop", report, datetime.now(UTC))
            except Exception as exc:
                report["journal_error"] = f"HALTED recorded; the stop's details were not: {type(exc).__name__}"
        report["total_ms"] = round((time.monotonic() - started) * 1000, 1)
        return report
    finally:
        client.close()
        if journal is not None:
            with contextlib.suppress(Exception):
                journal.close()


def cmd_emergency_stop(args: argparse.Namespace) -> int:
    settings = _settings(args)
    reason = args.reason or "emergency stop from the command line"
    if not reason.strip():
        raise CliError("--reason: must not be blank", EXIT_CONFIG)
    if args.direct:
        report = direct_emergency_stop(settings, reason, args.actor, cancel_protective=args.cancel_protective)
    else:
        try:
            code, report = _api(settings, "POST", "/api/emergency-stop",
                                {"reason": reason, "actor": args.actor, "cancel_protective": args.cancel_protective},
                                timeout=float(settings.helios_emergency_stop_timeout_seconds) + 10)
        except CliError as exc:
            raise CliError(f"{exc} - use --direct to act on the exchange and journal without it") from None
        if code != 200:
            raise CliError(f"emergency stop: HTTP {code}: {report.get('detail')} "
                           "(the service may be down: use --direct)")
    _print(report, args.json, _stop_report_human(report))
    ok = report.get("zero_open_orders_confirmed") and report.get("journal_recorded", True)
    return EXIT_OK if ok else EXIT_FAILED


def direct_resume(settings: Settings, reason: str, actor: str) -> dict[str, Any]:
    """Resume with the service stopped: the same reconciliation and compare-and-set as the API's resume."""
    from helios.engine import ResumeRefused
    from helios.service import build_runtime
    from helios.trading_state import TransitionRefused

    if StateLock.is_held(settings.helios_state_dir):
        raise CliError("resume --direct: the service is running; resume through its API instead", EXIT_RUNNING)
    drop_to_state_owner(settings.helios_state_dir)
    runtime = build_runtime(settings)
    try:
        data = runtime.engine.resume(reason, actor)
    except (ResumeRefused, TransitionRefused) as exc:
        raise CliError(f"resume refused: {exc}") from None
    finally:
        runtime.client.close()
        runtime.journal.close()
    return {**data, "direct": True}


def cmd_resume(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.reason.strip():
        raise CliError("--reason: must not be blank", EXIT_CONFIG)
    if args.direct:
        data = direct_resume(settings, args.reason, args.actor)
    else:
        code, data = _api(settings, "POST", "/api/resume", {"reason": args.reason, "actor": args.actor})
        if code != 200:
            raise CliError(f"resume: HTTP {code}: {data.get('detail')}")
    _print(data, args.json, f"trading state {data['previous']} -> {data['trading_state']}")
    return EXIT_OK


def _open_existing_journal(settings: Settings) -> Journal:
    path = journal_path(settings.helios_state_dir, settings.mode)
    if not path.exists():
        raise CliError(f"no {settings.mode.value} journal at {path}")
    return Journal.open(settings.helios_state_dir, settings.mode)


# --- rollout (issue 12): report windows, ramp, attest ------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from helios.report import (
        build_report,
        redflag_config,
        render_compare,
        render_report,
        stage_config,
        starting_capital,
    )

    settings = _settings(args)
    if args.restarts < 0:
        raise CliError("--restarts: must be >= 0", EXIT_CONFIG)
    until = datetime.now(UTC)
    if args.until is not None:
        try:
            until = datetime.fromisoformat(args.until)
        except ValueError:
            raise CliError(f"--until: not an ISO 8601 time ({args.until!r})", EXIT_CONFIG) from None
        if until.tzinfo is None:
            raise CliError("--until: needs a timezone, e.g. 2026-11-24T00:00:00+02:00", EXIT_CONFIG)
    drop_to_state_owner(settings.helios_state_dir)  # root (invoke report) never opens the service's journal as root
    journal = _open_existing_journal(settings)
    try:
        capital = starting_capital(journal, settings.helios_paper_starting_zar)
        report = build_report(journal, window_name=args.window, now=until, capital_zar=capital,
                              restarts=args.restarts, stage_cfg=stage_config(settings),
                              flag_cfg=redflag_config(settings))
        human = render_report(report)
        if args.compare:
            report["compare"] = _compare_with_shadow(settings, journal, args.window, until, capital)
            report["passed"] = report["passed"] and report["compare"]["passed"]
            human += "\n" + render_compare(report["compare"])
    finally:
        journal.close()
    if args.save_dir is not None:
        _save_report(report, args.save_dir, until)
    _print(report, args.json, human)
    if args.alert:
        _alert_report(settings, report)
    return EXIT_OK if report["passed"] else EXIT_FAILED


def _compare_with_shadow(settings: Settings, journal: Journal, window: str, until: datetime,
                         capital: Decimal) -> dict[str, Any]:
    """``--compare``: this journal against the paper shadow beside it (``shadow-paper.sqlite``)."""
    from helios.report import compare_with_shadow
    from helios.shadow import ShadowBook, shadow_path

    path = shadow_path(settings.helios_state_dir)
    if not path.exists():
        raise CliError(f"--compare: no paper shadow at {path} (it runs beside LIVE when HELIOS_SHADOW=true)")
    drop_to_state_owner(settings.helios_state_dir)
    shadow = ShadowBook.open(settings, starting_zar=capital)
    try:
        return compare_with_shadow(journal, shadow, window_name=window, now=until, capital_zar=capital,
                                   alert_pct=settings.helios_shadow_alert_pct)
    finally:
        shadow.close()


def _save_report(report: dict[str, Any], directory: Path, at: datetime) -> None:
    """``<window>-<UTC time>.json`` plus ``latest-<window>.json``, each written whole (temp file + rename)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str) + "\n"
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{report['window']}-{stamp}.json", f"latest-{report['window']}.json"):
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(directory / name)


def _alert_report(settings: Settings, report: dict[str, Any]) -> None:
    """The report's summary through ALERT_URLS: info when it passed, critical when a threshold failed."""
    from helios.alerts import Alerter, parse_alert_urls

    urls = parse_alert_urls(None if settings.alert_urls is None else settings.alert_urls.get_secret_value())
    alerter = Alerter(urls, service=f"helios-{settings.mode.value.lower()}")
    failing = [c["name"] for c in report["checks"] if c["outcome"] == "fail"]
    summary = {"window": report["window"], "passed": report["passed"], "phase": report["phase"],
               "trades": report["trades"], "win_rate_pct": report["win_rate_pct"],
               "max_drawdown_pct": report["max_drawdown_pct"], "failed_checks": failing,
               "red_flags": [f["reason"] for f in report["red_flags"]]}
    if "compare" in report:  # --compare: the paper shadow's divergence, critical past HELIOS_SHADOW_ALERT_PCT
        summary["shadow_divergence"] = report["compare"]["divergence"]
    alerter.send("info" if report["passed"] else "critical",
                 f"{report['window']} report: {'pass' if report['passed'] else 'FAIL'}", summary)
    alerter.close()
    if alerter.failed:
        raise CliError(f"report alert: {alerter.failed} destination(s) failed")


def cmd_ramp(args: argparse.Namespace) -> int:
    from helios.report import ramp_facts, redflag_config, stage_config
    from helios.stages import Accept, RampFacts, current_stage, ramp_decision

    settings = _settings(args)
    if not args.reason.strip():
        raise CliError("--reason: must not be empty", EXIT_CONFIG)
    try:
        to_zar = Decimal(args.to)
    except ArithmeticError:
        raise CliError(f"--to: not an amount in ZAR ({args.to!r})", EXIT_CONFIG) from None
    if not to_zar.is_finite() or to_zar <= 0:
        raise CliError(f"--to: must be a positive amount in ZAR ({args.to!r})", EXIT_CONFIG)
    drop_to_state_owner(settings.helios_state_dir)
    journal = _open_existing_journal(settings)
    try:
        now = datetime.now(UTC)
        cfg = stage_config(settings)
        stage = current_stage([(limit, at) for limit, at, _, _ in journal.capital_stages()])
        facts = RampFacts() if stage is None else ramp_facts(journal, stage, now, restarts=args.restarts, cfg=cfg,
                                                             flag_cfg=redflag_config(settings))
        decision = ramp_decision(stage=stage, to_zar=to_zar, now=now, facts=facts, cfg=cfg)
        if not isinstance(decision, Accept):
            data = {"accepted": False, "to_zar": str(to_zar), "refused": [
                {"condition": name, "detail": detail} for name, detail in decision.reasons]}
            _print(data, args.json, f"ramp to R{to_zar} REFUSED:\n" + "\n".join(
                f"  {name}: {detail}" for name, detail in decision.reasons))
            return EXIT_FAILED
        journal.record_stage(to_zar, args.reason, args.actor, now)
    finally:
        journal.close()
    previous = None if stage is None else str(stage.limit_zar)
    _print({"accepted": True, "to_zar": str(to_zar), "previous_zar": previous}, args.json,
           f"capital stage {('R' + previous) if previous else '(none)'} -> R{to_zar}")
    return EXIT_OK


def cmd_attest(args: argparse.Namespace) -> int:
    from helios.attest import AttestError, validate_item

    settings = _settings(args)
    try:
        item = validate_item(args.item)
    except AttestError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    if not args.by.strip():
        raise CliError("--by: must name who signs off", EXIT_CONFIG)
    drop_to_state_owner(settings.helios_state_dir)
    # Sign-offs are about real money: they live in the LIVE journal whatever mode runs now, so an operator signs
    # off on a PAPER host before ``to-live`` and the audit (which reads the LIVE journal) sees them.
    journal = Journal.open(settings.helios_state_dir, Mode.LIVE)
    try:
        now = datetime.now(UTC)
        journal.record_signoff(item, args.by.strip(), args.note, now)
    finally:
        journal.close()
    _print({"item": item, "by": args.by.strip(), "note": args.note, "at": now.isoformat()}, args.json,
           f"signed off: {item} by {args.by.strip()} at {now.isoformat()}")
    return EXIT_OK
# --- end rollout ---------------------------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from helios.audit import render_audit, run_audit

    settings = _settings(args)
    result = run_audit(settings)
    _print(result, args.json, render_audit(result))
    return EXIT_OK if result["passed"] else EXIT_FAILED


def cmd_alert(args: argparse.Namespace) -> int:
    """Send one alert through ALERT_URLS (the deploy tooling uses it when a deploy rolls itself back)."""
    from helios.alerts import Alerter, parse_alert_urls

    settings = _settings(args)
    try:
        detail = json.loads(args.detail_json)
    except ValueError:
        raise CliError("--detail-json: not a JSON object", EXIT_CONFIG) from None
    if not isinstance(detail, dict):
        raise CliError("--detail-json: not a JSON object", EXIT_CONFIG)
    urls = parse_alert_urls(None if settings.alert_urls is None else settings.alert_urls.get_secret_value())
    alerter = Alerter(urls, service=f"helios-{settings.mode.value.lower()}")
    alerter.send(args.level, args.title, detail)
    alerter.close()
    _print({"destinations": len(urls), "sent": alerter.sent, "failed": alerter.failed}, args.json,
           f"alert sent to {alerter.sent} of {len(urls)} destination(s)")
    return EXIT_OK if alerter.failed == 0 else EXIT_FAILED


def cmd_journal_info(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from helios.journal import SCHEMA_VERSION

    data: dict[str, Any] = {"release_reads_up_to": SCHEMA_VERSION, "journals": {}}
    for mode in Mode:
        path = journal_path(settings.helios_state_dir, mode)
        if not path.exists():
            continue
        info: dict[str, Any] = dict(read_schema_info(path))
        info["readable_by_this_release"] = info["min_reader_version"] <= SCHEMA_VERSION
        data["journals"][mode.value] = {"path": str(path), **info}
    human = "\n".join([f"this release reads journal schema up to v{SCHEMA_VERSION}"] + [
        f"{m}: {j['path']} schema v{j['schema_version']} (min reader v{j['min_reader_version']})"
        for m, j in data["journals"].items()])
    _print(data, args.json, human)
    return EXIT_OK


def _capital_amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise CliError(f"AMOUNT: {text!r} is not a number", EXIT_CONFIG) from None
    if not amount.is_finite() or amount <= 0:
        raise CliError(f"AMOUNT: {text!r} must be a positive number", EXIT_CONFIG)
    return amount


def cmd_capital(args: argparse.Namespace) -> int:
    """Capital baseline inputs: deposits/withdrawals and the one-time classification of pre-baseline trades."""
    settings = _settings(args)
    reason = (args.reason or "").strip()
    if not reason:
        raise CliError("--reason: must not be empty", EXIT_CONFIG)
    now = datetime.now(UTC)
    if args.action in ("deposit", "withdraw"):
        if args.amount is None or args.currency is None:
            raise CliError(f"capital {args.action}: needs AMOUNT and CURRENCY", EXIT_CONFIG)
        amount = _capital_amount(args.amount)
        currency = args.currency.strip().upper()
        if not (currency.isalpha() and 2 <= len(currency) <= 10):
            raise CliError(f"CURRENCY: {args.currency!r} is not a currency code (e.g. ZAR, BTC)", EXIT_CONFIG)
    elif args.amount is not None or args.adopt == args.ignore:
        raise CliError("capital classify-history: takes exactly one of --adopt or --ignore and no AMOUNT",
                       EXIT_CONFIG)
    drop_to_state_owner(settings.helios_state_dir)
    journal = Journal.open(settings.helios_state_dir, settings.mode)
    try:
        if args.action in ("deposit", "withdraw"):
            journal.record_capital_flow(args.action, amount, currency, reason, args.actor, now)
            data: dict[str, Any] = {"recorded": args.action, "amount": str(amount), "currency": currency}
            human = f"{settings.mode.value} journal: {args.action} of {amount} {currency} recorded"
        else:
            baseline = journal.baseline_at()
            if baseline is None:
                raise CliError("no capital baseline recorded yet (run helios audit first)")
            classification = "adopted" if args.adopt else "ignored"
            count = journal.classify_foreign_fills(classification, reason, baseline, now)
            data = {"classified": count, "as": classification, "before": baseline.isoformat(),
                    "unclassified_left": journal.unclassified_foreign_fills()}
            human = (f"{settings.mode.value} journal: {count} trade(s) from before {baseline.isoformat()} "
                     f"{classification}; {data['unclassified_left']} unclassified left")
    finally:
        journal.close()
    _print(data, args.json, human)
    return EXIT_OK


def cmd_orders(args: argparse.Namespace) -> int:
    """Resolve a lost order (UNKNOWN, or SUBMITTING after a crash) that never reached the exchange."""
    from helios.exchange.errors import ExchangeError
    from helios.orchestrator import build_exchange_client
    from helios.orders import OrderTracker

    settings = _settings(args)
    reason = (args.reason or "").strip()
    if not reason:
        raise CliError("--reason: must not be empty", EXIT_CONFIG)
    if StateLock.is_held(settings.helios_state_dir):
        raise CliError("orders resolve-lost: the service is running; stop it first", EXIT_RUNNING)
    drop_to_state_owner(settings.helios_state_dir)
    journal = Journal.open(settings.helios_state_dir, settings.mode)
    try:
        tracker = OrderTracker(journal)
        record = tracker.get(args.customer_order_id)
        if record is None or record.status not in (OrderStatus.UNKNOWN, OrderStatus.SUBMITTING):
            raise CliError(f"{args.customer_order_id}: not an order with an unknown outcome in the "
                           f"{settings.mode.value} journal")
        client = build_exchange_client(settings)
        try:
            found = client.get_order(record.pair, record.customer_order_id)
        except ExchangeError as exc:
            raise CliError(f"the exchange did not answer ({exc.message}): nothing changed") from None
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
        if found is not None:
            raise CliError(f"{record.customer_order_id}: the exchange knows this order ({found.status.value}); "
                           "the service resolves it at its next start: nothing changed")
        tracker.confirmed_never_placed(record.customer_order_id,
                                       f"operator {args.actor}: never placed (exchange does not know it): {reason}",
                                       datetime.now(UTC))
    finally:
        journal.close()
    data = {"customer_order_id": args.customer_order_id, "status": OrderStatus.FAILED.value}
    _print(data, args.json, f"{settings.mode.value} journal: {args.customer_order_id} -> FAILED (the exchange does "
                            "not know it)")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helios", description="Helios trading service")
    parser.add_argument("--version", action="version", version=f"helios {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--env-file", type=Path, default=None, help="read configuration from this file")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("run", "run the service", json_flag=False).set_defaults(func=cmd_run)
    add("check-config", "validate the configuration").set_defaults(func=cmd_check_config)
    add("status", "ask the running service for its status").set_defaults(func=cmd_status)
    p = add("emergency-stop", "halt trading and cancel every open order")
    p.add_argument("--reason", default=None)
    p.add_argument("--actor", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli")
    p.add_argument("--direct", action="store_true", help="act on the exchange and journal (service down)")
    p.add_argument("--cancel-protective", action="store_true",
                   help="also cancel the protective stop-loss orders held on the exchange (default: keep them)")
    p.set_defaults(func=cmd_emergency_stop)
    p = add("resume", "lift REDUCING/HALTED back to ACTIVE")
    p.add_argument("--reason", required=True)
    p.add_argument("--actor", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli")
    p.add_argument("--direct", action="store_true", help="write the journal (service must be stopped)")
    p.set_defaults(func=cmd_resume)
    # --- rollout (issue 12) ---
    p = add("report", "success metrics and red flags over a window (non-zero exit when a threshold fails)")
    p.add_argument("--window", choices=["day", "week", "month"], default="week")
    p.add_argument("--restarts", type=int, default=0, help="restarts to add to the unclean ones the journal shows")
    p.add_argument("--until", default=None, help="end the window at this ISO 8601 time (default: now)")
    p.add_argument("--save-dir", type=Path, default=None, help="also store the report (JSON) in this directory")
    p.add_argument("--alert", action="store_true", help="send the report's summary through ALERT_URLS")
    p.add_argument("--compare", action="store_true", help="LIVE against its paper shadow: fills, slippage, fees, P&L")
    p.set_defaults(func=cmd_report)
    p = add("ramp", "move to another capital stage (refused unless the current stage earned it)")
    p.add_argument("--to", required=True, help="the new stage's capital in ZAR")
    p.add_argument("--reason", required=True)
    p.add_argument("--restarts", type=int, default=0, help="restarts to add to the unclean ones the journal shows")
    p.add_argument("--actor", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli")
    p.set_defaults(func=cmd_ramp)
    p = add("attest", "record a sign-off (code-review, emergency-contacts, manual-test-trade, weekly-review, ...)")
    from helios.attest import ITEMS

    p.add_argument("item", help="one of: " + ", ".join(ITEMS))
    p.add_argument("--by", required=True)
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_attest)
    # --- end rollout ---
    add("audit", "pre-live audit").set_defaults(func=cmd_audit)
    add("journal-info", "journal schema versions and readability").set_defaults(func=cmd_journal_info)
    p = add("capital", "record deposits/withdrawals; classify trades from before the baseline")
    p.add_argument("action", choices=["deposit", "withdraw", "classify-history"])
    p.add_argument("amount", nargs="?", default=None)
    p.add_argument("currency", nargs="?", default=None)
    p.add_argument("--reason", required=True)
    p.add_argument("--adopt", action="store_true", help="classify-history: adopt them as the account's history")
    p.add_argument("--ignore", action="store_true", help="classify-history: ignore them")
    p.add_argument("--actor", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli")
    p.set_defaults(func=cmd_capital)
    p = add("orders", "resolve a lost order that never reached the exchange (service stopped)")
    p.add_argument("action", choices=["resolve-lost"])
    p.add_argument("customer_order_id")
    p.add_argument("--reason", required=True)
    p.add_argument("--actor", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli")
    p.set_defaults(func=cmd_orders)
    p = add("alert", "send one alert through ALERT_URLS")
    p.add_argument("--level", choices=["info", "warning", "critical"], default="critical")
    p.add_argument("--title", required=True)
    p.add_argument("--detail-json", default="{}")
    p.set_defaults(func=cmd_alert)
    return parser


#: Options whose value is free text an operator types: a value that starts with "-" is still the value.
FREE_TEXT_OPTIONS = frozenset({"--reason", "--note", "--by", "--actor"})


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        names.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _option_strings(sub)
    return names


def join_free_text_values(argv: Sequence[str], known_options: set[str]) -> list[str]:
    """``--reason -urgent`` -> ``--reason=-urgent``: argparse would take ``-urgent`` for an option and refuse the
    whole command (an emergency stop must never fail on the wording of its reason). A real option (``--reason
    --direct``) is left alone, so argparse reports the missing value instead of swallowing the option."""
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if (token in FREE_TEXT_OPTIONS and i + 1 < len(tokens) and tokens[i + 1].startswith("-")
                and tokens[i + 1].partition("=")[0] not in known_options):
            out.append(f"{token}={tokens[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_free_text_values(sys.argv[1:] if argv is None else argv, _option_strings(parser)))
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"helios: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AlreadyRunning as exc:
        print(f"helios: {exc}", file=sys.stderr)
        return EXIT_RUNNING
    except JournalError as exc:
        print(f"helios: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except CliError as exc:
        print(f"helios: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"helios: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

"""Issue 12: the paper shadow beside the real book receives the same signals at the same prices, journaled apart
(``shadow-paper.sqlite``); ``helios report --compare`` shows the divergence and alerts past the threshold.

The real book here is the engine on a PaperExchange with 10 bps of slippage injected into its market orders; the
shadow has none, and neither has fees, so the books diverge by exactly the injected slippage."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from helios.exchange.paper import PaperExchange
from helios.models import Side, Signal
from helios.report import compare_with_shadow
from helios.shadow import SHADOW_FILE, ShadowBook, shadow_path
from tests.service.conftest import Rig, RigFactory

D = Decimal
NO_FEES = {"HELIOS_PAPER_MAKER_FEE_PCT": "0", "HELIOS_PAPER_TAKER_FEE_PCT": "0"}


def with_shadow(rig: Rig) -> ShadowBook:
    exchange = PaperExchange(shadow_path(rig.settings.helios_state_dir), starting_zar=D(10000),
                             maker_fee_pct=D(0), taker_fee_pct=D(0), slippage_bps=D(0), fill_pct=D(100),
                             clock=rig.clock)
    shadow = ShadowBook(exchange, clock=rig.clock)
    rig.engine.shadow = shadow
    return shadow


def stop_loss_round_trip(make_rig: RigFactory) -> tuple[Rig, ShadowBook]:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 980_000, 960_000, 960_000]}, HELIOS_PAPER_SLIPPAGE_BPS="10",
                   **NO_FEES)
    shadow = with_shadow(rig)
    rig.strategy.pending.append(Signal("BTCZAR", Side.BUY, D("0.0005"), D(990_000), D(970_000), D(1_010_000)))
    rig.step(5)  # limit BUY at 990,000 (both books), stop-loss at 960,000: market SELLs (real book: -10 bps)
    return rig, shadow


def test_the_shadow_diverges_by_exactly_the_injected_slippage(make_rig: RigFactory) -> None:
    rig, shadow = stop_loss_round_trip(make_rig)
    assert rig.engine.positions == {} and shadow.positions() == {}, "both books went in and out"
    assert [(f.side, f.price) for f in shadow.exchange.fills()] == [(Side.BUY, D(990_000)), (Side.SELL, D(960_000))]
    assert [(f.side, f.price) for f in rig.exchange.fills()] == [(Side.BUY, D(990_000)),
                                                                  (Side.SELL, D("959040.0000"))]
    injected = (D("0.0005") * D(960_000) * D("0.0010")).quantize(D("0.01"))  # R0.48
    compare = compare_with_shadow(rig.journal, shadow, window_name="day", now=rig.clock.now + timedelta(minutes=1),
                                  capital_zar=D(10000), alert_pct=D(5))
    assert compare["live"] == {"fills": 2, "fees_zar": "0.00", "slippage_zar": "0.48", "realised_pnl_zar": "-15.48"}
    assert compare["shadow"] == {"fills": 2, "fees_zar": "0.00", "slippage_zar": "0.00", "realised_pnl_zar": "-15.00"}
    assert compare["divergence"] == {"fills": 0, "fees_zar": "0.00", "slippage_zar": str(injected),
                                     "realised_pnl_zar": str(-injected), "pnl_pct_of_capital": "0.00"}
    assert compare["passed"] is True
    tight = compare_with_shadow(rig.journal, shadow, window_name="day", now=rig.clock.now + timedelta(minutes=1),
                                capital_zar=D(10000), alert_pct=D("0.001"))
    assert tight["passed"] is False, "R0.48 of R10,000 is 0.0048 % > 0.001 %"
    assert (rig.settings.helios_state_dir / SHADOW_FILE).exists(), "journaled apart, in the state directory"
    assert not rig.journal.events("shadow"), "nothing of the shadow in the real journal"
    shadow.close()


def test_report_compare_prints_the_divergence_and_alerts_past_the_threshold(make_rig: RigFactory,
                                                                            tmp_path: Path) -> None:
    rig, shadow = stop_loss_round_trip(make_rig)
    shadow.close()
    alerts = tmp_path / "alerts.jsonl"
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(rig.settings.helios_state_dir),
           "HELIOS_PAPER_STARTING_ZAR": "10000", "HELIOS_SHADOW_ALERT_PCT": "0.001", "ALERT_URLS": f"file://{alerts}"}
    until = (rig.clock.now + timedelta(minutes=1)).isoformat()
    result = subprocess.run([sys.executable, "-m", "helios.cli", "report", "--window", "day", "--compare", "--json",
                             "--until", until, "--alert"], capture_output=True, text=True, env=env, check=False,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["compare"]["divergence"]["slippage_zar"] == "0.48" and report["compare"]["passed"] is False
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(sent) == 1 and sent[0]["title"] == "Helios critical: day report: FAIL"
    assert '"realised_pnl_zar": "-0.48"' in sent[0]["body"]
    human = subprocess.run([sys.executable, "-m", "helios.cli", "report", "--window", "day", "--compare",
                            "--until", until], capture_output=True, text=True, env=env, check=False, timeout=60)
    assert "LIVE vs paper shadow" in human.stdout
    assert "slippage                     0.48         0.00         0.48" in human.stdout


def test_report_compare_without_a_shadow_says_so(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]})
    rig.step()
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(rig.settings.helios_state_dir)}
    result = subprocess.run([sys.executable, "-m", "helios.cli", "report", "--compare"], capture_output=True,
                            text=True, env=env, check=False, timeout=60)
    assert result.returncode != 0 and "--compare: no paper shadow at" in result.stderr
    assert not shadow_path(rig.settings.helios_state_dir).exists(), "no side effect"


def test_a_restarted_shadow_comes_back_with_the_same_book(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 985_000]}, **NO_FEES)
    shadow = with_shadow(rig)
    rig.strategy.pending.append(Signal("BTCZAR", Side.BUY, D("0.0005"), D(990_000), D(970_000), D(1_010_000)))
    rig.step(2)
    held = shadow.positions()
    assert held["BTCZAR"].quantity == D("0.0005") and held["BTCZAR"].stop_loss == D(970_000)
    shadow.close()
    again = with_shadow(rig)
    assert again.positions() == held
    again.close()

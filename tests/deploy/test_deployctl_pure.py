"""The host helper's pure parts (helios_ops/deployctl.py) and the promotion rule (helios/promotion.py): no host."""

from __future__ import annotations

import argparse
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helios import promotion
from helios.models import TradingState
from helios_ops import commands as cmd
from helios_ops import deployctl as ctl
from helios_ops import inventory as inv

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "20260101T000000Z-aaaaaaa", "20260102T000000Z-bbbbbbb"


def test_prune_never_lets_bad_releases_push_out_good_ones() -> None:
    """Issue 9 finding 7: after failed deploys, one good deploy must not prune every older good release."""
    good = [f"2026010{i}T000000Z-aaaaaaa" for i in range(1, 4)]
    bad = [f"2026011{i}T000000Z-bbbbbbb" for i in range(0, 5)]
    newest = "20260120T000000Z-ccccccc"
    remove = ctl.prune_plan([*good, *bad, newest], 5, current=newest, last_good=newest, bad=set(bad))
    assert not set(good) & set(remove)  # BAD releases do not count toward the five kept
    assert set(remove) == set(bad[:3])  # the two newest BAD ones are kept to look at
    assert ctl.pick_previous([*good, newest], newest, set()) == good[-1]


def test_lock_message_names_a_dead_flow_at_once() -> None:
    """Issue 9 finding 9: a lock whose flow process is gone is called dead at once, not after 30 minutes."""
    owner = {"who": "ana@laptop", "at": "2026-01-01T00:00:00Z", "what": "deploy X", "flow_id": "f1", "epoch": 1000.0}
    assert "still running" in ctl.lock_message(owner, alive=True, now_epoch=1060.0)
    dead = ctl.lock_message(owner, alive=False, now_epoch=1001.0)
    assert "GONE" in dead and "--force" in dead and "ana@laptop" in dead


def test_lock_owner_liveness_uses_pid_and_start_time() -> None:
    me = os.getpid()
    assert ctl.owner_alive({"pid": me, "pid_start": ctl.process_start_time(me)})
    assert not ctl.owner_alive({"pid": me, "pid_start": "1"})  # a recycled pid is not the flow
    assert not ctl.owner_alive({"pid": 0})


def test_flow_ids_are_fullmatched() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert cmd.new_flow_id(now, "0123abcd") == "20260101T000000Z-0123abcd"
    with pytest.raises(inv.OpsError):
        cmd.new_flow_id(now, "0123abcd\n")
    assert ctl.is_flow_id("20260101T000000Z-0123abcd") and not ctl.is_flow_id("20260101T000000Z-0123abcd\n")
    assert not ctl.is_release_id(NEW + "\n") and ctl.is_release_id(NEW)


def test_every_flow_has_one_function_a_plan_and_arguments() -> None:
    assert set(ctl.FLOWS) == set(cmd.FLOWS) == set(ctl.FLOW_STEPS)
    for name, spec in ctl.FLOWS.items():
        assert spec.run.__name__ == f"flow_{name}"
        assert ctl.flow_steps_text(name)
    deploy_steps = [s for s, _ in ctl.FLOW_STEPS["deploy"]]
    assert deploy_steps.index("start") < deploy_steps.index("gate") < deploy_steps.index("promote")


def test_layout_is_one_file_for_python_and_ansible() -> None:
    data = json.loads((REPO / "helios_ops" / "layout.json").read_text())
    assert str(ctl.L.releases_dir) == data["releases_dir"] and data["helper"] == cmd.HELPER
    assert str(promotion.PROMOTED_FILE) == data["promoted_file"]
    defaults = (REPO / "ansible" / "roles" / "helios_release" / "defaults" / "main.yml").read_text()
    assert "helios_ops/layout.json" in defaults and "/opt/helios" not in defaults


def test_boot_recovery_goes_back_to_last_good_before_anything_trades() -> None:
    """Issue 9 finding 3 (pure part): restarted mid-gate with no live flow -> the last good release, promoted."""
    assert ctl.boot_recovery_plan(NEW, OLD, promoted="none", flow_alive=False) == OLD
    assert ctl.boot_recovery_plan(NEW, OLD, promoted="none", flow_alive=True) is None  # the flow owns the gate
    assert ctl.boot_recovery_plan(NEW, NEW, promoted=NEW, flow_alive=False) is None
    assert ctl.boot_recovery_plan(OLD, OLD, promoted="none", flow_alive=False) == OLD  # died at "stop": re-promote
    assert ctl.boot_recovery_plan(None, OLD, promoted=None, flow_alive=False) is None


def test_pause_marker_names_flow_and_step() -> None:
    assert ctl.pause_requested("deploy:gate\n", "deploy", "gate")
    assert ctl.pause_requested("*:gate", "rollback", "gate")
    assert not ctl.pause_requested("deploy:gate", "deploy", "start")
    assert not ctl.pause_requested("", "deploy", "gate")


def test_final_line_states_the_host_state_not_a_guess() -> None:
    now = {"release": NEW, "promoted": True, "mode": "PAPER", "trading_state": "HALTED", "unit": "active"}
    line = ctl.final_line({"flow": "deploy", "flow_id": "f", "state": "ok", "message": "done"}, now)
    assert line.endswith(f"host now: release {NEW}, mode PAPER, trading HALTED, service active")
    running = ctl.final_line({"flow": "deploy", "flow_id": "f", "state": "running", "step": "gate"}, now)
    assert "still running at step 'gate'" in running
    assert "NOT promoted" in ctl.host_now_line({**now, "promoted": False})


def test_unpromoted_release_gets_no_new_entries() -> None:
    """Issue 9 finding 8 (pure part): a release that has not passed its gate trades as REDUCING (exits only)."""
    assert promotion.gate_state(TradingState.ACTIVE, NEW, OLD) is TradingState.REDUCING
    assert promotion.gate_state(TradingState.ACTIVE, NEW, None) is TradingState.REDUCING
    assert promotion.gate_state(TradingState.ACTIVE, NEW, NEW) is TradingState.ACTIVE
    assert promotion.gate_state(TradingState.HALTED, NEW, OLD) is TradingState.HALTED
    assert promotion.gate_state(TradingState.ACTIVE, None, None) is TradingState.ACTIVE  # not a deployed release
    assert promotion.running_release(f"/opt/helios/releases/{NEW}/venv") == NEW
    assert promotion.running_release("/work/.venv") is None


def test_promotion_file_is_read_per_decision(tmp_path: Path) -> None:
    marker = tmp_path / "promoted"
    assert promotion.read_promoted(marker) is None
    marker.write_text(NEW + "\n")
    assert promotion.read_promoted(marker) == NEW


def test_rewrite_mode_refuses_unknown_mode() -> None:
    with pytest.raises(ctl.Failure):
        ctl.rewrite_mode("TRADING_MODE=PAPER\n", "live")


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ctl.Layout:
    """The helper's layout moved under tmp_path (its file-level steps run without a host)."""
    import dataclasses

    base = tmp_path / "opt"
    moved = dataclasses.replace(
        ctl.L, base_dir=base, releases_dir=base / "releases", incoming_dir=base / "incoming",
        wheelhouse_dir=base / "wheelhouse", current_link=base / "current", last_good_file=base / "last-good",
        promoted_file=base / "promoted", backup_dir=tmp_path / "backups",
    )
    monkeypatch.setattr(ctl, "L", moved)
    moved.releases_dir.mkdir(parents=True)
    return moved


def test_a_second_build_with_the_same_release_id_is_refused_not_overwritten(layout: ctl.Layout) -> None:
    """Issue 9 finding 9: two builds in the same second share a release id; the second never replaces the first."""
    (layout.releases_dir / NEW).mkdir()
    (layout.releases_dir / NEW / "release.json").write_text('{"release": "first"}')
    incoming = layout.incoming_dir / "20260102T000000Z-0123abcd"
    incoming.mkdir(parents=True)
    (incoming / "release.json").write_text(json.dumps({"wheel": "helios.whl", "deps_hash": "d1"}))
    (incoming / "helios.whl").write_bytes(b"wheel")
    (layout.wheelhouse_dir / "d1").mkdir(parents=True)
    (layout.wheelhouse_dir / "d1" / ".complete").write_text("d1\n")
    with pytest.raises(ctl.Failure) as refused:
        ctl.install_release(NEW, incoming, "/usr/bin/python3", "me")
    assert refused.value.code == ctl.EXIT_REFUSED and "already installed" in str(refused.value)
    assert (layout.releases_dir / NEW / "release.json").read_text() == '{"release": "first"}'


def test_half_built_releases_are_removed_and_never_listed(layout: ctl.Layout) -> None:
    """Issue 9 finding 4: a release directory without release.json (a run died inside pip) is removed by the next
    run and is never a rollback target; current is never removed."""
    (layout.releases_dir / OLD / "venv" / "bin").mkdir(parents=True)
    (layout.releases_dir / OLD / "release.json").write_text("{}")
    half = "20260101T120000Z-0000000"
    (layout.releases_dir / half / "venv").mkdir(parents=True)
    (layout.incoming_dir / "20260101T000000Z-deadbeef").mkdir(parents=True)
    os.symlink(layout.releases_dir / OLD, layout.current_link)
    assert ctl.all_releases() == [OLD]
    removed = ctl.remove_half_built()
    assert str(layout.releases_dir / half) in removed
    assert not (layout.releases_dir / half).exists() and (layout.releases_dir / OLD).is_dir()
    assert not any(layout.incoming_dir.iterdir())


class _FakeFlow:
    """The three things flow_estop uses of a Flow: who, detail and step()."""

    def __init__(self) -> None:
        self.who = "ops"
        self.detail: dict[str, object] = {}
        self.steps: list[str] = []

    def step(self, name: str) -> object:
        import contextlib

        self.steps.append(name)
        return contextlib.nullcontext()


@pytest.mark.parametrize("cancel", [False, True])
def test_estop_flow_passes_cancel_protective_and_says_what_protects_the_positions(
        monkeypatch: pytest.MonkeyPatch, cancel: bool) -> None:
    """Issue 11: `invoke emergency-stop [--cancel-protective]` reaches the service; the last line says whether
    exchange-held stop-loss exits still protect the open positions."""
    sent: list[dict[str, object]] = []

    def api_post(path: str, body: dict[str, object], timeout: float) -> tuple[int, dict[str, object]]:
        sent.append(body)
        left = [] if body["cancel_protective"] else [{"customer_order_id": "hp-1", "pair": "BTCZAR"}]
        return 200, {"trading_state": "HALTED", "orders_cancelled": 2, "open_orders_remaining": 0,
                     "zero_open_orders_confirmed": True, "protective_exits_left": left,
                     "cancel_protective": body["cancel_protective"]}

    monkeypatch.setattr(ctl, "api_post", api_post)
    flow_parser = argparse.ArgumentParser()
    ctl.FLOWS["estop"].add_args(flow_parser)
    flags = ["--cancel-protective"] if cancel else []
    args = flow_parser.parse_args(["--reason=-x {{ inventory_hostname }}", *flags])
    outcome = ctl.flow_estop(_FakeFlow(), args)  # type: ignore[arg-type]
    assert sent[0]["cancel_protective"] is cancel
    assert sent[0]["reason"] == "-x {{ inventory_hostname }}"
    expected = "protective exits cancelled too" if cancel else "1 protective exit(s) left working on the exchange"
    assert expected in outcome.message


def test_estop_direct_path_passes_cancel_protective(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = json.dumps({"trading_state": "HALTED", "orders_cancelled": 0, "open_orders_remaining": 0,
                             "zero_open_orders_confirmed": True, "protective_exits_left": [],
                             "cancel_protective": True})
        stderr = ""

    monkeypatch.setattr(ctl, "api_post", lambda path, body, timeout: (0, {}))
    monkeypatch.setattr(ctl, "service_cli", lambda argv, timeout: calls.append(argv) or Done())
    monkeypatch.setattr(ctl, "run", lambda argv, timeout: Done())
    flow_parser = argparse.ArgumentParser()
    ctl.FLOWS["estop"].add_args(flow_parser)
    outcome = ctl.flow_estop(_FakeFlow(), flow_parser.parse_args(["--cancel-protective"]))  # type: ignore[arg-type]
    assert "--cancel-protective" in calls[0] and "--direct" in calls[0]
    assert "via direct" in outcome.message and "protective exits cancelled too" in outcome.message


def test_operator_line_of_an_estop_names_the_protective_exits() -> None:
    base = {"ok": True, "trading_state": "HALTED", "orders_cancelled": 1, "open_orders_remaining": 0,
            "zero_open_orders_confirmed": True, "path": "api"}
    kept = cmd.render_estop("h1", {**base, "protective_exits_left": [{"customer_order_id": "hp-1"}]})
    assert kept.endswith("protective exits left on the exchange: 1")
    assert cmd.render_estop("h1", {**base, "cancel_protective": True}).endswith("protective exits cancelled too")


# ----------------------------------------------------------------------------------------------------------------
# The deploy's upload over the SSH stream (helios-deployctl receive): the runner's tar writer -> the helper's reader
# ----------------------------------------------------------------------------------------------------------------
FLOW = "20260102T000000Z-0123abcd"
DEPS = "0123456789abcdef"


def _upload(members: list[tuple[str, bytes]]) -> io.BytesIO:
    from helios_ops import runner

    stream = io.BytesIO()
    runner.upload_writer(list(members))(stream)
    stream.seek(0)
    return stream


def _manifest(wheel: str = "helios-0.1.0-py3-none-any.whl") -> bytes:
    return json.dumps({"wheel": wheel, "deps_hash": DEPS}).encode()


def test_receive_stores_the_release_and_publishes_a_sent_wheelhouse(layout: ctl.Layout) -> None:
    info = ctl.receive_upload(FLOW, _upload([("wheelhouse/dep-1.0-py3-none-any.whl", b"dep"),
                                             ("helios-0.1.0-py3-none-any.whl", b"wheel"),
                                             ("release.json", _manifest())]))
    assert info == {"files": 3, "bytes": 3 + 5 + len(_manifest()), "wheelhouse_files": 1, "deps_hash": DEPS}
    incoming = layout.incoming_dir / FLOW
    assert sorted(p.name for p in incoming.iterdir()) == ["helios-0.1.0-py3-none-any.whl", "release.json"]
    assert (layout.wheelhouse_dir / DEPS / "dep-1.0-py3-none-any.whl").read_bytes() == b"dep"
    assert (layout.wheelhouse_dir / DEPS / ".complete").is_file()
    assert [p.name for p in layout.wheelhouse_dir.iterdir()] == [DEPS]  # no partial directory left
    assert oct(incoming.joinpath("release.json").stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize(
    ("name", "why"),
    [("../etc/passwd", "refused"), ("/etc/cron.d/x.whl", "refused"), (".hidden.whl", "refused"),
     ("wheelhouse/../../x.whl", "refused"), ("wheelhouse/sub/x.whl", "refused"), ("run.sh", "refused"),
     ("release.json/x", "refused")],
)
def test_receive_refuses_any_other_name_and_keeps_nothing(layout: ctl.Layout, name: str, why: str) -> None:
    with pytest.raises(ctl.Failure, match=why) as refused:
        ctl.receive_upload(FLOW, _upload([(name, b"x"), ("release.json", _manifest())]))
    assert refused.value.code == ctl.EXIT_REFUSED
    assert not (layout.incoming_dir / FLOW).exists()
    assert not [p for p in layout.wheelhouse_dir.iterdir()]


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "directory", "fifo", "device"])
def test_receive_refuses_anything_but_regular_files(layout: ctl.Layout, kind: str) -> None:
    import tarfile

    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        info = tarfile.TarInfo("helios-0.1.0-py3-none-any.whl")
        info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "directory": tarfile.DIRTYPE,
                     "fifo": tarfile.FIFOTYPE, "device": tarfile.CHRTYPE}[kind]
        info.linkname = "/etc/shadow"
        tar.addfile(info)
    stream.seek(0)
    with pytest.raises(ctl.Failure, match="regular files"):
        ctl.receive_upload(FLOW, stream)
    assert not (layout.incoming_dir / FLOW).exists()


def test_receive_caps_the_size_and_needs_a_complete_upload(layout: ctl.Layout,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched, pytest.raises(ctl.Failure, match="larger than allowed"):
        patched.setattr(ctl, "UPLOAD_MAX_FILE", 10)
        ctl.receive_upload(FLOW, _upload([("helios-0.1.0-py3-none-any.whl", b"x" * 11)]))
    full = _upload([("helios-0.1.0-py3-none-any.whl", b"wheel"), ("release.json", _manifest())]).getvalue()
    with pytest.raises(ctl.Failure, match=r"not a complete tar stream|ends early"):
        ctl.receive_upload(FLOW, io.BytesIO(full[:700]))
    with pytest.raises(ctl.Failure, match="no wheelhouse"):  # the host lacks it and none was sent
        ctl.receive_upload(FLOW, io.BytesIO(full))
    with pytest.raises(ctl.Failure, match="names no valid wheel"):
        ctl.receive_upload(FLOW, _upload([("release.json", _manifest("../x.whl"))]))
    assert not (layout.incoming_dir / FLOW).exists()


def test_receive_refuses_a_bad_flow_id(layout: ctl.Layout) -> None:
    with pytest.raises(ctl.Failure, match="not a flow id"):
        ctl.receive_upload("../../etc", io.BytesIO(b""))

"""HTTP API and dashboard (FastAPI). Read endpoints are open on the loopback interface; control endpoints
(emergency stop, resume) need ``Authorization: Bearer <HELIOS_API_TOKEN>``.

Handlers are plain ``def``: FastAPI runs them in its thread pool, so a slow exchange never blocks the event loop.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from helios import __version__, daily_loss, views
from helios.api_edge import EdgeGuard, EdgePolicy
from helios.api_rollout import create_rollout_router
from helios.engine import ResumeRefused
from helios.gates import GATE_NAMES
from helios.models import TradingState
from helios.trading_state import TransitionRefused

if TYPE_CHECKING:
    from helios.service import Runtime


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]


class EmergencyStopBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: NonBlank = Field("emergency stop via API", min_length=1, max_length=500)
    actor: NonBlank = Field("api", min_length=1, max_length=100)
    cancel_protective: bool = False  # also cancel the protective exits held on the exchange


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: NonBlank = Field(..., min_length=1, max_length=500)
    actor: NonBlank = Field("api", min_length=1, max_length=100)


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Helios",
        version=__version__,
        description="Helios trading service: health, mode, positions, orders, P&L, and the kill switch.",
        docs_url=None,  # no CDN-loaded Swagger/ReDoc pages on the origin that keeps the dashboard's token
        redoc_url=None,
    )
    token = runtime.settings.helios_api_token
    app.add_middleware(EdgeGuard, policy=EdgePolicy(  # host allow-list, body cap, headers: before anything else
        api_host=runtime.settings.helios_api_host, token=None if token is None else token.get_secret_value()))

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(status_code=422, content={"detail": f"{where}: {first.get('msg', 'invalid')}"})

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = runtime.settings.helios_api_token
        scheme, _, presented = (authorization or "").partition(" ")
        if expected is None:
            raise HTTPException(401, "control endpoints need HELIOS_API_TOKEN, which is not configured",
                                headers={"WWW-Authenticate": "Bearer"})
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected.get_secret_value().encode()
        ):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/api/health")
    def health() -> JSONResponse:
        healthy, body = runtime.health()
        return JSONResponse(status_code=200 if healthy else 503, content=body)

    @app.get("/api/mode/current")
    def mode_current() -> dict[str, Any]:
        return {
            "mode": runtime.engine.mode.value,
            "paper": runtime.engine.mode.value == "PAPER",
            "trading_state": runtime.engine.state.value,
            "version": __version__,
            "release": runtime.release,
        }

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return runtime.status()

    @app.get("/api/positions")
    def positions() -> dict[str, Any]:
        return {"positions": views.positions_json(runtime.engine)}

    @app.get("/api/orders")
    def orders(
        open_only: Annotated[bool, Query(alias="open")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        records = runtime.journal.orders(limit=limit, active_only=open_only)
        return {"orders": [r.to_json() for r in records]}

    @app.get("/api/trades")
    def trades(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"trades": runtime.journal.trades(limit=limit)}

    @app.get("/api/pnl")
    def pnl() -> dict[str, Any]:
        return views.pnl_json(runtime.engine)

    @app.post("/api/emergency-stop", dependencies=[Depends(require_token)])
    def emergency_stop(body: EmergencyStopBody | None = None) -> dict[str, Any]:
        body = body or EmergencyStopBody()
        return runtime.engine.emergency_stop(body.reason, body.actor, cancel_protective=body.cancel_protective)

    @app.post("/api/resume", dependencies=[Depends(require_token)])
    def resume(body: ResumeBody) -> dict[str, Any]:
        try:
            return runtime.engine.resume(body.reason, body.actor)
        except (ResumeRefused, TransitionRefused) as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return render_metrics(runtime)

    @app.get("/dashboard.html", response_class=HTMLResponse)
    def dashboard() -> str:
        return resources.files("helios").joinpath("static/dashboard.html").read_text(encoding="utf-8")

    app.include_router(create_rollout_router(runtime))  # /api/rollout and the vendored chart library

    @app.get("/static/dashboard.js", include_in_schema=False)
    def dashboard_js() -> Response:
        script = resources.files("helios").joinpath("static/dashboard.js").read_text(encoding="utf-8")
        return Response(script, media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, str]:
        return {"service": "helios", "dashboard": "/dashboard.html", "health": "/api/health",
                "openapi": "/openapi.json"}

    return app


def render_metrics(runtime: Runtime) -> str:
    engine = runtime.engine
    now = engine.clock()
    lines = [
        "# HELP helios_up 1 while the service answers.",
        "# TYPE helios_up gauge",
        "helios_up 1",
        "# HELP helios_info Build and mode information.",
        "# TYPE helios_info gauge",
        f'helios_info{{version="{__version__}",release="{runtime.release}",mode="{engine.mode.value}"}} 1',
        "# HELP helios_trading_state 1 for the current trading state.",
        "# TYPE helios_trading_state gauge",
    ]
    for state in TradingState:
        lines.append(f'helios_trading_state{{state="{state.value}"}} {int(engine.state is state)}')
    age = views.heartbeat_age(engine, now)
    lines += [
        "# HELP helios_heartbeat_age_seconds Seconds since the engine loop last completed a tick.",
        "# TYPE helios_heartbeat_age_seconds gauge",
        f"helios_heartbeat_age_seconds {age if age is not None else 'NaN'}",
        "# HELP helios_open_positions Open positions.",
        "# TYPE helios_open_positions gauge",
        f"helios_open_positions {len(engine.positions)}",
        "# HELP helios_open_orders Orders that may be working on the exchange.",
        "# TYPE helios_open_orders gauge",
        f"helios_open_orders {len(engine.active)}",
        "# HELP helios_pnl_today_zar Realised plus unrealised P&L today (Africa/Johannesburg), ZAR.",
        "# TYPE helios_pnl_today_zar gauge",
        f"helios_pnl_today_zar {daily_loss.todays_pnl_zar(engine):.2f}",
        "# HELP helios_gate_rejections_total Orders refused by each safety gate.",
        "# TYPE helios_gate_rejections_total counter",
    ]
    counts = dict(engine.rejection_counts)
    for gate in GATE_NAMES:
        lines.append(f'helios_gate_rejections_total{{gate="{gate}"}} {counts.get(gate, 0)}')
    lines += ["# HELP helios_orders_total Journaled orders by status.", "# TYPE helios_orders_total gauge"]
    for status, count in sorted(runtime.journal.order_counts().items()):
        lines.append(f'helios_orders_total{{status="{status}"}} {count}')
    lines += [
        "# HELP helios_exchange_connected 1 when the exchange answered lately.",
        "# TYPE helios_exchange_connected gauge",
        f"helios_exchange_connected {int(engine.client.is_connected())}",
    ]
    return "\n".join(lines) + "\n"

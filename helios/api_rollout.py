"""Read-only rollout endpoints for the dashboard: the equity curve with drawdown, daily P&L, the capital stage and
the distance to the next, success-metric checks and red flags; and the vendored charting library (no CDN).

The lead includes it into ``helios.api.create_app`` with one line::

    app.include_router(create_rollout_router(runtime))
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from helios.metrics import JOHANNESBURG, daily_pnl, drawdown_series
from helios.report import build_report, collect_window_facts, starting_capital, window_ending

if TYPE_CHECKING:
    from helios.service import Runtime

UPLOT_VERSION = "1.6.32"
VENDOR_FILES = {  # name -> media type: only these are served
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}


def create_rollout_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.get("/api/rollout")
    def rollout(window: Annotated[Literal["day", "week", "month"], Query()] = "week") -> dict[str, Any]:
        now = runtime.engine.clock()
        journal = runtime.journal
        capital = starting_capital(journal, runtime.settings.helios_paper_starting_zar)
        report = build_report(journal, window_name=window, now=now, capital_zar=capital)
        facts = collect_window_facts(journal, window_ending(window, now), fallback_capital_zar=capital)
        equity = list(facts.equity)
        days = daily_pnl(equity)
        return {
            **report,
            "chart": {
                "t": [p.at.timestamp() for p in equity],
                "equity_zar": [float(p.equity_zar) for p in equity],  # for drawing only; the numbers are above
                "drawdown_pct": [-float(d) for d in drawdown_series(equity)],
                "days": [datetime.combine(d, time(12), JOHANNESBURG).astimezone(UTC).timestamp() for d, _ in days],
                "daily_pnl_zar": [float(p) for _, p in days],
            },
        }

    @router.get("/static/vendor/{name}", include_in_schema=False)
    def vendor(name: str) -> Response:
        media = VENDOR_FILES.get(name)
        if media is None:
            raise HTTPException(404, "not found")
        body = resources.files("helios").joinpath(f"static/vendor/{name}").read_bytes()
        return Response(body, media_type=media, headers={"Cache-Control": "max-age=3600"})

    return router

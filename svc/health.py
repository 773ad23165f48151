"""Probes: GET /api/health (readiness: a status report) and GET /api/live (liveness); never cached."""

from flask import Blueprint, current_app

from . import store

bp = Blueprint("health", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    """Status of the app, PostgreSQL and Redis: ok, degraded (no Redis) or down (503)."""
    postgres = store.database_ok()
    redis = current_app.extensions["cache"].ping()
    status = ("ok" if redis else "degraded") if postgres else "down"
    body = {"status": status, "postgres": "ok" if postgres else "down",
            "redis": "ok" if redis else "down"}
    headers = {"Cache-Control": "no-store"}
    if not postgres:
        headers["Retry-After"] = "2"
    return body, 200 if postgres else 503, headers


@bp.get("/live")
def live():
    """The process answers; touches neither PostgreSQL nor Redis, so their outage restarts nothing."""
    return {"status": "alive"}, 200, {"Cache-Control": "no-store"}

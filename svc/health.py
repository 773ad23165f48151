"""Probes, never cached: GET /api/health (readiness, a status report), GET /api/live (liveness)."""

from flask import Blueprint

from . import cache, db

bp = Blueprint("health", __name__, url_prefix="/api")


def init_app(app):
    """Serve the probes."""
    app.register_blueprint(bp)


@bp.get("/health")
def health():
    """Status of the app, PostgreSQL and Redis: ok, degraded (no Redis) or down (503)."""
    postgres = db.reachable()
    redis = cache.current().ping()
    status = ("ok" if redis else "degraded") if postgres else "down"
    body = {"status": status, "postgres": "ok" if postgres else "down",
            "redis": "ok" if redis else "down"}
    headers = {"Cache-Control": "no-store"}
    if not postgres:
        headers["Retry-After"] = "2"
    return body, 200 if postgres else 503, headers


@bp.get("/live")
def live():
    """The process answers; asks neither PostgreSQL nor Redis: their outage restarts nothing."""
    return {"status": "alive"}, 200, {"Cache-Control": "no-store"}

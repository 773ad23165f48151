"""GET /api/health: a plain status report, never cached."""

import psycopg
from flask import Blueprint, current_app
from psycopg_pool import PoolTimeout

bp = Blueprint("health", __name__, url_prefix="/api")


def _postgres_ok():
    ext = current_app.extensions
    try:
        with ext["pool"].connection() as conn:
            ext["queries"]["ping_database"].run(conn)
    except (PoolTimeout, psycopg.Error):
        return False
    return True


@bp.get("/health")
def health():
    """200 ok, 200 degraded without Redis, 503 down without PostgreSQL."""
    postgres = _postgres_ok()
    redis = current_app.extensions["cache"].ping()
    status = ("ok" if redis else "degraded") if postgres else "down"
    body = {"status": status, "postgres": "ok" if postgres else "down",
            "redis": "ok" if redis else "down"}
    headers = {"Cache-Control": "no-store"}
    if not postgres:
        headers["Retry-After"] = "2"
    return body, 200 if postgres else 503, headers

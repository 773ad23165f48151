"""/api/health (readiness) when all is well, the route compose's healthcheck calls, and
/api/live (liveness), which asks no dependency.

What /api/health reports while PostgreSQL or Redis is down is in test_outages.py.
"""

import time

import pytest

from helpers import close_app, make_app
from stack import free_port

pytestmark = pytest.mark.app


def test_health_reports_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthcheck_url_is_a_route_of_the_app(app):
    assert "/api/health" in {rule.rule for rule in app.url_map.iter_rules()}


def test_live_is_200_alive_while_postgres_and_redis_are_down(config):
    # Nothing listens on these ports: both servers are as good as stopped.
    app = make_app(config, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/tasks",
                   REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", DB_POOL_TIMEOUT="1")
    try:
        client = app.test_client()
        started = time.monotonic()
        live = client.get("/api/live")
        assert time.monotonic() - started < 0.5
        assert live.status_code == 200 and live.get_json() == {"status": "alive"}
        assert live.headers["Cache-Control"] == "no-store"
        assert client.get("/api/health").status_code == 503  # readiness does see the outage
    finally:
        close_app(app)

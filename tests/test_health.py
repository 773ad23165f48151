"""/api/health when all is well, and the route compose's healthcheck calls.

What it reports while PostgreSQL or Redis is down is in test_outages.py.
"""

import pytest

pytestmark = pytest.mark.app


def test_health_reports_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthcheck_url_is_a_route_of_the_app(app):
    assert "/api/health" in {rule.rule for rule in app.url_map.iter_rules()}

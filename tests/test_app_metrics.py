"""GET /metrics from one process (the in-process app, without PROMETHEUS_MULTIPROC_DIR):
requests by method, route template and status; app cache hits and misses; Redis errors; the
pool. Several gunicorn workers: test_gunicorn.py; the whole stack and nginx: test_metrics.py."""

import pytest

from helpers import close_app, make_app, moved, samples
from stack import free_port
from svc.db import pool as app_pool

pytestmark = pytest.mark.app

REQUESTS = "tasks_http_requests_total"
DURATIONS = "tasks_http_request_duration_seconds_count"
LOOKUPS = "tasks_cache_lookups_total"


def scrape(client):
    """The app's samples, checking the answer is Prometheus text."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    return samples(response.get_data(as_text=True))


def test_requests_are_counted_and_timed_by_method_route_template_and_status(client):
    before = scrape(client)
    task = client.post("/api/tasks", json={"title": "x"}).get_json()
    for url in (f"/api/tasks/{task['id']}", f"/api/tasks/{task['id']}", "/api/tasks/999",
                "/api/tasks/abc", "/nowhere"):
        client.get(url)
    client.open("/api/tasks", method="BREW")  # 405: no route matched this method
    after = scrape(client)
    item = "/api/tasks/<raw_id>"
    expected = [({"method": "POST", "route": "/api/tasks", "status": "201"}, 1),
                ({"method": "GET", "route": item, "status": "200"}, 2),
                ({"method": "GET", "route": item, "status": "404"}, 2),
                ({"method": "GET", "route": "unmatched", "status": "404"}, 1),
                ({"method": "other", "route": "unmatched", "status": "405"}, 1)]
    for labels, count in expected:
        assert moved(before, after, REQUESTS, **labels) == count, labels
        assert moved(before, after, DURATIONS, **labels) == count, labels
    routes = {dict(labels).get("route") for _, labels in after}
    assert not [r for r in routes if r and ("999" in r or "abc" in r or "nowhere" in r)]


def test_app_cache_hits_and_misses_are_counted(client):
    task = client.post("/api/tasks", json={"title": "x"}).get_json()
    before = scrape(client)
    for url in (f"/api/tasks/{task['id']}", "/api/tasks") * 2:
        client.get(url)
    after = scrape(client)
    assert moved(before, after, LOOKUPS, result="miss") == 2
    assert moved(before, after, LOOKUPS, result="hit") == 2


def test_redis_errors_are_counted_and_each_lookup_without_redis_is_a_miss(config, db):
    app = make_app(config, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    try:
        client = app.test_client()
        for url in ("/api/tasks", "/api/tasks", "/api/health"):
            client.get(url)
        after = scrape(client)
    finally:
        close_app(app)
    # The first lookup fails and starts a second of back-off (the second lookup does not try
    # Redis); health's ping always tries.
    assert after[("tasks_redis_errors_total", frozenset())] == 2
    assert after[(LOOKUPS, frozenset({("result", "miss")}))] == 2
    assert after[(LOOKUPS, frozenset({("result", "hit")}))] == 0


def test_pool_gauges_are_read_at_scrape_time(app, client):
    pool = app_pool(app)
    with pool.connection():  # one connection lent out while the scrape runs
        now = scrape(client)
        size = pool.get_stats()["pool_size"]
    assert now[("tasks_db_pool_connections", frozenset())] == size >= 1
    assert now[("tasks_db_pool_connections_in_use", frozenset())] == 1
    assert now[("tasks_db_pool_requests_waiting", frozenset())] == 0

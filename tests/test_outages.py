"""PostgreSQL or Redis down: the app still answers quickly (503, or served without the cache),
logs the outage once, and /api/health says which is down.

The same through nginx, and recovery once a server is back: test_edge.py.
"""

import time

import pytest

from helpers import close_app, make_app

pytestmark = pytest.mark.app


def test_database_down_is_503_with_retry_after_quickly(config, rds):
    from stack import free_port

    app = make_app(config, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/tasks",
                   DB_POOL_TIMEOUT="1")
    try:
        client = app.test_client()
        for method, url, body in [("GET", "/api/tasks", None), ("GET", "/api/tasks/1", None),
                                  ("POST", "/api/tasks", {"title": "x"})]:
            started = time.monotonic()
            response = client.open(url, method=method, json=body)
            assert time.monotonic() - started < 3
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "2"
            problem = response.get_json()
            assert problem["status"] == 503 and "postgresql://" not in problem["detail"]
        health = client.get("/api/health")
        assert health.status_code == 503
        assert health.get_json() == {"status": "down", "postgres": "down", "redis": "ok"}
    finally:
        close_app(app)


def test_redis_stopped_mid_test_still_serves_and_reports_degraded(config, provider, db):
    redis_server = provider.redis()
    app = make_app(config, REDIS_URL=redis_server.url)
    try:
        client = app.test_client()
        task = client.post("/api/tasks", json={"title": "x"}).get_json()
        client.get("/api/tasks")
        assert client.get("/api/tasks").headers["X-App-Cache"] == "HIT"
        redis_server.stop()
        started = time.monotonic()
        for _ in range(20):
            listing = client.get("/api/tasks")
            assert listing.status_code == 200 and listing.headers["X-App-Cache"] == "MISS"
        assert time.monotonic() - started < 5
        assert client.patch(f"/api/tasks/{task['id']}", json={"done": True}).status_code == 200
        assert client.get(f"/api/tasks/{task['id']}").get_json()["done"] is True
        health = client.get("/api/health")
        assert health.status_code == 200
        assert health.get_json() == {"status": "degraded", "postgres": "ok", "redis": "down"}
    finally:
        close_app(app)


def test_redis_outage_is_logged_once_not_per_request(config, provider, db, caplog):
    redis_server = provider.redis()
    redis_server.stop()
    app = make_app(config, REDIS_URL=redis_server.url)
    try:
        client = app.test_client()
        for _ in range(10):
            assert client.get("/api/tasks").status_code == 200
        warnings = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        close_app(app)


def test_a_pooled_connection_postgresql_ended_while_idle_is_replaced_before_use(config, db):
    from svc.db import make_pool
    from stack import wait_for

    pool = make_pool(config)
    try:
        pool.wait(timeout=10)
        with pool.connection() as first, pool.connection() as second:
            ended = {first.info.backend_pid, second.info.backend_pid}
        for pid in ended:  # as a restart does to every idle connection
            db.execute("select pg_terminate_backend(%s)", [pid])
        wait_for(lambda: not db.execute("select 1 from pg_stat_activity where pid = any(%s)",
                                        [list(ended)]).fetchall(), "the backends to end")
        for _ in range(3):
            with pool.connection() as conn:
                assert conn.execute("select 1 as one").fetchone()["one"] == 1
                assert conn.info.backend_pid not in ended
    finally:
        pool.close()

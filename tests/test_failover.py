"""Redis paused, or killed and restarted empty or with its data, while a write is acknowledged:
no worker of the app serves an older task or page once Redis answers again.

The same through nginx's reads of Redis: test_edge_failover.py.
"""

import time

import pytest

from helpers import REDIS_FAULTS, close_app, make_app, redis_fault
import stack

pytestmark = pytest.mark.app


@pytest.fixture
def own_redis(tmp_path):
    """A persistent Redis of this test's own, which it may pause, kill and restart."""
    port = stack.free_port()
    state = {"pid": stack.start_redis(tmp_path, port, persistent=True)[1]}

    def restart():
        state["pid"] = stack.start_redis(tmp_path, port, persistent=True)[1]

    state.update(url=f"redis://127.0.0.1:{port}/0", dir=tmp_path, restart=restart)
    yield state
    stack.stop_pid(state["pid"])


@pytest.mark.parametrize("fault", REDIS_FAULTS)
def test_no_worker_serves_data_older_than_a_write_acknowledged_while_redis_was_away(
        config, db, own_redis, fault):
    # Two apps on one Redis: the one that writes, and one that saw nothing of the outage.
    writer, other = (make_app(config, REDIS_URL=own_redis["url"]) for _ in range(2))
    try:
        clients = [writer.test_client(), other.test_client()]
        task = clients[0].post("/api/tasks", json={"title": "old"}).get_json()
        urls = [f"/api/tasks/{task['id']}", "/api/tasks"]
        for client in clients:
            for url in urls:
                client.get(url)
                assert client.get(url).headers["X-App-Cache"] == "HIT"

        end = redis_fault(fault, own_redis["pid"], own_redis["dir"], own_redis["restart"])
        assert clients[0].patch(urls[0], json={"title": "new"}).status_code == 200
        end()

        hits, deadline = 0, time.monotonic() + 2.5  # past the app's 1 s back-off from Redis
        while time.monotonic() < deadline:
            for client in clients:
                item, page = (client.get(url) for url in urls)
                assert item.get_json()["title"] == "new", f"stale item ({fault})"
                assert [t["title"] for t in page.get_json()["items"]] == ["new"], "stale page"
                hits += item.headers["X-App-Cache"] == "HIT"
            time.sleep(0.05)
        assert hits, "the cache is used again once Redis is back"
    finally:
        for app in (writer, other):
            close_app(app)

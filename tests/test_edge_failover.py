"""Redis paused, or killed and restarted empty or with its data, while a write is acknowledged:
once nginx's micro-cache second has passed, nginx serves nothing older from Redis.

The app's own cache under the same faults: test_failover.py.
"""

import time

import pytest
import redis

from helpers import REDIS_FAULTS, cached_responses, call, new_task, redis_fault, running_stack


pytestmark = pytest.mark.stack

MICRO = 2.1  # a micro-cache copy answers for 1 s (micro_cache.lua): wait well past it


@pytest.fixture(scope="module")
def edge():
    """A stack whose Redis keeps an append-only file, so it can come back with its data."""
    with running_stack("failover", persistent_redis=True) as stack:
        yield stack


def entries(stack, url):
    """The cached responses for `url` in the current Redis's namespace."""
    rds = redis.Redis.from_url(stack.redis_url)
    try:
        return [key for key in cached_responses(rds) if key.endswith(":" + url)]
    finally:
        rds.close()


@pytest.mark.parametrize("fault", REDIS_FAULTS)
def test_the_edge_serves_nothing_older_than_a_write_acknowledged_while_redis_was_away(
        edge, fault):
    task = new_task(edge, title="old")
    urls = [f"/api/tasks/{task['id']}", f"/api/tasks?after={task['id'] - 1}&limit=1"]
    for url in urls:
        assert call(edge, "GET", url).header("X-Edge-Cache") == "MISS"
        assert entries(edge, url), "the app stored what nginx fetched"

    end = redis_fault(fault, edge.pid("redis"), edge.dir, lambda: edge.start("redis"))
    assert call(edge, "PATCH", urls[0], {"title": "new"}).status == 200
    end()

    time.sleep(MICRO)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        item, page = (call(edge, "GET", url) for url in urls)
        assert item.json()["title"] == "new", f"stale item ({fault})"
        assert [t["title"] for t in page.json()["items"]] == ["new"], f"stale page ({fault})"
        time.sleep(0.1)
    assert all(entries(edge, url) for url in urls), "the app stores again"

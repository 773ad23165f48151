"""Per-client budgets at nginx (conf/nginx/limits.lua) for the requests that reach the app:
429 with Retry-After past them, per client address, tighter for searches and counts, and never
for a cache hit. Small budgets here (the environment nginx starts with), so a few requests
exhaust them."""

import os

import psycopg
import pytest

from helpers import call, running_stack

pytestmark = pytest.mark.stack

BUDGETS = {"EDGE_APP_RATE": "2", "EDGE_APP_BURST": "4", "EDGE_COSTLY_RATE": "1",
           "EDGE_COSTLY_BURST": "1"}
TRIES = 30  # far more than a budget lets through in the seconds they take


@pytest.fixture(scope="module")
def edge():
    """A stack whose nginx has the small BUDGETS."""
    saved = {name: os.environ.get(name) for name in BUDGETS}
    os.environ.update(BUDGETS)
    try:
        with running_stack("limits") as stack:
            yield stack
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def new_tasks(stack, *titles):
    """Insert tasks straight into PostgreSQL (127.0.0.1 has a small budget too): their ids."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        return [conn.execute("insert into tasks (title) values (%s) returning id",
                             (title,)).fetchone()[0] for title in titles]


def statuses(stack, paths, source, headers=None):
    replies = [call(stack, "GET", path, headers=headers, source=source) for path in paths]
    return [r.status for r in replies], replies


def test_uncached_reads_past_the_budget_get_429_with_retry_after_from_nginx(edge):
    ids = new_tasks(edge, *(f"limited {n}" for n in range(TRIES)))
    codes, replies = statuses(edge, [f"/api/tasks/{i}" for i in ids], "127.0.0.3")
    assert codes[:3] == [200] * 3 and 429 in codes
    refused = replies[codes.index(429)]
    assert refused.headers.get_all("Retry-After") == ["1"]  # once: nginx's 429s all say it
    assert refused.header("Content-Type") == "application/problem+json"
    assert refused.json()["status"] == 429 and "Retry-After" in refused.json()["detail"]
    # Another address has a budget of its own.
    assert call(edge, "GET", f"/api/tasks/{ids[-1]}", source="127.0.0.4").status == 200


def test_cache_hits_are_never_limited(edge):
    (task_id,) = new_tasks(edge, "hot")
    codes, replies = statuses(edge, [f"/api/tasks/{task_id}"] * TRIES * 3, "127.0.0.5")
    assert codes == [200] * TRIES * 3
    served = {r.header("X-Cache-Status") for r in replies[1:]} | {
        r.header("X-Edge-Cache") for r in replies[1:]}
    assert "HIT" in served


def test_searches_and_counts_have_a_tighter_budget_of_their_own(edge):
    new_tasks(edge, "searched")
    searches = [f"/api/tasks?q=searched&limit={n}" for n in range(1, TRIES + 1)]
    codes, _ = statuses(edge, searches, "127.0.0.6")
    assert codes[0] == 200 and codes.count(429) >= TRIES - 10
    counted, _ = statuses(edge, [f"/api/tasks?limit={n}" for n in range(1, 6)], "127.0.0.6",
                          headers={"Prefer": "count=planned"})
    assert 429 in counted
    # The same client's cheap reads still have room.
    assert call(edge, "GET", "/api/tasks?limit=77", source="127.0.0.6").status == 200


def test_the_rest_of_the_api_is_limited_too(edge):
    codes, _ = statuses(edge, ["/api/live"] * TRIES, "127.0.0.7")
    assert codes[0] == 200 and 429 in codes

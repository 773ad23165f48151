"""Every statement has a time bound, and costly requests a bounded share of each worker: under
real gunicorn, with PostgreSQL made slow by a lock held behind the API's back (the statements
wait on it until their bound cancels them)."""

import contextlib
import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers import gunicorn_for
from stack import wait_for

pytestmark = pytest.mark.gunicorn

# What the app's role runs on the tasks table right now (its sessions only; not this test's).
WAITING = ("select count(*) from pg_stat_activity where usename = 'tasks_app' "
           "and state = 'active' and query ilike '%%from tasks%%'")


def get(url, headers=None, timeout=30):
    """(status, headers, JSON body) of a GET, errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.load(exc)


@contextlib.contextmanager
def table_locked(db):
    """Hold an ACCESS EXCLUSIVE lock on tasks: every statement on it waits until released."""
    with db.transaction():
        db.execute("lock table tasks in access exclusive mode")
        yield


def waiting(db):
    """How many of the app's statements on tasks run now (a fresh look: within a transaction,
    pg_stat_activity keeps its first snapshot unless cleared)."""
    db.execute("select pg_stat_clear_snapshot()")
    return db.execute(WAITING).fetchone()[0]


@pytest.fixture(scope="module")
def bounded(config):
    """A gunicorn with short bounds (reads 0.3 s, writes 1.5 s): its base URL."""
    with gunicorn_for(config, READ_TIMEOUT="0.3", WRITE_TIMEOUT="1.5",
                      GUNICORN_ACCESS_LOG="/dev/null") as (base, _):
        yield base


def test_a_read_past_its_bound_is_a_503_problem_and_its_query_is_gone(bounded, db):
    with table_locked(db):
        started = time.monotonic()
        status, headers, body = get(f"{bounded}/api/tasks?limit=3")
        took = time.monotonic() - started
        assert waiting(db) == 0  # cancelled, not left running behind the answer
    assert status == 503 and headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "application/problem+json"
    assert "time bound" in body["detail"] and "narrow" in body["detail"]
    assert took < 10  # the bound (0.3 s) answered it, not a client or proxy timeout


def test_a_request_its_client_abandoned_leaves_no_query_running(bounded, db):
    host, port = bounded.removeprefix("http://").split(":")
    with table_locked(db):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/api/tasks?limit=4")
        wait_for(lambda: waiting(db) == 1, "the request's query, waiting on the lock")
        conn.close()  # the client goes away; the app's statement is still waiting
        wait_for(lambda: waiting(db) == 0, "the abandoned query to be cancelled", timeout=10)


def test_writes_have_a_bound_of_their_own(bounded, db):
    task = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{bounded}/api/tasks", data=b'{"title": "slow write"}',
        headers={"Content-Type": "application/json"})).read())
    with table_locked(db):
        started = time.monotonic()
        request = urllib.request.Request(f"{bounded}/api/tasks/{task['id']}", method="PATCH",
                                         data=b'{"done": true}',
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        took = time.monotonic() - started
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
    assert took >= 1.4  # the write bound (1.5 s), not the read bound (0.3 s), cancelled it
    status, _, row = get(f"{bounded}/api/tasks/{task['id']}")
    assert status == 200 and row["done"] is False


def test_sixteen_slow_searches_in_flight_leave_a_cheap_read_answered(config, db, rds):
    # 2 workers x 4 threads; a search may hold one thread of each worker (COSTLY_SHARE=1).
    with gunicorn_for(config, READ_TIMEOUT="4", COSTLY_SHARE="1", GUNICORN_THREADS="4",
                      WEB_CONCURRENCY="2", GUNICORN_ACCESS_LOG="/dev/null") as (base, _):
        task = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/tasks", data=b'{"title": "cheap"}',
            headers={"Content-Type": "application/json"})).read())
        for _ in range(4):  # the item is in the app's cache, whichever worker answers
            assert get(f"{base}/api/tasks/{task['id']}")[0] == 200
        answers = {}

        def search(n):  # each its own limit: no cache entry or fill lock is shared
            answers[n] = get(f"{base}/api/tasks?q=cheap&limit={n}")

        with table_locked(db):
            slow = [threading.Thread(target=search, args=(n,)) for n in range(1, 17)]
            for thread in slow:
                thread.start()
            # Every search is either answered or running (waiting on the lock) before the read.
            wait_for(lambda: len(answers) + waiting(db) >= 16, "the searches to be taken up")
            status, _, item = get(f"{base}/api/tasks/{task['id']}", timeout=10)
            still_in_flight = waiting(db)
        for thread in slow:
            thread.join(30)
    assert status == 200 and item["title"] == "cheap"
    assert still_in_flight >= 1, "the searches ended before the cheap read was answered"
    assert len(answers) == 16
    for code, headers, body in answers.values():  # those that ran end once the lock is gone
        assert code == 200 or (code == 503 and headers["Retry-After"] == "1"), body
    refused_at_once = [b for c, _, b in answers.values()
                       if c == 503 and "busy with searches" in b["detail"]]
    assert len(refused_at_once) >= 14  # at most one a worker ran

"""Idempotency-Key under a real gunicorn: concurrent duplicates and a worker killed mid-request
still leave exactly one row."""

import json
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from helpers import post
import stack

pytestmark = pytest.mark.gunicorn


def rows(db):
    return db.execute("select count(*) from tasks").fetchone()[0]


def test_twenty_concurrent_posts_with_one_key_write_one_row(gunicorn, db):
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: post(gunicorn[0], "twenty"), range(20)))
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    ids = {json.loads(body)["id"] for status, body in results if status == 201}
    assert len(ids) == 1 and rows(db) == 1


@pytest.fixture
def one_worker(config):
    """A gunicorn of this test's own with a single worker: (base URL, master PID)."""
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-kill-"))
    port = stack.free_port()
    pid = stack.start_app(state, port, {"DATABASE_URL": config.DATABASE_URL,
                                        "REDIS_URL": config.REDIS_URL, "WEB_CONCURRENCY": "1"})
    yield f"http://127.0.0.1:{port}", pid
    stack.stop_pid(pid)


def workers(master):
    """The PIDs of gunicorn's workers (the master's children)."""
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(pid) for pid in f.read().split()]


def test_a_retry_after_the_worker_was_killed_mid_request_writes_one_row(one_worker, db, config):
    base, master = one_worker
    locker = psycopg.connect(config.DATABASE_URL)  # holds the table: the POST waits inside
    locker.execute("lock table tasks in exclusive mode")
    outcome = []
    client = threading.Thread(target=lambda: outcome.append(post(base, "killed")))
    client.start()
    stack.wait_for(lambda: db.execute(
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
        " and query ilike 'insert into tasks%%'").fetchone()[0] == 1, "the POST waiting")
    for pid in workers(master):
        os.kill(pid, signal.SIGKILL)
    client.join(10)
    assert isinstance(outcome[0], Exception), outcome  # the client cannot know what happened
    locker.rollback()
    locker.close()

    deadline = time.monotonic() + 15  # PostgreSQL ends the dead worker's session, gunicorn
    while True:                       # starts a new worker; until then: 409 or refused
        result = post(base, "killed")
        if not isinstance(result, Exception) and result[0] != 409:
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.2)
    assert result[0] == 201
    assert post(base, "killed")[0] == 201  # and from now on, the same answer
    assert rows(db) == 1

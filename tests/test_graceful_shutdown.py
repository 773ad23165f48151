"""SIGTERM to gunicorn (what make down, compose and Kubernetes send) lets in-flight requests
finish before the workers exit."""

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from helpers import post
import stack
from stack import pid_alive

pytestmark = pytest.mark.gunicorn


def test_a_request_in_flight_at_sigterm_completes_and_its_write_is_kept(config, db):
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-term-"))
    port = stack.free_port()
    master = stack.start_app(state, port, {"DATABASE_URL": config.DATABASE_URL,
                                           "REDIS_URL": config.REDIS_URL})
    locker = psycopg.connect(config.DATABASE_URL)  # holds the table: the POST waits inside
    locker.execute("lock table tasks in exclusive mode")
    outcome = []
    client = threading.Thread(target=lambda: outcome.append(
        post(f"http://127.0.0.1:{port}", "in-flight")))
    try:
        client.start()
        stack.wait_for(lambda: db.execute(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
            " and query ilike 'insert into tasks%%'").fetchone()[0] == 1, "the POST waiting")
        os.kill(master, signal.SIGTERM)
        time.sleep(0.5)
        assert pid_alive(master)  # waiting for its worker's request
    finally:
        locker.rollback()
        locker.close()
        client.join(10)
        stack.stop_pid(master)
    assert outcome[0][0] == 201 and not pid_alive(master)
    assert db.execute("select count(*) from tasks").fetchone()[0] == 1

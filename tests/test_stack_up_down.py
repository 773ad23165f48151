"""make up / make down (svc.stack): a second up changes nothing, API_TOKENS passes through from
the environment, down leaves nothing running and, in the middle of a write load, loses no write
it acknowledged."""

import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from helpers import call
from svc.stack import Stack, free_port, start_postgres, stop_postgres

pytestmark = pytest.mark.stack

TOKEN = "stack-token-0123456789abcdef"


def test_up_twice_is_a_no_op_writes_take_the_environments_token_and_down_stops_all(
        monkeypatch):
    import socket

    from svc.stack import pid_alive

    monkeypatch.setenv("API_TOKENS", TOKEN)  # as `API_TOKENS=... make up`
    stack = Stack(state_dir=Path(tempfile.mkdtemp(prefix="tasks-svc-updown-")),
                  http_port=free_port())
    try:
        url = stack.up()
        pids = {name: stack.pid(name) for name in stack.order}
        again = Stack(state_dir=stack.dir, http_port=free_port())  # as a second `make up` would
        assert again.up() == url and {n: again.pid(n) for n in stack.order} == pids
        refused = call(stack, "POST", "/api/tasks", {"title": "x"})
        assert refused.status == 401 and refused.header("WWW-Authenticate").startswith("Bearer")
        assert call(stack, "POST", "/api/tasks", {"title": "x"},
                    headers={"Authorization": f"Bearer {TOKEN}"}).status == 201
    finally:
        stack.down()
    assert not any(pid_alive(pid) for pid in pids.values())
    ports = {stack.ports[k] for k in ("http", "redis", "postgres")}
    for port in ports | {*stack.ports["apps"], *stack.ports["metrics"]}:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"


def test_down_during_a_write_load_loses_no_acknowledged_write():
    stack = Stack(state_dir=Path(tempfile.mkdtemp(prefix="tasks-svc-down-")),
                  http_port=free_port())
    acknowledged, stop = [], threading.Event()

    def writer(n):
        while not stop.is_set():
            try:
                reply = call(stack, "POST", "/api/tasks", {"title": f"w{n}"})
            except OSError:  # nginx is gone: the load is over
                return
            if reply.status == 201:
                acknowledged.append(reply.json()["id"])

    try:
        stack.up()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        stack.down()  # what make down runs, in the middle of the load
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        stack.down()
    assert len(acknowledged) > 20
    data = stack.dir / "postgres"
    url = start_postgres(data, free_port())
    try:
        with psycopg.connect(url) as conn:
            stored = {r[0] for r in conn.execute("select id from tasks")}
    finally:
        stop_postgres(data)
    assert set(acknowledged) <= stored

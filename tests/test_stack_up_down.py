"""make up / make down (tests/stack.py): a second up changes nothing, API_TOKENS passes through from
the environment, down leaves nothing running and, in the middle of a write load, loses no write
it acknowledged."""

import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from helpers import call
from stack import Stack, StackError, free_port, start_app, start_postgres, stop_postgres

pytestmark = pytest.mark.stack

TOKEN = "stack-token-0123456789abcdef"


def test_up_twice_is_a_no_op_writes_take_the_environments_token_and_down_stops_all(
        monkeypatch):
    import socket

    from stack import pid_alive

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


def test_up_with_a_bad_setting_stops_before_starting_anything_and_names_it(monkeypatch, capsys):
    import stack as stack_module

    monkeypatch.setenv("API_TOKENS", "short")
    monkeypatch.setenv("HTTP_PORT", str(free_port()))
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-bad-"))
    assert stack_module.main("up", state) == 1  # as make up runs it
    err = capsys.readouterr().err
    assert "API_TOKENS" in err and "Traceback" not in err
    assert not (state / "postgres").exists()  # nothing was started


def test_up_on_a_taken_port_names_the_port_and_its_setting():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(state_dir=Path(tempfile.mkdtemp(prefix="tasks-svc-taken-")), http_port=port)
        with pytest.raises(StackError, match=f"port {port} \\(HTTP_PORT\\) is taken"):
            stack.up()
    assert not stack.running() and not (stack.dir / "postgres").exists()


def test_a_server_that_exits_while_starting_fails_at_once_with_the_reason_from_its_log(config):
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-exits-"))
    with pytest.raises(StackError, match="gunicorn on port .* exited: API_TOKENS") as error:
        start_app(state, free_port(), {"DATABASE_URL": config.DATABASE_URL,
                                       "REDIS_URL": config.REDIS_URL, "API_TOKENS": "short"})
    assert "Traceback" not in str(error.value)


def test_down_of_a_stack_that_is_not_running_says_nothing_to_stop(capsys):
    import stack as stack_module

    assert stack_module.main("down", Path(tempfile.mkdtemp(prefix="tasks-svc-idle-"))) == 0
    assert capsys.readouterr().out.strip() == "nothing to stop"


def test_a_server_that_exited_counts_as_stopped_while_it_waits_to_be_reaped():
    import subprocess
    import sys

    from stack import pid_alive, stop_pid, wait_for

    # A parent that never reaps its child: the child's zombie, as a server's is after the
    # `make up` that started it has exited, until init reaps it.
    parent = subprocess.Popen([sys.executable, "-c", "import os, time\n"
                               "pid = os.fork()\n"
                               "if pid == 0: os._exit(0)\n"
                               "print(pid, flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        stat = Path(f"/proc/{child}/stat")
        wait_for(lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z", "the zombie",
                 timeout=10)
        assert not pid_alive(child)
    finally:
        stop_pid(parent.pid)

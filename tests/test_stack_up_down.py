"""make up / make down (svc.stack): a second up changes nothing, API_TOKENS passes through from
the environment, down leaves nothing running."""

import tempfile
from pathlib import Path

import pytest

from helpers import call
from svc.stack import Stack, free_port

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
        pids = {name: stack.pid(name) for name in Stack.ORDER}
        again = Stack(state_dir=stack.dir, http_port=free_port())  # as a second `make up` would
        assert again.up() == url and {n: again.pid(n) for n in Stack.ORDER} == pids
        refused = call(stack, "POST", "/api/tasks", {"title": "x"})
        assert refused.status == 401 and refused.header("WWW-Authenticate").startswith("Bearer")
        assert call(stack, "POST", "/api/tasks", {"title": "x"},
                    headers={"Authorization": f"Bearer {TOKEN}"}).status == 201
    finally:
        stack.down()
    assert not any(pid_alive(pid) for pid in pids.values())
    for port in {stack.ports[k] for k in ("http", "app", "redis", "postgres", "metrics")}:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"

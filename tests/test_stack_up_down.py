"""make up / make down (svc.stack): a second up changes nothing, down leaves nothing running."""

import tempfile
from pathlib import Path

import pytest

from svc.stack import Stack, free_port

pytestmark = pytest.mark.stack


def test_up_twice_is_a_no_op_and_down_leaves_nothing_listening():
    import socket

    from svc.stack import pid_alive

    stack = Stack(state_dir=Path(tempfile.mkdtemp(prefix="tasks-svc-updown-")),
                  http_port=free_port())
    try:
        url = stack.up()
        pids = {name: stack.pid(name) for name in Stack.ORDER}
        again = Stack(state_dir=stack.dir, http_port=free_port())  # as a second `make up` would
        assert again.up() == url and {n: again.pid(n) for n in Stack.ORDER} == pids
    finally:
        stack.down()
    assert not any(pid_alive(pid) for pid in pids.values())
    for port in {stack.ports[k] for k in ("http", "app", "redis", "postgres")}:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"

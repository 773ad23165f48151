"""schemathesis against the served OpenAPI document: the document says exactly what the server does."""

import subprocess
import tempfile
from pathlib import Path

import pytest

from fuzz import st_command
from svc import stack


@pytest.fixture(scope="module")
def app_url(config):
    """A real gunicorn serving the app on a free port."""
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-fuzz-"))
    port = stack.free_port()
    pid = stack.start_app(state, port, {"DATABASE_URL": config.DATABASE_URL,
                                        "REDIS_URL": config.REDIS_URL,
                                        "GUNICORN_ACCESS_LOG": "/dev/null"})
    yield f"http://127.0.0.1:{port}"
    stack.stop_pid(pid)


def test_every_generated_request_gets_a_documented_answer_and_no_server_error(app_url, db):
    """A short fixed-seed run of every check; `make fuzz` runs a long random one."""
    result = subprocess.run(st_command(app_url, max_examples=15, seed=20261129),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout

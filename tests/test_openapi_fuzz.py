"""schemathesis against the served OpenAPI document: the document says exactly what the server does."""

import subprocess

import pytest

from fuzz import st_command, st_env

pytestmark = pytest.mark.gunicorn


def test_every_generated_request_gets_a_documented_answer_and_no_server_error(gunicorn, db):
    """A short fixed-seed run of every check; `make fuzz` runs a long random one."""
    result = subprocess.run(st_command(gunicorn[0], max_examples=15, seed=20261129),
                            env=st_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout

"""schemathesis against the served OpenAPI document: the document says exactly what the server
does, with writes open and with write tokens configured."""

import subprocess

import pytest

from fuzz import st_command, st_env
from helpers import gunicorn_for

pytestmark = pytest.mark.gunicorn

TOKEN = "fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module")
def gunicorn_with_token(config):
    """A second gunicorn, with API_TOKENS set: its base URL."""
    with gunicorn_for(config, API_TOKENS=TOKEN, GUNICORN_ACCESS_LOG="/dev/null") as (base, _):
        yield base


def fuzz(base_url, *options, token=None):
    """A short fixed-seed run of every check; `make fuzz` runs a long random one."""
    result = subprocess.run([*st_command(base_url, max_examples=15, seed=20261129, token=token),
                             *options], env=st_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout


def test_every_generated_request_gets_a_documented_answer_and_no_server_error(gunicorn, db):
    fuzz(gunicorn[0])


def test_with_write_tokens_writes_without_one_are_refused_as_documented(
        gunicorn_with_token, db):
    # The writes only: reads do not change with a token, and the run above covers them.
    fuzz(gunicorn_with_token, "--include-method-regex", "^(POST|PUT|PATCH|DELETE)$",
         token=TOKEN)

"""The app under real gunicorn with conf/gunicorn.conf.py, as it runs in production."""

import json
import urllib.request

import pytest

from helpers import access_log_line
from svc.resource import MAX_BODY

pytestmark = pytest.mark.gunicorn


def test_gunicorn_serves_the_api_and_logs_json_lines_with_the_request_id(gunicorn, db):
    base, log = gunicorn
    request = urllib.request.Request(f"{base}/api/tasks", headers={"X-Request-ID": "gunicorn-1"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.headers["X-Request-ID"] == "gunicorn-1"
        assert json.load(response)["items"] == []

    access = access_log_line(log, "gunicorn-1")
    assert access["status"] == 200 and access["path"] == "/api/tasks"
    assert access["method"] == "GET" and access["ms"] >= 0


def test_gunicorn_body_limit_holds_for_chunked_uploads(gunicorn, db):
    import http.client

    base, _ = gunicorn
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    body = b'{"title": "x"}' + b" " * (MAX_BODY + 1024)  # valid JSON if the server truncated it
    conn.request("POST", "/api/tasks", body=iter([body]), encode_chunked=True,
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert db.execute("select count(*) from tasks").fetchone()[0] == 0

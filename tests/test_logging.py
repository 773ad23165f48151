"""Request ids and logs: every response carries one, and the JSON log line carries the same."""

import json
import re

import pytest

from svc.logs import JsonFormatter

pytestmark = pytest.mark.app


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/api/health", headers={"X-Request-ID": "abc-123"}).headers[
        "X-Request-ID"] == "abc-123"
    generated = {client.get("/api/tasks").headers["X-Request-ID"] for _ in range(2)}
    assert len(generated) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", g) for g in generated)
    forged = client.get("/api/health", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])


def test_log_lines_are_json_with_the_request_id(client, caplog):
    with client.application.test_request_context(headers={"X-Request-ID": "trace-me-42"}):
        client.application.preprocess_request()
        client.application.logger.warning("inside")
        line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert line["request_id"] == "trace-me-42" and line["level"] == "warning"
    assert line["msg"] == "inside"

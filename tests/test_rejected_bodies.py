"""Bodies the app rejects with 413, straight to gunicorn: the client always gets its 413, and
its kept-alive connection stays usable, or is closed with Connection: close, never reset."""

import http.client
import itertools
import json
import socket

import pytest

from svc.resource import MAX_BODY, MAX_DRAIN

pytestmark = pytest.mark.gunicorn

JSON = {"Content-Type": "application/json"}
SIZES = [20, MAX_BODY + 1, MAX_DRAIN]  # a valid task, then over the limit up to the drain


def body_of(size):
    """A JSON body of exactly `size` bytes (a valid task when small)."""
    head = b'{"title": "x"}'
    return head + b" " * (size - len(head))


def test_two_hundred_rejected_and_accepted_bodies_share_one_connection_without_a_reset(
        gunicorn, db):
    host = gunicorn[0].removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("POST", "/api/tasks", body=body_of(20), headers=JSON)
    task = json.loads(conn.getresponse().read())
    combos = itertools.cycle(itertools.product(("POST", "PUT", "PATCH"), SIZES, (False, True)))
    statuses, resets = [], 0
    for method, size, chunked in itertools.islice(combos, 216):
        url = "/api/tasks" if method == "POST" else f"/api/tasks/{task['id']}"
        body = body_of(size)
        try:
            if chunked:
                conn.request(method, url, body=iter([body]), encode_chunked=True,
                             headers={**JSON, "Transfer-Encoding": "chunked"})
            else:
                conn.request(method, url, body=body, headers=JSON)
            response = conn.getresponse()
            response.read()
        except (ConnectionError, http.client.HTTPException):
            resets += 1
            conn.close()
            continue
        statuses.append(response.status)
        assert response.status == (413 if size > MAX_BODY else 201 if method == "POST" else 200)
    assert resets == 0
    assert len(statuses) == 216 and statuses.count(413) == 216 * 2 // 3


def test_a_body_beyond_the_drain_limit_gets_its_413_and_connection_close(gunicorn, db):
    size = MAX_DRAIN + 64 * 1024
    host, port = gunicorn[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {size}\r\n\r\n".encode() + body_of(size))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 413") and "connection: close" in head
    assert db.execute("select count(*) from tasks").fetchone()[0] == 0

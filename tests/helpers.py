"""Helpers that test modules import: an app or a gunicorn of their own, gunicorn's access log,
HTTP to nginx, Prometheus samples.

Fixtures live in conftest.py; the servers behind them in servers.py.
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from svc import cache, create_app, db, janitor
from stack import Stack, free_port, start_app, stop_pid, wait_for

# What can happen to Redis, each undone by restarting or resuming it (see redis_fault).
REDIS_FAULTS = ("paused", "restarted empty", "restarted with its data")


def make_app(config, **overrides):
    """An app for `config`; close it with close_app."""
    return create_app({"DATABASE_URL": config.DATABASE_URL, "REDIS_URL": config.REDIS_URL,
                       **overrides})


def close_app(app):
    """Stop the app's janitor, release its pool and Redis connections."""
    janitor.stop(app)
    db.pool(app).close()
    cache.current(app).client.close()


def generations(rds, task_id=None):
    """(the list's generation, task `task_id`'s) in the Redis that answers now."""
    ns = f"tasks:{rds.info('server')['run_id']}:gen"
    return tuple(int(rds.get(f"{ns}:{scope}") or 0) for scope in ("list", task_id))


def cached_responses(rds):
    """Keys of the cached responses in the Redis that answers now (no generation, no lock)."""
    ns = f"tasks:{rds.info('server')['run_id']}:"
    return [key for key in (k.decode() for k in rds.scan_iter(ns + "*"))
            if not key.startswith(ns + "gen:") and not key.endswith(":lock")]


def redis_fault(kind, pid, data_dir, restart):
    """Begin fault `kind` on the Redis at `pid` (persistent, its files in `data_dir`); returns
    the function that ends it: SIGCONT, or `restart()` after SIGKILL (with its files, or
    without them for "restarted empty")."""
    if kind == "paused":
        os.kill(pid, signal.SIGSTOP)
        return lambda: os.kill(pid, signal.SIGCONT)
    stop_pid(pid, signal.SIGKILL)
    if kind == "restarted empty":
        shutil.rmtree(os.path.join(data_dir, "appendonlydir"), ignore_errors=True)
    return restart


def post(base, key, title="once", timeout=10):
    """POST a task to `base` with an Idempotency-Key: (status, body), or the exception it
    raised."""
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=timeout)
    try:
        conn.request("POST", "/api/tasks", body=json.dumps({"title": title}),
                     headers={"Content-Type": "application/json", "Idempotency-Key": key})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return exc
    finally:
        conn.close()


@contextlib.contextmanager
def running_stack(name, http_port=None, **options):
    """A throwaway stack started by the code behind `make up` on free ports (`options` go to
    Stack), stopped afterwards."""
    stack = Stack(state_dir=Path(tempfile.mkdtemp(prefix=f"tasks-svc-{name}-")),
                  http_port=http_port or free_port(), **options)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@contextlib.contextmanager
def gunicorn_for(config, **env):
    """A real gunicorn with conf/gunicorn.conf.py for `config` (plus `env`) on a free port:
    (base URL, its log file)."""
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-gunicorn-"))
    port = free_port()
    pid = start_app(state, port, {"DATABASE_URL": config.DATABASE_URL,
                                  "REDIS_URL": config.REDIS_URL, **env})
    try:
        yield f"http://127.0.0.1:{port}", state / "gunicorn.log"
    finally:
        stop_pid(pid)


def access_log_line(log, request_id):
    """gunicorn's JSON access line for `request_id`, waiting for it: it is written after the
    response has gone out."""
    def find():
        return next((json.loads(line) for line in log.read_text().splitlines()
                     if line[:1] == "{" and request_id in line), None)

    wait_for(find, f"the access log line of {request_id}", timeout=5)
    return find()


class Reply:
    """A response from nginx, read to the end: status, headers, body."""

    def __init__(self, response):
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name)


def call(stack, method, path, body=None, headers=None, source="127.0.0.1", front=0):
    """One request to nginx (node `front` of the stack), optionally from another loopback
    address."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.front(front), timeout=10,
                                      source_address=(source, 0))
    try:
        if isinstance(body, dict):
            body = json.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=headers or {})
        return Reply(conn.getresponse())
    finally:
        conn.close()


# Headless Chromium as the browser tests run it. Chromium itself still calls home (update checks,
# network time, sign-in): no name resolves, so nothing leaves this machine whoever asks; a page's
# own requests to 127.0.0.1 go through.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                  "--virtual-time-budget=5000", "--window-size=1280,1600"]


def chromium(url, out, *flags):
    """Open `url` in headless Chromium (profile in the folder `out`) once its scripts have run
    (`flags` added); the finished process, whose stdout is the DOM."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is not installed (make test installs it)"
    result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={out / 'profile'}",
                             *flags, "--dump-dom", url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def raw_request(port, request_line):
    """Send `request_line` (str, as is: no percent-encoding, which http.client would refuse to
    skip) with a Host header to 127.0.0.1:`port`; the answer as (status, {lower-case header name:
    value}, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def new_task(stack, title="edge", source="127.0.0.1"):
    """Create a task through nginx (from loopback address `source`); its JSON."""
    reply = call(stack, "POST", "/api/tasks", {"title": title}, source=source)
    assert reply.status == 201, reply.body
    return reply.json()


def samples(text):
    """Prometheus text as {(sample name, frozenset of label pairs): value}."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before, after, name, **labels):
    """How far one sample moved between two scrapes (absent: 0)."""
    key = (name, frozenset(labels.items()))
    return after.get(key, 0) - before.get(key, 0)

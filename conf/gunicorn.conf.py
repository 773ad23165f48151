"""gunicorn settings, driven by the environment (gunicorn -c conf/gunicorn.conf.py svc.wsgi:app)."""

import glob
import json
import multiprocessing
import os
import socket
import time
from http import HTTPStatus

from gunicorn import util
from prometheus_client import multiprocess

from svc.resource import MAX_DRAIN  # gunicorn puts its working directory on sys.path first

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
worker_class = "gthread"
# Each worker listens on a socket of its own (SO_REUSEPORT), and the kernel spreads new
# connections over them evenly. On one shared socket, the worker that wins a burst of accepts
# keeps those kept-alive connections: a third of the bench's rounds had one worker serving all
# 32 while the other idled (0.3x the balanced throughput).
reuse_port = True
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 20))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))  # longer than nginx's idle upstream close
# The pool is made in create_app, in each worker: never preload, a pool must not cross a fork.
preload_app = False
# No control socket (gunicornc): by default gunicorn 27 makes one in the user's home, shared by
# every gunicorn of that user and unwritable for the image's user.
control_socket_disable = True
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 0))
max_requests_jitter = max_requests // 10
# The longest list URL the API documents (a cursor, and q in percent-encoded astral characters)
# is about 6,000 bytes; gunicorn's default request line (4,094) would refuse it. 8,190 is
# gunicorn's largest, and nginx's large_client_header_buffers (8k) lets such a line through.
limit_request_line = 8190
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = "svc.logs.AccessLogger"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Metrics (svc/metrics.py): with PROMETHEUS_MULTIPROC_DIR set in the environment before gunicorn
# starts, every worker writes its figures to files there and a scrape adds them up.
_METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def on_starting(server):
    """Empty the metrics folder before the first worker starts: an earlier run's files would
    be added in."""
    if _METRICS_DIR:
        os.makedirs(_METRICS_DIR, exist_ok=True)
        for path in glob.glob(os.path.join(_METRICS_DIR, "*.db")):
            os.remove(path)


def post_fork(server, worker):
    """Every error a worker answers itself is problem+json, like the app's (svc/errors.py)."""
    util.write_error = write_problem


# gunicorn's own answer to a request it cannot parse (a raw non-ASCII request line, a bad header,
# a line too long): none of it echoed back.
PARSE_ERROR = ("The request line or a header is malformed (characters outside ASCII must be "
               "percent-encoded).")


def write_problem(sock, status, reason, mesg):
    """gunicorn.util.write_error's work as RFC 9457 application/problem+json: gunicorn has no
    hook for its own error pages (text/html), and workers call this one function to send them."""
    title = HTTPStatus(status).phrase
    detail = PARSE_ERROR if status == 400 else (
        "Internal error." if status >= 500 else f"{title}.")
    body = json.dumps({"type": "about:blank", "title": title, "status": status,
                       "detail": detail}, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/problem+json\r\nCache-Control: no-store\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def child_exit(server, worker):
    """A worker is gone: drop its live gauges (pool figures); its counts stay in the totals."""
    if _METRICS_DIR:
        multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)


# A body the app rejects (413) is read and dropped up to MAX_DRAIN bytes, so the connection
# stays usable (svc/validation.py); beyond it, close the connection and say so.


LINGER_S = 1.0  # how long a closing connection's unread body is read and dropped


def pre_request(worker, req):
    """Announce Connection: close when the app will not read a too-long body to its end."""
    length = next((v for h, v in req.headers if h == "CONTENT-LENGTH"), None)
    if length is not None and length.isdigit() and int(length) > MAX_DRAIN:
        req.must_close = True
        req.linger = True


def post_request(worker, req, environ, resp):
    """Close such a connection the way nginx does (lingering close): end our side, then drop
    what the client still sends for a moment, so that closing with unread data does not reset
    the connection before the client has read its 413."""
    sock = environ.get("gunicorn.socket")
    if not getattr(req, "linger", False) or sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_S
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(64 * 1024):
                break
    except OSError:
        pass

"""One JSON object per log line, each carrying the request id when there is one."""

import json
import logging
import re
import sys
import time
import uuid

from flask import g, has_request_context, request
from gunicorn.glogging import Logger as GunicornLogger

from .config import settings

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # anything else is replaced, not echoed


class JsonFormatter(logging.Formatter):
    """Format a record as a single JSON line."""

    def format(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level):
    """Send the root logger's records to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    # Replace our handler from an earlier create_app, keep anyone else's (pytest's, say).
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, JsonFormatter)]
    root.addHandler(handler)
    root.setLevel(level.upper())


def init_app(app):
    """Log as JSON at LOG_LEVEL; give every request an id, echoed in X-Request-ID."""
    configure(settings(app).LOG_LEVEL)
    app.before_request(assign_request_id)
    app.after_request(echo_request_id)


def assign_request_id():
    """Keep a well-formed client X-Request-ID, else make one (before_request hook)."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def echo_request_id(response):
    """Return the request id to the client (after_request hook)."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


class AccessLogger(GunicornLogger):
    """gunicorn's logger, writing its error log and access log as JSON lines."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.syslog):
            return
        headers = dict(resp.headers)
        self.access_log.info("request", extra={"fields": {
            "request_id": headers.get("X-Request-ID"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING"),
            "status": resp.status_code,
            "bytes": getattr(resp, "sent", None),
            "ms": round(request_time.total_seconds() * 1000, 2),
            "remote": environ.get("REMOTE_ADDR"),
            "cache": headers.get("X-App-Cache"),
        }})

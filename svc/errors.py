"""Every error as RFC 9457 application/problem+json, with no internals in it."""

import logging
from http import HTTPStatus

import psycopg
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout
from flask import current_app
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .represent import dumps

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """An error the client can act on; raised by handlers, rendered by `problem`."""

    def __init__(self, status, detail, errors=None, headers=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


class Invalid(ApiError):
    """422 with one entry per offending field."""

    def __init__(self, errors, detail="The request body has invalid fields."):
        super().__init__(422, detail, errors=[{"field": f, "message": m} for f, m in errors])


def no_such_task():
    """The 404 for an id that names no task."""
    return ApiError(404, "No task has this id.")


def answers(*statuses):
    """Declare the problem statuses a handler can answer; openapi.py documents exactly these."""
    def declare(view):
        view.problem_statuses = statuses
        return view
    return declare


def problem(status, detail, errors=None, headers=None):
    """Build the problem+json response; `title` is the standard phrase for `status`."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail}
    if errors:
        body["errors"] = errors
    response = current_app.response_class(dumps(body), status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def _api_error(exc):
    return problem(exc.status, exc.detail, exc.errors, exc.headers)


def _http_error(exc):
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return problem(exc.code, exc.description, headers=headers)


def _database_down(exc):
    log.warning("database unavailable: %s", type(exc).__name__)
    return problem(503, "The database is unavailable; try again shortly.",
                   headers={"Retry-After": "2"})


def _too_slow(exc):
    # Cheap requests run in milliseconds and costly ones are refused up front (validation),
    # so a statement past its bound means a busy server: retry, as for an outage.
    log.warning("statement cancelled: %s", str(exc).strip())
    return problem(503, "The request ran past its time bound; the server is busy. Retry after "
                        "Retry-After seconds, or narrow the request (a longer word in q, "
                        "done=..., a count other than count=exact).",
                   headers={"Retry-After": "1"})


def _conflict(exc):
    return problem(409, "The change conflicts with the stored data.")


def _data_error(exc):
    # Validation should catch these first; a value PostgreSQL rejects is still the client's.
    return problem(422, "A value is out of range for the database.")


def _unexpected(exc):
    log.exception("unhandled error")
    return problem(500, "Internal error; the request id in X-Request-ID locates it in the logs.")


def init_app(app):
    """Route every exception through `problem`."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PoolTimeout, _database_down)
    app.register_error_handler(psycopg.OperationalError, _database_down)
    app.register_error_handler(QueryCanceled, _too_slow)
    app.register_error_handler(psycopg.IntegrityError, _conflict)
    app.register_error_handler(psycopg.DataError, _data_error)
    app.register_error_handler(Exception, _unexpected)

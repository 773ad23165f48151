"""GET /api/openapi.json: the OpenAPI 3.1 document, derived from what the code declares.

Fields and query parameters come from resource.py, each operation's problem statuses from its
handler's @answers, its summary from the handler's docstring; with API_TOKENS set, the bearer
scheme and a 401 go on every handler marked @requires_token (tokens.py); nginx's 429 goes on
every operation (its per-client budgets, conf/nginx/limits.lua). It describes the public API, the routes under
/api/ that nginx serves: /metrics is for the backend network, and not in it.
"""

from flask import Blueprint, current_app

from . import tokens
from .represent import dumps
from .resource import (BULK_MAX, COUNT_EXACT_UPTO, IDEMPOTENCY_KEY, INT64_MAX, LIST_PARAMS,
                       MAX_BODY, MINIMAL_FIELDS, PREFER_COUNT, PREFER_COUNT_ESTIMATED,
                       PREFER_COUNT_PLANNED, PREFER_COUNTS, PREFER_MINIMAL, TASK, WRITABLE)

bp = Blueprint("openapi", __name__, url_prefix="/api")

PROBLEMS = {
    400: "Malformed JSON, empty body, not an object, invalid UTF-8; or bad query parameters, "
         "each named in errors (field: the parameter).",
    401: "No bearer token, or not a valid one (WWW-Authenticate says which); nothing changed.",
    404: "No such task, or an id that is not a positive int64.",
    409: "The change conflicts with a constraint, or a request with the same Idempotency-Key "
         "is still in progress (retry after Retry-After seconds).",
    412: "If-Match matches no current ETag of the task; nothing changed.",
    413: f"The body is over {MAX_BODY} bytes ({MAX_BODY // 1024} KiB).",
    415: "The body is not application/json (UTF-8).",
    422: "Wrong types, unknown or read-only fields, blank or too long text, NUL characters; in a "
         f"bulk create, fields are named by index (\"[3].title\"), and 0 or over {BULK_MAX} "
         "tasks are refused; or an Idempotency-Key already used for another request.",
    429: "Too many requests from this client address (nginx's budgets: writes, requests that "
         "reach the app, searches and counts); nothing changed. Retry after Retry-After seconds.",
    503: "PostgreSQL is unreachable, a statement ran past its time bound, or the worker's share "
         "of searches and counts is taken; retry after Retry-After seconds.",
}


def _ref(kind, name):
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_content(schema):
    return {"application/json": {"schema": schema}}


# Headers a problem response carries, by status.
PROBLEM_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                               "description": 'Bearer realm="tasks-svc", with '
                                              'error="invalid_token" for a wrong token.'}},
    429: {"Retry-After": _ref("headers", "RetryAfter")},
    503: {"Retry-After": _ref("headers", "RetryAfter")},
}


def _field_schema(field, with_default=False):
    """JSON Schema of one task field; `with_default` where the server fills in an absent one
    (a create or a replace: sending the default changes nothing). Never in a partial update,
    where a generated client would send the default and overwrite the field."""
    schema = {"type": field.type, "description": field.doc}
    for key, value in (("format", field.format), ("minimum", field.minimum),
                       ("maxLength", field.max_length), ("pattern", field.pattern),
                       ("default", field.default if with_default else None)):
        if value is not None:
            schema[key] = value
    if field.not_blank:
        schema["minLength"] = 1
    return schema


def _param_schema(param):
    """JSON Schema of one list query parameter, as the query string spells it. No `default`:
    the server applies it (the description says which), and a generated client that sent it
    with every request would contradict a cursor of another listing."""
    if param.type == "boolean":
        return {"type": "string", "enum": ["true", "false"]}
    if param.type == "order":
        return {"type": "string", "enum": list(param.values)}
    if param.type == "string":
        return {"type": "string", "minLength": 1, "maxLength": param.max_length,
                "pattern": param.pattern}
    return {"type": "integer", "minimum": param.minimum, "maximum": param.maximum}


def _param(param):
    """One list query parameter, its server-side default in its description."""
    default = "" if param.default is None else f" Default: {param.default}."
    return {"name": param.name, "in": "query", "description": param.doc + default,
            "schema": _param_schema(param)}


def _body_schema(required, min_properties=0):
    schema = {"type": "object", "additionalProperties": False,
              "properties": {f.name: _field_schema(f, with_default=required) for f in WRITABLE}}
    if required:
        schema["required"] = [f.name for f in WRITABLE if f.required]
    if min_properties:
        schema["minProperties"] = min_properties
    return schema


_TASK_OK = {"description": "The task.", "headers": {"ETag": _ref("headers", "ETag")},
            "content": _json_content(_ref("schemas", "Task"))}
_LOCATION = {"schema": {"type": "string"}, "description": "/api/tasks/{id}"}
_APPLIED = {"schema": {"type": "string"},
            "description": "The preferences of Prefer that shaped this response (RFC 7240)."}


def _prefer(*preferences):
    """The Prefer request header, with the preferences this operation applies."""
    return {"name": "Prefer", "in": "header", "schema": {"type": "string"},
            "description": "RFC 7240 preferences; this operation applies "
                           f"{' or '.join(preferences)} and ignores any other.", "examples": {
                p: {"value": p} for p in preferences}}


_MINIMAL = {"description": f"Prefer: {PREFER_MINIMAL}: written; no body.",
            "headers": {"ETag": _ref("headers", "ETag"), "Location": _LOCATION,
                        "Preference-Applied": _APPLIED}}
_CACHED = {"ETag": _ref("headers", "ETag"), "X-App-Cache": _ref("headers", "XAppCache")}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "schema": {"type": "string"},
                  "description": "ETags you hold; 304 if one is still current."}
_IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
             "description": 'Apply only if one of these ETags ("<id>-<version>" or its weak form '
                            "W/\"<id>-<version>\", as sent in ETag) is the task's current one, "
                            "or *; any other value gets 412 "
                            "and nothing changes."}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY},
    "description": "Send a retry with the same key: the first response is replayed (with "
                   "Idempotent-Replayed: true) and nothing is written twice. Kept for "
                   "IDEMPOTENCY_TTL (24 h)."}
_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
       "description": "Anything that is not a positive int64 is answered with 404."}


def _replayable(response):
    """`response` that may also come as a replay of an earlier one with the same key."""
    headers = {**response.get("headers", {}), "Idempotent-Replayed": {
        "description": "true when this is the stored answer to an earlier request with the "
                       "same Idempotency-Key.", "schema": {"enum": ["true"]}}}
    return {**response, "headers": headers}


def _rate_limited(paths):
    """`paths` with nginx's 429 on every operation: any request that reaches the app counts in
    its client's budget (conf/nginx/limits.lua), and writes in a rate of their own too."""
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters":
                operation["responses"]["429"] = _ref("responses", "Problem429")
    return paths


def build(app):
    """The OpenAPI document of `app`'s routes, as a dict."""
    secured = bool(tokens.configured(app))

    def op(endpoint, responses, **spec):
        view = app.view_functions[endpoint]
        statuses = getattr(view, "problem_statuses", ())
        if secured and getattr(view, "requires_token", False):
            statuses = (401, *statuses)
            spec["security"] = [{"bearerToken": []}]
        problems = {str(s): _ref("responses", f"Problem{s}") for s in statuses}
        if getattr(view, "idempotent", False):
            spec["parameters"] = [*spec.get("parameters", ()), _IDEMPOTENCY_KEY]
            responses = {code: _replayable(r) if code.startswith("2") else r
                         for code, r in responses.items()}
        summary = (view.__doc__ or "").strip().splitlines()[0]
        return {"operationId": view.__name__, "summary": summary, **spec,
                "responses": {**responses, **problems}}

    paths = {
        "/api/health": {"get": op("health.health", {
            "200": {"description": "Up (status ok), or degraded without Redis.",
                    "content": _json_content(_ref("schemas", "Health"))},
            "503": {"description": "PostgreSQL is down.",
                    "headers": {"Retry-After": _ref("headers", "RetryAfter")},
                    "content": _json_content(_ref("schemas", "Health"))}})},
        "/api/live": {"get": op("health.live", {
            "200": {"description": "The process answers (PostgreSQL and Redis are not asked).",
                    "content": _json_content(_ref("schemas", "Live"))}})},
        "/api/tasks": {
            "get": op("tasks.list_tasks", {
                "200": {"description": "A page; `next` is null on the last page.",
                        "headers": {**_CACHED, "Link": {"description": '<next>; rel="next"',
                                                        "schema": {"type": "string"}},
                                    "X-Total-Count": {
                                        "description": "With Prefer: count=...: how many "
                                                       "tasks match, on all pages; "
                                                       "Preference-Applied says which count "
                                                       f"it is: {PREFER_COUNT} (counted), "
                                                       f"{PREFER_COUNT_PLANNED} (the "
                                                       "planner's estimate). "
                                                       f"{PREFER_COUNT_ESTIMATED} is exact up "
                                                       f"to {COUNT_EXACT_UPTO}, planned "
                                                       f"beyond; {PREFER_COUNT} past the "
                                                       "read bound is planned.",
                                        "schema": {"type": "integer", "minimum": 0}},
                                    "Preference-Applied": _APPLIED},
                        "content": _json_content(_ref("schemas", "Page"))},
                "304": {"description": "Not modified."}},
                parameters=[_param(p) for p in LIST_PARAMS]
                + [_IF_NONE_MATCH, _prefer(*PREFER_COUNTS)]),
            "post": op("tasks.create_task", {
                "201": {"description": "Created: the task (with its Location and ETag), or the "
                                       "array of tasks, in the body's order, ids ascending. "
                                       f"Prefer: {PREFER_MINIMAL}: the same with only "
                                       f"{', '.join(MINIMAL_FIELDS)} (TaskCreated). An array "
                                       "gets no Location or ETag.",
                        "headers": {"ETag": _ref("headers", "ETag"), "Location": _LOCATION,
                                    "Preference-Applied": _APPLIED},
                        "content": _json_content({"oneOf": [
                            _ref("schemas", name) for name in ("Task", "TaskCreated")] + [
                            {"type": "array", "minItems": 1, "items": _ref("schemas", name)}
                            for name in ("Task", "TaskCreated")]})}},
                parameters=[_prefer(PREFER_MINIMAL)],
                requestBody={"required": True, "content": _json_content({"oneOf": [
                    _ref("schemas", "TaskCreate"), _ref("schemas", "TaskBulk")]})})},
        "/api/tasks/{id}": {
            "parameters": [_ID],
            "get": op("tasks.get_task", {"200": {**_TASK_OK, "headers": _CACHED},
                                         "304": {"description": "Not modified."}},
                      parameters=[_IF_NONE_MATCH]),
            "put": op("tasks.replace_task", {"200": _TASK_OK, "204": _MINIMAL},
                      parameters=[_IF_MATCH, _prefer(PREFER_MINIMAL)],
                      requestBody=_ref("requestBodies", "TaskCreate")),
            "patch": op("tasks.patch_task", {"200": _TASK_OK, "204": _MINIMAL},
                        parameters=[_IF_MATCH, _prefer(PREFER_MINIMAL)],
                        requestBody=_ref("requestBodies", "TaskPatch")),
            "delete": op("tasks.delete_task", {"204": {"description": "Deleted."}},
                         parameters=[_IF_MATCH])},
        "/api/openapi.json": {"get": op("openapi.openapi", {
            "200": {"description": "OpenAPI 3.1.",
                    "content": _json_content({"type": "object"})}})},
        "/api/docs": {"get": op("docs.docs", {
            "200": {"description": "Swagger UI for this document; its assets are under "
                                   "/api/docs/.",
                    "content": {"text/html": {"schema": {"type": "string"}}}}})},
    }
    paths = _rate_limited(paths)
    used = sorted({int(code) for item in paths.values() for key, operation in item.items()
                   if key != "parameters" for code in operation["responses"]
                   if int(code) in PROBLEMS})
    return {
        "openapi": "3.1.0",
        "info": {"title": "tasks-svc", "version": "1.0.0",
                 "description": "A raw-SQL CRUD service for tasks. Every error is "
                                "application/problem+json (RFC 9457). Every response carries "
                                "X-Request-ID."},
        "paths": paths,
        "components": {
            "schemas": {
                "Task": {"type": "object", "additionalProperties": False,
                         "required": [f.name for f in TASK],
                         "properties": {f.name: _field_schema(f) for f in TASK}},
                "TaskCreate": _body_schema(required=True),
                "TaskPatch": _body_schema(required=False, min_properties=1),
                "TaskBulk": {"type": "array", "items": _ref("schemas", "TaskCreate"),
                             "minItems": 1, "maxItems": BULK_MAX,
                             "description": "Create all of these tasks, or none."},
                "TaskCreated": {"type": "object", "additionalProperties": False,
                                "required": list(MINIMAL_FIELDS),
                                "properties": {f.name: _field_schema(f) for f in TASK
                                               if f.name in MINIMAL_FIELDS}},
                "Page": {"type": "object", "required": ["items", "next", "cursor"],
                         "properties": {
                             "items": {"type": "array", "items": _ref("schemas", "Task")},
                             "next": {"type": ["string", "null"],
                                      "description": "The next page's URL (its cursor alone); "
                                                     "null on the last page."},
                             "cursor": {"type": ["string", "null"],
                                        "description": "The cursor in next: send it as the "
                                                       "cursor parameter, alone, for the next "
                                                       "page; null on the last page."}}},
                "Health": {"type": "object", "required": ["status", "postgres", "redis"],
                           "properties": {"status": {"enum": ["ok", "degraded", "down"]},
                                          "postgres": {"enum": ["ok", "down"]},
                                          "redis": {"enum": ["ok", "down"]}}},
                "Live": {"type": "object", "required": ["status"],
                         "properties": {"status": {"const": "alive"}}},
                "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                            "properties": {
                                "type": {"type": "string"}, "title": {"type": "string"},
                                "status": {"type": "integer"}, "detail": {"type": "string"},
                                "errors": {"type": "array", "items": {
                                    "type": "object", "required": ["field", "message"],
                                    "properties": {"field": {"type": "string"},
                                                   "message": {"type": "string"}}}}}},
            },
            "requestBodies": {
                name: {"required": True, "content": _json_content(_ref("schemas", name))}
                for name in ("TaskCreate", "TaskPatch")},
            "headers": {
                "ETag": {"description": 'Strong for a task ("<id>-<version>": it changes with '
                                        'every version), weak for a page (W/"..."), and weak '
                                        "whenever the body is compressed (gzip).",
                         "schema": {"type": "string"}},
                "XAppCache": {"description": "HIT if the app served it from Redis.",
                              "schema": {"enum": ["HIT", "MISS"]}},
                "RetryAfter": {"schema": {"type": "integer"}},
            },
            "responses": {
                f"Problem{status}": {
                    "description": PROBLEMS[status],
                    "headers": PROBLEM_HEADERS.get(status, {}),
                    "content": {"application/problem+json": {
                        "schema": _ref("schemas", "Problem")}}}
                for status in used},
            **({"securitySchemes": {"bearerToken": {
                "type": "http", "scheme": "bearer",
                "description": "One of the tokens in the server's API_TOKENS; writes only."}}}
               if secured else {}),
        },
    }


@bp.get("/openapi.json")
def openapi():
    """This document."""
    return current_app.response_class(document(), mimetype="application/json")


def init_app(app):
    """Serve the document of every route registered so far (so: last), built once."""
    app.register_blueprint(bp)
    app.extensions["openapi"] = dumps(build(app))


def document(app=None):
    """The OpenAPI document of `app` (default: the current app), as JSON bytes."""
    return (app or current_app).extensions["openapi"]

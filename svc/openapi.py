"""GET /api/openapi.json: the OpenAPI 3.1 description of every route."""

from flask import Blueprint, current_app

from .store import dumps
from .validation import INT64_MAX, LIMITS, MAX_BODY

bp = Blueprint("openapi", __name__, url_prefix="/api")


def _ref(kind, name):
    return {"$ref": f"#/components/{kind}/{name}"}


def _problems(*statuses):
    return {str(s): _ref("responses", f"Problem{s}") for s in statuses}


def _body(schema):
    return {"required": True, "content": {"application/json": {"schema": _ref("schemas", schema)}}}


_TASK_OK = {"description": "The task.", "headers": {"ETag": _ref("headers", "ETag")},
            "content": {"application/json": {"schema": _ref("schemas", "Task")}}}
_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
       "description": "Anything that is not a positive int64 is answered with 404."}
_IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
             "description": "Apply only if the task's ETag matches; else 412 and nothing changes."}
_TEXT = {"title": {"type": "string", "minLength": 1, "maxLength": LIMITS["title"],
                   "description": "Not blank; no NUL characters."},
         "description": {"type": "string", "maxLength": LIMITS["description"], "default": ""},
         "done": {"type": "boolean", "default": False}}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "tasks-svc", "version": "1.0.0",
             "description": "A raw-SQL CRUD service for tasks. Every error is "
                            "application/problem+json (RFC 9457). Every response carries "
                            "X-Request-ID."},
    "paths": {
        "/api/health": {"get": {
            "operationId": "health", "summary": "Status of the app, PostgreSQL and Redis.",
            "responses": {
                "200": {"description": "Up (status ok), or degraded without Redis.",
                        "content": {"application/json": {"schema": _ref("schemas", "Health")}}},
                "503": {"description": "PostgreSQL is down.",
                        "headers": {"Retry-After": _ref("headers", "RetryAfter")},
                        "content": {"application/json": {"schema": _ref("schemas", "Health")}}}}}},
        "/api/tasks": {
            "get": {
                "operationId": "list_tasks", "summary": "A keyset page of tasks in id order.",
                "parameters": [
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                    {"name": "after", "in": "query", "description": "Last id of the previous page.",
                     "schema": {"type": "integer", "minimum": 0, "maximum": INT64_MAX}},
                    {"name": "done", "in": "query", "schema": {"type": "string",
                                                                "enum": ["true", "false"]}},
                    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "A page; `next` is null on the last page.",
                            "headers": {"ETag": _ref("headers", "ETag"),
                                        "X-App-Cache": _ref("headers", "XAppCache"),
                                        "Link": {"description": '<next>; rel="next"',
                                                 "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": _ref("schemas", "Page")}}},
                    "304": {"description": "Not modified."},
                    **_problems(400, 503)}},
            "post": {
                "operationId": "create_task", "summary": "Create a task.",
                "requestBody": _body("TaskCreate"),
                "responses": {
                    "201": {**_TASK_OK, "headers": {
                        "ETag": _ref("headers", "ETag"),
                        "Location": {"schema": {"type": "string"}, "description": "/api/tasks/{id}"}}},
                    **_problems(400, 409, 413, 415, 422, 503)}}},
        "/api/tasks/{id}": {
            "parameters": [_ID],
            "get": {
                "operationId": "get_task", "summary": "One task.",
                "parameters": [{"name": "If-None-Match", "in": "header",
                                "schema": {"type": "string"}}],
                "responses": {"200": {**_TASK_OK, "headers": {
                                  "ETag": _ref("headers", "ETag"),
                                  "X-App-Cache": _ref("headers", "XAppCache")}},
                              "304": {"description": "Not modified."},
                              **_problems(404, 503)}},
            "put": {
                "operationId": "replace_task",
                "summary": "Replace a task; absent description and done reset to defaults.",
                "parameters": [_IF_MATCH], "requestBody": _body("TaskCreate"),
                "responses": {"200": _TASK_OK, **_problems(400, 404, 409, 412, 413, 415, 422, 503)}},
            "patch": {
                "operationId": "patch_task", "summary": "Change some fields of a task.",
                "parameters": [_IF_MATCH], "requestBody": _body("TaskPatch"),
                "responses": {"200": _TASK_OK, **_problems(400, 404, 409, 412, 413, 415, 422, 503)}},
            "delete": {
                "operationId": "delete_task", "summary": "Delete a task.",
                "parameters": [_IF_MATCH],
                "responses": {"204": {"description": "Deleted."}, **_problems(404, 412, 503)}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3.1.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    },
    "components": {
        "schemas": {
            "Task": {"type": "object", "additionalProperties": False,
                     "required": ["id", "title", "description", "done", "created_at",
                                  "updated_at", "version"],
                     "properties": {"id": {"type": "integer", "minimum": 1}, **_TEXT,
                                    "created_at": {"type": "string", "format": "date-time"},
                                    "updated_at": {"type": "string", "format": "date-time"},
                                    "version": {"type": "integer", "minimum": 1}}},
            "TaskCreate": {"type": "object", "additionalProperties": False, "required": ["title"],
                           "properties": _TEXT},
            "TaskPatch": {"type": "object", "additionalProperties": False, "minProperties": 1,
                          "properties": _TEXT},
            "Page": {"type": "object", "required": ["items", "next", "source"],
                     "properties": {"items": {"type": "array", "items": _ref("schemas", "Task")},
                                    "next": {"type": ["string", "null"]},
                                    "source": {"enum": ["postgres", "redis-cache"]}}},
            "Health": {"type": "object", "required": ["status", "postgres", "redis"],
                       "properties": {"status": {"enum": ["ok", "degraded", "down"]},
                                      "postgres": {"enum": ["ok", "down"]},
                                      "redis": {"enum": ["ok", "down"]}}},
            "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                        "properties": {
                            "type": {"type": "string"}, "title": {"type": "string"},
                            "status": {"type": "integer"}, "detail": {"type": "string"},
                            "errors": {"type": "array", "items": {
                                "type": "object", "required": ["field", "message"],
                                "properties": {"field": {"type": "string"},
                                               "message": {"type": "string"}}}}}},
        },
        "headers": {
            "ETag": {"description": "Strong for a task (changes with version), weak for a page.",
                     "schema": {"type": "string"}},
            "XAppCache": {"description": "HIT if the app served it from Redis.",
                          "schema": {"enum": ["HIT", "MISS"]}},
            "RetryAfter": {"schema": {"type": "integer"}},
        },
        "responses": {
            f"Problem{status}": {
                "description": description,
                "headers": {"Retry-After": _ref("headers", "RetryAfter")} if status == 503 else {},
                "content": {"application/problem+json": {"schema": _ref("schemas", "Problem")}}}
            for status, description in [
                (400, "Malformed JSON, empty body, not an object, invalid UTF-8, bad query."),
                (404, "No such task, or an id that is not a positive int64."),
                (409, "The change conflicts with a constraint."),
                (412, "If-Match does not match the current ETag."),
                (413, f"The body is over {MAX_BODY} bytes."),
                (415, "The body is not application/json."),
                (422, "Wrong types, unknown or read-only fields, blank or too long text, NUL."),
                (503, "PostgreSQL is unreachable; retry after Retry-After seconds.")]
        },
    },
}
_BYTES = dumps(DOCUMENT)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document."""
    return current_app.response_class(_BYTES, mimetype="application/json")

"""The /api/tasks resource: thin handlers over validation, store, the cache and represent."""

import contextlib
from urllib.parse import quote

from flask import Blueprint, current_app, request, url_for

from . import budget, cache, represent, store, validation
from .errors import ApiError, answers, no_such_task
from .idempotency import idempotent
from .invalidation import LIST
from .resource import (COUNT_EXACT_UPTO, PREFER_COUNT, PREFER_COUNT_ESTIMATED,
                       PREFER_COUNT_PLANNED, PREFER_MINIMAL)
from .tokens import requires_token

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")


def init_app(app):
    """Serve /api/tasks."""
    app.register_blueprint(bp)


def _json(body, status=200, headers=None):
    return current_app.response_class(body, status=status, headers=headers,
                                      mimetype="application/json")


def _cached(scope, loader):
    """The packed response (or None) and whether it came from the app's cache, for this request
    in `scope` (a task id or LIST); loader() builds it on a miss."""
    entries = cache.current()
    return entries.read_through(scope, _variant() + _raw_uri(), entries.ttl, loader)


def _variant():
    """The request headers that change a cached response, as nginx's $cache_variant
    (conf/nginx/maps.conf) normalizes them: both halves of a cache key are built alike."""
    return validation.count_preference() or ""


def _raw_uri():
    """The request target as the client sent it (gunicorn's RAW_URI, which nginx passes on as
    its $request_uri), or its path and query where there is none (Flask's test client)."""
    environ = request.environ
    raw = environ.get("RAW_URI")
    if raw:
        return raw
    query = environ.get("QUERY_STRING")
    return quote(environ.get("PATH_INFO", "")) + ("?" + query if query else "")


def _answer(packed, hit):
    """A packed response as sent, with X-App-Cache; 304 if If-None-Match still matches."""
    status, headers, body = represent.unpack(packed)
    response = current_app.response_class(body, status=status, headers=headers)
    response.headers["X-App-Cache"] = "HIT" if hit else "MISS"
    if "HTTP_IF_NONE_MATCH" not in request.environ:  # the only condition these answers take
        return response
    return response.make_conditional(request)


def _no_body(status, headers):
    """A response without a body, nor a Content-Type for one."""
    response = current_app.response_class(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def _minimal():
    """True if the client prefers return=minimal (RFC 7240)."""
    return PREFER_MINIMAL in validation.preferences()


def _written(row, status):
    """A written task with its ETag (and Location when created), or, if the client prefers
    return=minimal, 201 with the new id alone or 204 for a change, with Location and ETag."""
    headers = {"ETag": represent.etag(row)}
    location = url_for(".get_task", raw_id=row["id"])
    if _minimal():
        headers.update(Location=location, **{"Preference-Applied": PREFER_MINIMAL})
        if status == 201:
            return _json(represent.dumps(represent.minimal(row)), 201, headers)
        return _no_body(204, headers)
    if status == 201:
        headers["Location"] = location
    return _json(represent.dumps(represent.task(row)), status, headers)


def _if_match_versions(task_id):
    """Versions the client's If-Match accepts: None without the header (or with *), else a list."""
    if_match = request.if_match
    if not request.headers.get("If-Match") or if_match.star_tag:
        return None
    versions = []
    # The weak form of a task's own tag counts too, though If-Match compares strongly: a
    # W/"<id>-<version>" is what nginx or the app makes of "<id>-<version>" when they compress
    # the body, and the version names the task's content exactly in any content-coding.
    for tag in if_match.as_set(include_weak=True):
        if not tag:  # werkzeug yields None for an empty tag ("")
            continue
        owner, _, version = tag.partition("-")
        if owner == str(task_id) and version.isdigit() and len(version) < 10:
            versions.append(int(version))
    return versions


def _not_done(task_id):
    """Why a conditional write changed nothing: 404 if the task is gone, else 412 with the
    current ETag, to retry with."""
    row = store.get_task(task_id)
    if row is not None:
        return ApiError(412, "The task has changed since you read it (If-Match does not match); "
                             "retry with the ETag of this answer, or GET it again.",
                        headers={"ETag": represent.etag(row)})
    return no_such_task()


def _page(params, position, count):
    """Load one list page as a packed response: the URL of the page after it (its signed cursor
    alone), and the total of matching tasks if a `count` (preference) is asked for. A search or
    a count holds one of the worker's costly slots while it loads (svc/budget.py)."""
    costly = budget.costly() if params["q"] is not None or count else contextlib.nullcontext()
    with costly:
        rows, last = store.list_tasks(params["limit"], params["done"], params["q"],
                                      params["order"], position)
        total, applied = _total(params, count) if count else (None, None)
    next_url = None
    if last is not None:
        value = represent.task(last)[params["order"].partition(".")[0]]
        next_url = url_for(".list_tasks", cursor=validation.next_cursor(params, value, last["id"]))
    return represent.page_response(rows, next_url, total, applied)


def _total(params, count):
    """(the total of matching tasks, the count it is: Preference-Applied) for preference
    `count`; count=exact past the read bound is the planner's estimate, and says so."""
    try:
        total = store.count_tasks(params["done"], params["q"], count)
    except store.CountTooSlow:
        count = PREFER_COUNT_PLANNED
        total = store.count_tasks(params["done"], params["q"], count)
    if count == PREFER_COUNT_ESTIMATED:  # exact up to its limit
        count = PREFER_COUNT if total <= COUNT_EXACT_UPTO else PREFER_COUNT_PLANNED
    return total, count


@bp.get("")
@answers(400, 503)
def list_tasks():
    """A keyset page of tasks: filtered, searched, in any order; counted if asked."""
    params = validation.list_params(request.args)
    position = validation.position(params)
    count = validation.count_preference()
    return _answer(*_cached(LIST, lambda: _page(params, position, count)))


@bp.post("")
@answers(400, 409, 413, 415, 422, 503)
@requires_token
@idempotent
def create_task():
    """Create a task, or several from an array (in one transaction: all or none)."""
    data = validation.json_body(array=True)
    tasks = validation.new_tasks(data)
    if isinstance(data, dict):
        return _written(store.create_task(tasks[0]), 201)
    rows = store.create_tasks(tasks)
    if _minimal():  # the ids alone; no one Location or ETag for many tasks
        return _json(represent.dumps([represent.minimal(r) for r in rows]), 201,
                     {"Preference-Applied": PREFER_MINIMAL})
    return _json(represent.dumps([represent.task(r) for r in rows]), 201)


@bp.get("/<raw_id>")
@answers(404, 503)
def get_task(raw_id):
    """One task; 304 when If-None-Match still matches."""
    task_id = validation.task_id(raw_id)
    packed, hit = _cached(str(task_id), lambda: represent.task_response(store.get_task(task_id)))
    if packed is None:
        raise no_such_task()
    return _answer(packed, hit)


@bp.put("/<raw_id>")
@answers(400, 404, 409, 412, 413, 415, 422, 503)
@requires_token
def replace_task(raw_id):
    """Replace a task; absent fields go back to their defaults."""
    return _update(raw_id, partial=False)


@bp.patch("/<raw_id>")
@answers(400, 404, 409, 412, 413, 415, 422, 503)
@requires_token
@idempotent
def patch_task(raw_id):
    """Change some fields of a task."""
    return _update(raw_id, partial=True)


def _update(raw_id, partial):
    task_id = validation.task_id(raw_id)
    fields = validation.task_fields(validation.json_body(), partial=partial)
    row = store.update_task(task_id, fields, _if_match_versions(task_id))
    if row is None:
        raise _not_done(task_id)
    return _written(row, 200)


@bp.delete("/<raw_id>")
@answers(404, 412, 503)
@requires_token
def delete_task(raw_id):
    """Delete a task."""
    task_id = validation.task_id(raw_id)
    if not store.delete_task(task_id, _if_match_versions(task_id)):
        raise _not_done(task_id)
    return "", 204

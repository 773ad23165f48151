"""The /api/tasks resource: thin handlers over validation, store, the cache and represent."""

from urllib.parse import urlencode

from flask import Blueprint, current_app, request, url_for

from . import budget, cursor, represent, store, validation
from .access import requires_token
from .cache import LIST
from .errors import ApiError, answers
from .idempotency import idempotent
from .resource import (COUNT_EXACT_UPTO, PREFER_COUNT, PREFER_COUNT_ESTIMATED,
                       PREFER_COUNT_PLANNED, PREFER_MINIMAL)

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")


def _json(body, status=200, headers=None):
    return current_app.response_class(body, status=status, headers=headers,
                                      mimetype="application/json")


def _cached(scope, what, loader):
    """(Entry or None, hit) for `what` in `scope` (a task id or LIST) through the app's cache."""
    return current_app.extensions["cache"].entry(scope, what, loader)


def _conditional(response, tag, hit):
    """Attach the ETag and cache header, then answer If-None-Match with 304 if it matches."""
    response.headers["ETag"] = tag
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
    return=minimal, no body: 201 stays 201, 200 becomes 204, both with Location and ETag."""
    headers = {"ETag": represent.etag(row)}
    location = url_for(".get_task", raw_id=row["id"])
    if _minimal():
        headers.update(Location=location, **{"Preference-Applied": PREFER_MINIMAL})
        return _no_body(204 if status == 200 else status, headers)
    if status == 201:
        headers["Location"] = location
    return _json(represent.dumps(represent.task(row)), status, headers)


def _if_match_versions(task_id):
    """Versions the client's If-Match accepts: None without the header (or with *), else a list."""
    if_match = request.if_match
    if not request.headers.get("If-Match") or if_match.star_tag:
        return None
    versions = []
    for tag in if_match:  # strong tags only: If-Match uses the strong comparison
        if not tag:  # werkzeug yields None for an empty tag ("")
            continue
        owner, _, version = tag.partition("-")
        if owner == str(task_id) and version.isdigit() and len(version) < 10:
            versions.append(int(version))
    return versions


def _not_done(task_id):
    """Why a conditional write changed nothing: 404 if the task is gone, else 412."""
    if store.get_task(task_id) is not None:
        return ApiError(412, "The task has changed since you read it (If-Match does not match); "
                             "GET it again and retry with the new ETag.")
    return validation.no_such_task()


def _page(params, position, count):
    """Load one list page and build its cache entry: the URL of the page after it, and the total
    of matching tasks if a `count` (preference) is asked for."""
    rows, last = store.list_tasks(params["limit"], params["done"], params["q"], params["order"],
                                  position)
    total = store.count_tasks(params["done"], params["q"], count) if count else None
    next_url = None
    if last is not None:
        past = validation.query_args({**params, **_past(params, last)})
        next_url = url_for(".list_tasks", **past)
    return represent.page_entry(rows, next_url, total)


def _past(params, row):
    """The position just past `row`: after=<id> in id order, else a signed cursor of the row's
    sort value and id."""
    order = params["order"]
    field = order.partition(".")[0]
    if field == "id":
        return {"after": row["id"], "cursor": None}
    value = represent.task(row)[field]
    key = current_app.extensions["cursor_key"]
    return {"after": None, "cursor": cursor.encode(key, order, value, row["id"])}


@bp.get("")
@answers(400, 503)
def list_tasks():
    """A keyset page of tasks: filtered, searched, in any order; counted if asked."""
    params = validation.list_params(request.args)
    position = validation.position(params)
    count = validation.count_preference()
    try:
        entry, hit = _listed(params, position, count)
    except store.CountTooSlow:  # past the read bound: the planner's estimate, and say so
        count = PREFER_COUNT_PLANNED
        entry, hit = _listed(params, position, count)
    response = _json(represent.page_body(entry, "redis-cache" if hit else "postgres"))
    response.vary.add("Prefer")
    if entry.next:
        response.headers["Link"] = f'<{entry.next}>; rel="next"'
    if count:
        response.headers["X-Total-Count"] = str(entry.total)
        response.headers["Preference-Applied"] = _applied(count, entry.total)
    return _conditional(response, entry.etag, hit)


def _listed(params, position, count):
    """(Entry, hit) of the page `params` ask for, with the total of `count` (a preference, or
    None); a search or count loaded from PostgreSQL holds one of the worker's costly slots."""
    what = "page?" + urlencode(sorted({**validation.query_args(params),
                                       "prefer": count or ""}.items()))
    if params["q"] is None and count is None:
        return _cached(LIST, what, lambda: _page(params, position, count))

    def costly_page():
        with budget.costly():
            return _page(params, position, count)
    return _cached(LIST, what, costly_page)


def _applied(count, total):
    """The count a total of preference `count` is: count=estimated is exact up to its limit."""
    if count == PREFER_COUNT_ESTIMATED:
        return PREFER_COUNT if total <= COUNT_EXACT_UPTO else PREFER_COUNT_PLANNED
    return count


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
    if _minimal():  # no body, and no one Location for many tasks: ask for them if you need ids
        return _no_body(201, {"Preference-Applied": PREFER_MINIMAL})
    return _json(represent.dumps([represent.task(r) for r in rows]), 201)


@bp.get("/<raw_id>")
@answers(404, 503)
def get_task(raw_id):
    """One task; 304 when If-None-Match still matches."""
    task_id = validation.task_id(raw_id)
    entry, hit = _cached(str(task_id), "item",
                         lambda: represent.task_entry(store.get_task(task_id)))
    if entry is None:
        raise validation.no_such_task()
    return _conditional(_json(entry.body), entry.etag, hit)


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

"""The /api/tasks resource: thin handlers over validation, store, the cache and represent."""

from flask import Blueprint, current_app, request, url_for

from . import represent, store, validation
from .cache import LIST
from .errors import ApiError, answers
from .idempotency import idempotent

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


def _task_response(row, status=200, headers=None):
    headers = {"ETag": represent.etag(row), **(headers or {})}
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


def _page(params):
    """Load one list page and build its cache entry, with the URL of the page after it."""
    rows, after = store.list_tasks(**params)
    next_url = None
    if after is not None:
        next_url = url_for(".list_tasks", **validation.query_args({**params, "after": after}))
    return represent.page_entry(rows, next_url)


@bp.get("")
@answers(400, 503)
def list_tasks():
    """A keyset page of tasks in id order."""
    params = validation.list_params(request.args)
    what = ":".join(f"{k}={v}" for k, v in params.items())
    entry, hit = _cached(LIST, what, lambda: _page(params))
    response = _json(represent.page_body(entry, "redis-cache" if hit else "postgres"))
    if entry.next:
        response.headers["Link"] = f'<{entry.next}>; rel="next"'
    return _conditional(response, entry.etag, hit)


@bp.post("")
@answers(400, 409, 413, 415, 422, 503)
@idempotent
def create_task():
    """Create a task."""
    fields = validation.task_fields(validation.json_body(), partial=False)
    row = store.create_task(fields)
    location = url_for(".get_task", raw_id=row["id"])
    return _task_response(row, 201, {"Location": location})


@bp.get("/<raw_id>")
@answers(404, 503)
def get_task(raw_id):
    """One task; 304 when If-None-Match still matches."""
    task_id = validation.task_id(raw_id)
    entry, hit = _cached(str(task_id), "task",
                         lambda: represent.task_entry(store.get_task(task_id)))
    if entry is None:
        raise validation.no_such_task()
    return _conditional(_json(entry.body), entry.etag, hit)


@bp.put("/<raw_id>")
@answers(400, 404, 409, 412, 413, 415, 422, 503)
def replace_task(raw_id):
    """Replace a task; absent fields go back to their defaults."""
    return _update(raw_id, partial=False)


@bp.patch("/<raw_id>")
@answers(400, 404, 409, 412, 413, 415, 422, 503)
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
    return _task_response(row)


@bp.delete("/<raw_id>")
@answers(404, 412, 503)
def delete_task(raw_id):
    """Delete a task."""
    task_id = validation.task_id(raw_id)
    if not store.delete_task(task_id, _if_match_versions(task_id)):
        raise _not_done(task_id)
    return "", 204

"""The /api/tasks resource: thin handlers over validation and store."""

from flask import Blueprint, current_app, request

from . import store, validation
from .errors import ApiError

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")


def _json(body, status=200, headers=None):
    return current_app.response_class(body, status=status, headers=headers,
                                      mimetype="application/json")


def _conditional(response, tag, hit):
    """Attach the ETag and cache header, then answer If-None-Match with 304 if it matches."""
    response.headers["ETag"] = tag
    response.headers["X-App-Cache"] = "HIT" if hit else "MISS"
    return response.make_conditional(request)


def _task_response(row, status=200, headers=None):
    headers = {"ETag": store.etag(row), **(headers or {})}
    return _json(store.dumps(store.task_json(row)), status, headers)


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
    if store.task_exists(task_id):
        return ApiError(412, "The task has changed since you read it (If-Match does not match); "
                             "GET it again and retry with the new ETag.")
    return validation.no_such_task()


@bp.get("")
def list_tasks():
    """One keyset page of tasks in id order."""
    limit, after, done = validation.list_params(request.args)
    tag, next_url, body, hit = store.list_tasks(limit, after, done)
    source = b"redis-cache" if hit else b"postgres"
    response = _json(body + b',"source":"' + source + b'"}')
    if next_url:
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return _conditional(response, tag, hit)


@bp.post("")
def create_task():
    """Create a task from title (required), description and done."""
    fields = validation.task_fields(validation.json_body(), partial=False)
    row = store.create_task(fields)
    return _task_response(row, 201, {"Location": f"/api/tasks/{row['id']}"})


@bp.get("/<raw_id>")
def get_task(raw_id):
    """One task; 304 when If-None-Match still matches."""
    found = store.get_task(validation.task_id(raw_id))
    if found is None:
        raise validation.no_such_task()
    tag, body, hit = found
    return _conditional(_json(body), tag, hit)


@bp.put("/<raw_id>")
def replace_task(raw_id):
    """Replace a task: absent description and done go back to their defaults."""
    return _update(raw_id, partial=False)


@bp.patch("/<raw_id>")
def patch_task(raw_id):
    """Change the given fields of a task."""
    return _update(raw_id, partial=True)


def _update(raw_id, partial):
    task_id = validation.task_id(raw_id)
    fields = validation.task_fields(validation.json_body(), partial=partial)
    row = store.update_task(task_id, fields, _if_match_versions(task_id))
    if row is None:
        raise _not_done(task_id)
    return _task_response(row)


@bp.delete("/<raw_id>")
def delete_task(raw_id):
    """Delete a task."""
    task_id = validation.task_id(raw_id)
    if not store.delete_task(task_id, _if_match_versions(task_id)):
        raise _not_done(task_id)
    return "", 204

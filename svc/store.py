"""Task data: runs the SQL files through the pool and the read-through cache."""

import hashlib
import json
from datetime import timezone
from urllib.parse import urlencode

import psycopg
from flask import current_app
from psycopg_pool import PoolTimeout


def _run(name, **params):
    """Run sql/<name>.sql with `params` on a pooled connection (one statement, one transaction)."""
    ext = current_app.extensions
    with ext["pool"].connection() as conn:
        return ext["queries"][name].run(conn, params)


def database_ok():
    """True if PostgreSQL answers a round trip within the pool timeout."""
    try:
        _run("ping_database")
    except (PoolTimeout, psycopg.Error):
        return False
    return True


def dumps(obj):
    """Compact UTF-8 JSON bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _timestamp(value):
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def task_json(row):
    """A row of the tasks table as the API's task object."""
    return {
        "id": row["id"],
        "title": row["title"],
        "description": row["description"],
        "done": row["done"],
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
        "version": row["version"],
    }


def etag(row):
    """The strong entity tag of a task: it changes with every version."""
    return f'"{row["id"]}-{row["version"]}"'


def _pack(*parts):
    # Cache values are a few header lines then the body; bodies are JSON with no raw newlines.
    return b"\n".join(parts)


def _unpack(value, count):
    return value.split(b"\n", count - 1)


def get_task(task_id):
    """(etag, body, cache hit) of one task, or None if it does not exist."""

    def load():
        row = _run("get_task", id=task_id)
        return None if row is None else _pack(etag(row).encode(), dumps(task_json(row)))

    cache = current_app.extensions["cache"]
    value, hit = cache.read_through(f"task:{task_id}", cache.ttl, load)
    if value is None:
        return None
    tag, body = _unpack(value, 2)
    return tag.decode(), body, hit


def list_tasks(limit, after, done):
    """(etag, next url, body without its closing `source` field, cache hit) of one page."""

    def load():
        params = {"limit": limit + 1, "after": after}
        if done is None:
            rows = _run("list_tasks", **params)
        else:
            rows = _run("list_tasks_by_done", done=done, **params)
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            query = {"after": rows[-1]["id"], "limit": limit}
            if done is not None:
                query["done"] = "true" if done else "false"
            next_url = "/api/tasks?" + urlencode(query)
        body = dumps({"items": [task_json(r) for r in rows], "next": next_url})[:-1]
        tag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return _pack(tag.encode(), (next_url or "").encode(), body)

    cache = current_app.extensions["cache"]
    value, hit = cache.read_through(f"list:{done}:{after}:{limit}", cache.ttl, load)
    tag, next_url, body = _unpack(value, 3)
    return tag.decode(), next_url.decode() or None, body, hit


def create_task(fields):
    """Insert a task; returns the stored row."""
    row = _run("create_task", **fields)
    current_app.extensions["cache"].bump()
    return row


def update_task(task_id, fields, versions):
    """Apply `fields` (missing ones kept) if the version is in `versions` (None: any); row or None."""
    params = {"title": None, "description": None, "done": None, **fields}
    row = _run("update_task", id=task_id, versions=versions, **params)
    if row is not None:
        current_app.extensions["cache"].bump()
    return row


def delete_task(task_id, versions):
    """Delete a task if the version is in `versions` (None: any); True if it was deleted."""
    deleted = _run("delete_task", id=task_id, versions=versions) == 1
    if deleted:
        current_app.extensions["cache"].bump()
    return deleted


def task_exists(task_id):
    """True if the task exists (tells 404 from 412 after a conditional write did nothing)."""
    return _run("get_task", id=task_id) is not None

"""Task rows: runs the SQL files through the pool, and invalidates the cache after each write."""

import psycopg
from flask import current_app
from psycopg_pool import PoolTimeout


def _run(name, **params):
    """Run sql/<name>.sql with `params` on a pooled connection (one statement, one transaction)."""
    ext = current_app.extensions
    with ext["pool"].connection() as conn:
        return ext["queries"][name].run(conn, params)


def _invalidate():
    """Start a new cache generation; called after a write has committed, never before."""
    current_app.extensions["cache"].bump()


def database_ok():
    """True if PostgreSQL answers a round trip within the pool timeout."""
    try:
        _run("ping_database")
    except (PoolTimeout, psycopg.Error):
        return False
    return True


def get_task(task_id):
    """The task's row, or None."""
    return _run("get_task", id=task_id)


def list_tasks(limit, after, done):
    """(rows, the id to continue after or None on the last page) of one keyset page in id order."""
    params = {"limit": limit + 1, "after": after}  # one more row tells whether a page follows
    if done is None:
        rows = _run("list_tasks", **params)
    else:
        rows = _run("list_tasks_by_done", done=done, **params)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1]["id"]
    return rows, None


def create_task(fields):
    """Insert a task; returns the stored row."""
    row = _run("create_task", **fields)
    _invalidate()
    return row


def update_task(task_id, fields, versions):
    """Apply `fields` (missing ones kept) if the version is in `versions` (None: any); row or None."""
    params = {"title": None, "description": None, "done": None, **fields}
    row = _run("update_task", id=task_id, versions=versions, **params)
    if row is not None:
        _invalidate()
    return row


def delete_task(task_id, versions):
    """Delete a task if the version is in `versions` (None: any); True if it was deleted."""
    deleted = _run("delete_task", id=task_id, versions=versions) == 1
    if deleted:
        _invalidate()
    return deleted

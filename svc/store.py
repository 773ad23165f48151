"""Task rows: runs the SQL files through the pool, and invalidates the cache after each write."""

import re

import psycopg
from flask import current_app
from psycopg import sql
from psycopg_pool import PoolTimeout

from .resource import DIRECTIONS, ORDER

# The whitelist the list's order slots are filled from: "<field>.<direction>" -> the SQL for
# the sort column, the direction and the comparison that means "past this position".
ORDERS = {f"{field}.{way}": {"column": sql.Identifier(field), "direction": sql.SQL(way),
                             "past": sql.SQL(">" if way == "asc" else "<")}
          for field in ORDER.choices for way in DIRECTIONS}
LIKE_SPECIAL = re.compile(r"[%_\\]")  # escaped with a backslash, LIKE's default escape


def _run(name, slots=None, prepare=None, **params):
    """Run sql/<name>.sql with `params` on a pooled connection (one statement, one transaction)."""
    ext = current_app.extensions
    with ext["pool"].connection() as conn:
        return ext["queries"][name].run(conn, params, slots, prepare)


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


def _search(q):
    """The search parameters of list_tasks.sql and count_tasks.sql for the words of `q`: a LIKE
    pattern per word (its %, _ and backslash taken literally), the longest as the anchor."""
    if q is None:
        return {"patterns": None, "anchor": None}
    patterns = ["%" + LIKE_SPECIAL.sub(r"\\\g<0>", word) + "%" for word in q.split()]
    return {"patterns": patterns, "anchor": max(patterns, key=len)}


def list_tasks(limit, done, q, order, position):
    """(rows, the last row if another page follows, else None) of one keyset page in `order`,
    past `position` ((value, id) of the previous page's last row; None: from the start)."""
    value, after_id = position or (None, None)
    rows = _run("list_tasks", slots=ORDERS[order], prepare=False, limit=limit + 1,
                after_value=value, after_id=after_id, done=done, **_search(q))
    if len(rows) > limit:  # one more row than asked for: a page follows
        return rows[:limit], rows[limit - 1]
    return rows, None


def count_tasks(done, q):
    """How many tasks match the list's filters, on all pages."""
    return _run("count_tasks", prepare=False, done=done, **_search(q))["total"]


def create_task(fields):
    """Insert a task; returns the stored row."""
    row = _run("create_task", **fields)
    _invalidate()
    return row


def create_tasks(tasks):
    """Insert `tasks` (dicts of every writable field) in one statement; their rows, ids ascending."""
    rows = _run("create_tasks", titles=[t["title"] for t in tasks],
                descriptions=[t["description"] for t in tasks], dones=[t["done"] for t in tasks])
    _invalidate()
    return rows


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

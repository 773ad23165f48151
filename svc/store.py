"""Task rows: the tasks table read and written through sql/ (get_task, list_tasks, count_tasks,
count_tasks_upto, plan_count_tasks, create_task(s), update_task, delete_task), which svc/db.py
runs; each write invalidates the cached task and list once it has committed (invalidation.py)."""

import re

from psycopg import sql
from psycopg.errors import QueryCanceled

from .db import run, write
from .invalidation import invalidate
from .resource import (COUNT_EXACT_UPTO, DIRECTIONS, ORDER, PREFER_COUNT, PREFER_COUNT_PLANNED,
                       SEARCH_LETTER, WRITABLE)

# The whitelist the list's order slots are filled from: "<field>.<direction>" -> the SQL for
# the sort column, the direction and the comparison that means "past this position".
ORDERS = {f"{field}.{way}": {"column": sql.Identifier(field), "direction": sql.SQL(way),
                             "past": sql.SQL(">" if way == "asc" else "<")}
          for field in ORDER.choices for way in DIRECTIONS}
LIKE_SPECIAL = re.compile(r"[%_\\]")  # escaped with a backslash, LIKE's default escape
TRIGRAM_RUN = re.compile(SEARCH_LETTER + "+")  # a run of letters and digits


class CountTooSlow(Exception):
    """count=exact ran past the read bound (statement_timeout)."""


def get_task(task_id):
    """The task's row, or None."""
    return run("get_task", id=task_id)


def _trigrams(word):
    """The length of the longest run of letters and digits in `word`: pg_trgm's index finds
    the word by the trigrams of such runs."""
    return max(map(len, TRIGRAM_RUN.findall(word)), default=0)


def _search(q):
    """The search parameters of list_tasks.sql and count_tasks.sql for the words of `q`: a LIKE
    pattern per word (its %, _ and backslash taken literally); the anchor, which the index
    serves, is the word with the longest run of letters and digits (validation made sure one
    has a trigram)."""
    if q is None:
        return {"patterns": None, "anchor": None}
    words = q.split()
    patterns = ["%" + LIKE_SPECIAL.sub(r"\\\g<0>", word) + "%" for word in words]
    return {"patterns": patterns, "anchor": patterns[max(range(len(words)),
                                                         key=lambda i: _trigrams(words[i]))]}


def list_tasks(limit, done, q, order, position):
    """(rows, the last row if another page follows, else None) of one keyset page in `order`,
    past `position` ((value, id) of the previous page's last row; None: from the start)."""
    value, after_id = position or (None, None)
    rows = run("list_tasks", slots=ORDERS[order], prepare=False, limit=limit + 1,
                after_value=value, after_id=after_id, done=done, **_search(q))
    if len(rows) > limit:  # one more row than asked for: a page follows
        return rows[:limit], rows[limit - 1]
    return rows, None


def count_tasks(done, q, how=PREFER_COUNT):
    """How many tasks match the list's filters, on all pages: counted (count=exact; past the
    read bound, CountTooSlow), the planner's estimate (count=planned), or counted up to
    COUNT_EXACT_UPTO and estimated beyond (count=estimated: the count is exact if and only if
    it is at most COUNT_EXACT_UPTO)."""
    search = _search(q)
    if how == PREFER_COUNT:
        try:
            return run("count_tasks", prepare=False, done=done, **search)["total"]
        except QueryCanceled:
            raise CountTooSlow() from None
    if how != PREFER_COUNT_PLANNED:
        upto = COUNT_EXACT_UPTO + 1
        total = run("count_tasks_upto", prepare=False, done=done, upto=upto, **search)["total"]
        if total < upto:
            return total
    plan = run("plan_count_tasks", prepare=False, done=done, **search)["QUERY PLAN"]
    planned = round(plan[0]["Plan"]["Plan Rows"])
    # Past the exact range, never an estimate inside it: X-Total-Count would read as exact.
    return planned if how == PREFER_COUNT_PLANNED else max(planned, COUNT_EXACT_UPTO + 1)


def create_task(fields):
    """Insert a task; returns the stored row."""
    row = write("create_task", **fields)
    invalidate(row["id"], row["version"])
    return row


def create_tasks(tasks):
    """Insert `tasks` (dicts of every writable field) in one statement; their rows, ids ascending."""
    rows = write("create_tasks", titles=[t["title"] for t in tasks],
                descriptions=[t["description"] for t in tasks], dones=[t["done"] for t in tasks])
    invalidate(None, None)  # new ids were never cached: only the list changed
    return rows


def update_task(task_id, fields, versions):
    """Apply `fields` (missing ones kept) if the version is in `versions` (None: any); row or None."""
    params = {**dict.fromkeys(f.name for f in WRITABLE), **fields}  # None: keep the value
    row = write("update_task", id=task_id, versions=versions, **params)
    if row is not None:
        invalidate(task_id, row["version"])
    return row


def delete_task(task_id, versions):
    """Delete a task if the version is in `versions` (None: any); True if it was deleted."""
    row = write("delete_task", id=task_id, versions=versions)
    if row is not None:
        invalidate(task_id, row["version"] + 1)  # the version it would have had next
    return row is not None

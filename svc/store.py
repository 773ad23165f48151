"""Task rows: runs the SQL files through the pool, and invalidates the cache after each commit."""

import contextlib
import logging
import re

import psycopg
from flask import current_app, g
from psycopg.errors import QueryCanceled
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from .resource import (COUNT_EXACT_UPTO, DIRECTIONS, ORDER, PREFER_COUNT, PREFER_COUNT_PLANNED,
                       SEARCH_LETTER, WRITABLE)

log = logging.getLogger(__name__)
DEBTS_PER_PASS = 100
# The whitelist the list's order slots are filled from: "<field>.<direction>" -> the SQL for
# the sort column, the direction and the comparison that means "past this position".
ORDERS = {f"{field}.{way}": {"column": sql.Identifier(field), "direction": sql.SQL(way),
                             "past": sql.SQL(">" if way == "asc" else "<")}
          for field in ORDER.choices for way in DIRECTIONS}
LIKE_SPECIAL = re.compile(r"[%_\\]")  # escaped with a backslash, LIKE's default escape
TRIGRAM_RUN = re.compile(SEARCH_LETTER + "+")  # a run of letters and digits


class CountTooSlow(Exception):
    """count=exact ran past the read bound (statement_timeout)."""


def _run(name, slots=None, prepare=None, **params):
    """Run sql/<name>.sql with `params`: in the request's transaction if one is open, else on a
    pooled connection of its own (one statement, one transaction)."""
    ext = current_app.extensions
    if "transaction" in g:
        return ext["queries"][name].run(g.transaction[0], params, slots, prepare)
    with ext["pool"].connection() as conn:
        return ext["queries"][name].run(conn, params, slots, prepare)


@contextlib.contextmanager
def transaction():
    """Run everything the block sends through store in one transaction, whose statements may
    run for WRITE_TIMEOUT; the cache generations its writes changed are bumped once it has
    committed (never before: a reader could refill the cache from the old rows in between)."""
    pending = []
    ext = current_app.extensions
    timeout = f"{round(ext['config'].WRITE_TIMEOUT * 1000)}ms"
    with ext["pool"].connection() as conn, conn.transaction():
        ext["queries"]["set_statement_timeout"].run(conn, {"timeout": timeout})
        g.transaction = (conn, pending)
        try:
            yield
        finally:
            del g.transaction
    for task_id, version in pending:
        _bump(task_id, version)


def _write(name, **params):
    """Run sql/<name>.sql as a write: in the request's transaction, else in one of its own
    (the pooled connections' bound is the read bound)."""
    if "transaction" in g:
        return _run(name, **params)
    with transaction():
        return _run(name, **params)


def _invalidated(task_id, version):
    """Task `task_id` now has `version` (None: only the list changed): bump after the commit."""
    if "transaction" in g:
        g.transaction[1].append((task_id, version))
    else:
        _bump(task_id, version)


def _bump(task_id, version):
    """Bump the generations in Redis, or record the debt in PostgreSQL until a worker pays it."""
    cache = current_app.extensions["cache"]
    if cache.bump(task_id, version):
        return
    try:
        _run("create_cache_debt", task_id=task_id, version=version)
    except (PoolTimeout, psycopg.Error):
        log.exception("could not record an unbumped cache generation (task %s)", task_id)
    # Again, now that the debt is visible: the janitor may have found none a moment ago.
    cache.suspect = True


def pay_cache_debts():
    """Bump every generation a write could not bump (the janitor calls this); True when none
    is left."""
    cache = current_app.extensions["cache"]
    debts = _run("list_cache_debts", limit=DEBTS_PER_PASS)
    for debt in debts:
        if not cache.bump(debt["task_id"], debt["version"], force=True):
            return False
        _run("delete_cache_debt", id=debt["id"])
    if len(debts) < DEBTS_PER_PASS:
        cache.suspect = False
        return True
    return False


def claim_idempotency_key(key, ttl):
    """In the request's transaction: False if another request holds `key` right now, else its
    stored response (a row) or None (it is this request's to answer and store)."""
    if not _run("lock_idempotency_key", key=key)["locked"]:
        return False
    return _run("get_idempotency_key", key=key, ttl=ttl)


def save_idempotent_response(key, fingerprint, status, headers, body):
    """Store the response to `key` in the request's transaction, beside its write."""
    _run("create_idempotency_key", key=key, fingerprint=fingerprint, status=status,
         headers=Jsonb(headers), body=body)


def delete_expired_idempotency_keys(ttl, limit=1000):
    """Delete up to `limit` expired keys; how many went."""
    return _write("delete_expired_idempotency_keys", ttl=ttl, limit=limit)


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
    rows = _run("list_tasks", slots=ORDERS[order], prepare=False, limit=limit + 1,
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
            return _run("count_tasks", prepare=False, done=done, **search)["total"]
        except QueryCanceled:
            raise CountTooSlow() from None
    if how != PREFER_COUNT_PLANNED:
        upto = COUNT_EXACT_UPTO + 1
        total = _run("count_tasks_upto", prepare=False, done=done, upto=upto, **search)["total"]
        if total < upto:
            return total
    plan = _run("plan_count_tasks", prepare=False, done=done, **search)["QUERY PLAN"]
    planned = round(plan[0]["Plan"]["Plan Rows"])
    # Past the exact range, never an estimate inside it: X-Total-Count would read as exact.
    return planned if how == PREFER_COUNT_PLANNED else max(planned, COUNT_EXACT_UPTO + 1)


def create_task(fields):
    """Insert a task; returns the stored row."""
    row = _write("create_task", **fields)
    _invalidated(row["id"], row["version"])
    return row


def create_tasks(tasks):
    """Insert `tasks` (dicts of every writable field) in one statement; their rows, ids ascending."""
    rows = _write("create_tasks", titles=[t["title"] for t in tasks],
                descriptions=[t["description"] for t in tasks], dones=[t["done"] for t in tasks])
    _invalidated(None, None)  # new ids were never cached: only the list changed
    return rows


def update_task(task_id, fields, versions):
    """Apply `fields` (missing ones kept) if the version is in `versions` (None: any); row or None."""
    params = {**dict.fromkeys(f.name for f in WRITABLE), **fields}  # None: keep the value
    row = _write("update_task", id=task_id, versions=versions, **params)
    if row is not None:
        _invalidated(task_id, row["version"])
    return row


def delete_task(task_id, versions):
    """Delete a task if the version is in `versions` (None: any); True if it was deleted."""
    row = _write("delete_task", id=task_id, versions=versions)
    if row is not None:
        _invalidated(task_id, row["version"] + 1)  # the version it would have had next
    return row is not None

"""When cached entries stop answering: per-task and list generations in Redis, bumped after
each committed write. A bump Redis did not take is a debt in PostgreSQL (sql/*_cache_debt*.sql),
and until the janitor has paid every debt this worker reads nothing from Redis (`suspect`): an
entry from before the write would answer otherwise. This survives a Redis failover, whose new
primary never took the bumps."""

import hashlib
import logging
from pathlib import Path

import psycopg
import redis
from flask import current_app
from psycopg_pool import PoolTimeout

from . import cache, db, janitor

log = logging.getLogger(__name__)

# The Redis-side script that bumps generations; its header documents the key names, which the
# nginx edge (conf/nginx/redis_cache.lua) builds the same way to read the entries cached here.
GENERATIONS = Path(__file__).resolve().parent.parent / "conf" / "nginx" / "generations.lua"
LIST = "list"  # the scope of list pages; a task's scope is its id
GEN_TTL_S = 86_400  # a task's generation must outlive every entry (CACHE_TTL)
DEBTS_PER_PASS = 100
SCAN_EVERY = 10  # janitor ticks between looks for debts other workers left (a killed one, say)


class Generations(cache.Observer):
    """The generations a Cache's entries are stamped with, and whether this worker can vouch
    for them (a Cache observer: no reads while `suspect`)."""

    def __init__(self, entries):
        self.cache = entries
        # After a Redis error or a bump Redis did not take, this worker cannot vouch for what
        # Redis holds: it reads nothing from it until the janitor has found no unpaid bump.
        self.suspect = False
        self._script = GENERATIONS.read_text()
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()
        entries.watch(self)

    def redis_error(self):
        """Any Redis error may have lost a bump."""
        self.suspect = True

    def may_read(self):
        """Read from Redis only while no bump may be missing."""
        return not self.suspect

    def bump(self, task_id=None, version=None, force=False):
        """After a committed write: a new generation for the task (its version) and for the list.

        Returns False if Redis did not take it; the caller must remember that (`bump_or_owe`)
        until a later bump succeeds, or older entries would be served. `force` tries even
        while the cache backs off after an error.
        """
        if not (force or self.cache.available()):
            self.suspect = True
            return False
        try:
            self._run("bump", "" if task_id is None else task_id, version or 0, GEN_TTL_S)
        except redis.RedisError as exc:
            self.cache.failed(exc)
            return False
        self.cache.recovered()
        return True

    def _run(self, *args):
        """generations.lua's reply, run with the run_id of the connection it goes out on."""
        def run(conn):
            try:
                conn.send_command("EVALSHA", self._sha, 0, conn.run_id, *args)
                return conn.read_response()
            except redis.exceptions.NoScriptError:  # flushed, or a Redis we have not used yet
                conn.send_command("EVAL", self._script, 0, conn.run_id, *args)
                return conn.read_response()

        return self.cache.on_connection(run)


def bump_or_owe(generations, record, task_id=None, version=None):
    """Bump, else record the debt (record(task_id=..., version=...) runs create_cache_debt) and
    stop reading from Redis; True if Redis took the bump. Used by the app and by admin.seed."""
    if generations.bump(task_id, version):
        return True
    try:
        record(task_id=task_id, version=version)
    finally:
        # Again, now that the debt is visible: the janitor may have found none a moment ago.
        generations.suspect = True
    return False


def init_app(app):
    """Give `app`'s cache its generations, and the janitor the job of paying their debts."""
    app.extensions["generations"] = generations = Generations(cache.current(app))
    janitor.every(app, lambda ticks: generations.suspect or ticks % SCAN_EVERY == 0,
                  pay_cache_debts)


def current(app=None):
    """The Generations of `app` (default: the current app)."""
    return (app or current_app).extensions["generations"]


def invalidate(task_id, version):
    """Task `task_id` now has `version` (None: only the list changed): bump after the commit."""
    db.after_commit(lambda: _bump(task_id, version))


def _bump(task_id, version):
    """Bump the generations in Redis, or record the debt in PostgreSQL until a worker pays it."""
    try:
        bump_or_owe(current(), lambda **params: db.run("create_cache_debt", **params),
                    task_id, version)
    except (PoolTimeout, psycopg.Error):
        log.exception("could not record an unbumped cache generation (task %s)", task_id)


def pay_cache_debts():
    """Bump every generation a write could not bump (the janitor's job); True when none is
    left."""
    generations = current()
    debts = db.run("list_cache_debts", limit=DEBTS_PER_PASS)
    for debt in debts:
        if not generations.bump(debt["task_id"], debt["version"], force=True):
            return False
        db.run("delete_cache_debt", id=debt["id"])
    if len(debts) < DEBTS_PER_PASS:
        generations.suspect = False
        return True
    return False

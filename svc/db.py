"""The SQL files in sql/, the psycopg connection pool that runs them, and transactions."""

import atexit
import contextlib
import re
import select
import string
from dataclasses import dataclass
from pathlib import Path

import psycopg
from flask import current_app, g
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .config import settings

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SHAPES = ("one", "many", "exec", "execrows")
RECONNECT_TIMEOUT = 5.0
# `-- name: <stem> :<shape>`, then its doc: one or more `-- ` lines (aiosql's convention).
HEADER = re.compile(r"-- name: (?P<name>[a-z_]+) :(?P<shape>[a-z]+)\n(?P<doc>(?:-- \S.*\n)+)")
# Every query the code runs; start-up fails if one is missing.
REQUIRED = ("get_task", "list_tasks", "count_tasks", "create_task", "create_tasks",
            "update_task", "delete_task", "seed_tasks", "ping_database", "can_create_tables",
            "create_cache_debt", "list_cache_debts", "delete_cache_debt", "lock_idempotency_key",
            "get_idempotency_key", "create_idempotency_key", "delete_expired_idempotency_keys",
            "set_statement_timeout", "plan_count_tasks", "count_tasks_upto")
SLOT = re.compile(r"[a-z_]+")


class SqlFileError(RuntimeError):
    """A file in sql/ is missing or does not follow the header convention."""


@dataclass(frozen=True)
class Query:
    """One statement from sql/<name>.sql and the shape of its result; `slots` are the names of
    its {identifier} slots (psycopg.sql), which the caller fills from a whitelist."""

    name: str
    shape: str
    doc: str
    text: str
    slots: frozenset = frozenset()

    def run(self, conn, params=None, slots=None, prepare=None):
        """Execute on `conn`: a dict or None (:one), a list (:many), None (:exec) or a row count.

        `slots` maps each slot to a psycopg.sql.Composable; prepare=False plans the statement
        for these very values (psycopg otherwise prepares it after a few runs, and a generic
        plan cannot fold a "%(x)s is null or ..." away).
        """
        if set(slots or ()) != self.slots:
            raise SqlFileError(f"{self.name}: fill exactly the slots {sorted(self.slots)}")
        query = sql.SQL(self.text).format(**slots) if self.slots else self.text
        cur = conn.execute(query, params or {}, prepare=prepare)
        if self.shape == "one":
            return cur.fetchone()
        if self.shape == "many":
            return cur.fetchall()
        if self.shape == "execrows":
            return cur.rowcount
        return None


def parse_query(path):
    """Read one .sql file and check its header against its file name."""
    text = path.read_text(encoding="utf-8")
    m = HEADER.match(text)
    if not m:
        raise SqlFileError(f"{path.name}: must start with '-- name: <stem> :<shape>' and doc lines")
    if m["name"] != path.stem:
        raise SqlFileError(f"{path.name}: header names {m['name']!r}, not {path.stem!r}")
    if m["shape"] not in SHAPES:
        raise SqlFileError(f"{path.name}: shape :{m['shape']} is not one of {SHAPES}")
    body = text[m.end():].strip().rstrip(";")
    if not body or ";" in body:
        raise SqlFileError(f"{path.name}: must hold exactly one statement")
    slots = {field for _, field, _, _ in string.Formatter().parse(body) if field is not None}
    bad = sorted(name for name in slots if not SLOT.fullmatch(name))
    if bad:
        raise SqlFileError(f"{path.name}: slots are {{lower_case}} names, not {bad}")
    doc = " ".join(line.removeprefix("-- ") for line in m["doc"].splitlines())
    return Query(m["name"], m["shape"], doc, body, frozenset(slots))


def load_queries(sql_dir=None):
    """Load every sql/*.sql file (or `sql_dir`'s), failing fast on a malformed or missing one."""
    sql_dir = Path(sql_dir or SQL_DIR)
    queries = {q.name: q for q in map(parse_query, sorted(sql_dir.glob("*.sql")))}
    missing = [name for name in REQUIRED if name not in queries]
    if missing:
        raise SqlFileError(f"missing SQL files in {sql_dir}: {', '.join(missing)}")
    return queries


def check_idle(conn):
    """The pool's check before each use, without a round trip when it can: PostgreSQL sends an
    idle connection something only to end it (a restart, pg_terminate_backend), so a socket with
    nothing to read is used as it is, and one with something gets the usual round trip."""
    poller = select.poll()  # not select.select: a worker's descriptors may pass 1023
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def bounded(url, seconds, **settings):
    """`url` (a libpq URL or key=value string) whose sessions cancel any statement that runs
    longer than `seconds` (statement_timeout) and have `settings`, all in the startup packet
    (no round trip); the options the URL already has are kept."""
    settings = {"statement_timeout": round(seconds * 1000), **settings}
    options = [conninfo_to_dict(url).get("options", "")]
    options += [f"-c {name}={value}" for name, value in settings.items()]
    return make_conninfo(url, options=" ".join(options).strip())


def make_pool(config):
    """A pool of autocommit connections: each statement is its own transaction, and a read
    runs for at most READ_TIMEOUT (writes raise their own bound in their transaction)."""
    return ConnectionPool(
        # One core per statement: a parallel plan would let each costly request take several,
        # and COSTLY_SHARE bound their number, not their cores.
        bounded(config.DATABASE_URL, config.READ_TIMEOUT, max_parallel_workers_per_gather=0),
        kwargs={"row_factory": dict_row, "autocommit": True},
        min_size=config.DB_POOL_MIN,
        max_size=config.DB_POOL_MAX,
        timeout=config.DB_POOL_TIMEOUT,
        check=check_idle,
        # The pool's reconnect backoff doubles without a cap until this timeout: after a long
        # outage it would leave us answering 503 for minutes. Giving up early lets the next
        # request regrow the pool at once, so recovery takes seconds whatever the outage.
        reconnect_timeout=RECONNECT_TIMEOUT,
        name="tasks",
        open=True,
    )


@dataclass(frozen=True)
class Database:
    """What an app runs its SQL with: the loaded statements, the pool, the writes' bound."""

    queries: dict
    pool: ConnectionPool
    write_timeout: float


def init_app(app):
    """Load sql/ (a missing or malformed file stops start-up here) and open the pool, here in
    the worker after gunicorn forks: a pool must not cross a fork. It closes at exit."""
    config = settings(app)
    database = Database(load_queries(), make_pool(config), config.WRITE_TIMEOUT)
    app.extensions["db"] = database
    atexit.register(database.pool.close)


def _database(app=None):
    """The Database of `app` (default: the current app)."""
    return (app or current_app).extensions["db"]


def pool(app=None):
    """The connection pool of `app` (default: the current app)."""
    return _database(app).pool


def queries(app=None):
    """The statements of sql/ by name, as `app` (default: the current app) loaded them."""
    return _database(app).queries


def run(name, slots=None, prepare=None, **params):
    """Run sql/<name>.sql with `params`: in the request's transaction if one is open, else on a
    pooled connection of its own (one statement, one transaction)."""
    database = _database()
    query = database.queries[name]
    if "transaction" in g:
        return query.run(g.transaction[0], params, slots, prepare)
    with database.pool.connection() as conn:
        return query.run(conn, params, slots, prepare)


@contextlib.contextmanager
def transaction():
    """Run every statement the block sends through `run` in one transaction, whose statements
    may run for WRITE_TIMEOUT; what the block left to `after_commit` runs once it has committed."""
    database = _database()
    pending = []
    timeout = f"{round(database.write_timeout * 1000)}ms"
    with database.pool.connection() as conn, conn.transaction():
        database.queries["set_statement_timeout"].run(conn, {"timeout": timeout})
        g.transaction = (conn, pending)
        try:
            yield
        finally:
            del g.transaction
    for work in pending:
        work()


def write(name, **params):
    """Run sql/<name>.sql as a write: in the request's transaction, else in one of its own
    (the pooled connections' bound is the read bound)."""
    if "transaction" in g:
        return run(name, **params)
    with transaction():
        return run(name, **params)


def after_commit(work):
    """Call work() once the request's transaction has committed (never before: a reader could
    see the old rows in between), or now when none is open."""
    if "transaction" in g:
        g.transaction[1].append(work)
    else:
        work()


def reachable():
    """True if PostgreSQL answers a round trip within the pool timeout."""
    try:
        run("ping_database")
    except (PoolTimeout, psycopg.Error):
        return False
    return True

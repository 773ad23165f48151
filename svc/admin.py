"""Database administration shared by the CLI and the local stack: migrations and sample data."""

import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from yoyo import get_backend, read_migrations

from .cache import Cache, make_redis
from .db import bounded, load_queries
from .invalidation import Generations, bump_or_owe

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# What the app's role may do: rows in, rows out, the next id; never DDL, TRUNCATE or ownership.
# Default privileges give the same to every table and sequence the owner creates later.
# (An identity column needs no privilege on its sequence; USAGE is for nextval() defaults.)
# These live here and not in sql/: the role is an identifier, and no %(name)s placeholder can
# carry one, so each statement is composed with psycopg.sql (Identifier quotes it).
GRANTS = (
    "grant select, insert, update, delete on all tables in schema public to {role}",
    "grant usage on all sequences in schema public to {role}",
    "alter default privileges in schema public"
    " grant select, insert, update, delete on tables to {role}",
    "alter default privileges in schema public grant usage on sequences to {role}",
    # yoyo's bookkeeping (created before the default privileges existed) is the owner's alone.
    "revoke all on table {yoyo_tables} from {role}",
)


class NotOwner(RuntimeError):
    """MIGRATE_DATABASE_URL logs in as a user that may not change the schema."""


def yoyo_url(database_url):
    """libpq DATABASE_URL (URL or key=value form) -> yoyo's postgresql+psycopg:// URL."""
    params = conninfo_to_dict(database_url)
    user, password = params.pop("user", ""), params.pop("password", None)
    host, port = params.pop("host", ""), params.pop("port", None)
    dbname = params.pop("dbname", "")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (auth + "@" if auth else "") + ("" if "/" in host else host)
    if port:
        netloc += f":{port}"
    if "/" in host:  # a Unix socket directory travels as a query argument
        params["host"] = host
    query = "?" + urlencode(params) if params else ""
    return f"postgresql+psycopg://{netloc}/{quote(dbname, safe='')}{query}"


def migrate(config, action, rollback_all=False, out=sys.stdout):
    """Apply pending migrations (then grant the app's role its privileges), roll back the last
    one (or all), or list their state; as the schema owner, MIGRATE_DATABASE_URL, each
    statement bounded by MIGRATE_TIMEOUT."""
    owner_url = bounded(config.MIGRATE_DATABASE_URL, config.MIGRATE_TIMEOUT)
    require_owner(owner_url)
    backend = get_backend(yoyo_url(owner_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        if action == "apply":
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            print(f"applied {len(pending)} migration(s)", file=out)
            role = app_role(config)
            if role:
                grant_app_role(owner_url, role, backend)
                print(f"granted {role} its privileges", file=out)
        elif action == "rollback":
            applied = backend.to_rollback(migrations)
            chosen = applied if rollback_all else applied[:1]
            backend.rollback_migrations(chosen)
            print(f"rolled back {len(chosen)} migration(s)", file=out)
        else:
            applied_ids = {m.id for m in backend.to_rollback(migrations)}
            for m in migrations:
                print(f"{'applied' if m.id in applied_ids else 'pending':8} {m.id}", file=out)


def require_owner(url):
    """Raise NotOwner at once if `url`'s user may not create tables: yoyo would first retry
    its lock for 10 s, then fail less clearly."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = load_queries()["can_create_tables"].run(conn)
    if not row["allowed"]:
        raise NotOwner(f"{row['user_name']} may not create tables; migrate runs as the schema "
                       "owner: set MIGRATE_DATABASE_URL")


def app_role(config):
    """The user DATABASE_URL logs in as, if MIGRATE_DATABASE_URL names another one; else None."""
    app_user = conninfo_to_dict(config.DATABASE_URL).get("user")
    owner = conninfo_to_dict(config.MIGRATE_DATABASE_URL).get("user")
    return app_user if app_user and app_user != owner else None


def grant_app_role(owner_url, role, backend):
    """Give `role` exactly the GRANTS, in one transaction as the owner (safe to repeat)."""
    yoyo_tables = sql.SQL(", ").join(
        sql.Identifier(name) for name in (backend.migration_table, backend.log_table,
                                          backend.version_table, backend.lock_table))
    with psycopg.connect(owner_url) as conn:
        for statement in GRANTS:
            conn.execute(sql.SQL(statement).format(role=sql.Identifier(role),
                                                   yoyo_tables=yoyo_tables))


def seed(config, count, if_empty, out=sys.stdout):
    """Insert `count` sample tasks in one statement (bounded by MIGRATE_TIMEOUT), then start a
    new generation of list pages (or, with Redis away, leave that to the app's janitor, like a
    write of the API)."""
    queries = load_queries()
    with psycopg.connect(bounded(config.DATABASE_URL, config.MIGRATE_TIMEOUT),
                         autocommit=True) as conn:
        inserted = queries["seed_tasks"].run(conn, {"count": count, "if_empty": if_empty})
        if inserted:
            generations = Generations(Cache(make_redis(config.REDIS_URL), config.CACHE_TTL))
            bump_or_owe(generations, lambda **debt: queries["create_cache_debt"].run(conn, debt))
    print(f"inserted {inserted} task(s)" + (" (the table was not empty)" if if_empty and not
                                              inserted else ""), file=out)
    return inserted

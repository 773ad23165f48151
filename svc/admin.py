"""Database administration shared by the CLI and the local stack: migrations and sample data."""

import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from .cache import Cache, make_redis
from .db import load_queries

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


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
    """Apply pending migrations, roll back the last one (or all), or list their state."""
    backend = get_backend(yoyo_url(config.DATABASE_URL))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        if action == "apply":
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            print(f"applied {len(pending)} migration(s)", file=out)
        elif action == "rollback":
            applied = backend.to_rollback(migrations)
            chosen = applied if rollback_all else applied[:1]
            backend.rollback_migrations(chosen)
            print(f"rolled back {len(chosen)} migration(s)", file=out)
        else:
            applied_ids = {m.id for m in backend.to_rollback(migrations)}
            for m in migrations:
                print(f"{'applied' if m.id in applied_ids else 'pending':8} {m.id}", file=out)


def seed(config, count, if_empty, out=sys.stdout):
    """Insert `count` sample tasks in one statement, then start a new generation of list pages
    (or, with Redis away, leave that to the app's janitor, like a write of the API)."""
    queries = load_queries()
    with psycopg.connect(config.DATABASE_URL, autocommit=True) as conn:
        inserted = queries["seed_tasks"].run(conn, {"count": count, "if_empty": if_empty})
        if inserted and not Cache(make_redis(config.REDIS_URL), config.CACHE_TTL).bump():
            queries["create_cache_debt"].run(conn, {"task_id": None, "version": None})
    print(f"inserted {inserted} task(s)" + (" (the table was not empty)" if if_empty and not
                                              inserted else ""), file=out)
    return inserted

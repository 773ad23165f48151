"""python -m svc: migrate [apply|rollback [--all]|list], seed [--count N] [--if-empty], stack."""

import argparse
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from .cache import Cache, make_redis
from .config import Config, ConfigError
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
    """Insert `count` sample tasks in one statement, then start a new cache generation."""
    query = load_queries()["seed_tasks"]
    with psycopg.connect(config.DATABASE_URL, autocommit=True) as conn:
        inserted = query.run(conn, {"count": count, "if_empty": if_empty})
    if inserted:
        Cache(make_redis(config.REDIS_URL), config.CACHE_TTL).bump()  # best effort, like the API
    print(f"inserted {inserted} task(s)" + (" (the table was not empty)" if if_empty and not
                                              inserted else ""), file=out)
    return inserted


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser():
    """The command-line grammar."""
    p = argparse.ArgumentParser(prog="python -m svc", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="apply, roll back or list schema migrations")
    m.add_argument("action", nargs="?", default="apply", choices=("apply", "rollback", "list"))
    m.add_argument("--all", action="store_true", help="with rollback: roll back every migration")
    s = sub.add_parser("seed", help="insert sample tasks")
    s.add_argument("--count", type=_positive, default=20, help="how many (default 20)")
    s.add_argument("--if-empty", action="store_true", help="only if the tasks table is empty")
    st = sub.add_parser("stack", help="start or stop the local stack without Docker")
    st.add_argument("action", choices=("up", "down", "status"))
    return p


def main(argv=None):
    """Entry point of python -m svc."""
    args = parser().parse_args(argv)
    if args.command == "stack":
        from . import stack

        return stack.main(args.action)
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            migrate(config, args.action, args.all)
        else:
            seed(config, args.count, args.if_empty)
    except psycopg.OperationalError as exc:
        print(f"error: cannot reach PostgreSQL: {str(exc).strip()}", file=sys.stderr)
        return 1
    return 0

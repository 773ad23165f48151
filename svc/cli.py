"""python -m svc: migrate [apply|rollback [--all]|list], seed [--count N] [--if-empty]."""

import argparse
import sys

import psycopg

from .admin import NotOwner, migrate, seed
from .config import Config, ConfigError


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
    return p


def main(argv=None):
    """Entry point of python -m svc."""
    args = parser().parse_args(argv)
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
    except NotOwner as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

"""Schema migrations: apply, roll back, apply again; the limits the schema itself enforces.

The migration files' conventions (a rollback and a depends line each) are in test_sql_files.py.
"""

import io

import psycopg
import pytest
from yoyo import get_backend

from svc.admin import MIGRATIONS_DIR, migrate, yoyo_url
from svc.db import bounded, pool

# Migration ids in order: NNNN.verb-noun, from the files.
IDS = sorted(p.name.removesuffix(".sql") for p in MIGRATIONS_DIR.glob("*.sql")
             if not p.name.endswith(".rollback.sql"))

pytestmark = pytest.mark.app


def tables(url):
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'public'")}


def test_apply_rollback_all_apply_round_trips(config):
    out = io.StringIO()
    try:
        migrate(config, "rollback", rollback_all=True, out=out)
        assert "tasks" not in tables(config.DATABASE_URL)
        migrate(config, "list", out=out)
        assert "pending  0001.create-tasks" in out.getvalue()
    finally:
        migrate(config, "apply", out=out)
    assert f"applied {len(IDS)} migration(s)" in out.getvalue()
    assert "tasks" in tables(config.DATABASE_URL)
    with psycopg.connect(config.DATABASE_URL) as conn:
        indexes = {r[0] for r in conn.execute("select indexname from pg_indexes "
                                             "where tablename = 'tasks'")}
    assert {"tasks_done_id_idx", "tasks_title_id_idx", "tasks_created_at_id_idx",
            "tasks_updated_at_id_idx", "tasks_search_trgm_idx"} <= indexes


def test_rollback_without_all_undoes_only_the_last_migration(config):
    out = io.StringIO()
    try:
        migrate(config, "rollback", out=out)
        migrate(config, "list", out=out)
        assert f"applied  {IDS[-2]}" in out.getvalue()
        assert f"pending  {IDS[-1]}" in out.getvalue()
    finally:
        migrate(config, "apply", out=out)


def test_schema_enforces_the_api_limits(db):
    for bad in ["insert into tasks (title) values ('')", "insert into tasks (title) values ('  ')",
                "insert into tasks (title) values (repeat('x', 201))",
                "insert into tasks (title, description) values ('x', repeat('d', 10001))",
                "insert into tasks (title) values (null)"]:
        with pytest.raises(psycopg.errors.IntegrityError):
            db.execute(bad)


def test_migrations_and_the_app_run_under_bounds_of_their_own(config, app):
    owner = bounded(config.MIGRATE_DATABASE_URL, 900)  # what migrate connects with
    backend = get_backend(yoyo_url(owner))
    assert backend.execute("show statement_timeout").fetchone()[0] == "15min"
    with pool(app).connection() as conn:  # the app's reads
        assert conn.execute("show statement_timeout").fetchone()["statement_timeout"] == "500ms"

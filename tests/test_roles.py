"""Least privilege in PostgreSQL: the app's role reads and writes rows and can do nothing else;
the schema owner migrates and grants. (The whole suite runs the app as that role: conftest.)"""

import psycopg
import pytest

from svc.admin import app_role
from svc.config import Config
from stack import APP_ROLE
from svc.db import pool

pytestmark = pytest.mark.app

REFUSED = ["drop table tasks", "truncate tasks", "create table intruder (id int)",
           "alter table tasks add column intruder int", "create index intruder on tasks (title)",
           "delete from _yoyo_migration", "select * from yoyo_lock"]


@pytest.mark.parametrize("statement", REFUSED)
def test_app_role_is_refused_ddl_truncate_and_migration_bookkeeping(config, statement):
    with psycopg.connect(config.DATABASE_URL, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_api_works_as_the_app_role_which_owns_nothing(client, app):
    assert client.post("/api/tasks", json={"title": "as tasks_app"}).status_code == 201
    assert client.get("/api/tasks").get_json()["items"][0]["title"] == "as tasks_app"
    with pool(app).connection() as conn:
        user, superuser, owned = conn.execute(
            "select current_user, rolsuper, (select count(*) from pg_class"
            " where relowner = pg_roles.oid) from pg_roles where rolname = current_user"
        ).fetchone().values()
    assert (user, superuser, owned) == (APP_ROLE, False, 0)


def test_a_table_the_owner_creates_later_is_open_to_the_app_role_for_rows_only(config):
    with psycopg.connect(config.MIGRATE_DATABASE_URL, autocommit=True) as owner:
        owner.execute("create table later (id bigint generated always as identity, note text)")
        try:
            with psycopg.connect(config.DATABASE_URL, autocommit=True) as conn:
                conn.execute("insert into later (note) values ('a'), ('b')")
                conn.execute("update later set note = 'c' where id = 1")
                conn.execute("delete from later where id = 2")
                assert conn.execute("select id, note from later").fetchall() == [(1, "c")]
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("truncate later")
        finally:
            owner.execute("drop table later")


def test_migrate_grants_only_when_the_owner_is_another_user(config):
    assert app_role(config) == APP_ROLE
    assert app_role(Config(DATABASE_URL=config.MIGRATE_DATABASE_URL)) is None

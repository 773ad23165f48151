"""The python -m svc command line: migrate and seed against a real database, its arguments
and its errors."""

import io
import os
import subprocess
import sys

import pytest

from helpers import generations
import stack
from svc import cli
from svc.admin import seed, yoyo_url

pytestmark = pytest.mark.app


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "svc", *args], capture_output=True, text=True,
                          cwd=stack.ROOT, env={**os.environ, **(env or {})}, timeout=60)


def test_cli_migrate_and_seed_against_a_real_database(config, db, rds):
    env = {"DATABASE_URL": config.DATABASE_URL, "REDIS_URL": config.REDIS_URL,
           "MIGRATE_DATABASE_URL": config.MIGRATE_DATABASE_URL}
    assert run_cli("migrate", "apply", env=env).stdout.splitlines() == [
        "applied 0 migration(s)", f"granted {stack.APP_ROLE} its privileges"]
    listed = run_cli("migrate", "list", env=env).stdout
    assert "applied  0001.create-tasks" in listed and "applied  0002.index-tasks-done" in listed
    gen = generations(rds)[0]
    seeded = run_cli("seed", "--count", "5", "--if-empty", env=env)
    assert seeded.returncode == 0 and seeded.stdout.strip() == "inserted 5 task(s)"
    assert generations(rds)[0] == gen + 1  # cached pages from before the seed are dropped
    again = run_cli("seed", "--if-empty", env=env)
    assert again.returncode == 0 and "inserted 0 task(s)" in again.stdout
    assert db.execute("select count(*) from tasks").fetchone()[0] == 5


def test_migrate_list_runs_as_the_owner_and_names_it_when_given_only_the_app_role(config):
    owner = run_cli("migrate", "list", env={"DATABASE_URL": config.DATABASE_URL,
                                            "MIGRATE_DATABASE_URL": config.MIGRATE_DATABASE_URL})
    assert owner.returncode == 0 and "applied  0001.create-tasks" in owner.stdout
    app_only = run_cli("migrate", "list", env={"DATABASE_URL": config.DATABASE_URL})
    assert app_only.returncode == 1 and "Traceback" not in app_only.stderr
    assert app_only.stderr == (f"error: {stack.APP_ROLE} may not create tables; migrate runs "
                               "as the schema owner: set MIGRATE_DATABASE_URL\n")


def test_seed_inserts_100k_rows_in_one_statement(config, db):
    assert seed(config, 100_000, if_empty=False, out=io.StringIO()) == 100_000
    row = db.execute("select count(*), count(distinct title), min(id), max(id) from tasks").fetchone()
    assert row == (100_000, 100_000, 1, 100_000)


def test_unreachable_database_is_a_clear_cli_error():
    result = run_cli("migrate", "list", env={
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{stack.free_port()}/tasks"})
    assert result.returncode == 1 and result.stderr.startswith("error: cannot reach PostgreSQL")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url, expected", [
    ("postgresql://u:p%40ss@db:5433/tasks", "postgresql+psycopg://u:p%40ss@db:5433/tasks"),
    ("postgres://u@127.0.0.1/tasks?sslmode=disable",
     "postgresql+psycopg://u@127.0.0.1/tasks?sslmode=disable"),
    ("host=db port=5432 user=u dbname=tasks", "postgresql+psycopg://u@db:5432/tasks"),
    ("postgresql:///tasks?host=/var/run/postgresql",
     "postgresql+psycopg:///tasks?host=%2Fvar%2Frun%2Fpostgresql"),
])
def test_database_url_becomes_a_yoyo_url(url, expected):
    assert yoyo_url(url) == expected


@pytest.mark.parametrize("argv", [["seed", "--count", "0"], ["migrate", "sideways"], []])
def test_bad_cli_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.parser().parse_args(argv)
    assert exit_info.value.code == 2

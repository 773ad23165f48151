"""Start-up stops with a message naming what is missing: a SQL file, DATABASE_URL."""

import os
import subprocess
import sys

import pytest

import stack
from svc import create_app, db
from svc.db import SQL_DIR, SqlFileError

pytestmark = pytest.mark.app


def test_missing_sql_file_stops_start_up(tmp_path, monkeypatch, config):
    for path in SQL_DIR.glob("*.sql"):
        if path.stem != "get_task":
            (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(db, "SQL_DIR", tmp_path)
    with pytest.raises(SqlFileError, match="missing SQL files.*get_task"):
        create_app({"DATABASE_URL": config.DATABASE_URL, "REDIS_URL": config.REDIS_URL})


def test_missing_database_url_stops_with_a_message_naming_it():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-m", "svc", "migrate"], capture_output=True,
                            text=True, cwd=stack.ROOT, env=env, timeout=60)
    assert result.returncode == 2 and "DATABASE_URL is not set" in result.stderr
    app_start = subprocess.run([sys.executable, "-c", "import svc.wsgi"], capture_output=True,
                               text=True, cwd=stack.ROOT, env=env, timeout=60)
    assert app_start.returncode != 0 and "DATABASE_URL is not set" in app_start.stderr


def test_an_empty_prometheus_multiproc_dir_stops_start_up_instead_of_littering_the_cwd(tmp_path):
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "PROMETHEUS_MULTIPROC_DIR": ""}
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, "
                             f"{str(stack.ROOT)!r}); import svc.wsgi"], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR is set but empty" in result.stderr
    assert not list(tmp_path.iterdir())

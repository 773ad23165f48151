"""The SQL files' conventions, checked without servers: sql/*.sql headers, shapes and
placeholders; every migration in migrations/ with its rollback and depends line."""

import re

import pytest

import stack
from svc import db
from svc.db import SQL_DIR, SqlFileError, load_queries, parse_query

pytestmark = pytest.mark.static


def test_every_sql_file_has_a_header_naming_it_and_its_shape():
    for path in sorted(SQL_DIR.glob("*.sql")):
        lines = path.read_text().splitlines()
        assert re.fullmatch(rf"-- name: {path.stem} :(one|many|exec|execrows)", lines[0]), path
        assert lines[1].startswith("-- ") and len(lines[1]) > 10, path
        body = "\n".join(lines[2:])
        assert not re.search(r"select\s+\*", body, re.I), f"{path.name}: explicit columns"
        # Identifier slots ({name}, filled through psycopg.sql from a whitelist) aside.
        body = re.sub(r"\{[a-z_]+\}", "", body)
        assert not re.search(r"%s|\{|:[a-z]\w*\b(?!:)", re.sub(r"::\w+", "", body)), \
            f"{path.name}: placeholders are %(name)s only"


def test_all_required_queries_load():
    assert set(db.REQUIRED) <= set(load_queries())


@pytest.mark.parametrize("text, error", [
    ("select 1", "must start with"),
    ("-- name: other :one\n-- doc line\nselect 1", "header names 'other'"),
    ("-- name: bad :all\n-- doc line\nselect 1", "shape :all"),
    ("-- name: bad :one\n-- doc line\nselect 1; select 2", "exactly one statement"),
    ("-- name: bad :one\n-- doc line\n", "exactly one statement"),
])
def test_malformed_sql_file_is_refused(tmp_path, text, error):
    path = tmp_path / "bad.sql"
    path.write_text(text)
    with pytest.raises(SqlFileError, match=re.escape(error)):
        parse_query(path)


def test_every_migration_has_a_rollback_and_a_depends_line():
    folder = stack.ROOT / "migrations"
    forward = sorted(p for p in folder.glob("*.sql") if not p.name.endswith(".rollback.sql"))
    assert forward
    for path in forward:
        assert (folder / f"{path.stem}.rollback.sql").exists(), path.name
        assert "-- depends:" in path.read_text(), path.name

"""The SQL files' conventions, checked without servers: sql/*.sql headers, shapes and
placeholders; every migration in migrations/ with its rollback and depends line."""

import itertools
import re

import pytest

import stack
from svc import db
from svc.db import SQL_DIR, SqlFileError, load_queries, parse_query

pytestmark = pytest.mark.static


def test_every_sql_file_has_a_header_naming_it_and_its_shape_then_its_doc():
    for path in sorted(SQL_DIR.glob("*.sql")):
        lines = path.read_text().splitlines()
        assert re.fullmatch(rf"-- name: {path.stem} :(one|many|exec|execrows)", lines[0]), path
        doc = list(itertools.takewhile(lambda line: line.startswith("-- "), lines[1:]))
        assert doc and len(doc[0]) > 10, path
        assert all(len(line) <= 100 for line in lines), f"{path.name}: lines of <= 100 characters"
        body = "\n".join(lines[1 + len(doc):])
        assert not re.search(r"select\s+\*", body, re.I), f"{path.name}: explicit columns"
        # Identifier slots ({name}, filled through psycopg.sql from a whitelist) aside.
        body = re.sub(r"\{[a-z_]+\}", "", body)
        assert not re.search(r"%s|\{|:[a-z]\w*\b(?!:)", re.sub(r"::\w+", "", body)), \
            f"{path.name}: placeholders are %(name)s only"


def test_all_required_queries_load():
    assert set(db.REQUIRED) <= set(load_queries())


def test_a_doc_comment_may_run_over_several_lines_and_stays_out_of_the_statement(tmp_path):
    path = tmp_path / "get_thing.sql"
    path.write_text("-- name: get_thing :one\n-- The thing,\n-- in two lines.\nselect 1 as one\n")
    query = parse_query(path)
    assert query.doc == "The thing, in two lines."
    assert query.text == "select 1 as one"


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

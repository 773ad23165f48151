"""The SQL files' conventions and the OpenAPI document."""

import re

import pytest

from svc import create_app, db
from svc.db import SQL_DIR, SqlFileError, load_queries, parse_query


def test_every_sql_file_has_a_header_naming_it_and_its_shape():
    for path in sorted(SQL_DIR.glob("*.sql")):
        lines = path.read_text().splitlines()
        assert re.fullmatch(rf"-- name: {path.stem} :(one|many|exec|execrows)", lines[0]), path
        assert lines[1].startswith("-- ") and len(lines[1]) > 10, path
        body = "\n".join(lines[2:])
        assert not re.search(r"select\s+\*", body, re.I), f"{path.name}: explicit columns"
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


def test_missing_sql_file_stops_start_up(tmp_path, monkeypatch, config):
    for path in SQL_DIR.glob("*.sql"):
        if path.stem != "get_task":
            (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(db, "SQL_DIR", tmp_path)
    with pytest.raises(SqlFileError, match="missing SQL files.*get_task"):
        create_app({"DATABASE_URL": config.DATABASE_URL, "REDIS_URL": config.REDIS_URL})


def _resolve(document, node, seen=0):
    """Follow every $ref in `node`; fail on one that points nowhere."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                assert part in target, f"dangling $ref {node['$ref']}"
                target = target[part]
        for value in node.values():
            _resolve(document, value)
    elif isinstance(node, list):
        for value in node:
            _resolve(document, value)


def test_openapi_document_is_valid_3_1_and_lists_every_route(client, app):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    _resolve(doc, doc)
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?raw_id>", "{id}", rule.rule)
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
    operation_ids = [op["operationId"] for item in doc["paths"].values()
                     for key, op in item.items() if key != "parameters"]
    assert len(operation_ids) == len(set(operation_ids))
    for item in doc["paths"].values():
        for key, op in item.items():
            if key != "parameters":
                assert op["responses"], key


def test_openapi_lists_every_error_status_the_task_routes_return(client):
    doc = client.get("/api/openapi.json").get_json()
    post = doc["paths"]["/api/tasks"]["post"]["responses"]
    assert {"201", "400", "409", "413", "415", "422", "503"} <= set(post)
    put = doc["paths"]["/api/tasks/{id}"]["put"]["responses"]
    assert {"200", "404", "412", "422"} <= set(put)
    problem = doc["components"]["responses"]["Problem422"]["content"]
    assert "application/problem+json" in problem

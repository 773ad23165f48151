"""The field table in svc/resource.py: what it promises holds against the real app."""

import json
import re
import sys

import pytest

from svc.resource import (BULK_MAX, LIST_PARAMS, MAX_BODY, NOT_BLANK, ORDER, TASK, WHITESPACE,
                          WRITABLE)

pytestmark = pytest.mark.app

ASTRAL = "\U0001F680"  # JSON escapes it as a surrogate pair: 12 bytes, the most a character costs


def largest_valid_body():
    """Every writable text field at its maximum length in the costliest character."""
    body = {f.name: ASTRAL * f.max_length for f in WRITABLE if f.max_length}
    body.update({f.name: f.default for f in WRITABLE if f.type == "boolean"})
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_the_largest_schema_valid_body_fits_the_limit_and_is_accepted(client, method):
    body = largest_valid_body()
    assert len(body) <= MAX_BODY
    url = "/api/tasks"
    if method == "PUT":
        url += f"/{client.post(url, json={'title': 'x'}).get_json()['id']}"
    response = client.open(url, method=method, data=body, content_type="application/json")
    assert response.status_code in (200, 201), response.get_data(as_text=True)[:300]
    assert response.get_json()["description"] == ASTRAL * 10_000


def test_blank_means_exactly_the_characters_python_calls_whitespace():
    spaces = {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}
    assert {c for c in spaces if re.fullmatch(f"[{WHITESPACE}]", c)} == spaces
    assert not re.search(f"[{WHITESPACE}]", "".join(c for c in map(chr, range(0x3001))
                                                   if not c.isspace()))


@pytest.mark.parametrize("title, valid", [("x", True), (" x ", True), ("\u3000\t", False),
                                          ("", False), ("a\x00b", False), ("\x1c", False)])
def test_the_documented_title_pattern_agrees_with_validation(client, title, valid):
    assert bool(re.search(NOT_BLANK, title)) is valid
    response = client.post("/api/tasks", json={"title": title})
    assert response.status_code == (201 if valid else 422)


def test_the_openapi_task_schema_lists_the_fields_in_table_order(client):
    doc = client.get("/api/openapi.json").get_json()
    task = doc["components"]["schemas"]["Task"]
    assert list(task["properties"]) == task["required"] == [f.name for f in TASK]
    create = doc["components"]["schemas"]["TaskCreate"]
    assert create["required"] == ["title"] and set(create["properties"]) == {
        f.name for f in WRITABLE}


def test_the_openapi_list_parameters_are_the_declared_ones(client):
    doc = client.get("/api/openapi.json").get_json()
    params = {p["name"]: p for p in doc["paths"]["/api/tasks"]["get"]["parameters"]}
    assert list(params) == [p.name for p in LIST_PARAMS] + ["If-None-Match", "Prefer"]
    assert params["order"]["schema"] == {"type": "string", "enum": list(ORDER.values)}
    q = next(p for p in LIST_PARAMS if p.name == "q")
    assert params["q"]["schema"]["maxLength"] == q.max_length == 200
    assert params["q"]["schema"]["pattern"] == NOT_BLANK


def test_the_openapi_create_body_is_one_task_or_an_array_of_them(client):
    doc = client.get("/api/openapi.json").get_json()
    body = doc["paths"]["/api/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"] == [{"$ref": "#/components/schemas/TaskCreate"},
                                       {"$ref": "#/components/schemas/TaskBulk"}]
    bulk = doc["components"]["schemas"]["TaskBulk"]
    assert (bulk["minItems"], bulk["maxItems"]) == (1, BULK_MAX)

"""The OpenAPI document: valid 3.1, every served route in it, with the statuses it answers."""

import re

import pytest

pytestmark = pytest.mark.app


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
        if rule.endpoint.split(".")[-1] == "static":  # files, such as /api/docs/<file>
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

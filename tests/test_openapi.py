"""The OpenAPI document: valid 3.1, every public route in it, with the statuses it answers,
and nothing a generated client would send that the client did not ask for."""

import re
from pathlib import Path

import pytest

from svc.resource import RATE_LIMITED_METHODS

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


def test_openapi_document_is_valid_3_1_and_lists_every_public_route(client, app):
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
        if path.startswith("/api/"):  # what nginx serves; /metrics is for the backend network
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
    assert "/metrics" in {rule.rule for rule in app.url_map.iter_rules()}
    assert not any("metrics" in path for path in doc["paths"])
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


def _defaults(node, where=""):
    """Every place under `node` that declares a default."""
    found = []
    if isinstance(node, dict):
        if "default" in node:
            found.append(where)
        for key, value in node.items():
            found += _defaults(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _defaults(value, f"{where}/{index}")
    return found


def test_no_partial_update_or_query_parameter_declares_a_default(client):
    doc = client.get("/api/openapi.json").get_json()
    assert _defaults(doc["components"]["schemas"]["TaskPatch"]) == []
    assert _defaults(doc["components"]["schemas"]["Task"]) == []
    parameters = doc["paths"]["/api/tasks"]["get"]["parameters"]
    assert _defaults(parameters) == []
    described = {p["name"]: p["description"] for p in parameters}
    assert "Default: 50." in described["limit"] and "Default: id.asc." in described["order"]
    # A create or a replace still says what an absent field becomes: sending it changes nothing.
    create = doc["components"]["schemas"]["TaskCreate"]["properties"]
    assert (create["description"]["default"], create["done"]["default"]) == ("", False)


def _write_methods_nginx_limits():
    """The methods conf/nginx/maps.conf's $write_limit_key gives a key (a key: limited)."""
    text = (Path(__file__).parent.parent / "conf/nginx/maps.conf").read_text()
    block = re.search(r"map \$request_method \$write_limit_key \{(.*?)\}", text, re.S)[1]
    return {m for m, key in re.findall(r"^\s*(\w+)\s+(\S+);", block, re.M)
            if m != "default" and key != '""'}


def test_every_operation_documents_nginx_429_with_retry_after(client):
    assert _write_methods_nginx_limits() == set(RATE_LIMITED_METHODS)
    locations = (Path(__file__).parent.parent / "conf/nginx/nginx.conf").read_text()
    assert locations.count('require("limits").check()') == 2  # @app and /api/; reads: refuse()
    doc = client.get("/api/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert "429" in operation["responses"], (method, path)
    problem = doc["components"]["responses"]["Problem429"]
    assert "Retry-After" in problem["headers"]
    assert "application/problem+json" in problem["content"]


def test_a_page_documents_its_cursor_beside_next(client):
    page = client.get("/api/openapi.json").get_json()["components"]["schemas"]["Page"]
    assert {"next", "cursor"} <= set(page["required"])
    assert page["properties"]["cursor"]["type"] == ["string", "null"]

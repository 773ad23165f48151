"""What every answer of the app gets on its way out (svc/transport.py): gzip when asked, weak
ETags on compressed bodies that If-Match still takes, no Content-Type without a body; and the
CORS lists nginx sends, against the document."""

import gzip
import json
import re

import pytest

from stack import NGINX_TEMPLATE
from svc import openapi

pytestmark = pytest.mark.app

GZIP = {"Accept-Encoding": "gzip"}
LONG = "долгое описание " * 100  # about 3 KB of JSON: over transport.MIN_LENGTH
MAPS = (NGINX_TEMPLATE.parent / "maps.conf").read_text()
# Response headers a script may always read (Fetch: CORS-safelisted response-header names).
SAFELISTED = {"Cache-Control", "Content-Language", "Content-Length", "Content-Type", "Expires",
              "Last-Modified", "Pragma"}


def create(client, **fields):
    response = client.post("/api/tasks", json={"title": "a task", **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def vary(response):
    """The Vary tokens of a response, lower-cased."""
    return {t.strip().lower() for v in response.headers.getlist("Vary") for t in v.split(",")}


def test_a_page_is_gzipped_for_a_client_that_asks_and_is_the_same_json_decompressed(client):
    for _ in range(3):
        create(client, description=LONG)
    plain = client.get("/api/tasks")
    packed = client.get("/api/tasks", headers=GZIP)
    assert packed.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert json.loads(gzip.decompress(packed.data))["items"] == plain.get_json()["items"]
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 5
    assert "accept-encoding" in vary(packed) and "prefer" in vary(packed)


def test_an_item_the_openapi_document_and_the_docs_assets_are_gzipped(client):
    task = create(client, description=LONG)
    for url in (f"/api/tasks/{task['id']}", "/api/openapi.json",
                "/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css"):
        packed = client.get(url, headers=GZIP)
        assert packed.status_code == 200 and packed.headers["Content-Encoding"] == "gzip", url
        assert gzip.decompress(packed.data) == client.get(url).data, url
        assert "Accept-Ranges" not in packed.headers, url


def test_answers_nginx_never_compresses_are_gzipped_by_the_app(client):
    """nginx's gzip filter takes only 200, 403 and 404: a bulk create's 201 and a 422 listing
    every bad task are the app's to compress."""
    created = client.post("/api/tasks", json=[{"title": f"bulk {i}"} for i in range(100)],
                          headers=GZIP)
    assert created.status_code == 201 and created.headers["Content-Encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(created.data))) == 100
    refused = client.post("/api/tasks", json=[{"title": ""}] * 100, headers=GZIP)
    assert refused.status_code == 422 and refused.headers["Content-Encoding"] == "gzip"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert len(json.loads(gzip.decompress(refused.data))["errors"]) == 100


def test_short_bodies_and_clients_without_gzip_get_the_identity_body(client, db):
    task = create(client)  # about 200 bytes
    short = client.get(f"/api/tasks/{task['id']}", headers=GZIP)
    assert "Content-Encoding" not in short.headers and short.get_json() == task
    create(client, description=LONG)
    refused = client.get("/api/tasks", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers and "accept-encoding" in vary(refused)
    silent = client.get("/api/tasks")  # as nginx fetches for its caches: it adds Vary itself
    assert "Content-Encoding" not in silent.headers and "accept-encoding" not in vary(silent)


def test_a_compressed_answer_weakens_its_etag_and_if_match_takes_the_weak_form(client):
    task = create(client, description=LONG)
    url = f"/api/tasks/{task['id']}"
    read = client.get(url, headers=GZIP)
    assert read.headers["ETag"] == f'W/"{task["id"]}-1"'
    assert client.get(url, headers={"If-None-Match": read.headers["ETag"]}).status_code == 304
    written = client.patch(url, json={"done": True}, headers={"If-Match": read.headers["ETag"]})
    assert written.status_code == 200 and written.get_json()["version"] == 2
    stale = client.patch(url, json={"done": False}, headers={"If-Match": read.headers["ETag"]})
    assert stale.status_code == 412  # the version is still compared exactly
    assert client.delete(url, headers={"If-Match": f'W/"{task["id"]}-2"'}).status_code == 204


def test_answers_without_a_body_have_no_content_type(client):
    task = create(client)
    url = f"/api/tasks/{task['id']}"
    not_modified = client.get(url, headers={"If-None-Match": f'"{task["id"]}-1"'})
    minimal = client.patch(url, json={"done": True}, headers={"Prefer": "return=minimal"})
    options = client.options(url)
    deleted = client.delete(url)
    assert (not_modified.status_code, minimal.status_code, options.status_code,
            deleted.status_code) == (304, 204, 200, 204)
    for response in (not_modified, minimal, options, deleted):
        assert response.data == b"" and "Content-Type" not in response.headers, response
    assert "PATCH" in options.headers["Allow"]
    head = client.head(url.rsplit("/", 1)[0])  # a HEAD keeps the type of the GET it stands for
    assert head.headers["Content-Type"] == "application/json"


def nginx_list(name):
    """The comma-separated value maps.conf gives CORS variable `name` when it applies."""
    block = re.search(rf"map \S+ \${name} \{{(.*?)\}}", MAPS, re.S).group(1)
    (value,) = re.findall(r'^\s*default\s+"([^"]+)";', block, re.M)
    return {item.strip() for item in value.split(",")}


def test_the_cors_lists_of_nginx_name_every_method_and_header_of_the_document(app):
    document = json.loads(openapi.document(app))
    methods, params, headers = {"HEAD"}, {"Authorization", "Content-Type"}, set()
    operations = [(method, operation) for item in document["paths"].values()
                  for method, operation in item.items() if method != "parameters"]
    for method, operation in operations:
        methods.add(method.upper())
        params |= {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
    responses = [r for _, operation in operations for r in operation["responses"].values()]
    responses += document["components"].get("responses", {}).values()
    for response in responses:
        headers |= set(response.get("headers", {}))
    assert nginx_list("cors_allow_methods") == methods
    assert nginx_list("cors_allow_headers") == params
    assert headers - {"X-App-Cache"} - SAFELISTED <= nginx_list("cors_expose_headers")


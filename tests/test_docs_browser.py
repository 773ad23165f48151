"""GET /api/docs in a real browser: headless Chromium through nginx renders every operation, and
the page asks nothing of anyone but the service.

One Chromium run (about 3 s) dumps the DOM after the scripts ran, logs every request to a net
log and takes a screenshot. UPDATE_SCREENSHOT=1 copies that screenshot to tests/docs-browser.png
(the README links to it).
"""

import json
import os
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from helpers import chromium, running_stack


pytestmark = pytest.mark.stack

SCREENSHOT = Path(__file__).with_name("docs-browser.png")
OPERATION = re.compile(r'<span class="opblock-summary-method">(\w+)</span>.*?data-path="([^"]*)"',
                       re.S)


@pytest.fixture(scope="module")
def docs_stack():
    """The whole stack, as `make up` starts it, on free ports."""
    with running_stack("docs") as stack:
        yield stack


@pytest.fixture(scope="module")
def browsed(docs_stack, tmp_path_factory):
    """Chromium opens /api/docs once: (the rendered DOM, [(url, status)] of the page's own
    requests, the screenshot)."""
    out = tmp_path_factory.mktemp("chromium")
    net_log, shot = out / "net.json", out / "docs.png"
    result = chromium(f"{docs_stack.base_url}/api/docs", out, f"--log-net-log={net_log}",
                      f"--screenshot={shot}")
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT)
    return result.stdout, page_requests(net_log, docs_stack.base_url), shot


def page_requests(net_log, base_url):
    """(url, status or None) of every request the page made, from Chromium's net log: those
    whose network isolation key is the page's site (Chromium's own have another)."""
    log = json.loads(net_log.read_text())
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    site = re.match(r"https?://[^:/]+", base_url).group(0)
    urls, statuses = {}, {}
    for event in log["events"]:
        kind, params, source = kinds[event["type"]], event.get("params") or {}, event["source"]
        if kind == "URL_REQUEST_START_JOB" and "url" in params:
            if params.get("network_isolation_key", "").startswith(site):
                urls[source["id"]] = params["url"]
        elif kind == "HTTP_TRANSACTION_READ_RESPONSE_HEADERS":
            statuses[source["id"]] = int(params["headers"][0].split()[1])
    return [(url, statuses.get(source)) for source, url in urls.items()]


def test_every_operation_of_the_openapi_document_is_listed_on_the_page(docs_stack, browsed):
    dom = browsed[0]
    with urllib.request.urlopen(f"{docs_stack.base_url}/api/openapi.json", timeout=5) as r:
        doc = json.load(r)
    documented = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"}
    assert set(OPERATION.findall(dom)) == documented


def test_the_page_requested_nothing_outside_the_service_and_every_request_got_200(docs_stack,
                                                                                   browsed):
    requests = browsed[1]
    urls = {url for url, _ in requests}
    assert f"{docs_stack.base_url}/api/openapi.json" in urls
    assert {url for url in urls if not url.startswith(docs_stack.base_url + "/")} == set()
    assert [(url, status) for url, status in requests if status != 200] == []


def test_the_screenshot_shows_a_rendered_page(browsed):
    png = browsed[2].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a blank page is a few KB


def test_nginx_passes_the_docs_through_without_caching_them(docs_stack):
    for path in ("/api/docs", "/api/docs/swagger-ui.css"):
        with urllib.request.urlopen(f"{docs_stack.base_url}{path}", timeout=5) as response:
            assert response.status == 200
            assert response.headers["X-Cache-Status"] is None  # not the micro-cached location
            assert response.headers["X-Edge-Cache"] is None

"""GET /api/docs: Swagger UI from the app's own files; the browser test is test_docs_browser.py."""

import re

import pytest

pytestmark = pytest.mark.app


def test_docs_page_names_only_its_own_assets_and_each_loads(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 3 and all(a.startswith("/api/docs/") for a in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.content_length > 500, asset
    assert '"url": "/api/openapi.json"' in html
    assert '"validatorUrl": null' in html  # no badge from validator.swagger.io


def test_docs_page_may_reach_nothing_but_the_service(client):
    csp = client.get("/api/docs").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == directives["connect-src"] == "'self'"
    assert re.fullmatch(r"'self' 'sha256-[A-Za-z0-9+/]+=*'", directives["script-src"])
    assert "http" not in csp


def test_an_unknown_docs_file_is_a_404_problem(client):
    response = client.get("/api/docs/nothing.js")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"

"""Write tokens: with API_TOKENS set, writes need `Authorization: Bearer <token>` (any of them,
so tokens can rotate), reads stay public; unset, writes are open. The OpenAPI document says so."""

import pytest

from helpers import close_app, make_app
from svc.config import Config, ConfigError

pytestmark = pytest.mark.app

OLD, NEW = "old-token-0123456789abcdef", "new-token-0123456789abcdef"
WRITES = [("POST", "/api/tasks"), ("PUT", "/api/tasks/1"), ("PATCH", "/api/tasks/1"),
          ("DELETE", "/api/tasks/1")]


@pytest.fixture(scope="module")
def guarded_app(config):
    """An app with two write tokens configured."""
    app = make_app(config, API_TOKENS=f" {OLD} ,{NEW},")
    yield app
    close_app(app)


@pytest.fixture
def guarded(guarded_app, db, rds):
    """Its test client, on a clean table holding task 1."""
    db.execute("insert into tasks (title) values ('keep me')")
    return guarded_app.test_client()


def bearer(token):
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method, url", WRITES)
@pytest.mark.parametrize("headers, challenge", [
    ({}, 'Bearer realm="tasks-svc"'),
    (bearer("wrong-token-0123456789abcdef"), 'Bearer realm="tasks-svc", error="invalid_token"'),
    (bearer(OLD + "x"), 'Bearer realm="tasks-svc", error="invalid_token"'),
    (bearer("ünïcode-token"), 'Bearer realm="tasks-svc", error="invalid_token"'),
    ({"Authorization": f"Basic {OLD}"}, 'Bearer realm="tasks-svc"'),
    ({"Authorization": "Bearer "}, 'Bearer realm="tasks-svc"'),
], ids=["missing", "wrong", "longer", "non-ascii", "not-bearer", "empty"])
def test_write_without_a_valid_token_is_401_with_a_challenge_and_changes_nothing(
        guarded, db, method, url, headers, challenge):
    response = guarded.open(url, method=method, json={"title": "changed"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.content_type == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert db.execute("select id, title, version from tasks").fetchall() == [(1, "keep me", 1)]


@pytest.mark.parametrize("token", [OLD, NEW])
def test_each_configured_token_may_write_so_tokens_can_rotate(guarded, token):
    created = guarded.post("/api/tasks", json={"title": "new"}, headers=bearer(token))
    assert created.status_code == 201
    assert guarded.patch("/api/tasks/1", json={"done": True}, headers={
        "Authorization": f"bearer  {token} "}).status_code == 200  # scheme in any case
    assert guarded.delete("/api/tasks/1", headers=bearer(token)).status_code == 204


def test_reads_stay_public_when_tokens_are_configured(guarded):
    for url in ("/api/tasks", "/api/tasks/1", "/api/health", "/api/live", "/api/openapi.json"):
        assert guarded.get(url).status_code == 200, url


def test_without_api_tokens_writes_are_open_and_no_scheme_is_documented(client):
    assert client.post("/api/tasks", json={"title": "open"}).status_code == 201
    doc = client.get("/api/openapi.json").get_json()
    assert "securitySchemes" not in doc["components"]
    assert "Problem401" not in doc["components"]["responses"]


def test_openapi_puts_the_bearer_scheme_and_401_on_exactly_the_writes(guarded):
    doc = guarded.get("/api/openapi.json").get_json()
    (scheme,) = doc["components"]["securitySchemes"].values()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            write = method in ("post", "put", "patch", "delete")
            assert ("security" in op) == write == ("401" in op["responses"]), (method, path)
            if write:
                assert op["security"] == [{name: []} for name in doc["components"][
                    "securitySchemes"]]
    problem = doc["components"]["responses"]["Problem401"]
    assert problem["headers"]["WWW-Authenticate"]["required"] is True


def test_every_write_route_requires_a_token(guarded_app):
    for rule in guarded_app.url_map.iter_rules():
        if rule.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            view = guarded_app.view_functions[rule.endpoint]
            assert getattr(view, "requires_token", False), rule.rule


@pytest.mark.parametrize("value", [",", " , ", "short", "has space-0123456789abcdef",
                                   "has,comma-but-short", "quote\"-0123456789abcdef"])
def test_malformed_api_tokens_stop_start_up_without_echoing_them(value):
    with pytest.raises(ConfigError, match="API_TOKENS") as error:
        Config.from_env({}, DATABASE_URL="postgresql:///x", API_TOKENS=value)
    assert all(part.strip() not in str(error.value) for part in value.split(",") if part.strip())

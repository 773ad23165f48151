"""Bad input gets a clear 4xx problem, never a 500, and writes nothing."""

import io

import pytest

from svc.resource import CURSOR_MAX, MAX_BODY

pytestmark = pytest.mark.app

JSON = "application/json"
BIG_TITLE = "x" * 201


def raw(client, method, url, data, content_type=JSON):
    return client.open(url, method=method, data=data, content_type=content_type)


BODIES = [
    # (what, body bytes, content type, status)
    ("malformed JSON", b'{"title": "x"', JSON, 400),
    ("trailing garbage", b'{"title": "x"} x', JSON, 400),
    ("empty body", b"", JSON, 400),
    ("whitespace body", b"  \n", JSON, 400),
    ("array body", b'[{"title": "x"}]', JSON, 400),  # a bulk create for POST (POST_STATUS)
    ("array of non-objects", b'["x"]', JSON, 400),
    ("empty array", b"[]", JSON, 400),
    ("string body", b'"title"', JSON, 400),
    ("null body", b"null", JSON, 400),
    ("invalid UTF-8", b'{"title": "\xff\xfe"}', JSON, 400),
    ("NaN", b'{"title": "x", "done": NaN}', JSON, 400),
    ("duplicate keys", b'{"title": "x", "title": "y"}', JSON, 400),
    ("deep nesting", b'{"title": ' + b"[" * 600_000 + b"]" * 600_000 + b"}", JSON, 413),
    ("nested too deep but small", b'{"title": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", JSON, 400),
    ("form content type", b"title=x", "application/x-www-form-urlencoded", 415),
    ("text content type", b'{"title": "x"}', "text/plain", 415),
    ("no content type", b'{"title": "x"}', None, 415),
    ("latin-1 charset", b'{"title": "x"}', "application/json; charset=latin-1", 415),
    ("over the body limit", b'{"title": "' + b"x" * MAX_BODY + b'"}', JSON, 413),
    ("string done", b'{"title": "x", "done": "true"}', JSON, 422),
    ("number done", b'{"title": "x", "done": 1}', JSON, 422),
    ("number title", b'{"title": 5}', JSON, 422),
    ("object title", b'{"title": {"a": 1}}', JSON, 422),
    ("null title", b'{"title": null}', JSON, 422),
    ("null description", b'{"title": "x", "description": null}', JSON, 422),
    ("null done", b'{"title": "x", "done": null}', JSON, 422),
    ("unknown field", b'{"title": "x", "is done": "true"}', JSON, 422),
    ("read-only id", b'{"title": "x", "id": 5}', JSON, 422),
    ("missing title", b'{"description": "x"}', JSON, 422),
    ("blank title", b'{"title": "   "}', JSON, 422),
    ("empty title", b'{"title": ""}', JSON, 422),
    ("too-long title", b'{"title": "' + BIG_TITLE.encode() + b'"}', JSON, 422),
    ("too-long description", b'{"title": "x", "description": "' + b"d" * 10_001 + b'"}', JSON, 422),
    ("NUL in title", b'{"title": "a\\u0000b"}', JSON, 422),
    ("NUL in description", b'{"title": "x", "description": "\\u0000"}', JSON, 422),
    ("lone surrogate", b'{"title": "\\ud800"}', JSON, 422),
]


# A POST may carry an array (a bulk create); PUT and PATCH may not.
POST_STATUS = {"array body": 201, "array of non-objects": 422, "empty array": 422}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("what, body, content_type, status", BODIES, ids=[b[0] for b in BODIES])
def test_bad_body_is_rejected_and_nothing_changes(client, db, method, what, body, content_type,
                                                  status):
    original = client.post("/api/tasks", json={"title": "original"}).get_json()
    url = "/api/tasks" if method == "POST" else f"/api/tasks/{original['id']}"
    if method == "PATCH" and what == "missing title":
        status = 200  # a patch of description alone is valid
    if method == "POST":
        status = POST_STATUS.get(what, status)
    response = raw(client, method, url, body, content_type)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if status in (200, 201):
        return
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status and problem["type"] == "about:blank"
    assert problem["title"] and problem["detail"] and "Traceback" not in problem["detail"]
    assert db.execute("select count(*) from tasks").fetchone()[0] == 1
    assert client.get(f"/api/tasks/{original['id']}").get_json() == original


def test_unknown_field_problem_names_the_field(client):
    response = client.post("/api/tasks", json={"is done": "true"})
    errors = response.get_json()["errors"]
    assert response.status_code == 422
    assert {"field": "is done", "message": errors[0]["message"]} in errors
    assert "is done" in [e["field"] for e in errors]


def test_wrong_type_problem_names_the_field(client):
    errors = client.post("/api/tasks", json={"title": "x", "done": "true"}).get_json()["errors"]
    assert errors == [{"field": "done", "message": "must be true or false (a JSON boolean)"}]


def test_empty_patch_is_422(client):
    task = client.post("/api/tasks", json={"title": "x"}).get_json()
    assert client.patch(f"/api/tasks/{task['id']}", json={}).status_code == 422


def test_body_without_length_over_limit_is_413(client, db):
    """A chunked body has no Content-Length: the limit must hold while reading it."""
    body = b'{"title": "' + b"x" * (MAX_BODY + 1024) + b'"}'
    response = client.post("/api/tasks", input_stream=io.BytesIO(body), content_type=JSON,
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert db.execute("select count(*) from tasks").fetchone()[0] == 0


@pytest.mark.parametrize("path", ["0", "-1", "99999999999999999999", "9223372036854775808",
                                  "abc", "1.5", "01", "%00", "1%00", " 1"])
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_id_that_is_not_a_positive_int64_is_404(client, path, method):
    response = client.open(f"/api/tasks/{path}", method=method, json={"title": "x"})
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_largest_int64_id_is_a_plain_404(client):
    assert client.get("/api/tasks/9223372036854775807").status_code == 404


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=-1", "limit=abc", "limit=",
                                   "limit=1e3", "after=-1", "after=x",
                                   "after=99999999999999999999", "done=yes", "done=1",
                                   "done=True", "sort=id", "limit=1&limit=2"])
def test_bad_list_query_is_a_400_whose_errors_name_the_parameter(client, query):
    response = client.get(f"/api/tasks?{query}")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["field"] == query.partition("=")[0] and error["message"]


@pytest.mark.parametrize("query, field, says", [
    ("order=priority.asc", "order", "names no field to sort by ('priority')"),
    ("order=title", "order", "needs a direction after the field"),
    ("order=title.", "order", "needs a direction after the field"),
    ("order=title.up", "order", "needs a direction after the field"),
    ("order=", "order", "names no field to sort by ('')"),
    ("order=title.asc&after=5", "after", "pages id order only"),
    ("after=5&cursor=abc", "after", "give after or cursor, not both"),
    ("q=", "q", "must be 1 to 200 characters"),
    ("q=%20%09", "q", "must be 1 to 200 characters"),
    ("q=a%00b", "q", "must be 1 to 200 characters"),
    ("q=" + "x" * 201, "q", "must be 1 to 200 characters"),
    ("cursor=***", "cursor", "must be"),
    ("cursor=" + "A" * (CURSOR_MAX + 1), "cursor", "must be"),
    ("order=title.asc&cursor=abc", "cursor", "is not a cursor this service issued"),
], ids=lambda value: value[:40] if isinstance(value, str) else None)
def test_bad_order_search_or_cursor_is_a_400_that_names_the_parameter(client, query, field,
                                                                       says):
    response = client.get(f"/api/tasks?{query}")
    assert response.status_code == 400
    problem = response.get_json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert says in problem["errors"][0]["message"]
    assert f"{field} {says}" in problem["detail"]  # the detail says it too, for curl


def test_every_bad_query_parameter_is_listed_in_errors(client):
    response = client.get("/api/tasks?limit=0&done=yes&order=title&sort=id&q=a&q=b")
    assert response.status_code == 400
    problem = response.get_json()
    assert [e["field"] for e in problem["errors"]] == ["sort", "limit", "done", "order", "q"]
    assert problem["detail"].startswith("Invalid query parameters: sort is not a query "
                                        "parameter")

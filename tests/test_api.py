"""The HTTP API, endpoint by endpoint, against real PostgreSQL and Redis.

Bad input: test_bad_input.py; request ids and logs: test_logging.py; health: test_health.py.
"""

import re

import pytest

pytestmark = pytest.mark.app

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def create(client, **fields):
    response = client.post("/api/tasks", json={"title": "a task", **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_returns_201_with_location_etag_and_defaults(client):
    response = client.post("/api/tasks", json={"title": "сделать дз"})
    assert response.status_code == 201
    task = response.get_json()
    assert response.headers["Location"] == f"/api/tasks/{task['id']}"
    assert response.headers["ETag"] == f'"{task["id"]}-1"'
    assert task["title"] == "сделать дз"
    assert task["description"] == "" and task["done"] is False and task["version"] == 1
    assert TIMESTAMP.fullmatch(task["created_at"]) and task["created_at"] == task["updated_at"]


@pytest.mark.parametrize("text", [
    "quotes \" and ' and \\ backslash",
    "'; DROP TABLE tasks; --",
    "emoji 🚀🔥 and Cyrillic: проверить все пункты",
    "100% of %(name)s and %s",
    " leading and trailing spaces ",
])
def test_strings_are_stored_and_returned_verbatim(client, text):
    task = create(client, title=text, description=text)
    fetched = client.get(f"/api/tasks/{task['id']}").get_json()
    assert fetched["title"] == text and fetched["description"] == text


def test_get_returns_task_with_strong_etag(client):
    task = create(client, description="d", done=True)
    response = client.get(f"/api/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.get_json() == task
    assert response.headers["ETag"] == f'"{task["id"]}-1"'
    assert response.headers["Content-Type"] == "application/json"


def test_get_with_matching_if_none_match_is_304(client):
    task = create(client)
    etag = client.get(f"/api/tasks/{task['id']}").headers["ETag"]
    response = client.get(f"/api/tasks/{task['id']}", headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.data == b""
    stale = client.get(f"/api/tasks/{task['id']}", headers={"If-None-Match": '"1-99"'})
    assert stale.status_code == 200


def test_unknown_task_is_404_problem(client):
    response = client.get("/api/tasks/12345")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json()["status"] == 404


def test_list_is_ordered_by_id_with_keyset_pages_and_link_header(client):
    ids = [create(client, title=f"t{i}")["id"] for i in range(5)]
    first = client.get("/api/tasks?limit=2")
    page = first.get_json()
    assert [t["id"] for t in page["items"]] == ids[:2]
    assert page["next"] == f"/api/tasks?cursor={page['cursor']}"
    assert first.headers["Link"] == f'<{page["next"]}>; rel="next"'
    second = client.get(page["next"]).get_json()
    assert [t["id"] for t in second["items"]] == ids[2:4]
    last = client.get(second["next"])
    assert [t["id"] for t in last.get_json()["items"]] == ids[4:]
    assert last.get_json()["next"] is None and last.get_json()["cursor"] is None
    assert "Link" not in last.headers


def test_full_last_page_has_no_next(client):
    for i in range(4):
        create(client, title=f"t{i}")
    page = client.get("/api/tasks?limit=4").get_json()
    assert len(page["items"]) == 4 and page["next"] is None


def test_list_defaults_to_50_items(client, db):
    db.execute("insert into tasks (title) select 'x' || n from generate_series(1, 60) as n")
    page = client.get("/api/tasks").get_json()
    assert len(page["items"]) == 50
    assert [t["id"] for t in client.get(page["next"]).get_json()["items"]] == list(range(51, 61))


def test_done_filter_is_kept_in_next(client):
    for i in range(6):
        create(client, title=f"t{i}", done=i % 2 == 0)
    page = client.get("/api/tasks?done=true&limit=2").get_json()
    assert all(t["done"] for t in page["items"]) and len(page["items"]) == 2
    rest = client.get(f"/api/tasks?cursor={page['cursor']}").get_json()
    assert [t["done"] for t in rest["items"]] == [True] and rest["next"] is None
    assert all(not t["done"] for t in client.get("/api/tasks?done=false").get_json()["items"])


def test_list_if_none_match_is_304(client):
    create(client)
    etag = client.get("/api/tasks").headers["ETag"]
    assert client.get("/api/tasks", headers={"If-None-Match": etag}).status_code == 304


def test_put_replaces_and_resets_absent_fields(client):
    task = create(client, description="keep?", done=True)
    response = client.put(f"/api/tasks/{task['id']}", json={"title": "new"})
    assert response.status_code == 200
    updated = response.get_json()
    assert (updated["title"], updated["description"], updated["done"]) == ("new", "", False)
    assert updated["version"] == 2 and response.headers["ETag"] == f'"{task["id"]}-2"'
    assert updated["created_at"] == task["created_at"]
    assert updated["updated_at"] > task["updated_at"]


def test_patch_changes_only_given_fields(client):
    task = create(client, description="stays")
    updated = client.patch(f"/api/tasks/{task['id']}", json={"done": True}).get_json()
    assert updated["done"] is True and updated["description"] == "stays"
    assert updated["title"] == task["title"] and updated["version"] == 2
    again = client.patch(f"/api/tasks/{task['id']}", json={"title": "t2"}).get_json()
    assert again["version"] == 3 and again["done"] is True


def test_delete_returns_204_then_task_is_gone(client):
    task = create(client)
    response = client.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 204 and response.data == b""
    assert client.get(f"/api/tasks/{task['id']}").status_code == 404
    assert client.delete(f"/api/tasks/{task['id']}").status_code == 404


@pytest.mark.parametrize("method, body", [("put", {"title": "x"}), ("patch", {"done": True}),
                                          ("delete", None)])
def test_if_match_mismatch_is_412_and_changes_nothing(client, method, body):
    task = create(client)
    url = f"/api/tasks/{task['id']}"
    response = getattr(client, method)(url, json=body, headers={"If-Match": f'"{task["id"]}-7"'})
    assert response.status_code == 412
    assert response.headers["Content-Type"] == "application/problem+json"
    assert client.get(url).get_json() == task


def test_if_match_with_current_etag_applies_once_and_then_fails(client):
    """Two clients holding the same ETag: the second write is refused, not lost."""
    task = create(client)
    url, etag = f"/api/tasks/{task['id']}", f'"{task["id"]}-1"'
    first = client.patch(url, json={"title": "first"}, headers={"If-Match": etag})
    second = client.patch(url, json={"title": "second"}, headers={"If-Match": etag})
    assert first.status_code == 200 and second.status_code == 412
    assert client.get(url).get_json()["title"] == "first"
    assert client.delete(url, headers={"If-Match": first.headers["ETag"]}).status_code == 204


@pytest.mark.parametrize("if_match", ['""', 'W/"", ""', "garbage", '"1-"', '"x-1"', ",", '"1-1'])
def test_malformed_if_match_is_412_not_500(client, if_match):
    task = create(client)
    response = client.patch(f"/api/tasks/{task['id']}", json={"done": True},
                            headers={"If-Match": if_match})
    assert response.status_code == 412
    assert client.get(f"/api/tasks/{task['id']}").get_json()["version"] == 1


def test_if_match_on_missing_task_is_404(client):
    response = client.put("/api/tasks/999", json={"title": "x"}, headers={"If-Match": '"999-1"'})
    assert response.status_code == 404


def test_unsupported_method_is_405_with_allow(client):
    response = client.delete("/api/tasks")
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/problem+json"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_unknown_route_is_404_problem(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    body = response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert body["type"] == "about:blank" and body["title"] == "Not Found" and body["status"] == 404

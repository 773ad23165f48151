"""The Prefer header (RFC 7240): count=exact on the list, return=minimal on writes."""

import pytest

pytestmark = pytest.mark.app

COUNT = {"Prefer": "count=exact"}
MINIMAL = {"Prefer": "return=minimal"}


def create(client, title="a task", done=False):
    response = client.post("/api/tasks", json={"title": title, "done": done})
    assert response.status_code == 201
    return response.get_json()


def test_count_exact_gives_the_total_of_every_page_and_says_it_was_applied(client):
    for n in range(5):
        create(client, f"report {n}", done=n % 2 == 0)
    create(client, "other")
    response = client.get("/api/tasks?q=report&done=true&limit=2", headers=COUNT)
    assert len(response.get_json()["items"]) == 2
    assert response.headers["X-Total-Count"] == "3"
    assert response.headers["Preference-Applied"] == "count=exact"
    assert "Prefer" in response.headers["Vary"]


def test_without_the_preference_no_count_is_sent(client):
    create(client)
    response = client.get("/api/tasks")
    assert "X-Total-Count" not in response.headers
    assert "Preference-Applied" not in response.headers
    assert "Prefer" in response.headers["Vary"]


@pytest.mark.parametrize("prefer", [["COUNT=Exact"], ["return=minimal, count=exact"],
                                    ["count=exact; foo=bar"], ["return=minimal", "count=exact"]])
def test_count_is_read_from_any_spelling_or_header_of_prefer(client, prefer):
    create(client)
    response = client.get("/api/tasks", headers=[("Prefer", p) for p in prefer])
    assert response.headers["X-Total-Count"] == "1"


def test_counted_and_plain_pages_are_cached_apart(client):
    create(client)
    plain, counted = client.get("/api/tasks"), client.get("/api/tasks", headers=COUNT)
    assert (plain.headers["X-App-Cache"], counted.headers["X-App-Cache"]) == ("MISS", "MISS")
    again_counted = client.get("/api/tasks", headers=COUNT)
    again_plain = client.get("/api/tasks")
    assert again_counted.headers["X-App-Cache"] == "HIT"
    assert again_counted.headers["X-Total-Count"] == "1"
    assert again_plain.headers["X-App-Cache"] == "HIT"
    assert "X-Total-Count" not in again_plain.headers
    assert plain.headers["ETag"] != counted.headers["ETag"]
    create(client)
    fresh = client.get("/api/tasks", headers=COUNT)
    assert fresh.headers["X-App-Cache"] == "MISS" and fresh.headers["X-Total-Count"] == "2"


def test_return_minimal_create_is_201_with_the_id_alone_location_and_etag(client):
    response = client.post("/api/tasks", json={"title": "quiet"}, headers=MINIMAL)
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=minimal"
    stored = client.get(response.headers["Location"])
    assert response.get_json() == {"id": stored.get_json()["id"]}
    assert stored.get_json()["title"] == "quiet"
    assert response.headers["ETag"] == stored.headers["ETag"]


@pytest.mark.parametrize("method, body", [("put", {"title": "new"}), ("patch", {"done": True})])
def test_return_minimal_update_is_204_with_the_new_etag(client, method, body):
    task = create(client)
    url = f"/api/tasks/{task['id']}"
    response = getattr(client, method)(url, json=body, headers=MINIMAL)
    assert response.status_code == 204 and response.data == b""
    assert response.headers["Preference-Applied"] == "return=minimal"
    assert response.headers["ETag"] == f'"{task["id"]}-2"'
    assert response.headers["Location"] == url
    assert client.get(url).get_json()["version"] == 2


def test_the_default_is_the_representation(client):
    response = client.post("/api/tasks", json={"title": "loud"},
                           headers={"Prefer": "return=representation"})
    assert response.status_code == 201 and response.get_json()["title"] == "loud"
    assert "Preference-Applied" not in response.headers
    patched = client.patch(response.headers["Location"], json={"done": True})
    assert patched.status_code == 200 and patched.get_json()["done"] is True

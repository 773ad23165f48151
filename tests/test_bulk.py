"""Bulk create: POST /api/tasks with a JSON array, all tasks or none."""

import json

import pytest

from svc.resource import BULK_MAX, MAX_BODY

pytestmark = pytest.mark.app


def count(db):
    return db.execute("select count(*) from tasks").fetchone()[0]


def test_an_array_creates_every_task_in_order_with_ascending_ids(client):
    body = [{"title": "first"}, {"title": "second", "done": True},
            {"title": "third", "description": "d"}]
    response = client.post("/api/tasks", json=body)
    assert response.status_code == 201
    created = response.get_json()
    assert [t["title"] for t in created] == ["first", "second", "third"]
    ids = [t["id"] for t in created]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert created[1]["done"] is True and created[2]["description"] == "d"
    assert all(client.get(f"/api/tasks/{t['id']}").get_json() == t for t in created)
    assert "Location" not in response.headers  # many tasks: no one location


def test_the_most_tasks_in_the_largest_body_are_created(client, db):
    text = "x" * ((MAX_BODY - 2) // BULK_MAX - len('{"title":"t","description":""},'))
    body = json.dumps([{"title": "t", "description": text}] * BULK_MAX,
                      separators=(",", ":")).encode()
    assert MAX_BODY - 1000 < len(body) <= MAX_BODY
    response = client.post("/api/tasks", data=body, content_type="application/json")
    assert response.status_code == 201 and len(response.get_json()) == BULK_MAX
    assert count(db) == BULK_MAX


def test_one_bad_element_names_its_index_and_field_and_nothing_is_created(client, db):
    body = [{"title": "ok"}, {"title": "ok"}, "not a task", {"title": " ", "done": "yes"},
            {"title": "ok", "extra": 1}]
    response = client.post("/api/tasks", json=body)
    assert response.status_code == 422
    problem = response.get_json()
    assert [e["field"] for e in problem["errors"]] == ["[2]", "[3].title", "[3].done",
                                                      "[4].extra"]
    assert "none was created" in problem["detail"]
    assert count(db) == 0


@pytest.mark.parametrize("size", [0, BULK_MAX + 1])
def test_an_empty_or_too_long_array_is_a_422_that_says_how_many(client, db, size):
    response = client.post("/api/tasks", json=[{"title": "t"}] * size)
    assert response.status_code == 422
    assert response.get_json()["detail"] == (f"A bulk create holds 1 to {BULK_MAX} tasks; "
                                             f"this one has {size}.")
    assert count(db) == 0


def test_a_bulk_create_invalidates_cached_lists(client):
    client.get("/api/tasks")
    assert client.get("/api/tasks").headers["X-App-Cache"] == "HIT"
    client.post("/api/tasks", json=[{"title": "a"}, {"title": "b"}])
    listing = client.get("/api/tasks")
    assert listing.headers["X-App-Cache"] == "MISS" and len(listing.get_json()["items"]) == 2


def test_a_bulk_create_with_return_minimal_is_201_with_the_ids_alone(client, db):
    response = client.post("/api/tasks", json=[{"title": "a"}, {"title": "b"}],
                           headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.get_json() == [{"id": id_} for id_, in db.execute(
        "select id from tasks order by id")]
    assert response.headers["Preference-Applied"] == "return=minimal"
    assert "Location" not in response.headers and "ETag" not in response.headers
    assert count(db) == 2

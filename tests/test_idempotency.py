"""Idempotency-Key on POST and PATCH: a retry is answered from PostgreSQL and writes nothing."""

import pytest

from svc import idempotency

pytestmark = pytest.mark.app


def count(db):
    return db.execute("select count(*) from tasks").fetchone()[0]


def test_a_retried_post_replays_the_first_response_and_writes_one_row(client, db):
    headers = {"Idempotency-Key": "create-1"}
    first = client.post("/api/tasks", json={"title": "once"}, headers=headers)
    again = client.post("/api/tasks", json={"title": "once"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json() and again.data == first.data
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(db) == 1


def test_a_retried_patch_applies_once(client, db):
    task = client.post("/api/tasks", json={"title": "x"}).get_json()
    url, headers = f"/api/tasks/{task['id']}", {"Idempotency-Key": "patch-1"}
    for _ in range(3):
        response = client.patch(url, json={"done": True}, headers=headers)
        assert response.status_code == 200 and response.get_json()["version"] == 2
    assert client.get(url).get_json()["version"] == 2


def test_the_same_key_on_another_request_is_422_and_writes_nothing(client, db):
    headers = {"Idempotency-Key": "reused"}
    assert client.post("/api/tasks", json={"title": "a"}, headers=headers).status_code == 201
    other = client.post("/api/tasks", json={"title": "b"}, headers=headers)
    assert other.status_code == 422 and "another request" in other.get_json()["detail"]
    assert count(db) == 1


@pytest.mark.parametrize("key", ["x" * 256, "é", "tab\there", "\x7f"])
def test_a_malformed_key_is_400_and_writes_nothing(client, db, key):
    response = client.post("/api/tasks", json={"title": "a"}, headers={"Idempotency-Key": key})
    assert response.status_code == 400 and "Idempotency-Key" in response.get_json()["detail"]
    assert count(db) == 0


def test_a_failed_request_does_not_use_up_its_key(client, db):
    headers = {"Idempotency-Key": "fix-and-retry"}
    assert client.post("/api/tasks", json={"title": ""}, headers=headers).status_code == 422
    assert client.post("/api/tasks", json={"title": "ok"}, headers=headers).status_code == 201
    assert count(db) == 1


def test_an_expired_key_is_a_new_request_and_the_janitor_deletes_it(client, db, app):
    headers = {"Idempotency-Key": "old"}
    client.post("/api/tasks", json={"title": "a"}, headers=headers)
    ttl = app.config["IDEMPOTENCY_TTL"]
    db.execute("update idempotency_keys set created_at = now() - make_interval(secs => %s)",
               [ttl + 1])
    assert client.post("/api/tasks", json={"title": "a"}, headers=headers).status_code == 201
    assert count(db) == 2 and "Idempotent-Replayed" not in client.post(
        "/api/tasks", json={"title": "b"}, headers={"Idempotency-Key": "other"}).headers
    db.execute("update idempotency_keys set created_at = now() - make_interval(secs => %s)",
               [ttl + 1])
    with app.app_context():
        assert idempotency.delete_expired_keys(ttl) == 2
    assert db.execute("select count(*) from idempotency_keys").fetchone()[0] == 0

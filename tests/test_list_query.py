"""The list's order, keyset cursors and search, against real PostgreSQL and Redis.

Counts (Prefer: count=exact): test_prefer.py; bad values: test_bad_input.py.
"""

import base64
import hmac
import json
import re

import pytest
from psycopg import sql

from helpers import close_app, make_app
from svc import cursor, db as app_db, invalidation
from svc.resource import CURSOR_MAX, CURSOR_PATTERN, ORDER
from svc.store import ORDERS, _search

pytestmark = pytest.mark.app

SEED = """
insert into tasks (title, description, done, created_at, updated_at)
select 'k' || lpad((n %% 13)::text, 2, '0'), 'seeded', n %% 3 = 0,
       timestamptz '2026-01-01Z' + (n * 7 %% 17) * interval '1 second',
       timestamptz '2026-01-01Z' + (n * 5 %% 11) * interval '1 second'
from generate_series(1, %(count)s) as n
"""
# Tasks other clients insert while a reader pages: one that sorts first in every order, one last.
EXTREMES = """
insert into tasks (title, description, done, created_at, updated_at)
values ('a00', 'early', false, timestamptz '2025-01-01Z', timestamptz '2025-01-01Z'),
       ('z99', 'late', true, timestamptz '2027-01-01Z', timestamptz '2027-01-01Z')
"""


def walk(client, url, between=lambda seen: None):
    """Every item from `url` on, following next to the end; between(seen) after each page."""
    seen = []
    while url:
        page = client.get(url).get_json()
        seen += page["items"]
        between(seen)
        url = page["next"]
    return seen


def sort_key(task, field):
    return task[field], task["id"]


@pytest.mark.parametrize("order", ORDER.values)
def test_following_next_visits_every_task_once_while_others_insert_and_delete(client, db, app,
                                                                              order):
    field, _, way = order.partition(".")
    db.execute(SEED, {"count": 40})
    existing = {r[0] for r in db.execute("select id from tasks")}
    deleted = set()

    def others_write(seen):
        db.execute(EXTREMES)  # one lands before the reader's position, one after it
        invalidation.current(app).bump()  # as the API's writes do
        victim = next(t["id"] for t in reversed(seen) if t["id"] not in deleted)
        assert client.delete(f"/api/tasks/{victim}").status_code == 204
        deleted.add(victim)

    seen = walk(client, f"/api/tasks?order={order}&limit=7", others_write)
    ids = [t["id"] for t in seen]
    assert len(ids) == len(set(ids)), "a task was visited twice"
    assert existing <= set(ids), "a task that existed throughout was skipped"
    keys = [sort_key(t, field) for t in seen]
    assert keys == sorted(keys, reverse=way == "desc")


@pytest.mark.parametrize("order", ORDER.values)
def test_every_order_sorts_by_its_field_then_by_id_the_same_way(client, db, order):
    field, _, way = order.partition(".")
    db.execute(SEED, {"count": 30})
    items = client.get(f"/api/tasks?order={order}&limit=500").get_json()["items"]
    assert len(items) == 30
    assert [sort_key(t, field) for t in items] == sorted((sort_key(t, field) for t in items),
                                                         reverse=way == "desc")


def test_every_page_carries_a_signed_cursor_in_next_and_after_still_pages_id_order(client, db):
    db.execute(SEED, {"count": 5})
    for order in ("id.desc", "title.desc"):
        page = client.get(f"/api/tasks?order={order}&limit=2").get_json()
        assert page["next"] == f"/api/tasks?cursor={page['cursor']}"
        assert re.fullmatch(CURSOR_PATTERN, page["cursor"])
    assert [t["id"] for t in client.get("/api/tasks?order=id.desc&after=4&limit=2")
            .get_json()["items"]] == [3, 2]
    assert client.get("/api/tasks?after=0").get_json()["items"][0]["id"] == 1  # as before


@pytest.mark.parametrize("order", ["id.asc", "title.desc", "updated_at.asc"])
def test_the_cursor_alone_continues_a_filtered_searched_ordered_listing(client, db, order):
    db.execute(SEED, {"count": 40})
    field, _, way = order.partition(".")
    first = client.get(f"/api/tasks?order={order}&done=false&q=seed&limit=4").get_json()
    seen, token = first["items"], first["cursor"]
    while token:
        page = client.get(f"/api/tasks?cursor={token}").get_json()
        assert len(page["items"]) <= 4
        seen, token = seen + page["items"], page["cursor"]
    expected = sorted((t for t in client.get(f"/api/tasks?order={order}&limit=500")
                       .get_json()["items"] if not t["done"]),
                      key=lambda t: sort_key(t, field), reverse=way == "desc")
    assert [t["id"] for t in seen] == [t["id"] for t in expected] and len(seen) > 20


def test_parameters_beside_a_cursor_must_be_its_own(client, db):
    db.execute(SEED, {"count": 5})
    token = client.get("/api/tasks?order=title.asc&done=false&limit=2").get_json()["cursor"]
    alone = client.get(f"/api/tasks?cursor={token}").get_json()
    same = client.get(f"/api/tasks?cursor={token}&order=title.asc&done=false&limit=2")
    assert same.status_code == 200 and same.get_json()["items"] == alone["items"]
    other = client.get(f"/api/tasks?cursor={token}&order=title.desc&limit=3&q=k01&done=false")
    assert other.status_code == 400
    errors = {e["field"]: e["message"] for e in other.get_json()["errors"]}
    assert set(errors) == {"order", "q", "limit"}
    assert errors["order"].startswith("differs from the cursor's (title.asc)")
    assert errors["q"].startswith("differs from the cursor's (none)")


def test_the_longest_cursor_the_service_issues_fits_the_documented_length(client):
    # A title and a q of 200 characters that JSON escapes to 6 bytes each (\u0001), but for
    # the trigram the index needs.
    for _ in range(2):
        assert client.post("/api/tasks", json={"title": "abc" + "\x01" * 197}).status_code == 201
    page = client.get("/api/tasks?order=title.desc&done=false&limit=1&q=abc"
                      + "%01" * 197).get_json()
    assert 3000 < len(page["cursor"]) <= CURSOR_MAX
    rest = client.get(page["next"]).get_json()
    assert len(rest["items"]) == 1 and rest["cursor"] is None


def tampered(token):
    """The cursor with one byte of its JSON changed (the signature left as it was)."""
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[2] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_an_altered_cursor_or_one_of_an_earlier_version_is_a_400(client, db, app):
    db.execute(SEED, {"count": 5})
    token = client.get("/api/tasks?order=title.asc&limit=2").get_json()["cursor"]
    assert client.get(f"/api/tasks?cursor={token}").status_code == 200
    payload = b'["title.asc","k01",1]'  # what the service signed before cursors held the query
    key = cursor.secret(app)
    earlier = base64.urlsafe_b64encode(payload + hmac.digest(key, payload, "sha256")[:16])
    for bad, says in ((tampered(token), "altered"),
                      (earlier.rstrip(b"=").decode(), "earlier version")):
        response = client.get(f"/api/tasks?cursor={bad}")
        assert response.status_code == 400
        (error,) = response.get_json()["errors"]
        assert error["field"] == "cursor" and says in error["message"]


def test_app_nodes_with_the_same_cursor_secret_accept_each_others_cursors(config, db, rds):
    db.execute(SEED, {"count": 5})
    nodes = [make_app(config, CURSOR_SECRET=secret) for secret in ("shared", "shared", "other")]
    try:
        first, second, stranger = (node.test_client() for node in nodes)
        next_url = first.get("/api/tasks?order=updated_at.asc&limit=2").get_json()["next"]
        assert second.get(next_url).status_code == 200
        assert stranger.get(next_url).status_code == 400
    finally:
        for node in nodes:
            close_app(node)


def create(client, title, description=""):
    response = client.post("/api/tasks", json={"title": title, "description": description})
    assert response.status_code == 201
    return response.get_json()["id"]


def found(client, query):
    return [t["id"] for t in client.get(f"/api/tasks?{query}").get_json()["items"]]


def test_search_finds_every_word_in_any_order_across_title_and_description(client):
    both = create(client, "Write the README", "then review the pull request")
    title_only = create(client, "Review the README")
    create(client, "Write tests", "for the parser")
    assert found(client, "q=readme") == [both, title_only]
    assert found(client, "q=REVIEW%20readme") == [both, title_only]
    assert found(client, "q=pull%20write") == [both]  # one word in each field
    assert found(client, "q=%20%20readme%09pull%20") == [both]  # any whitespace between words
    assert found(client, "q=readme%20missing") == []


def test_search_is_case_insensitive_beyond_ascii_and_finds_parts_of_words(client):
    task = create(client, "Сделать домашнее задание", "Проверить ВСЕ пункты")
    assert found(client, "q=СДЕЛАТЬ%20все") == [task]
    assert found(client, "q=домаш") == [task]  # a substring: trigrams, not whole words


def test_search_takes_like_wildcards_literally(client):
    percent = create(client, "100% done")
    create(client, "1000 done")
    underscore = create(client, "snake_case")
    create(client, "snakeXcase")
    backslash = create(client, "C:\\temp")
    assert found(client, "q=100%25") == [percent]
    assert found(client, "q=ake_cas") == [underscore]
    assert found(client, "q=%3A%5Ctem") == [backslash]


def test_search_combines_with_done_and_order(client):
    ids = [create(client, f"report {n}") for n in range(4)]
    create(client, "other")
    for task_id in ids[:2]:
        client.patch(f"/api/tasks/{task_id}", json={"done": True})
    assert found(client, "q=report&done=true&order=id.desc") == ids[1::-1]
    assert found(client, "q=report&done=false&order=title.asc") == ids[2:]


def test_search_is_served_by_the_trigram_index(app, db):
    db.execute("insert into tasks (title) select 'task ' || md5(n::text) "
               "from generate_series(1, 5000) as n")
    db.execute("analyze tasks")
    # A table this small is cheaper to read in id order: what this proves is that the index's
    # expression is the query's, so the planner can use it (it does on 100,000 rows).
    db.execute("set enable_seqscan = off")
    db.execute("set enable_indexscan = off")
    text = app_db.queries(app)["list_tasks"].text  # the statement the API runs
    explain = sql.SQL("explain (format json) " + text).format(**ORDERS["id.asc"])
    params = {"limit": 51, "after_value": None, "after_id": None, "done": None,
              **_search("c4ca4238a0b9")}  # md5('1'): one row
    plan = json.dumps(db.execute(explain, params, prepare=False).fetchone()[0])
    assert "tasks_search_trgm_idx" in plan, plan


def test_a_list_with_order_filter_and_search_is_cached_and_invalidated(client):
    create(client, "cache me")
    url = "/api/tasks?order=updated_at.desc&done=false&q=cache&limit=5"
    first, second = client.get(url), client.get(url)
    assert (first.headers["X-App-Cache"], second.headers["X-App-Cache"]) == ("MISS", "HIT")
    assert first.get_json()["items"] == second.get_json()["items"]
    create(client, "cache me too")
    after_write = client.get(url)
    assert after_write.headers["X-App-Cache"] == "MISS"
    assert len(after_write.get_json()["items"]) == 2

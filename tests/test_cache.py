"""The Redis read-through cache: hits, invalidation, races and stampedes.

Redis outages: test_outages.py.
"""

import threading
import time

import pytest

from helpers import generations
from svc.cache import Cache, Observer, make_redis
from svc.invalidation import LIST, Generations

pytestmark = pytest.mark.app


def test_list_is_a_miss_from_postgres_then_a_hit_from_redis_with_the_same_response(client):
    client.post("/api/tasks", json={"title": "x"})
    first, second = client.get("/api/tasks"), client.get("/api/tasks")
    assert (first.headers["X-App-Cache"], second.headers["X-App-Cache"]) == ("MISS", "HIT")
    assert first.data == second.data and first.get_json()["items"][0]["title"] == "x"
    assert first.headers["ETag"] == second.headers["ETag"]


def test_item_is_a_miss_then_a_hit_with_the_same_body_and_etag(client):
    task = client.post("/api/tasks", json={"title": "x"}).get_json()
    first, second = (client.get(f"/api/tasks/{task['id']}") for _ in range(2))
    assert (first.headers["X-App-Cache"], second.headers["X-App-Cache"]) == ("MISS", "HIT")
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]


def test_cache_entries_carry_a_ttl_and_a_namespace(client, rds, app):
    client.post("/api/tasks", json={"title": "x"})
    client.get("/api/tasks")
    keys = [k.decode() for k in rds.keys("*")]
    assert keys and all(k.startswith("tasks:") for k in keys)
    entry = next(k for k in keys if k.endswith(":/api/tasks"))
    assert 0 < rds.ttl(entry) <= app.config["CACHE_TTL"]


WRITES = {
    "create": lambda c, t: c.post("/api/tasks", json={"title": "new one"}),
    "put": lambda c, t: c.put(f"/api/tasks/{t['id']}", json={"title": "replaced"}),
    "patch": lambda c, t: c.patch(f"/api/tasks/{t['id']}", json={"title": "patched"}),
    "delete": lambda c, t: c.delete(f"/api/tasks/{t['id']}"),
}


@pytest.mark.parametrize("write", WRITES)
def test_every_kind_of_write_invalidates_list_and_item(client, write):
    task = client.post("/api/tasks", json={"title": "old"}).get_json()
    item_url = f"/api/tasks/{task['id']}"
    for url in ("/api/tasks", item_url):  # warm both entries
        client.get(url)
        assert client.get(url).headers["X-App-Cache"] == "HIT"
    assert WRITES[write](client, task).status_code in (200, 201, 204)
    listing = client.get("/api/tasks")
    assert listing.headers["X-App-Cache"] == "MISS"
    titles = [t["title"] for t in listing.get_json()["items"]]
    item = client.get(item_url)
    if write == "delete":
        assert titles == [] and item.status_code == 404
    elif write == "create":
        assert titles == ["old", "new one"]
    else:
        assert titles == [item.get_json()["title"]] != ["old"]
        assert item.headers["X-App-Cache"] == "MISS"


def test_a_slow_reader_cannot_reinsert_data_older_than_a_write(config, rds):
    """A loader that read before a write finishes after it: its value must not be served."""
    cache = Cache(make_redis(config.REDIS_URL), ttl=60)
    loaded, release = threading.Event(), threading.Event()

    def slow_old_loader():
        loaded.set()
        release.wait(5)
        return b"old"

    reader = threading.Thread(target=cache.read_through, args=(LIST, "k", 60, slow_old_loader))
    reader.start()
    loaded.wait(5)
    Generations(cache).bump()  # the write commits while the slow reader still holds old data
    release.set()
    reader.join(5)
    value, hit = cache.read_through(LIST, "k", 60, lambda: b"new")
    assert (value, hit) == (b"new", False)
    assert cache.read_through(LIST, "k", 60, lambda: b"unused") == (b"new", True)


def test_a_connection_redis_closed_since_its_last_use_is_replaced_without_an_error(config, rds):
    """Redis ends a thread's connection between two lookups (a restart, its idle timeout): the
    next lookup opens another and still hits."""
    cache = Cache(make_redis(config.REDIS_URL), ttl=60)
    errors = []

    class Errors(Observer):
        def redis_error(self):
            errors.append(1)

    cache.watch(Errors())
    assert cache.read_through(LIST, "k", 60, lambda: b"v") == (b"v", False)

    def client_id(conn):
        conn.send_command("CLIENT", "ID")
        return conn.read_response()

    assert rds.client_kill_filter(_id=cache.on_connection(client_id)) == 1
    assert cache.read_through(LIST, "k", 60, lambda: b"unused") == (b"v", True)
    assert errors == []


def test_concurrent_misses_run_one_loader(config, rds):
    cache = Cache(make_redis(config.REDIS_URL), ttl=60)
    calls, results = [], []

    def loader():
        calls.append(1)
        time.sleep(0.1)
        return b"value"

    threads = [threading.Thread(target=lambda: results.append(cache.read_through(LIST, "s", 60, loader)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(calls) == 1
    assert sorted(results) == [(b"value", False)] + [(b"value", True)] * 7


def test_missing_values_are_not_cached(config, rds):
    cache = Cache(make_redis(config.REDIS_URL), ttl=60)
    assert cache.read_through(LIST, "none", 60, lambda: None) == (None, False)
    assert cache.read_through(LIST, "none", 60, lambda: b"now") == (b"now", False)


def test_a_write_bumps_the_list_and_sets_the_task_generation_to_its_version(client, rds):
    task = client.post("/api/tasks", json={"title": "x"}).get_json()
    list_gen, task_gen = generations(rds, task["id"])
    assert task_gen == 1
    client.patch(f"/api/tasks/{task['id']}", json={"done": True})
    client.patch(f"/api/tasks/{task['id']}", json={"done": True}, headers={"If-Match": '"1-99"'})
    assert generations(rds, task["id"]) == (list_gen + 1, 2)  # the refused write bumped nothing
    client.delete(f"/api/tasks/{task['id']}")
    assert generations(rds, task["id"]) == (list_gen + 2, 3)


@pytest.mark.parametrize("write", ["put", "patch", "delete"])
def test_a_write_to_one_task_leaves_the_others_cached(client, write):
    a, b = (client.post("/api/tasks", json={"title": t}).get_json() for t in ("a", "b"))
    for task in (a, b):
        client.get(f"/api/tasks/{task['id']}")
    assert WRITES[write](client, a).status_code in (200, 204)
    assert client.get(f"/api/tasks/{b['id']}").headers["X-App-Cache"] == "HIT"
    changed = client.get(f"/api/tasks/{a['id']}")
    if write == "delete":
        assert changed.status_code == 404
    else:
        assert changed.headers["X-App-Cache"] == "MISS" and changed.get_json()["version"] == 2


def test_a_failing_loader_releases_its_fill_lock(config, rds):
    cache = Cache(make_redis(config.REDIS_URL), ttl=60)

    def broken():
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        cache.read_through(LIST, "f", 60, broken)
    assert rds.keys("*:lock") == []
    assert cache.read_through(LIST, "f", 60, lambda: b"ok") == (b"ok", False)

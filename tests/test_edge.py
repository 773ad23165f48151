"""The whole stack through a real nginx: micro-cache, the app's entries in Redis, limits."""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from helpers import access_log_line, call, new_task, running_stack
from svc.resource import MAX_BODY


pytestmark = pytest.mark.stack

MICRO = 2.1  # a micro-cache copy answers for 1 s (micro_cache.lua): wait well past it


@pytest.fixture(scope="module")
def edge():
    """A stack started by the code behind `make up`, on free ports."""
    with running_stack("edge") as stack:
        yield stack


@pytest.fixture
def app_stopped(edge):
    """Stop gunicorn for the test; start it again afterwards."""
    edge.stop("gunicorn")
    yield
    edge.start("gunicorn")


@pytest.fixture
def redis_stopped(edge):
    """Stop Redis for the test; start it again afterwards."""
    edge.stop("redis")
    yield
    edge.start("redis")


def test_micro_cache_misses_then_hits_then_expires(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    first, second = call(edge, "GET", url), call(edge, "GET", url)
    assert (first.header("X-Cache-Status"), second.header("X-Cache-Status")) == ("MISS", "HIT")
    assert first.body == second.body
    time.sleep(MICRO)
    assert call(edge, "GET", url).header("X-Cache-Status") in ("EXPIRED", "MISS")


def test_head_is_cached_like_get(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    assert call(edge, "GET", url).status == 200
    head = call(edge, "HEAD", url)
    assert head.status == 200 and head.body == b"" and head.header("X-Cache-Status") == "HIT"


def test_concurrent_first_reads_of_a_task_reach_the_app_once(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: call(edge, "GET", url), range(8)))
    assert {r.status for r in replies} == {200} and len({r.body for r in replies}) == 1
    # One fetched from the app; the others waited for its copy (HIT) or, asking Redis before
    # waiting, found the entry the app had just stored (X-Edge-Cache: HIT).
    layers = sorted((r.header("X-Cache-Status"), r.header("X-Edge-Cache"), r.header("X-App-Cache"))
                    for r in replies)
    assert layers.count(("MISS", "MISS", "MISS")) == 1, layers
    assert set(layers) <= {("MISS", "MISS", "MISS"), ("HIT", None, None), ("MISS", "HIT", None)}
    time.sleep(0.5)  # gunicorn writes its access line after the response
    log = (edge.dir / "gunicorn" / "gunicorn.log").read_text()
    assert log.count(f'"path": "{url}"') == 1


def test_writes_are_never_cached(edge):
    task = new_task(edge)
    url = f"/api/tasks/{task['id']}"
    versions = [call(edge, "PATCH", url, {"title": f"v{i}"}).json()["version"] for i in range(3)]
    assert versions == [2, 3, 4]
    created = {new_task(edge)["id"] for _ in range(2)}
    assert len(created) == 2


def test_no_cache_bypasses_every_layer(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    for _ in range(2):
        reply = call(edge, "GET", url, headers={"Cache-Control": "no-cache"})
        assert reply.header("X-Cache-Status") == "BYPASS"
        assert reply.header("X-Edge-Cache") == "BYPASS"
    assert call(edge, "GET", url).header("X-Cache-Status") == "MISS"  # no copy in nginx


def test_health_is_never_cached(edge):
    replies = [call(edge, "GET", "/api/health") for _ in range(3)]
    assert all(r.status == 200 and r.header("X-Cache-Status") is None for r in replies)
    assert all(r.header("X-Edge-Cache") is None for r in replies)


def test_edge_health_is_204_for_loopback_without_the_app_and_a_404_for_others(edge, app_stopped):
    mine = call(edge, "GET", "/_edge/health")
    assert mine.status == 204 and mine.body == b""
    other = call(edge, "GET", "/_edge/health", source="127.0.0.2")
    assert other.status == 404
    assert other.header("Content-Type") == "application/problem+json"
    assert other.json()["status"] == 404


def test_conditional_get_is_answered_304_by_each_layer(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    etag = call(edge, "GET", url).header("ETag")
    micro = call(edge, "GET", url, headers={"If-None-Match": etag})
    assert micro.status == 304 and micro.header("X-Cache-Status") == "HIT"
    time.sleep(MICRO)
    from_edge = call(edge, "GET", url, headers={"If-None-Match": etag})
    assert from_edge.status == 304 and from_edge.header("X-Edge-Cache") == "HIT"
    assert call(edge, "GET", url, headers={"If-None-Match": '"0-0"'}).status == 200


def test_if_match_still_reaches_the_app_through_nginx(edge):
    task = new_task(edge)
    url = f"/api/tasks/{task['id']}"
    stale = call(edge, "PATCH", url, {"done": True}, headers={"If-Match": f'"{task["id"]}-9"'})
    assert stale.status == 412
    fresh = call(edge, "PATCH", url, {"done": True}, headers={"If-Match": f'"{task["id"]}-1"'})
    assert fresh.status == 200


def test_after_a_write_and_two_seconds_no_layer_serves_old_data(edge):
    task = new_task(edge, "before")
    item, page = f"/api/tasks/{task['id']}", f"/api/tasks?after={task['id'] - 1}&limit=1"
    for url in (item, page, item, page):  # fills the micro-cache and Redis
        call(edge, "GET", url)
    time.sleep(MICRO)
    assert call(edge, "GET", item).header("X-Edge-Cache") == "HIT"
    call(edge, "PATCH", item, {"title": "after"})
    time.sleep(MICRO)
    fresh_item, fresh_page = call(edge, "GET", item), call(edge, "GET", page)
    assert fresh_item.json()["title"] == "after" and fresh_item.header("X-Edge-Cache") == "MISS"
    assert fresh_page.json()["items"][0]["title"] == "after"


def test_edge_hit_is_served_while_the_app_is_stopped(edge, request):
    url = f"/api/tasks/{new_task(edge)['id']}"
    expected = call(edge, "GET", url)
    assert expected.header("X-Edge-Cache") == "MISS"  # the app stored it in Redis
    request.getfixturevalue("app_stopped")  # from here on, nothing answers on the app's port
    time.sleep(MICRO)
    reply = call(edge, "GET", url)
    assert reply.status == 200 and reply.body == expected.body
    assert reply.header("X-Edge-Cache") == "HIT" and reply.header("ETag") == expected.header("ETag")
    assert reply.header("X-Cache-Status") in ("EXPIRED", "MISS")


def test_stale_micro_cache_entry_is_served_when_the_app_fails(edge, request):
    task = new_task(edge)
    url = f"/api/tasks/{task['id']}"
    expected = call(edge, "GET", url)
    request.getfixturevalue("app_stopped")
    rds = redis.Redis.from_url(edge.redis_url)  # hide the Redis entry: a newer generation
    rds.incr(f"tasks:{rds.info('server')['run_id']}:gen:{task['id']}")
    time.sleep(MICRO)
    reply = call(edge, "GET", url)
    assert reply.status == 200 and reply.header("X-Cache-Status") == "STALE"
    assert reply.body == expected.body
    never_cached = call(edge, "GET", "/api/tasks/987654321")
    assert never_cached.status == 502
    assert never_cached.header("Content-Type") == "application/problem+json"
    assert never_cached.json()["status"] == 502


def test_redis_stopped_still_serves_200_quickly(edge, request):
    task = new_task(edge)
    request.getfixturevalue("redis_stopped")
    started = time.monotonic()
    reply = call(edge, "GET", f"/api/tasks/{task['id']}")
    assert reply.status == 200 and reply.json()["id"] == task["id"]
    assert time.monotonic() - started < 1.0
    assert call(edge, "POST", "/api/tasks", {"title": "no redis"}).status == 201
    health = call(edge, "GET", "/api/health")
    assert health.status == 200 and health.json()["status"] == "degraded"


def test_after_a_database_outage_writes_recover_within_seconds(edge):
    """503 with Retry-After while PostgreSQL is down; soon after it is back, 201 again.

    The outage is long enough (16 s, with traffic) for the pool's doubling reconnect backoff
    to reach a 16 s wait if it were left unbounded.
    """
    edge.stop("postgres")
    try:
        outage_ends = time.monotonic() + 16
        while time.monotonic() < outage_ends:
            started = time.monotonic()
            down = call(edge, "POST", "/api/tasks", {"title": "while down"})
            assert down.status == 503 and down.header("Retry-After") == "2"
            assert down.header("Content-Type") == "application/problem+json"
            assert time.monotonic() - started < 5
            time.sleep(0.5)
        assert call(edge, "GET", "/api/health").json()["status"] == "down"
    finally:
        edge.start("postgres")
    deadline = time.monotonic() + 6
    while (reply := call(edge, "POST", "/api/tasks", {"title": "back"})).status != 201:
        assert reply.status == 503 and time.monotonic() < deadline, "no recovery within 6 s"
    assert call(edge, "GET", "/api/health").json()["status"] == "ok"


def test_the_largest_valid_task_passes_and_one_byte_over_the_limit_is_413(edge):
    # 10,200 astral characters, each sent as \uXXXX\uXXXX (12 bytes): about 122,400 bytes.
    largest = {"title": "\U0001F600" * 200, "description": "\U0001F600" * 10_000}
    assert len(json.dumps(largest)) > 120_000
    assert call(edge, "POST", "/api/tasks", largest).status == 201
    over = b'{"title": "' + b"x" * (MAX_BODY - 12) + b'"}'
    assert len(over) == MAX_BODY + 1
    reply = call(edge, "POST", "/api/tasks", over, headers={"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.header("Content-Type") == "application/problem+json"
    assert reply.json()["status"] == 413
    assert reply.json()["detail"] == f"Request body exceeds {MAX_BODY // 1024} KiB."  # nginx's


def test_a_burst_of_writes_is_rate_limited_with_429(edge):
    # From its own loopback address, so the limit does not spill over to the other tests.
    statuses = [call(edge, "POST", "/api/tasks", {"title": "burst"}, source="127.0.0.2")
                for _ in range(60)]
    limited = [r for r in statuses if r.status == 429]
    assert limited and any(r.status == 201 for r in statuses)
    assert limited[0].header("Content-Type") == "application/problem+json"
    assert limited[0].json()["status"] == 429 and limited[0].header("Retry-After") == "1"
    assert all(r.header("Retry-After") is None for r in statuses if r.status != 429)
    assert call(edge, "GET", "/api/tasks?limit=1", source="127.0.0.2").status == 200  # reads pass


def test_request_id_is_this_requests_even_on_cache_hits(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    call(edge, "GET", url)
    mine = call(edge, "GET", url, headers={"X-Request-ID": "client-id-7"})
    assert mine.header("X-Cache-Status") == "HIT" and mine.header("X-Request-ID") == "client-id-7"
    ids = {call(edge, "GET", url).header("X-Request-ID") for _ in range(2)}
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_app_sees_the_real_client_address_once_and_ignores_spoofed_ones(edge):
    rid = f"xff-{time.monotonic_ns()}"
    call(edge, "GET", "/api/health", headers={"X-Request-ID": rid, "X-Forwarded-For": "6.6.6.6"},
         source="127.0.0.3")
    assert access_log_line(edge.dir / "gunicorn" / "gunicorn.log", rid)["remote"] == "127.0.0.3"


def test_server_header_hides_the_nginx_version(edge):
    assert call(edge, "GET", "/api/health").header("Server") == "nginx"
    assert call(edge, "GET", "/api/nothing").header("Server") == "nginx"


def test_a_write_to_one_task_leaves_the_others_cached_at_the_edge(edge):
    a, b = new_task(edge, "a"), new_task(edge, "b")
    for task in (a, b):
        call(edge, "GET", f"/api/tasks/{task['id']}")
    assert call(edge, "PATCH", f"/api/tasks/{a['id']}", {"title": "a2"}).status == 200
    time.sleep(MICRO)
    assert call(edge, "GET", f"/api/tasks/{b['id']}").header("X-Edge-Cache") == "HIT"
    changed = call(edge, "GET", f"/api/tasks/{a['id']}")
    assert changed.header("X-Edge-Cache") == "MISS" and changed.json()["title"] == "a2"


def test_concurrent_edge_hits_each_get_their_own_entry_under_its_own_generation(edge):
    # A worker's lookups of one event loop round go out as one MGET (redis_cache.lua): each
    # reader still gets its own task, and an entry whose generation moved on is a miss for its
    # reader alone.
    bulk = json.dumps([{"title": f"many {i}"} for i in range(24)])
    created = call(edge, "POST", "/api/tasks", bulk, headers={"Content-Type": "application/json"},
                   source="127.0.0.4")
    assert created.status == 201
    tasks = created.json()
    urls = [f"/api/tasks/{t['id']}" for t in tasks]
    for url in urls:
        call(edge, "GET", url)  # the app stores each entry in Redis
    rds = redis.Redis.from_url(edge.redis_url)  # hide one entry: a newer generation
    hidden = tasks[5]["id"]
    rds.incr(f"tasks:{rds.info('server')['run_id']}:gen:{hidden}")
    time.sleep(MICRO)
    with ThreadPoolExecutor(len(urls)) as pool:
        replies = list(pool.map(lambda url: call(edge, "GET", url), urls))
    for task, reply in zip(tasks, replies):
        assert reply.status == 200 and reply.json()["title"] == task["title"]
        assert reply.header("X-Edge-Cache") == ("MISS" if task["id"] == hidden else "HIT")


def test_counted_and_plain_pages_never_stand_in_for_each_other_in_nginx(edge):
    word = f"counted{time.monotonic_ns()}"  # a URL no other test asks for
    new_task(edge, f"edge {word}")
    url = f"/api/tasks?order=title.desc&limit=3&q={word}"
    counted = {"Prefer": "count=exact"}
    plain = call(edge, "GET", url)
    assert plain.header("X-Total-Count") is None and "Prefer" in plain.header("Vary")
    first = call(edge, "GET", url, headers=counted)  # not the plain page's micro-cache entry
    assert first.header("X-Cache-Status") == "MISS" and first.header("X-Total-Count") == "1"
    assert first.header("Preference-Applied") == "count=exact"
    again = call(edge, "GET", url, headers=counted)
    assert again.header("X-Cache-Status") == "HIT"
    assert again.header("X-Total-Count") == first.header("X-Total-Count")
    assert call(edge, "GET", url).header("X-Total-Count") is None
    time.sleep(MICRO)
    # Redis holds each of the two, as the app answered it.
    plain_hit = call(edge, "GET", url)
    assert plain_hit.header("X-Edge-Cache") == "HIT" and plain_hit.header("X-Total-Count") is None
    counted_hit = call(edge, "GET", url, headers=counted)
    assert counted_hit.header("X-Edge-Cache") == "HIT"
    assert counted_hit.header("X-Total-Count") == first.header("X-Total-Count")


def test_a_bulk_create_of_the_most_tasks_passes_nginx(edge):
    reply = call(edge, "POST", "/api/tasks", json.dumps([{"title": "bulk"}] * 1000),
                 headers={"Content-Type": "application/json"})
    assert reply.status == 201 and len(reply.json()) == 1000


def test_redis_answers_noauth_to_a_client_without_the_password(edge):
    import socket

    with socket.create_connection(("127.0.0.1", edge.ports["redis"]), timeout=2) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(256).startswith(b"-NOAUTH")


def test_both_caches_hit_through_the_password_protected_redis(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    assert call(edge, "GET", url).header("X-Edge-Cache") == "MISS"  # both caches filled
    assert call(edge, "GET", url, headers={"Cache-Control": "no-cache"}).header(
        "X-App-Cache") == "HIT"
    time.sleep(MICRO)
    assert call(edge, "GET", url).header("X-Edge-Cache") == "HIT"
    password = edge.secrets["REDIS_PASSWORD"]
    assert password not in (edge.dir / "nginx" / "nginx.conf").read_text()  # from the env


def test_the_root_sends_a_browser_to_the_api_docs(edge):
    reply = call(edge, "GET", "/")
    assert reply.status == 302 and reply.header("Location") == "/api/docs"
    assert call(edge, "GET", reply.header("Location")).status == 200


def test_without_cors_origins_nginx_sends_no_cors_header_at_all(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    origin = {"Origin": "http://app.test"}
    preflight = call(edge, "OPTIONS", url, headers={**origin,
                                                    "Access-Control-Request-Method": "PATCH"})
    replies = [preflight, call(edge, "GET", url, headers=origin),
               call(edge, "GET", url, headers=origin)]  # a miss, then a micro-cache hit
    assert [r.status for r in replies] == [200, 200, 200]  # the preflight: the app's OPTIONS
    for reply in replies:
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")]
        assert "Origin" not in " ".join(reply.headers.get_all("Vary") or ())

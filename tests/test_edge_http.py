"""What proxies and browsers meet through a real nginx with CORS_ORIGINS set: gzip at every
cache layer, CORS on misses and hits alike, problems for raw non-ASCII request lines, no
Content-Type without a body. (CORS_ORIGINS unset: tests/test_edge.py.)"""

import gzip
import json
import time

import pytest

from helpers import call, new_task, raw_request, running_stack

pytestmark = pytest.mark.stack

MICRO = 2.1  # past the micro-cache's second (micro_cache.lua)
ALLOWED, ALSO_ALLOWED, OTHER = "http://app.test", "http://localhost:3000", "http://evil.test"
GZIP = {"Accept-Encoding": "gzip"}
LONG = "долгое описание " * 100  # about 3 KB of JSON: over the gzip threshold


@pytest.fixture(scope="module")
def edge():
    """A stack started by the code behind `make up`, letting two origins call it."""
    with running_stack("http", cors_origins=f"{ALLOWED}, {ALSO_ALLOWED}") as stack:
        yield stack


def vary(reply):
    """The Vary tokens of a reply, lower-cased."""
    return {t.strip().lower() for v in reply.headers.get_all("Vary") or () for t in v.split(",")}


def long_task(edge):
    """A task whose JSON is long enough to be compressed; its URL."""
    reply = call(edge, "POST", "/api/tasks", {"title": "long", "description": LONG})
    assert reply.status == 201
    return f"/api/tasks/{reply.json()['id']}"


@pytest.mark.parametrize("kind", ["item", "page"])
def test_every_layer_gzips_and_every_layer_decompresses_to_the_same_body(edge, kind):
    url = long_task(edge)
    if kind == "page":
        url = f"/api/tasks?after={int(url.rsplit('/', 1)[1]) - 1}&limit=5"
    miss = call(edge, "GET", url, headers=GZIP)
    micro = call(edge, "GET", url, headers=GZIP)
    time.sleep(MICRO)
    from_redis = call(edge, "GET", url, headers=GZIP)
    plain = call(edge, "GET", url)
    layers = {"miss": miss, "micro": micro, "redis": from_redis}
    assert (miss.header("X-Cache-Status"), micro.header("X-Cache-Status"),
            from_redis.header("X-Edge-Cache")) == ("MISS", "HIT", "HIT")
    for name, reply in layers.items():
        assert reply.status == 200 and reply.header("Content-Encoding") == "gzip", name
        assert gzip.decompress(reply.body) == plain.body, name
        assert len(reply.body) < len(plain.body) / 3, name
        assert "accept-encoding" in vary(reply) and reply.header("ETag").startswith("W/"), name
    assert plain.header("Content-Encoding") is None and "accept-encoding" in vary(plain)


def test_the_document_and_the_docs_bundle_are_gzipped_through_nginx(edge):
    for url in ("/api/openapi.json", "/api/docs/swagger-ui-bundle.js"):
        packed, plain = call(edge, "GET", url, headers=GZIP), call(edge, "GET", url)
        assert packed.header("Content-Encoding") == "gzip", url
        assert gzip.decompress(packed.body) == plain.body, url
        assert "accept-encoding" in vary(packed), url


def test_a_client_that_reads_gzip_writes_with_the_weak_etag_it_got(edge):
    url = long_task(edge)
    tag = call(edge, "GET", url, headers=GZIP).header("ETag")
    assert tag.startswith('W/"') and tag.endswith('-1"')
    written = call(edge, "PATCH", url, {"done": True}, headers={"If-Match": tag, **GZIP})
    assert written.status == 200 and json.loads(gzip.decompress(written.body))["version"] == 2
    assert written.header("ETag").endswith('-2"')
    stale = call(edge, "PATCH", url, {"done": False}, headers={"If-Match": tag})
    assert stale.status == 412


def test_a_preflight_from_an_allowed_origin_is_answered_204_by_nginx(edge):
    reply = call(edge, "OPTIONS", "/api/tasks/1", headers={
        "Origin": ALSO_ALLOWED, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "content-type, if-match, idempotency-key"})
    assert reply.status == 204 and reply.body == b"" and reply.header("Content-Type") is None
    assert reply.header("Access-Control-Allow-Origin") == ALSO_ALLOWED
    methods = {m.strip() for m in reply.header("Access-Control-Allow-Methods").split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    allowed = {h.strip().lower() for h in reply.header("Access-Control-Allow-Headers").split(",")}
    assert {"content-type", "if-match", "if-none-match", "idempotency-key", "authorization",
            "prefer"} <= allowed
    assert int(reply.header("Access-Control-Max-Age")) > 0
    assert "origin" in vary(reply)


def test_a_preflight_from_another_origin_gets_no_cors_headers(edge):
    reply = call(edge, "OPTIONS", "/api/tasks/1",
                 headers={"Origin": OTHER, "Access-Control-Request-Method": "PATCH"})
    assert reply.status == 200 and "PATCH" in reply.header("Allow")  # the app's, as without CORS
    assert not [h for h in reply.headers if h.lower().startswith("access-control-")]
    assert reply.header("Content-Type") is None and "origin" in vary(reply)


def cors(reply):
    """(Access-Control-Allow-Origin, whether ETag is exposed) of a reply."""
    exposed = {h.strip() for h in (reply.header("Access-Control-Expose-Headers") or "").split(",")}
    return reply.header("Access-Control-Allow-Origin"), "ETag" in exposed


def test_each_origin_gets_its_own_cors_answer_on_a_miss_and_on_both_cache_hits(edge):
    url = f"/api/tasks/{new_task(edge)['id']}"
    miss = call(edge, "GET", url, headers={"Origin": ALLOWED})
    micro = {o: call(edge, "GET", url, headers={"Origin": o}) for o in (ALSO_ALLOWED, OTHER)}
    redis = {}
    for origin in (ALSO_ALLOWED, OTHER):  # each once the micro-cache's copy has expired
        time.sleep(MICRO)
        redis[origin] = call(edge, "GET", url, headers={"Origin": origin})
    assert miss.header("X-Cache-Status") == "MISS" and cors(miss) == (ALLOWED, True)
    assert {r.header("X-Cache-Status") for r in micro.values()} == {"HIT"}
    assert {r.header("X-Edge-Cache") for r in redis.values()} == {"HIT"}
    for layer in (micro, redis):
        assert cors(layer[ALSO_ALLOWED]) == (ALSO_ALLOWED, True)
        assert cors(layer[OTHER]) == (None, False)
    assert all("origin" in vary(r) for r in (miss, *micro.values(), *redis.values()))


def test_problems_and_writes_carry_cors_headers_for_an_allowed_origin(edge):
    origin = {"Origin": ALLOWED}
    created = call(edge, "POST", "/api/tasks", {"title": "cors"}, headers=origin)
    assert created.status == 201 and cors(created) == (ALLOWED, True)
    for reply in (call(edge, "GET", "/api/tasks/987654321", headers=origin),  # the app's 404
                  call(edge, "GET", "/metrics", headers=origin),  # nginx's 404
                  call(edge, "POST", "/api/tasks", b"{", headers={"Content-Type":
                                                                  "application/json", **origin})):
        assert reply.header("Content-Type") == "application/problem+json"
        assert cors(reply) == (ALLOWED, True)


@pytest.mark.parametrize("target", ["/api/tasks?q=ДОМАШНЕЕ", "/api/tasks/дз", "/api/docs?ё"])
def test_a_raw_non_ascii_request_line_gets_nginx_400_problem(edge, target):
    status, headers, body = raw_request(edge.front(0), f"GET {target} HTTP/1.1")
    assert status == 400 and headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 400 and "percent-encoded" in problem["detail"]
    assert "x-edge-cache" not in headers  # refused before the cache layers and the app


def test_a_percent_encoded_non_ascii_query_is_answered(edge):
    new_task(edge, "ДОМАШНЕЕ задание")
    reply = call(edge, "GET", "/api/tasks?q=%D0%94%D0%9E%D0%9C%D0%90%D0%A8%D0%9D%D0%95%D0%95")
    assert reply.status == 200 and reply.json()["items"]


def test_no_answer_without_a_body_has_a_content_type(edge):
    task = new_task(edge)
    url, tag = f"/api/tasks/{task['id']}", f'"{task["id"]}-1"'
    replies = [call(edge, "GET", url), call(edge, "GET", url, headers={"If-None-Match": tag})]
    time.sleep(MICRO)
    replies.append(call(edge, "GET", url, headers={"If-None-Match": tag}))  # a Redis edge hit
    replies.append(call(edge, "OPTIONS", url))
    replies.append(call(edge, "PATCH", url, {"done": True}, headers={"Prefer": "return=minimal"}))
    replies.append(call(edge, "DELETE", url))
    assert [r.status for r in replies] == [200, 304, 304, 200, 204, 204]
    assert replies[2].header("X-Edge-Cache") == "HIT"
    for reply in replies[1:]:
        assert reply.body == b"" and reply.header("Content-Type") is None, reply.status

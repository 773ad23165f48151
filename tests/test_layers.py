"""One cached response for every layer: the app, nginx's micro-cache and the app's entry in
Redis, read by nginx, answer with the same representation (status, headers, body) for GET,
HEAD and If-None-Match; Redis holds each response once; a write through a node shows at once
through that node."""

import re
import time
import uuid

import pytest
import redis

from helpers import cached_responses, call, new_task, running_stack

pytestmark = pytest.mark.stack

MICRO = 2.1  # a micro-cache copy answers for 1 s (micro_cache.lua): wait well past it
# Headers of one message or one layer, not of the representation.
NOT_REPRESENTATION = {"x-request-id", "x-cache-status", "x-edge-cache", "x-app-cache", "date",
                      "server", "connection", "keep-alive", "content-length",
                      "transfer-encoding"}
COUNTED = {"Prefer": "count=exact"}
# The write tests' client addresses, one each: nginx limits writes per address (10/s, burst 20).
WRITERS = {"PATCH": "127.0.0.21", "PUT": "127.0.0.22", "POST": "127.0.0.23",
           "DELETE": "127.0.0.24", "refused": "127.0.0.25", "412": "127.0.0.26"}


@pytest.fixture(scope="module")
def stack():
    """A stack started by the code behind `make up`, on free ports."""
    with running_stack("layers") as started:
        yield started


class Direct:
    """The stack's gunicorn as `call` sees a stack: the app's own answers, no nginx."""

    def __init__(self, stack):
        self.port = stack.ports["apps"][0]

    def front(self, node):
        return self.port


def representation(reply):
    """(status, the representation headers, body) of a reply."""
    headers = {name.lower(): value for name, value in reply.headers.items()
               if name.lower() not in NOT_REPRESENTATION}
    return reply.status, headers, reply.body


def respelled(url, zeros):
    """Another request target for the same response, which no cache has seen: an item with a
    query the app ignores, a page with its limit written with `zeros` leading zeros, a cursor
    alone with `zeros` letters of its parameter's name percent-encoded."""
    if "?" not in url:
        return url + "?spelling=" + uuid.uuid4().hex[:8]
    if "limit=" not in url:
        name = "".join(f"%{ord(c):02X}" if i < zeros else c for i, c in enumerate("cursor"))
        return url.replace("cursor=", name + "=", 1)
    return re.sub(r"limit=(\d+)", "limit=" + "0" * zeros + r"\1", url)


def kinds(stack):
    """{kind: (URL, request headers)}: an item, a page in id order, an ordered page reached by
    its cursor, a counted page; each made of tasks of its own, so that no cache knows it."""
    word = f"layers{uuid.uuid4().hex[:10]}"
    tasks = [new_task(stack, f"{word} {n}") for n in range(3)]
    first = call(stack, "GET", f"/api/tasks?order=title.desc&q={word}&limit=1",
                 headers={"Cache-Control": "no-cache"})
    cursor_page = first.json()["next"]
    assert "cursor=" in cursor_page
    return {"item": (f"/api/tasks/{tasks[0]['id']}", {}),
            "page": (f"/api/tasks?after={tasks[0]['id'] - 1}&limit=2", {}),
            "cursor page": (cursor_page, {}),
            "counted page": (f"/api/tasks?q={word}&limit=2", COUNTED)}


def layers(reply):
    """The layer headers of a reply: (X-Cache-Status, X-Edge-Cache, X-App-Cache)."""
    return reply.header("X-Cache-Status"), reply.header("X-Edge-Cache"), reply.header("X-App-Cache")


def test_every_layer_answers_get_head_and_304_with_the_apps_representation(stack):
    cases = kinds(stack)
    seen = {kind: {} for kind in cases}  # kind -> {(layer, method): reply}

    def read(kind, layer, method, conditional=False, url=None, via=stack, extra=None):
        path, headers = cases[kind]
        headers = {**headers, **(extra or {})}
        if conditional:
            headers["If-None-Match"] = seen[kind][("first", "GET")].header("ETag")
        reply = call(via, method, url or path, headers=headers)
        seen[kind][(layer, "304" if conditional else method)] = reply
        return reply

    for kind in cases:  # every layer missed; then the micro-cache's copy; the app's own hit
        assert layers(read(kind, "first", "GET")) == ("MISS", "MISS", "MISS"), kind
        assert layers(read(kind, "first", "HEAD", url=respelled(cases[kind][0], 1))) == (
            "MISS", "MISS", "MISS"), kind
        assert layers(read(kind, "first", "GET", True, url=respelled(cases[kind][0], 2))) == (
            "MISS", "MISS", "MISS"), kind
        for method in ("GET", "HEAD"):
            assert layers(read(kind, "micro", method)) == ("HIT", None, None), kind
        assert layers(read(kind, "micro", "GET", True)) == ("HIT", None, None), kind
        for method in ("GET", "HEAD"):
            read(kind, "app", method, via=Direct(stack))
            assert seen[kind][("app", method)].header("X-App-Cache") == "HIT", kind
        read(kind, "app", "GET", True, via=Direct(stack))
        bypass = read(kind, "app through nginx", "GET", extra={"Cache-Control": "no-cache"})
        assert layers(bypass) == ("BYPASS", "BYPASS", "HIT"), kind
    for method, conditional in (("GET", False), ("HEAD", False), ("GET", True)):
        time.sleep(MICRO)  # the micro-cache's copies expired: nginx answers from Redis
        for kind in cases:
            reply = read(kind, "redis", method, conditional)
            assert layers(reply)[1:] == ("HIT", None), (kind, method, layers(reply))

    for kind, replies in seen.items():
        first = replies[("first", "GET")]
        get = representation(first)
        status, headers, body = get
        assert status == 200 and body and headers["etag"], kind
        if kind != "item":
            assert headers["vary"] == "Prefer" and first.json()["next"] is not None, kind
            assert headers["link"] == f'<{first.json()["next"]}>; rel="next"', kind
        if kind == "counted page":
            assert headers["x-total-count"] == "3" and headers["preference-applied"] == "count=exact"
        not_modified = (304, {k: v for k, v in headers.items() if k != "content-type"}, b"")
        for (layer, method), reply in replies.items():
            expected = {"GET": get, "HEAD": (200, headers, b""), "304": not_modified}[method]
            assert representation(reply) == expected, (kind, layer, method)
            if method == "HEAD":
                assert reply.header("Content-Length") == str(len(body)), (kind, layer)


def test_redis_holds_each_cached_response_once(stack):
    ids = [new_task(stack, "once")["id"] for _ in range(20)]
    pages = [f"/api/tasks?after={task_id - 1}&limit=5" for task_id in ids[:5]]
    for url in [f"/api/tasks/{task_id}" for task_id in ids] + pages:
        for headers in ({}, {"Cache-Control": "no-cache"}, {}):  # nginx, the app, nginx
            assert call(stack, "GET", url, headers=headers).status == 200
        assert call(stack, "GET", url, headers=COUNTED).status == 200  # another response
    time.sleep(MICRO)
    for url in [f"/api/tasks/{task_id}" for task_id in ids] + pages:
        assert call(stack, "GET", url).header("X-Edge-Cache") == "HIT"
    rds = redis.Redis.from_url(stack.redis_url)
    try:
        held = {}  # what (variant and URI) -> its keys
        for key in cached_responses(rds):
            held.setdefault(key.split(":", 3)[3], []).append(key)
        for url in [f"/api/tasks/{task_id}" for task_id in ids] + pages:
            assert len(held[url]) == 1 and len(held["count=exact" + url]) == 1, url
        entry = rds.get(held[f"/api/tasks/{ids[0]}"][0])
        assert re.match(rb"\d+\n200\n", entry)  # "<generation>\n<status>\n<headers>\n\n<body>"
    finally:
        rds.close()


def warm(stack, *urls):
    """Read each URL through the node until its micro-cache holds it (a HIT)."""
    for url in urls:
        call(stack, "GET", url)
        assert call(stack, "GET", url).header("X-Cache-Status") == "HIT", url


def page_of(task_id, limit=3):
    """The list page that starts at task `task_id`."""
    return f"/api/tasks?after={task_id - 1}&limit={limit}"


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_a_change_through_a_node_shows_at_once_through_it(stack, method):
    task = new_task(stack, "before", WRITERS[method])
    item, page = f"/api/tasks/{task['id']}", page_of(task["id"])
    for n in range(8):
        warm(stack, item, page)
        written = call(stack, method, item, {"title": f"after {n}"}, source=WRITERS[method])
        assert written.status == 200
        read, listed = call(stack, "GET", item), call(stack, "GET", page)
        assert read.json()["title"] == f"after {n}" and read.header("ETag") == written.header("ETag")
        assert listed.json()["items"][0]["title"] == f"after {n}"


def test_a_created_task_is_on_the_next_page_read_through_the_node(stack):
    anchor = new_task(stack, "anchor", WRITERS["POST"])
    page = page_of(anchor["id"], limit=10)  # room for the anchor and the new tasks
    for n in range(3):
        warm(stack, page)
        created = new_task(stack, f"new {n}", WRITERS["POST"])
        assert created["id"] in [t["id"] for t in call(stack, "GET", page).json()["items"]]


def test_a_deleted_task_is_a_404_at_once_through_the_node(stack):
    for _ in range(3):
        task = new_task(stack, "doomed", WRITERS["DELETE"])
        item, page = f"/api/tasks/{task['id']}", page_of(task["id"])
        warm(stack, item, page)
        assert call(stack, "DELETE", item, source=WRITERS["DELETE"]).status == 204
        assert call(stack, "GET", item).status == 404
        assert task["id"] not in [t["id"] for t in call(stack, "GET", page).json()["items"]]


def test_a_write_leaves_the_other_tasks_copies_and_a_refused_one_its_own(stack):
    writer = WRITERS["refused"]
    a, b = new_task(stack, "a", writer), new_task(stack, "b", writer)
    warm(stack, f"/api/tasks/{b['id']}")
    assert call(stack, "PATCH", f"/api/tasks/{a['id']}", {"title": "a2"}, source=writer).status == 200
    assert call(stack, "GET", f"/api/tasks/{b['id']}").header("X-Cache-Status") == "HIT"
    assert call(stack, "PATCH", f"/api/tasks/{b['id']}", {"title": 1}, source=writer).status == 422
    assert call(stack, "GET", f"/api/tasks/{b['id']}").header("X-Cache-Status") == "HIT"


def test_a_412_carries_the_current_etag_to_retry_with(stack):
    writer = WRITERS["412"]
    task = new_task(stack, "v1", writer)
    url = f"/api/tasks/{task['id']}"
    assert call(stack, "PATCH", url, {"title": "v2"}, source=writer).status == 200
    refused = call(stack, "PATCH", url, {"title": "v3"}, source=writer,
                   headers={"If-Match": f'"{task["id"]}-1"'})
    assert refused.status == 412 and refused.header("ETag") == f'"{task["id"]}-2"'
    retried = call(stack, "PATCH", url, {"title": "v3"}, source=writer,
                   headers={"If-Match": refused.header("ETag")})
    assert retried.status == 200 and retried.json()["version"] == 3

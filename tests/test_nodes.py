"""Two nodes (NODES=2 make up): two nginx fronts and two gunicorn nodes on one PostgreSQL and one
Redis. The fronts share the responses the app stored in Redis, see each other's
writes within the micro-cache second, and ride out a dead gunicorn node."""

import json
import os
import signal
import socket
import time
import urllib.request

import pytest

from helpers import call, moved, new_task, running_stack, samples
from stack import free_port, wait_for

pytestmark = pytest.mark.stack

MICRO = 2.1  # a micro-cache copy answers for 1 s (micro_cache.lua): wait well past it


def two_free_ports():
    """A free port whose next one is free too (the fronts listen on http_port + i)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port


@pytest.fixture(scope="module")
def nodes():
    """A stack of two nodes, as NODES=2 make up starts it."""
    with running_stack("nodes", http_port=two_free_ports(), nodes=2) as stack:
        yield stack


def app_log_lines(stack, request_id):
    """Access-log lines of every gunicorn node that name `request_id`."""
    logs = [stack.dir / "gunicorn" / "gunicorn.log", stack.dir / "gunicorn-1" / "gunicorn.log"]
    return [line for log in logs for line in log.read_text().splitlines() if request_id in line]


def edge_counts(stack, node):
    """The edge-cache outcome counters of nginx node `node`."""
    port = stack.ports["metrics"][node]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return samples(response.read().decode())


def test_a_read_through_one_front_is_a_redis_edge_hit_through_the_other_without_any_app(nodes):
    url = f"/api/tasks/{new_task(nodes)['id']}"
    first = call(nodes, "GET", url, headers={"X-Request-ID": "node-a-1"})
    assert first.header("X-Edge-Cache") == "MISS"
    wait_for(lambda: app_log_lines(nodes, "node-a-1"), "front A's fetch in an app log")
    second = call(nodes, "GET", url, headers={"X-Request-ID": "node-b-1"}, front=1)
    assert second.header("X-Cache-Status") == "MISS"  # front B's own micro-cache had nothing
    assert second.header("X-Edge-Cache") == "HIT" and second.body == first.body
    time.sleep(0.5)  # gunicorn writes its access line after the response
    assert app_log_lines(nodes, "node-b-1") == []


def shown(nodes, front, task):
    """What a read of the written task (item and its list page) through `front` shows:
    (the item's status and title, the ids on the page)."""
    item = call(nodes, "GET", f"/api/tasks/{task['id']}", front=front)
    page = call(nodes, "GET", f"/api/tasks?after={task['id'] - 1}&limit=5", front=front)
    return ((item.status, item.json().get("title")), [t["id"] for t in page.json()["items"]])


WRITES = {  # a write through front A to `task`, and what a read shows once it is visible
    "PATCH": lambda nodes, task: (
        call(nodes, "PATCH", f"/api/tasks/{task['id']}", {"title": "after"}).status == 200,
        ((200, "after"), [task["id"]])),
    "PUT": lambda nodes, task: (
        call(nodes, "PUT", f"/api/tasks/{task['id']}", {"title": "after"}).status == 200,
        ((200, "after"), [task["id"]])),
    "POST": lambda nodes, task: (
        (created := new_task(nodes, "after"))["id"] > task["id"],
        ((200, "before"), [task["id"], created["id"]])),
    "DELETE": lambda nodes, task: (
        call(nodes, "DELETE", f"/api/tasks/{task['id']}").status == 204,
        ((404, "Not Found"), [])),
}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_shows_at_once_through_its_front_and_within_the_second_through_the_other(
        nodes, write):
    task = new_task(nodes, "before")
    for front in (0, 1, 0, 1):  # both fronts hold copies of the item and the page
        assert shown(nodes, front, task) == ((200, "before"), [task["id"]])
    done, expected = WRITES[write](nodes, task)
    assert done
    assert shown(nodes, 0, task) == expected  # the front that took it: at once
    time.sleep(MICRO)
    assert shown(nodes, 1, task) == expected


def test_a_dead_gunicorn_node_costs_no_read_and_no_write_and_is_used_again_once_back(nodes):
    pid = nodes.pid("gunicorn-1")
    os.killpg(pid, signal.SIGKILL)  # the master and its workers: the node is gone
    # A write already on its way to the node as it dies gets 502 (nginx never repeats a write;
    # the client retries with its Idempotency-Key: make chaos covers that moment). Reads in
    # that moment move to the other node; writes sent after it must not fail at all.
    time.sleep(0.3)
    try:
        statuses = []
        for n in range(20):
            for front in (0, 1):
                statuses.append(call(nodes, "GET", "/api/tasks?limit=1", front=front,
                                     headers={"Cache-Control": "no-cache"}).status)
                statuses.append(call(nodes, "POST", "/api/tasks", {"title": f"w{n}"},
                                     front=front, source=f"127.0.0.{2 + n}").status)
        assert statuses.count(200) == 40 and statuses.count(201) == 40, statuses
    finally:
        nodes.start("gunicorn-1")
    log = nodes.dir / "gunicorn-1" / "gunicorn.log"
    before = len(log.read_text().splitlines())
    time.sleep(2.5)  # fail_timeout: the fronts try the node again

    def served_again():
        call(nodes, "GET", "/api/tasks?limit=1", headers={"Cache-Control": "no-cache"})
        return len(log.read_text().splitlines()) > before

    wait_for(served_again, "requests on the restarted node", timeout=10)


def test_the_edge_cache_is_shared_a_warm_run_over_both_fronts_hits_on_the_second(nodes):
    created = call(nodes, "POST", "/api/tasks", json.dumps([{"title": "shared"}] * 30),
                   headers={"Content-Type": "application/json"})
    ids = [task["id"] for task in created.json()]
    for task_id in ids:  # front A fetches each task once: the edge cache is warm
        call(nodes, "GET", f"/api/tasks/{task_id}")
    before = edge_counts(nodes, 1)
    for task_id in ids:
        call(nodes, "GET", f"/api/tasks/{task_id}", front=1)
    after = edge_counts(nodes, 1)
    hits = moved(before, after, "nginx_edge_cache_requests_total", cache_status="HIT")
    misses = moved(before, after, "nginx_edge_cache_requests_total", cache_status="MISS")
    assert (hits, misses) == (30, 0)

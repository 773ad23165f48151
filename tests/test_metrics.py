"""Metrics of the whole stack: the app's (gunicorn, every worker) and nginx's (cache outcomes
and stub_status, on the internal listener) move by exactly what a known sequence of requests
does; neither is reachable through the public port."""

import time
import urllib.error
import urllib.request

import pytest

from helpers import call, moved, new_task, running_stack, samples


pytestmark = pytest.mark.stack

MICRO = 2.1  # a micro-cache copy answers for 1 s: past that, the next read refreshes it


@pytest.fixture(scope="module")
def stack():
    """A stack of its own, started by the code behind `make up`."""
    with running_stack("metrics") as started:
        yield started


def scrape(stack):
    """(the app's samples, nginx's samples): gunicorn directly, nginx's metrics listener."""
    texts = []
    for port in (stack.ports["apps"][0], stack.ports["metrics"][0]):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            texts.append(samples(response.read().decode()))
    return texts


def test_a_known_sequence_moves_the_app_and_nginx_counters_by_exactly_that_much(stack):
    item = f"/api/tasks/{new_task(stack)['id']}"
    app_before, nginx_before = scrape(stack)
    headers = [
        call(stack, "GET", item),                                         # every layer misses
        call(stack, "GET", item),                                         # micro-cache HIT
        call(stack, "GET", item, headers={"Cache-Control": "no-cache"}),  # nginx steps aside
    ]
    time.sleep(MICRO)
    headers.append(call(stack, "GET", item))                              # edge HIT
    headers += [call(stack, "GET", "/api/tasks/987654321"),              # misses, then 404
                call(stack, "GET", "/api/nowhere")]                       # no route: 404
    app, nginx = scrape(stack)

    layers = [(r.header("X-Cache-Status"), r.header("X-Edge-Cache"), r.header("X-App-Cache"))
              for r in headers[:4]]
    assert layers == [("MISS", "MISS", "MISS"), ("HIT", None, None),  # the layer that answered
                      ("BYPASS", "BYPASS", "HIT"), ("EXPIRED", "HIT", None)]
    requests = "tasks_http_requests_total"
    for labels, count in [({"route": "/api/tasks/<raw_id>", "status": "200"}, 2),
                          ({"route": "/api/tasks/<raw_id>", "status": "404"}, 1),
                          ({"route": "unmatched", "status": "404"}, 1)]:
        assert moved(app_before, app, requests, method="GET", **labels) == count, labels
    lookups = "tasks_cache_lookups_total"
    assert moved(app_before, app, lookups, result="hit") == 1
    assert moved(app_before, app, lookups, result="miss") == 2
    assert moved(app_before, app, "tasks_redis_errors_total") == 0

    micro, edge = "nginx_micro_cache_requests_total", "nginx_edge_cache_requests_total"
    for status, count in {"MISS": 2, "HIT": 1, "BYPASS": 1, "EXPIRED": 1, "STALE": 0}.items():
        assert moved(nginx_before, nginx, micro, cache_status=status) == count, status
    for status, count in {"MISS": 2, "HIT": 1, "BYPASS": 1}.items():
        assert moved(nginx_before, nginx, edge, cache_status=status) == count, status
    # stub_status: the 6 public requests and this second scrape of nginx (a read's fetch from the
    # app is a subrequest, which it does not count).
    assert moved(nginx_before, nginx, "nginx_http_requests_total") == 6 + 1
    assert nginx[("nginx_connections_active", frozenset())] >= 1


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "//metrics", "/%6Detrics",
                                  "/api/../metrics", "/metrics?format=text", "/_stub_status"])
def test_neither_metrics_page_is_reachable_through_the_public_port(stack, path):
    reply = call(stack, "GET", path)
    assert reply.status == 404 and reply.header("Content-Type") == "application/problem+json"
    assert reply.json()["status"] == 404 and b"nginx_" not in reply.body


def test_the_metrics_listener_serves_metrics_only_and_on_loopback(stack):
    conf = (stack.dir / "nginx" / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{stack.ports['metrics'][0]};" in conf
    for path in ("/", "/api/tasks", "/_stub_status"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['metrics'][0]}{path}", timeout=5)
        assert error.value.code == 404

"""The app under real gunicorn with conf/gunicorn.conf.py, as it runs in production: JSON logs,
the body limit, metrics added up over the workers (prometheus-client's multiprocess mode)."""

import json
import os
import re
import signal
import urllib.error
import urllib.parse
import urllib.request

import pytest

from helpers import access_log_line, gunicorn_for, raw_request, samples
from svc.resource import CURSOR_MAX, MAX_BODY
from stack import wait_for

pytestmark = pytest.mark.gunicorn


def test_gunicorn_serves_the_api_and_logs_json_lines_with_the_request_id(gunicorn, db):
    base, log = gunicorn
    request = urllib.request.Request(f"{base}/api/tasks", headers={"X-Request-ID": "gunicorn-1"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.headers["X-Request-ID"] == "gunicorn-1"
        assert json.load(response)["items"] == []

    access = access_log_line(log, "gunicorn-1")
    assert access["status"] == 200 and access["path"] == "/api/tasks"
    assert access["method"] == "GET" and access["ms"] >= 0


@pytest.mark.parametrize("line", ["GET /api/tasks?q=ДОМАШНЕЕ HTTP/1.1",  # sent raw, as UTF-8
                                  "GET /api/tasks HTTP/1.1\r\nBad\x01Name: x"])
def test_a_request_gunicorn_cannot_parse_gets_a_problem_that_echoes_nothing(gunicorn, line):
    status, headers, body = raw_request(int(gunicorn[0].rsplit(":", 1)[1]), line)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert "percent-encoded" in problem["detail"] and "tasks" not in problem["detail"]


def test_the_longest_list_url_the_document_allows_reaches_the_app(gunicorn, db):
    base, _ = gunicorn
    q = urllib.parse.quote("abc" + "\U0001F600" * 197)  # 12 characters each, but a trigram
    url = f"{base}/api/tasks?order=created_at.desc&done=false&limit=500&q={q}&cursor=" + (
        "A" * CURSOR_MAX)
    assert len(url) > 5900
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.status == 400  # the app's: not a cursor it issued, not gunicorn's
    assert [e["field"] for e in json.load(refused.value)["errors"]] == ["cursor"]


def test_gunicorn_body_limit_holds_for_chunked_uploads(gunicorn, db):
    import http.client

    base, _ = gunicorn
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    body = b'{"title": "x"}' + b" " * (MAX_BODY + 1024)  # valid JSON if the server truncated it
    conn.request("POST", "/api/tasks", body=iter([body]), encode_chunked=True,
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert db.execute("select count(*) from tasks").fetchone()[0] == 0


WORKERS, POOL_MIN = 2, 2
STALE = "counter_999999.db"  # a file an earlier run left in the metrics folder


@pytest.fixture(scope="module")
def metered(config, tmp_path_factory):
    """A gunicorn of its own (2 workers) whose metrics folder held an earlier run's file:
    (base URL, the folder)."""
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / STALE).write_bytes(b"not a metrics file")
    with gunicorn_for(config, PROMETHEUS_MULTIPROC_DIR=str(folder), WEB_CONCURRENCY=str(WORKERS),
                      DB_POOL_MIN=str(POOL_MIN), GUNICORN_ACCESS_LOG="/dev/null") as (base, _):
        yield base, folder


def scrape(base):
    """The samples of one scrape, whichever worker answers it."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        return samples(response.read().decode())


def pool_connections(base):
    """The pooled connections of every worker, as one scrape adds them up."""
    return scrape(base)[("tasks_db_pool_connections", frozenset())]


def worker_pids(folder):
    """Workers that have live gauge files in the metrics folder."""
    files = (re.fullmatch(r"gauge_livesum_(\d+)\.db", name) for name in os.listdir(folder))
    return {int(m[1]) for m in files if m}


def test_gunicorn_empties_the_metrics_folder_before_workers_start(metered):
    base, folder = metered
    assert not (folder / STALE).exists()
    assert scrape(base)


def test_any_workers_scrape_adds_up_every_workers_figures(metered):
    base, folder = metered
    wait_for(lambda: len(worker_pids(folder)) == WORKERS, "both workers' metrics files")
    # Each worker writes its own pool's size; an idle one too (its figures thread). The pools
    # fill in the background: at a load average of 7 to 10 that took over 10 s once.
    wait_for(lambda: all(pool_connections(base) == WORKERS * POOL_MIN for _ in range(4)),
             f"{WORKERS} x {POOL_MIN} pooled connections in every scrape", timeout=30)
    before = scrape(base)
    for _ in range(20):  # new connections: both workers answer some
        urllib.request.urlopen(f"{base}/api/live", timeout=5).read()
    key = ("tasks_http_requests_total",
           frozenset({"method": "GET", "route": "/api/live", "status": "200"}.items()))
    assert scrape(base)[key] - before.get(key, 0) == 20


def test_a_dead_workers_pool_gauges_leave_the_sum_and_its_counts_stay(metered):
    base, folder = metered
    wait_for(lambda: len(worker_pids(folder)) == WORKERS, "both workers' metrics files")
    victim = min(worker_pids(folder))
    os.kill(victim, signal.SIGKILL)  # gunicorn's master reaps it, child_exit runs, a new one starts
    wait_for(lambda: victim not in worker_pids(folder), "the dead worker's gauges gone", timeout=10)
    assert (folder / f"counter_{victim}.db").exists()
    wait_for(lambda: len(worker_pids(folder)) == WORKERS, "the new worker's metrics files")
    wait_for(lambda: pool_connections(base) == WORKERS * POOL_MIN, "the sum back at full size",
             timeout=10)


def test_gunicorn_writes_nothing_into_the_users_home(config, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with gunicorn_for(config, HOME=str(home)) as (base, log):
        with urllib.request.urlopen(f"{base}/api/live", timeout=5) as response:
            assert response.status == 200
    assert list(home.iterdir()) == [] and "Control server" not in log.read_text()

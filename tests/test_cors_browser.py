"""A page on another origin calls the API in a real browser (headless Chromium), through a real
nginx with CORS_ORIGINS naming that origin: create, read (gzipped) and a conditional write with
the ETag it read, its preflights answered by nginx; the same page on an origin not named is
refused by the browser."""

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import chromium, running_stack
from stack import free_port

pytestmark = pytest.mark.stack

# Each step's outcome goes into #out; the DOM Chromium dumps is read back as JSON.
PAGE = """<!DOCTYPE html>
<html><body><pre id="out">pending</pre><script>
const api = "%(api)s", out = {};
(async () => {
  try {
    const created = await fetch(api + "/api/tasks", {method: "POST",
      headers: {"Content-Type": "application/json", "Idempotency-Key": "page-" + Date.now()},
      body: JSON.stringify({title: "from another origin", description: "word ".repeat(500)})});
    const task = await created.json();
    out.created = [created.status, created.headers.get("Location"), task.title];
    const read = await fetch(api + "/api/tasks/" + task.id);
    const tag = read.headers.get("ETag");
    out.read = [read.status, tag, (await read.json()).id === task.id];
    const patched = await fetch(api + "/api/tasks/" + task.id, {method: "PATCH",
      headers: {"Content-Type": "application/json", "If-Match": tag},
      body: JSON.stringify({done: true})});
    out.patched = [patched.status, (await patched.json()).done];
  } catch (error) {
    out.error = String(error);
  }
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>
"""


@contextlib.contextmanager
def page_server(port, api):
    """PAGE, calling `api`, served at http://127.0.0.1:`port`/ (another origin than the API's)."""
    body = (PAGE % {"api": api}).encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def ports():
    """The ports of the page CORS_ORIGINS names and of one it does not."""
    allowed = free_port()
    return allowed, free_port({allowed})


@pytest.fixture(scope="module")
def cors_stack(ports):
    """The whole stack, letting the first page's origin call it."""
    with running_stack("cors-browser", cors_origins=f"http://127.0.0.1:{ports[0]}") as stack:
        yield stack


def outcome(stack, port, out):
    """What PAGE saw, served on `port`, in Chromium."""
    with page_server(port, stack.base_url) as origin:
        dom = chromium(f"{origin}/", out).stdout
    return json.loads(re.search(r'<pre id="out">(.*?)</pre>', dom, re.S).group(1))


def test_a_page_on_an_allowed_origin_creates_reads_and_writes_with_the_etag_it_read(
        cors_stack, ports, tmp_path):
    seen = outcome(cors_stack, ports[0], tmp_path)
    assert "error" not in seen, seen
    assert seen["created"][0] == 201 and seen["created"][1].startswith("/api/tasks/")
    status, tag, same = seen["read"]
    # ETag exposed, and weak: the browser asked for gzip, and the 2.5 KB task came compressed.
    assert status == 200 and same and re.fullmatch(r'W/"\d+-1"', tag)
    assert seen["patched"] == [200, True]  # If-Match, a preflighted header, with that tag
    log = (cors_stack.dir / "nginx" / "access.log").read_text()
    assert re.search(r'"OPTIONS /api/tasks HTTP/1.1" 204 ', log)  # nginx answered a preflight


def test_the_same_page_on_another_origin_is_refused_by_the_browser(cors_stack, ports, tmp_path):
    seen = outcome(cors_stack, ports[1], tmp_path)
    assert seen == {"error": "TypeError: Failed to fetch"}

"""make bench: each layer of the read path against its ceiling, and the writes, on a throwaway stack.

Rows through nginx are compared with nginx serving the same bytes as static files (a server the
bench adds to the stack's own nginx: same workers, same logs); rows straight to gunicorn with the
app's floor, GET /api/live (neither PostgreSQL nor Redis). The scenarios run in interleaved
rounds (BENCH_ROUNDS, 3; BENCH_SECONDS, 4, each; fractions work): a figure is the median of its
rounds, a ratio the median of its per-round ratios, since this machine's speed drifts. Writes:
POST, and 90 % GET / 10 % PATCH on random items beside the same reads alone, both checked
against PostgreSQL afterwards. The same figures go to a JSON file (--json; default: bench.json
in the state directory, which keeps only that file once the run succeeds).

For the bench only, the stack's nginx is given a static server (with open_file_cache: the
ceiling is nginx at its best), a write rate limit and burst it cannot
reach from one address, and a 1-hour edge TTL (the edge rows cycle over entries primed once).
Exits 1 if a check fails (a 5xx, a write acknowledged and not stored); speed never fails it.
Not collected by pytest (no test_ prefix); tests/test_bench_smoke.py runs a short one.

Then, on a second stack with the edge's budgets as deployed: the scale table (each read and
count, straight to gunicorn, every request a miss of the app's cache, p50 ms, at each size of
BENCH_SCALE: 100,000 and 1,000,000 rows; add 10000000 for ten million) and, at the largest size,
the abuse row: eight ordinary clients, each on a loopback address of its own (127.0.1.1-8, one
kept-alive connection each), read random items through nginx, alone and beside a hostile client
on 127.0.0.2 (16 connections, nice 19) that sends short-word, counted and 40-word searches, each
with a fresh limit (BENCH_ABUSE_SECONDS each, 5). The main stack's nginx gets budgets it cannot
reach from one address (the environment: EDGE_APP_RATE, ...) and its gunicorn a costly share
of every thread (COSTLY_SHARE); the second stack has the defaults. --scale-only: this part alone.

BENCH_ONLY (row keys, comma-separated, e.g. "edge item,edge list"): only those read rows and the
ceilings they are compared with, in the usual rounds, without the writes, the scale table and
the abuse row; for comparing one layer before and after a change within minutes.
"""

import argparse
import concurrent.futures
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import threading
import runpy
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from svc.admin import seed  # noqa: E402
from svc.cache import Cache, make_redis  # noqa: E402
from svc.invalidation import Generations  # noqa: E402
from svc.config import Config  # noqa: E402
from stack import Stack, free_port, wait_for  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ROWS = int(os.environ.get("BENCH_ROWS", "200000"))
SCALE = [int(n) for n in os.environ.get("BENCH_SCALE", "100000,1000000").split(",")]
SCALE_SECONDS = float(os.environ.get("BENCH_SCALE_SECONDS", "1.5"))  # per row and size, at most
ABUSE_SECONDS = float(os.environ.get("BENCH_ABUSE_SECONDS", "5"))
ONLY = {k.strip() for k in os.environ.get("BENCH_ONLY", "").split(",") if k.strip()}
# The main stack measures each layer's ceiling: its nginx gets per-client budgets no wrk run
# from one address reaches, its gunicorn a costly share of every thread (4, GUNICORN_THREADS).
UNLIMITED = {"EDGE_APP_RATE": "10000000", "EDGE_APP_BURST": "10000000",
             "EDGE_COSTLY_RATE": "10000000", "EDGE_COSTLY_BURST": "10000000",
             "COSTLY_SHARE": "4"}
# The edge rows cycle over entries primed once, through nginx, for this long per URL shape: the
# cycle must outlast the micro-cache (1 s) at the edge's rate, or it serves some. An item's edge
# hit runs at over 50,000 a second: 60,000 items and more, of the ROWS x 0.45 the edge rows may
# use, primed through the app at about 1,200 a second.
PRIME_SECONDS = float(os.environ.get("BENCH_PRIME_SECONDS", "75"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
THREADS = 2
WARM_SECONDS = min(1.0, SECONDS / 4)
GRACE_SECONDS = min(1.0, SECONDS)  # writes stop this long before wrk does: none left unanswered
MICRO_TTL = 1.2  # seconds a micro-cache copy answers for (1 s), and a margin
WRITE_SHARE = 0.10  # of the connections, in the mixed scenario
PAGE = "/api/tasks?limit=50&after=%d"
ITEM = "/api/tasks/%d"
# An ordered, filtered, searched page: q=<n>00 finds the seeded tasks whose number holds those
# digits (three characters or more, so the trigram index serves it).
QUERY = "/api/tasks?order=updated_at.desc&done=false&q=%d00&limit=50"
MICRO = {"HIT", "STALE", "UPDATING"}  # X-Cache-Status of a copy the micro-cache served
CACHE_TTL = "3600"  # the bench's app cache: its edge rows read the entries primed at the start
# Running order within a round: each layer between others (the edge rows last, long after the
# priming's micro-cache copies expired).
RUN_ORDER = ("floor", "static list", "micro list", "app hit list", "app pg list", "static item",
             "micro item", "app hit item", "app pg item", "app hit query", "app pg query",
             "edge list", "edge item")

# Thread t of n requests start+t-1, start+t-1+n, ... (mod count): no URI repeats until the walk
# wraps, so every request misses whichever cache the scenario must miss.
WALK_LUA = """
local n = 0
function setup(thread) n = n + 1; thread:set("tid", n) end
function init(args)
  pattern, start, count, stride = args[1], tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  i = tid - 1
end
function request()
  local v = start + i % count
  i = i + stride
  return wrk.format(nil, string.format(pattern, v))
end
"""

# Reads and writes checked afterwards (args: mode "get" | "patch" | "post", first id, count,
# seconds): GET or PATCH random items, or POST new tasks. Stops sending after `seconds` (the
# requests in flight still complete) and counts responses by "<method> <status>", plus those sent
# and never answered; done() prints the counts on one line.
WRITES_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9 end
local threads = {}
function setup(thread) threads[#threads + 1] = thread; thread:set("tid", #threads) end
function init(args)
  mode, first, count = args[1], tonumber(args[2]), tonumber(args[3])
  stop_at = now() + tonumber(args[4])
  math.randomseed(tid)
  counts, sent, n = {}, 0, 0
end
-- A request goes out after each delay() that returns 0 (wrk also calls request() once to check it).
function delay()
  if now() >= stop_at then return 3600000 end
  sent = sent + 1
  return 0
end
local json = { ["Content-Type"] = "application/json" }
function request()
  n = n + 1
  if mode == "post" then
    return wrk.format("POST", "/api/tasks", json, '{"title":"bench ' .. tid .. '-' .. n .. '"}')
  end
  local path = "/api/tasks/" .. (first + math.random(0, count - 1))
  if mode == "patch" then
    return wrk.format("PATCH", path, json, '{"done":' .. (n % 2 == 0 and "true" or "false") .. '}')
  end
  return wrk.format("GET", path)
end
function response(status, headers, body)
  local key = mode:upper() .. " " .. status
  counts[key] = (counts[key] or 0) + 1
  sent = sent - 1
end
function done(summary, latency, requests)
  local total = { unanswered = 0 }
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
    total.unanswered = total.unanswered + t:get("sent")
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = k .. "=" .. v end
  io.write("COUNTS " .. table.concat(parts, ",") .. "\\n")
end
"""


def wrk(url, seconds, script=None, args=(), threads=THREADS, connections=CONNECTIONS):
    """Run wrk for `seconds` (ended by SIGINT, so fractions work): its figures (see finish)."""
    return finish(start(url, seconds, script, args, threads, connections), seconds)


def start(url, seconds, script=None, args=(), threads=THREADS, connections=CONNECTIONS):
    """Start wrk on `url`; it runs until finish() stops it."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{math.ceil(seconds) + 10}s", "--latency"]
    cmd += ["-s", script, url, "--", *map(str, args)] if script else [url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*procs_and_seconds):
    """After `seconds`, SIGINT each wrk started: req/s, p50/p99 ms, requests, errors (socket
    errors and non-2xx/3xx) and the script's COUNTS, if it prints them; one dict per wrk."""
    *procs, seconds = procs_and_seconds
    time.sleep(seconds)
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    results = [parse(proc, *proc.communicate(timeout=30)) for proc in procs]
    return results[0] if len(results) == 1 else results


def parse(proc, out, err):
    """The figures of one wrk run from its output."""
    if proc.returncode not in (0, -signal.SIGINT) or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err or out}")
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    pct = {p: float(v) * scale[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$",
                                                            out, re.M)}
    errors = sum(map(int, re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)"
                                     r":? (\d+)", out)))
    counts = re.search(r"^COUNTS (.*)$", out, re.M)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
            "p50_ms": pct.get("50", 0.0), "p99_ms": pct.get("99", 0.0),
            "requests": int(re.search(r"(\d+) requests in", out)[1]), "errors": errors,
            "counts": dict((k, int(v)) for k, v in (kv.split("=") for kv in counts[1].split(",")
                                                     if kv)) if counts else None}


class Bench:
    """The stack under test, its logs, and the scenarios' URLs and ranges."""

    def __init__(self, stack, state):
        self.stack, self.state = stack, Path(state)
        self.app = f"http://127.0.0.1:{stack.ports['apps'][0]}"
        self.front = stack.base_url
        self.static = None  # the static server's URL, once nginx has it
        self.walk = str(self.state / "walk.lua")
        self.writes = str(self.state / "writes.lua")
        Path(self.walk).write_text(WALK_LUA)
        Path(self.writes).write_text(WRITES_LUA)
        self.logs = (self.state / "nginx" / "access.log", self.state / "gunicorn" / "gunicorn.log")
        # Distinct ids per purpose: app misses (a slice per round), edge entries, fixed URLs.
        self.miss_span = max(100, int(ROWS * 0.4) // ROUNDS)
        self.edge_lo, self.edge_count = int(ROWS * 0.5) + 1, int(ROWS * 0.45)
        self.primed = {}
        self.fixed = {"list": PAGE % 0, "item": ITEM % ROWS, "query": QUERY % 1}

    # -- setup ------------------------------------------------------------------------------

    def configure_nginx(self):
        """Add the static server, lift the write limit; reload nginx."""
        static = self.state / "static"
        static.mkdir()
        for shape, path in self.fixed.items():  # exactly the bytes nginx serves for them
            with urllib.request.urlopen(self.front + path) as response:
                (static / shape).write_bytes(response.read())
        os.chmod(static, 0o755)
        port = free_port()
        conf = self.state / "nginx" / "nginx.conf"
        text = conf.read_text()
        edits = [
            (r"(limit_req_zone \$write_limit_key zone=writes:\S+ rate=)\d+r/s;", r"\g<1>100000r/s;"),
            (r"(limit_req zone=writes burst=)\d+", r"\g<1>100000"),  # a stalled loop's burst too
            (r"\}\s*\Z", (f"    # bench: the static ceiling\n    server {{\n"
                          f"        listen 127.0.0.1:{port};\n        root {static};\n"
                          f"        default_type application/json;\n"
                          f"        open_file_cache max=100 inactive=10s;\n"
                          f"        add_header X-Request-ID $req_id always;\n    }}\n}}\n")),
        ]
        for pattern, replacement in edits:
            text, n = re.subn(pattern, replacement, text)
            if n != 1:
                raise RuntimeError(f"bench: {pattern!r} no longer matches conf/nginx/nginx.conf")
        conf.write_text(text)
        os.kill(self.stack.pid("nginx"), signal.SIGHUP)
        self.static = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(self.static + "/item").status == 200,
                 "the bench's static server")
        time.sleep(0.5)  # the old workers finish

    def prime_edge(self):
        """Fill the app's Redis entries with distinct pages and items, through nginx."""
        for shape, pattern in (("list", PAGE), ("item", ITEM)):
            result = wrk(self.front, PRIME_SECONDS, self.walk,
                         (pattern, self.edge_lo, self.edge_count, THREADS))
            # Requests in flight at the stop may not have stored an entry: leave them out.
            self.primed[shape] = max(1, min(self.edge_count, result["requests"] - CONNECTIONS))
        self.primed_at = time.monotonic()

    def edge_hits(self, pattern, shape):
        """Cycle over the primed entries once the micro-cache's copies of the priming expired."""
        time.sleep(max(0.0, self.primed_at + MICRO_TTL - time.monotonic()))
        return self.measure(self.front, warm=False, script=self.walk,
                            args=(pattern, self.edge_lo, self.primed[shape], THREADS))

    # -- measuring --------------------------------------------------------------------------

    def measure(self, url, warm=True, script=None, args=(), warm_args=None):
        """Warm up (unless told not to), then one measured run with the layers it hit."""
        if warm:
            wrk(url, WARM_SECONDS, script, warm_args or args)
        before = [p.stat().st_size if p.exists() else 0 for p in self.logs]
        result = wrk(url, SECONDS, script, args)
        result["served_by"] = self.served_by(before)
        return result

    def served_by(self, before):
        """Share of the run's requests each layer answered, from nginx's and gunicorn's logs."""
        front, app = (p.read_bytes()[b:].decode(errors="replace") if p.exists() else ""
                      for p, b in zip(self.logs, before))
        counts = Counter()
        for cache, edge in re.findall(r"cache=(\S*) edge=(\S*)$", front, re.M):
            if cache in MICRO or edge == "HIT":  # the rest reached the app: its log says how
                counts["micro" if cache in MICRO else "edge"] += 1
        counts.update("app " + c for c in re.findall(r'"cache": "(HIT|MISS)"', app))
        total = sum(counts.values()) or 1
        return {k: round(100 * v / total, 1) for k, v in counts.most_common() if v}

    def miss_walk(self, pattern, rnd):
        """App misses: this round's slice of ids, never asked before (warm-up: its upper half)."""
        lo, half = 1 + rnd * self.miss_span, self.miss_span // 2
        return {"script": self.walk, "args": (pattern, lo, half, THREADS),
                "warm_args": (pattern, lo + half, half, THREADS)}

    def read_scenarios(self):
        """(key, label, ceiling key or None, run(round)) for every read row, in table order."""
        rows = []
        for shape, pattern in (("list", PAGE), ("item", ITEM)):
            rows += [
                (f"static {shape}", f"nginx static file, {shape} (ceiling)", None,
                 lambda r, s=shape: self.measure(f"{self.static}/{s}")),
                (f"micro {shape}", f"nginx micro-cache HIT, {shape}", f"static {shape}",
                 lambda r, u=self.fixed[shape]: self.measure(self.front + u)),
                (f"edge {shape}", f"nginx edge HIT (micro expired), {shape}", f"static {shape}",
                 lambda r, s=shape, p=pattern: self.edge_hits(p, s)),
            ]
        rows.append(("floor", "app GET /api/live (floor)", None,
                     lambda r: self.measure(self.app + "/api/live")))
        for shape, pattern in (("list", PAGE), ("item", ITEM)):
            rows += [
                (f"app hit {shape}", f"app Redis HIT, {shape}", "floor",
                 lambda r, u=self.fixed[shape]: self.measure(self.app + u)),
                (f"app pg {shape}", f"app PostgreSQL (cache MISS), {shape}", "floor",
                 lambda r, p=pattern: self.measure(self.app, **self.miss_walk(p, r))),
            ]
        rows += [
            ("app hit query", "app Redis HIT, ordered filtered searched page", "floor",
             lambda r: self.measure(self.app + self.fixed["query"])),
            ("app pg query", "app PostgreSQL (cache MISS), ordered filtered searched page",
             "floor", lambda r: self.measure(self.app, **self.miss_walk(QUERY, r))),
        ]
        return rows


    def write_round(self, database_url):
        """Random reads alone, then with PATCHes beside them, then POSTs; writes checked in
        PostgreSQL. Readers and writers are separate connections (10 % write): a connection
        that did both would wait on each write, and measure that wait rather than the reads."""
        first, count = self.edge_lo, self.primed["item"]
        writers = max(1, round(CONNECTIONS * WRITE_SHARE))
        get, patch = ("get", first, count, SECONDS), ("patch", first, count, SECONDS)
        ids = {"first": first, "last": first + count - 1}
        versions = "select coalesce(sum(version), 0) from tasks where id between %(first)s and %(last)s"
        runtime = SECONDS + GRACE_SECONDS
        with psycopg.connect(database_url, autocommit=True) as conn:
            wrk(self.front, WARM_SECONDS, self.writes, ("get", first, count, WARM_SECONDS))
            alone = self.tally(finish(start(self.front, runtime, self.writes, get,
                                            connections=CONNECTIONS - writers), runtime))
            before = conn.execute(versions, ids).fetchone()[0]
            reads, writes = finish(
                start(self.front, runtime, self.writes, get, connections=CONNECTIONS - writers),
                start(self.front, runtime, self.writes, patch, threads=1, connections=writers),
                runtime)
            mixed = {"reads": self.tally(reads), "writes": self.tally(writes)}
            mixed["writes"]["stored"] = conn.execute(versions, ids).fetchone()[0] - before
            before = conn.execute("select count(*) from tasks").fetchone()[0]
            post = self.tally(wrk(self.front, runtime, self.writes, ("post", 0, 0, SECONDS)))
            post["stored"] = conn.execute("select count(*) from tasks").fetchone()[0] - before
        return {"read-only": alone, "mixed": mixed, "post": post}

    @staticmethod
    def tally(result):
        """A run of WRITES_LUA: answered per second, latency, 5xx, unanswered, counts."""
        counts = result["counts"]
        ok = sum(v for k, v in counts.items() if k.split()[-1] in ("200", "201"))
        return {"rps": round(ok / SECONDS, 1), "ok": ok, "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"], "counts": counts,
                "5xx": sum(v for k, v in counts.items() if k.split()[-1][:1] == "5"),
                "unanswered": counts.get("unanswered", 0)}

    def gunicorn(self):
        """(workers' PIDs, threads, worker class) of the stack's gunicorn."""
        pid = self.stack.pid("gunicorn")
        workers = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        conf = runpy.run_path(str(ROOT / "conf" / "gunicorn.conf.py"))
        return workers, conf["threads"], conf["worker_class"]

    def worker_rss(self):
        """Each gunicorn worker's resident and peak resident memory, in MiB."""
        rss = []
        for pid in self.gunicorn()[0]:
            status = Path(f"/proc/{pid}/status").read_text()
            rss.append({k: round(int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M)[1]) / 1024, 1)
                        for k in ("VmRSS", "VmHWM")})
        return rss


# -- the scale table and the abuse row (a second stack, the edge's budgets as deployed) --------

# (key, label, path or a function of the row count, Prefer): every request misses the app's
# cache (items: random ids; pages: the list's generation is bumped before each).
SCALE_ROWS = (
    ("item", "item", lambda n: ITEM % random.randint(1, n), None),
    ("first", "first page", lambda n: "/api/tasks?limit=50", None),
    ("deep", "deep page (after = 90 %)", lambda n: PAGE % (n * 9 // 10), None),
    ("cursor", "cursor page, title order", None, None),  # the next of the first title page
    ("common", "search, a common word (1 in 8)", lambda n: "/api/tasks?q=review&limit=50", None),
    ("rare", "search, a rare word", lambda n: f"/api/tasks?q={n - 1}&limit=50", None),
    ("short", "search, a two-letter word", lambda n: "/api/tasks?q=xq&limit=50", None),
    ("exact", "count=exact, no filter", lambda n: "/api/tasks?limit=1", "count=exact"),
    ("planned", "count=planned, no filter", lambda n: "/api/tasks?limit=1", "count=planned"),
    ("estimated", "count=estimated, no filter", lambda n: "/api/tasks?limit=1",
     "count=estimated"),
)


def timed_gets(host, port, paths, prefer=None, seconds=SCALE_SECONDS, before=None, limit=200):
    """GET `paths()` in turn on one kept-alive connection for up to `seconds` (at least 5,
    at most `limit` requests; before() runs untimed ahead of each): p50 ms and the statuses."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Prefer": prefer} if prefer else {}
    times, codes = [], Counter()
    deadline = time.monotonic() + seconds
    while len(times) < 5 or (time.monotonic() < deadline and len(times) < limit):
        if before:
            before()
        started = time.perf_counter()
        conn.request("GET", paths(), headers=headers)
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - started) * 1000)
        codes[response.status] += 1
        applied = response.headers.get("Preference-Applied")
    conn.close()
    return {"p50_ms": round(statistics.median(times), 2), "n": len(times),
            "statuses": {str(k): v for k, v in codes.items()}, "applied": applied if prefer else None}


def scale_rows(stack, rows):
    """One column of the scale table: every SCALE_ROWS row at `rows` tasks, straight to
    gunicorn."""
    cache = Cache(make_redis(stack.redis_url), 60)
    generations = Generations(cache)
    port = stack.ports["apps"][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks?order=title.asc&limit=50",
                                timeout=30) as response:
        cursor_page = json.load(response)["next"]
    column = {}
    for key, _, path, prefer in SCALE_ROWS:
        paths = (lambda: cursor_page) if key == "cursor" else (lambda p=path: p(rows))
        before = None if key == "item" else generations.bump
        column[key] = timed_gets("127.0.0.1", port, paths, prefer, before=before)
    cache.client.close()
    return column


def _client(source, port, next_request, seconds, results, lock):
    """One connection from `source` sending next_request() until `seconds` pass: statuses,
    latencies and 503s without Retry-After into `results`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    codes, slowest, latencies, bare_503 = Counter(), 0.0, [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path, headers = next_request()
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            codes[response.status] += 1
            bare_503 += response.status == 503 and not response.headers.get("Retry-After")
        except (OSError, http.client.HTTPException):
            codes["error"] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                              source_address=(source, 0))
        took = time.perf_counter() - started
        latencies.append(took)
        slowest = max(slowest, took)
    conn.close()
    with lock:
        results["statuses"].update(codes)
        results["slowest_s"] = max(results["slowest_s"], slowest)
        results["latencies"] += latencies
        results["503 without Retry-After"] += bare_503


def load(kind, port, rows, seconds):
    """Run in a process of its own: the eight ordinary clients ("readers") or the hostile one
    ("flood", at nice 19, 16 connections from 127.0.0.2); what they got."""
    results = {"statuses": Counter(), "slowest_s": 0.0, "latencies": [],
               "503 without Retry-After": 0}
    lock = threading.Lock()
    if kind == "readers":
        sources = [f"127.0.1.{i}" for i in range(1, 9)]

        def next_request():
            return ITEM % random.randint(1, rows), {}
    else:
        os.nice(19)
        sources = ["127.0.0.2"] * 16
        forty = "%20".join(random.choice("abcdefghijklmnopqrstuvwxyz") * 2 for _ in range(40))
        shapes = ("/api/tasks?q=xq&limit=", "/api/tasks?q=sample&limit=",
                  f"/api/tasks?q={forty}&limit=")

        def next_request():
            shape = random.randrange(3)
            return (shapes[shape] + str(random.randint(1, 500)),
                    {"Prefer": "count=exact"} if shape == 1 else {})
    threads = [threading.Thread(target=_client, args=(s, port, next_request, seconds, results,
                                                      lock)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(results.pop("latencies")) or [0.0]
    return {**results, "statuses": {str(k): v for k, v in results["statuses"].items()},
            "requests": len(latencies), "rps": round(len(latencies) / seconds, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "over_2s": sum(t > 2 for t in latencies)}


def abuse_row(stack, rows):
    """The ordinary clients' random item reads through nginx alone, then beside the flood."""
    port = stack.front(0)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        alone = pool.submit(load, "readers", port, rows, ABUSE_SECONDS).result()
        readers = pool.submit(load, "readers", port, rows, ABUSE_SECONDS)
        flood = pool.submit(load, "flood", port, rows, ABUSE_SECONDS)
        beside, flood = readers.result(), flood.result()
    ok = lambda r: r["statuses"].get("200", 0) / ABUSE_SECONDS  # noqa: E731
    return {"alone": alone, "beside": beside, "flood": flood,
            "ratio": round(ok(beside) / max(ok(alone), 1e-9), 2)}


def scale_and_abuse(state):
    """The scale table at each BENCH_SCALE size and the abuse row at the largest, on a stack of
    their own whose nginx has the budgets it is deployed with."""
    for name in UNLIMITED:
        os.environ.pop(name, None)
    stack = Stack(state_dir=state / "scale", http_port=free_port())
    columns, abuse, seeded = {}, None, 0
    try:
        stack.up()
        config = Config.from_env({}, DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url)
        with psycopg.connect(stack.owner_url, autocommit=True) as conn:
            seeded = conn.execute("select count(*) from tasks").fetchone()[0]
            for rows in sorted(SCALE):
                with open(os.devnull, "w") as quiet:
                    seed(config, rows - seeded, if_empty=False, out=quiet)
                seeded = rows
                conn.execute("vacuum analyze tasks")  # as autovacuum would, given the time
                columns[rows] = scale_rows(stack, rows)
        abuse = abuse_row(stack, seeded)
    finally:
        stack.down()
    return {"columns": {str(k): v for k, v in columns.items()}, "abuse": abuse,
            "abuse_rows": seeded}


def scale_checks(scale):
    """What must hold: no 5xx in the table; in the flood, no 5xx but 503 with Retry-After."""
    failed = []
    for rows, column in scale["columns"].items():
        for key, row in column.items():
            if any(int(code) >= 500 for code in row["statuses"]):
                failed.append(f"scale {rows} {key}: {row['statuses']}")
    for name in ("alone", "beside", "flood"):
        run = scale["abuse"][name]
        bad = {k: v for k, v in run["statuses"].items() if k == "error" or (
            k[0] == "5" and k != "503")}
        if bad or run["503 without Retry-After"]:
            failed.append(f"abuse {name}: {run['statuses']}")
    return failed


def report_scale(scale):
    """The scale table and the abuse row on stdout."""
    sizes = list(scale["columns"])
    print(f"\nscale, straight to gunicorn, every request an app cache miss; p50 ms (statuses "
          f"other than 200):")
    print(f"{'request':34}" + "".join(f"{int(n):>16,}" for n in sizes))
    for key, label, _, _ in SCALE_ROWS:
        cells = []
        for n in sizes:
            row = scale["columns"][n][key]
            other = ",".join(k for k in row["statuses"] if k != "200")
            applied = (row["applied"] or "").removeprefix("count=")
            cells.append(f"{row['p50_ms']:.2f}" + (f" ({other})" if other else "")
                         + (f" [{applied}]" if applied else ""))
        print(f"{label:34}" + "".join(f"{c:>16}" for c in cells))
    a = scale["abuse"]
    print(f"abuse, {scale['abuse_rows']:,} tasks, through nginx, {ABUSE_SECONDS:g} s each: "
          f"8 clients' random item reads alone {a['alone']['rps']:.0f}/s, beside the flood "
          f"{a['beside']['rps']:.0f}/s: {a['ratio']:.2f} x alone (target >= 0.5)")
    f = a["flood"]
    print(f"  the flood: {f['requests']} requests, statuses {f['statuses']}, slowest "
          f"{f['slowest_s']:.2f} s, {f['over_2s']} over 2 s (target 0)")


def median(values):
    return round(statistics.median(values), 2)


def summarize(scenarios, runs, writes):
    """Medians per row and ratios to each row's ceiling (median of the per-round ratios)."""
    rows = []
    for key, label, ceiling, _ in scenarios:
        mine = runs[key]
        row = {"key": key, "scenario": label, "vs": ceiling or "itself",
               "rps": median([r["rps"] for r in mine]), "p50_ms": median([r["p50_ms"] for r in mine]),
               "p99_ms": median([r["p99_ms"] for r in mine]),
               "errors": sum(r["errors"] for r in mine), "served_by": mine[-1]["served_by"],
               "rounds": [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "served_by")}
                          for r in mine]}
        base = runs[ceiling] if ceiling else mine
        row["ratio"] = median([m["rps"] / b["rps"] for m, b in zip(mine, base)])
        rows.append(row)
    if not writes:
        return rows, None
    runs_of = {"reads alone": lambda r: r["read-only"], "reads beside PATCHes":
               lambda r: r["mixed"]["reads"], "PATCHes": lambda r: r["mixed"]["writes"],
               "POST": lambda r: r["post"]}
    w = {name: {k: median([get(r)[k] for r in writes]) for k in ("rps", "p50_ms", "p99_ms")}
         for name, get in runs_of.items()}
    w["reads beside PATCHes"]["ratio"] = median(
        [r["mixed"]["reads"]["rps"] / r["read-only"]["rps"] for r in writes])
    w["PATCHes"]["share"] = median([r["mixed"]["writes"]["ok"] / max(
        1, r["mixed"]["writes"]["ok"] + r["mixed"]["reads"]["ok"]) for r in writes])
    w["rounds"] = writes
    return rows, w


def checks(runs, writes):
    """What must hold whatever the speed: no 5xx, every acknowledged write stored, no other."""
    failed = []
    for rnd, r in enumerate(writes, 1):
        named = {"reads alone": r["read-only"], "reads beside PATCHes": r["mixed"]["reads"],
                 "PATCHes": r["mixed"]["writes"], "POST": r["post"]}
        for name, run in named.items():
            if run["5xx"] or run["ok"] != sum(run["counts"].values()) - run["unanswered"]:
                failed.append(f"round {rnd} {name}: answers other than 200/201: {run['counts']}")
        for name in ("PATCHes", "POST"):  # every acknowledged write is stored; an unanswered
            run = named[name]              # request may or may not have been
            if not run["ok"] <= run["stored"] <= run["ok"] + run["unanswered"]:
                failed.append(f"round {rnd} {name}: {run['ok']} acknowledged, {run['stored']} "
                              f"stored, {run['unanswered']} unanswered")
    for key, mine in runs.items():
        if any(r["errors"] for r in mine):
            failed.append(f"{key}: {[r['errors'] for r in mine]} errors (non-2xx/3xx or socket)")
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="where to write the figures (default: in the state dir)")
    parser.add_argument("--scale-only", action="store_true",
                        help="only the scale table and the abuse row")
    options = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-bench-"))
    state.chmod(0o755)  # postgres and nginx workers run as other users
    json_path = Path(options.json) if options.json else state / "bench.json"
    if options.scale_only:
        scale = scale_and_abuse(state)
        json_path.write_text(json.dumps({"scale": scale}, indent=1))
        report_scale(scale)
        failed = scale_checks(scale)
        for failure in failed:
            print(f"CHECK FAILED: {failure}")
        return 1 if failed else 0
    stack = Stack(state_dir=state, http_port=free_port())
    os.environ.setdefault("CACHE_TTL", CACHE_TTL)  # the stack's gunicorn inherits it
    os.environ.update(UNLIMITED)  # read by the main stack's nginx as it starts
    try:
        stack.up()
        bench = Bench(stack, state)
        config = Config.from_env({}, DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url)
        with open(os.devnull, "w") as quiet:
            seed(config, ROWS, if_empty=False, out=quiet)
        bench.configure_nginx()
        bench.prime_edge()
        scenarios = bench.read_scenarios()
        if ONLY:
            keys = ONLY | {ceiling for key, _, ceiling, _ in scenarios if key in ONLY and ceiling}
            unknown = ONLY - {key for key, *_ in scenarios}
            if unknown:
                raise SystemExit(f"BENCH_ONLY: no such row: {', '.join(sorted(unknown))}")
            scenarios = [s for s in scenarios if s[0] in keys]
        runs = {key: [] for key, *_ in scenarios}
        by_key = {key: run for key, _, _, run in scenarios}
        for rnd in range(ROUNDS):
            for key in RUN_ORDER:
                if key in by_key:
                    runs[key].append(by_key[key](rnd))
        writes = [] if ONLY else [bench.write_round(stack.database_url) for _ in range(ROUNDS)]
        workers, threads, worker_class = bench.gunicorn()
        setup = {"gunicorn": f"{len(workers)} workers x {threads} threads ({worker_class})",
                 "nginx": "worker_processes auto", "cores": os.cpu_count(),
                 "wrk": f"-t{THREADS} -c{CONNECTIONS}", "rounds": ROUNDS, "seconds": SECONDS,
                 "rows": ROWS, "edge_primed": bench.primed}
        rss = bench.worker_rss()
    finally:
        stack.down()
    scale = None if ONLY else scale_and_abuse(state)
    rows, write_rows = summarize(scenarios, runs, writes)
    failed = checks(runs, writes) + (scale_checks(scale) if scale else [])
    figures = {"setup": setup, "rows": rows, "writes": write_rows, "worker_rss_mib": rss,
               "scale": scale, "checks_failed": failed}
    json_path.write_text(json.dumps(figures, indent=1))
    report(figures, json_path)
    if failed:
        print(f"kept for a look: {state}")
        return 1
    for path in state.iterdir():  # keep only the figures
        if path != json_path:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if json_path.parent != state:
        state.rmdir()
    return 0


def report(figures, json_path):
    """The tables on stdout."""
    s = figures["setup"]
    print(f"\ntasks-svc bench: gunicorn {s['gunicorn']}, nginx {s['nginx']}, {s['cores']} cores, "
          f"micro-cache in nginx's shared memory; wrk {s['wrk']}; {s['rounds']} interleaved "
          f"rounds x {s['seconds']:g} s, medians; {s['rows']} tasks; edge rows cycle over "
          f"{s['edge_primed']['list']} pages / {s['edge_primed']['item']} items")
    print(f"{'scenario':42} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}  {'vs':9} served by")
    for r in figures["rows"]:
        mix = ", ".join(f"{k} {v:g}%" for k, v in r["served_by"].items()) or "n/a"
        flag = f"  ({r['errors']} errors)" if r["errors"] else ""
        if r["key"].startswith("edge") and r["served_by"].get("edge", 0) < 90:
            flag += "  <- micro-cache hits: raise BENCH_PRIME_SECONDS"
        print(f"{r['scenario']:42} {r['rps']:8.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
              f"{r['ratio']:6.2f}  {r['vs']:9} {mix}{flag}")
    if figures["writes"]:
        report_writes_and_scale(figures)
    for failure in figures["checks_failed"]:
        print(f"CHECK FAILED: {failure}")
    print("ratio: req/s over its ceiling's in the same round (median of rounds); nginx rows vs "
          "the static file, app rows vs the app floor.")
    print(f"JSON: {json_path}")


def report_writes_and_scale(figures):
    """The writes, the app's miss latency, gunicorn's memory and the scale table on stdout."""
    w = figures["writes"]
    print(f"writes through nginx, random items of those primed; {CONNECTIONS} connections, "
          f"10 % of them PATCH beside the readers:")
    for name in ("reads alone", "reads beside PATCHes", "PATCHes", "POST"):
        r = w[name]
        extra = {"reads beside PATCHes": f"  {r.get('ratio', 0):.2f} x reads alone",
                 "PATCHes": f"  {100 * r.get('share', 0):.1f} % of the requests"}.get(name, "")
        print(f"  {name:40} {r['rps']:8.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f}{extra}")
    for rnd, r in enumerate(w["rounds"], 1):
        patch, post = r["mixed"]["writes"], r["post"]
        print(f"  round {rnd}: POST 201s {post['ok']} = rows written {post['stored']}; PATCH 200s "
              f"{patch['ok']} = versions added {patch['stored']}; unanswered "
              f"{post['unanswered'] + patch['unanswered']}")
    item = next(r for r in figures["rows"] if r["key"] == "app pg item")
    print(f"uncached item GET (app, PostgreSQL): p50 {item['p50_ms']:.2f} ms, p99 "
          f"{item['p99_ms']:.2f} ms: p99 = {item['p99_ms'] / max(item['p50_ms'], 1e-9):.1f} x p50 "
          "(target <= 5)")
    rss = figures["worker_rss_mib"]
    print("gunicorn worker RSS (MiB, now / peak): "
          + ", ".join(f"{r['VmRSS']:g} / {r['VmHWM']:g}" for r in rss) + " (target <= 80)")
    report_scale(figures["scale"])


if __name__ == "__main__":
    sys.exit(main())

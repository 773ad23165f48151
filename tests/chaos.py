"""make chaos: a bounded mixed load through nginx while Redis, a gunicorn worker and PostgreSQL
fail, then the checks: no acknowledged write lost or doubled, no stale read, no 5xx outside the
PostgreSQL outage; and each Redis layer's item hit ratio with and without writes.

    python tests/chaos.py [--phase-seconds S] [--short] [--json FILE]

Loopback only: a throwaway stack on free ports, a fixed number of client threads, a fixed time.
The test suite runs --short (tests/test_chaos.py).
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from helpers import redis_fault  # noqa: E402
from svc.admin import seed  # noqa: E402
from svc.config import Config  # noqa: E402
from stack import Stack, free_port  # noqa: E402

TASKS = 1000
ALLOWANCE_S = 2.0  # a micro-cache copy answers for 1 s; older data than 2 s is stale here
RETRY_FOR_S = 15.0  # a writer retries one write (same Idempotency-Key) this long at most
READERS, WRITERS = 6, 4  # writers send from their own loopback address: nginx limits per client


class Recorder:
    """Every answer the load got, and every write it was told succeeded."""

    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "start"
        self.answers = []  # (phase, kind, start, status or "error", headers, write's key)
        self.reads = []  # (start, phase, id, version, cache status) of each task seen
        self.acks = []  # (time, kind, key, id, version)

    def answer(self, kind, start, status, headers=None, key=None):
        with self.lock:
            self.answers.append((self.phase, kind, start, status, headers or {}, key))


def request(conn, method, path, body=None, headers=None):
    """One request on a kept-alive connection: (status, headers, parsed body or None)."""
    headers = dict(headers or {})
    if body is not None:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    parsed = json.loads(raw) if raw and response.getheader("Content-Type", "").endswith(
        "json") else None
    return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed


def reader(stack, rec, stop, seed):
    """GET random tasks and pages through nginx until `stop`."""
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports["http"], timeout=10)
    while not stop.is_set():
        task = rnd.randint(1, TASKS)
        path = f"/api/tasks/{task}" if rnd.random() < 0.8 else \
            f"/api/tasks?after={task - 1}&limit=5"
        start = time.monotonic()
        try:
            status, headers, body = request(conn, "GET", path)
        except (OSError, http.client.HTTPException):
            rec.answer("read", start, "error")
            conn.close()
            time.sleep(0.05)
            continue
        rec.answer("read", start, status, headers)
        if status == 200:
            items = body["items"] if "items" in body else [body]
            with rec.lock:
                rec.reads.extend((start, rec.phase, t["id"], t["version"],
                                  headers.get("x-cache-status")) for t in items)


def writer(stack, rec, stop, seed, rate=None):
    """POST and PATCH with Idempotency-Keys through nginx, retrying each with its key."""
    rnd = random.Random(seed)
    source = f"127.0.0.{2 + seed % 200}"

    def connect():
        return http.client.HTTPConnection("127.0.0.1", stack.ports["http"], timeout=10,
                                          source_address=(source, 0))

    conn = connect()
    while not stop.is_set():
        key = uuid.uuid4().hex
        if rnd.random() < 0.3:
            method, path, body = "POST", "/api/tasks", {"title": f"c-{key}"}
        else:
            method, path, body = "PATCH", f"/api/tasks/{rnd.randint(1, TASKS)}", {
                "title": f"p-{key}"}
        deadline = time.monotonic() + RETRY_FOR_S
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                status, headers, reply = request(conn, method, path, body,
                                                 {"Idempotency-Key": key})
            except (OSError, http.client.HTTPException):
                rec.answer("write", start, "error", key=key)
                conn.close()
                conn = connect()
                time.sleep(0.1)
                continue
            rec.answer("write", start, status, headers, key)
            if status in (200, 201):
                with rec.lock:
                    rec.acks.append((time.monotonic(), method, key, reply["id"],
                                     reply["version"]))
                break
            if status not in (409, 429, 502, 503, 504):
                break  # an answer to act on, not to retry
            time.sleep(0.2)
        if rate:
            time.sleep(1 / rate)


def workers(master):
    """gunicorn's worker PIDs."""
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(pid) for pid in f.read().split()]


def faults(stack):
    """(name, begin) per phase; begin() starts the fault and returns what ends it (or None)."""
    def redis(kind):
        return lambda: redis_fault(kind, stack.pid("redis"), stack.dir,
                                   lambda: stack.start("redis"))

    def kill_worker():
        os.kill(workers(stack.pid("gunicorn"))[0], signal.SIGKILL)

    def stop_postgres():
        stack.stop("postgres")
        return lambda: stack.start("postgres")

    return [("steady", lambda: None),
            ("redis killed, back with its data", redis("restarted with its data")),
            ("gunicorn worker SIGKILLed", kill_worker),
            ("postgresql restarted", stop_postgres),
            ("redis paused", redis("paused")),
            ("redis killed, back empty", redis("restarted empty"))]


def run_load(stack, rec, plan, phase_s, fault_s):
    """Readers and writers for every phase of `plan`; returns the PostgreSQL outage window."""
    stop = threading.Event()
    threads = [threading.Thread(target=reader, args=(stack, rec, stop, n)) for n in
               range(READERS)]
    threads += [threading.Thread(target=writer, args=(stack, rec, stop, 100 + n)) for n in
                range(WRITERS)]
    for t in threads:
        t.start()
    pg_window, recovery = None, {}
    try:
        for name, begin in plan:
            rec.phase = name
            began = time.monotonic()
            end = begin()
            if end:
                time.sleep(fault_s)
                end()
            ended = time.monotonic()
            if name.startswith("postgresql"):
                # From the requests in flight when it stopped to the pool's reconnection.
                pg_window = (began - 0.5, ended + 3.0)
            time.sleep(max(0.0, phase_s - (ended - began)))
            recovery[name] = ended
    finally:
        stop.set()
        for t in threads:
            t.join(RETRY_FOR_S + 5)
    return pg_window, recovery


def hit_ratios(stack, seconds):
    """Item hit ratio of the app's cache (gunicorn direct) and of the edge (through nginx),
    without writes and with 20 writes/s over the same tasks."""
    result = {}
    for port in (stack.ports["apps"][0], stack.ports["http"]):  # warm both layers
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for task in range(1, TASKS + 1):
            request(conn, "GET", f"/api/tasks/{task}")
    for writes in (0, 20):
        stop = threading.Event()
        rec = Recorder()
        threads = [threading.Thread(target=writer, args=(stack, rec, stop, 300 + n, 10))
                   for n in range(writes // 10)]
        for t in threads:
            t.start()
        for layer, port, header in (("app", stack.ports["apps"][0], "x-app-cache"),
                                    ("edge", stack.ports["http"], "x-edge-cache")):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            rnd, counts = random.Random(writes), Counter()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                status, headers, _ = request(conn, "GET", f"/api/tasks/{rnd.randint(1, TASKS)}")
                if layer == "edge" and headers.get("x-cache-status") not in ("MISS", "EXPIRED"):
                    continue  # the micro-cache answered: the edge was not asked
                counts[headers.get(header)] += 1
            result[f"{layer} @ {writes} writes/s"] = round(
                counts["HIT"] / max(1, sum(counts.values())), 3)
        stop.set()
        for t in threads:
            t.join(RETRY_FOR_S + 5)
    return result


def check(stack, rec, pg_window):
    """Lost, doubled and stale writes; 5xx outside the PostgreSQL outage."""
    with psycopg.connect(stack.database_url) as conn:
        titles = Counter(r[0] for r in conn.execute("select title from tasks"))
        versions = dict(conn.execute("select id, version from tasks"))
    lost = duplicates = 0
    patched = defaultdict(set)
    for _, method, key, task_id, version in rec.acks:
        if method == "POST":
            lost += titles[f"c-{key}"] == 0
            duplicates += titles[f"c-{key}"] > 1
        else:
            duplicates += version in patched[task_id]
            patched[task_id].add(version)
            lost += versions.get(task_id, 0) < version
    # A read is stale if it shows a version older than one acknowledged ALLOWANCE_S before it
    # began. nginx serves older copies on purpose only while the app fails (STALE) or while
    # one request refreshes the entry (UPDATING): counted apart.
    acked = defaultdict(list)
    for at, _, _, task_id, version in sorted(rec.acks):
        acked[task_id].append((at, version))
    stale = Counter()
    for start, _, task_id, version, cache in rec.reads:
        newest = max((v for at, v in acked[task_id] if at < start - ALLOWANCE_S), default=0)
        if version < newest:
            stale["by design (" + cache + ")" if cache in ("STALE", "UPDATING") else "stale"] += 1
    # A write in flight on the worker that was killed gets 502 from nginx (never retried by
    # it: not idempotent). The client cannot know if it was applied, so it retries with its
    # Idempotency-Key: such a 502 is expected once that retry was acknowledged.
    acked_keys = {key for _, _, key, _, _ in rec.acks}
    cut = [a for a in rec.answers if a[1] == "write" and a[3] == 502 and a[5] in acked_keys
           and a[0].startswith("gunicorn worker")]
    server_errors = [a for a in rec.answers if isinstance(a[3], int) and a[3] >= 500
                     and not (pg_window and pg_window[0] <= a[2] <= pg_window[1])
                     and a not in cut]
    no_retry_after = [a for a in rec.answers if a[3] == 503 and "retry-after" not in a[4]]
    for phase, kind, start, status, headers, _ in server_errors:
        print(f"5xx: {phase} {kind} {status} at {start - (pg_window or (start,))[0]:+.2f} s "
              f"from the PostgreSQL stop; cache={headers.get('x-cache-status')}", file=sys.stderr)
    return {"acknowledged writes": len(rec.acks), "lost": lost, "duplicates": duplicates,
            "stale reads": stale["stale"], "older copies served by design": sum(
                v for k, v in stale.items() if k != "stale"),
            "writes cut by the killed worker, then acknowledged on retry (502)": len(cut),
            "5xx outside the PostgreSQL outage": len(server_errors),
            "503 without Retry-After": len(no_retry_after)}


def table(rec, recovery):
    """Per phase: answers to reads and writes by class, and the seconds from the fault's end
    to the first acknowledged write after it."""
    rows = defaultdict(Counter)
    for phase, kind, _, status, _, _ in rec.answers:
        rows[phase][f"{kind} {status}"] += 1
    lines = []
    for phase, counts in rows.items():
        ended = recovery.get(phase)
        first = min((at for at, *_ in rec.acks if ended and at >= ended), default=None)
        back = f"{first - ended:.2f}" if first is not None else "-"
        lines.append({"phase": phase, **dict(sorted(counts.items())),
                      "first write after the fault (s)": back})
    return lines


def main():
    """Start the stack, seed, load it through the faults, print and check."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--phase-seconds", type=float, default=6.0)
    args.add_argument("--fault-seconds", type=float, default=2.0)
    args.add_argument("--short", action="store_true",
                      help="three phases of 3 s and a 2 s hit-ratio run (what CI runs)")
    args.add_argument("--json", help="also write the figures to this file")
    opts = args.parse_args()
    stack = Stack(state_dir=Path(tempfile.mkdtemp(prefix="tasks-svc-chaos-")),
                  http_port=free_port(), persistent_redis=True)
    try:
        stack.up()
        with psycopg.connect(stack.owner_url, autocommit=True) as conn:
            conn.execute("truncate tasks restart identity")
        seed(Config.from_env({}, DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url),
             TASKS, False, out=open(os.devnull, "w"))
        plan = faults(stack)
        if opts.short:
            plan = [plan[i] for i in (1, 2, 3)]
            opts.phase_seconds, opts.fault_seconds = 3.0, 1.0
        rec = Recorder()
        pg_window, recovery = run_load(stack, rec, plan, opts.phase_seconds, opts.fault_seconds)
        figures = {"phases": table(rec, recovery), "checks": check(stack, rec, pg_window),
                   "item hit ratio": hit_ratios(stack, 2.0 if opts.short else 5.0)}
    finally:
        stack.down()
    print(json.dumps(figures, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2))
    checks = figures["checks"]
    failed = [k for k in ("lost", "duplicates", "stale reads",
                          "5xx outside the PostgreSQL outage", "503 without Retry-After")
              if checks[k]]
    if failed:
        print("FAILED: " + ", ".join(failed) + f" (the stack's logs: {stack.dir})")
        return 1
    shutil.rmtree(stack.dir, ignore_errors=True)  # 60 MB of logs and data per run
    print("OK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

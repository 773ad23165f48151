"""make bench: throughput and latency of each layer of the read path, measured side by side.

Starts a throwaway stack (svc.stack) on 127.0.0.1, seeds 100,000 tasks and drives each layer
with wrk for a few seconds (BENCH_SECONDS, default 4). Machines are noisy: compare the ratios
to scenario 1, not the absolute numbers. Not collected by pytest (no test_ prefix).
"""

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from svc.admin import seed  # noqa: E402
from svc.config import Config  # noqa: E402
from svc.stack import Stack, free_port  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))
CONNECTIONS = 16
ROWS = 100_000
# "query": an ordered, filtered, searched page. q=<n>00 finds the seeded tasks ("... #<n>",
# "Sample task <n>, ...") whose number holds those digits: from a thousand (q=100) to none,
# and always three characters or more, so that the trigram index can serve it.
ENDPOINTS = {"list": "/api/tasks?limit=50&after=%d", "item": "/api/tasks/%d",
             "query": "/api/tasks?order=updated_at.desc&done=false&q=%d00&limit=50"}
# Scenario 4 needs over 2 s worth of edge-HIT traffic in distinct, pre-filled URIs (see there).
PRIME_SECONDS = int(os.environ.get("BENCH_PRIME_SECONDS", "15"))
NO_CACHE = ("-H", "Cache-Control: no-cache")
MICRO = {"HIT", "STALE", "UPDATING", "REVALIDATED"}  # $upstream_cache_status served by nginx
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


def wrk(url, seconds, headers=(), walk=None, threads=2, lua=None):
    """Run wrk; returns req/s, p50/p99 in ms, completed requests and errors, from its output."""
    cmd = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", *headers]
    cmd += ["-s", lua, url, "--", *map(str, walk), str(threads)] if walk else [url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    pct = {p: float(v) * scale[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$",
                                                            out, re.M)}
    errors = sum(map(int, re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)"
                                     r":? (\d+)", out)))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "p50_ms": pct["50"],
            "p99_ms": pct["99"], "requests": int(re.search(r"(\d+) requests in", out)[1]),
            "errors": errors}


def served_by(logs, before):
    """Share of the run's requests each layer answered, from nginx's and gunicorn's access logs."""
    front, app = (p.read_bytes()[b:].decode(errors="replace") if p.exists() else ""
                  for p, b in zip(logs, before))
    counts = Counter()
    for cache, edge in re.findall(r"cache=(\S*) edge=(\S*)$", front, re.M):
        if cache in MICRO or edge == "HIT":  # the rest reached the app: its own log says how
            counts["micro" if cache in MICRO else "edge"] += 1
    counts.update("app " + c for c in re.findall(r'"cache": "(HIT|MISS)"', app))
    total = sum(counts.values()) or 1
    return {k: round(100 * v / total, 1) for k, v in counts.most_common() if v}


def measure(label, url, logs, lua, headers=(), walk=None, warm_walk=None, warm=True):
    """Warm up (1 s), then one measured wrk run with the layer mix it actually hit."""
    if warm:
        wrk(url, 1, headers, warm_walk or walk, lua=lua)
    before = [p.stat().st_size if p.exists() else 0 for p in logs]
    result = wrk(url, SECONDS, headers, walk, lua=lua)
    return {"scenario": label, **result, "served_by": served_by(logs, before)}


def bench_endpoint(stack, pattern, logs, lua):
    """Scenarios 1-5 for one URL shape; returns their rows."""
    app, front = f"http://127.0.0.1:{stack.ports['app']}", stack.base_url
    fixed = pattern % (0 if "after" in pattern else 1)  # one URL, repeated: every cache hits
    rows = [
        # Distinct URIs: each request misses the app cache (a real miss: Redis lookups, a
        # PostgreSQL query, then the fill). The warm-up walks other URIs.
        measure("1 direct, app MISS -> PostgreSQL", app, logs, lua, walk=(pattern, 1, 60_000),
                warm_walk=(pattern, 70_001, 20_000)),
        measure("2 direct, app Redis HIT", app + fixed, logs, lua),
        measure("3 nginx no-cache -> app HIT", front + fixed, logs, lua, NO_CACHE),
    ]
    # 4: nginx's micro-cache keeps an entry 1-2 s (1 s at one-second granularity), the Redis
    # edge cache 60 s. Fill the edge with distinct URIs (this also warms up), wait until all
    # their micro entries expired, then cycle over them: each request is a micro EXPIRED/MISS
    # served by the edge, as long as the cycle takes over 2 s (see "served by").
    filled = wrk(front, PRIME_SECONDS, walk=(pattern, 1, 60_000), threads=1, lua=lua)
    primed = filled["requests"] - CONNECTIONS  # requests still in flight at the stop may be lost
    time.sleep(2.2)
    rows.append(measure(f"4 nginx edge HIT ({primed} URIs)", front, logs, lua,
                        walk=(pattern, 1, primed), warm=False))
    rows.append(measure("5 nginx micro-cache HIT", front + fixed, logs, lua))
    for row in rows:
        row["x_rps"] = round(row["rps"] / rows[0]["rps"], 2)
        row["x_p50"] = round(rows[0]["p50_ms"] / row["p50_ms"], 2)
    return rows


def gunicorn_settings(stack):
    """Workers (the master's children) and threads (conf/gunicorn.conf.py, same environment)."""
    pid = stack.pid("gunicorn")
    workers = len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    conf = runpy.run_path(str(ROOT / "conf" / "gunicorn.conf.py"))
    return f"gunicorn {workers} workers x {conf['threads']} threads ({conf['worker_class']})"


def main():
    state = tempfile.mkdtemp(prefix="tasks-svc-bench-")
    os.chmod(state, 0o755)  # postgres and nginx workers run as other users
    lua = Path(state) / "walk.lua"
    lua.write_text(WALK_LUA)
    stack = Stack(state_dir=state, http_port=free_port())
    logs = (Path(state) / "nginx" / "access.log", Path(state) / "gunicorn.log")
    try:
        stack.up()
        config = Config.from_env({}, DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url)
        with open(os.devnull, "w") as quiet:
            seed(config, ROWS, if_empty=False, out=quiet)
        setup = (f"{gunicorn_settings(stack)}, nginx worker_processes auto, {os.cpu_count()} "
                 f"cores; wrk -t2 -c{CONNECTIONS} -d{SECONDS}s; {ROWS} tasks")
        results = {name: bench_endpoint(stack, pattern, logs, str(lua))
                   for name, pattern in ENDPOINTS.items()}
    finally:
        stack.down()
    report(setup, results)
    shutil.rmtree(state, ignore_errors=True)  # kept (with its logs) if anything failed


def report(setup, results):
    """The table on stdout, the same figures as JSON in a temp file."""
    print(f"\ntasks-svc read path: {setup}")
    print(f"{'':5} {'scenario':34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'x req/s':>8} "
          f"{'x p50':>6}  served by")
    for name, rows in results.items():
        for r in rows:
            mix = ", ".join(f"{k} {v:g}%" for k, v in r["served_by"].items()) or "n/a"
            errors = f"  ({r['errors']} errors)" if r["errors"] else ""
            if r["scenario"].startswith("4") and r["served_by"].get("edge", 0) < 90:
                errors += "  <- too few URIs: raise BENCH_PRIME_SECONDS"
            print(f"{name:5} {r['scenario']:34} {r['rps']:8.0f} {r['p50_ms']:7.2f} "
                  f"{r['p99_ms']:7.2f} {r['x_rps']:8.2f} {r['x_p50']:6.2f}  {mix}{errors}")
    print("x req/s, x p50: this row vs scenario 1 of the same endpoint (higher is better).")
    fd, path = tempfile.mkstemp(prefix="tasks-svc-bench-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump({"setup": setup, "results": results}, out, indent=1)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()

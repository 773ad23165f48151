"""make fuzz: schemathesis against the served OpenAPI document on a throwaway app.

Starts PostgreSQL, Redis and gunicorn on free loopback ports, runs `st run` with every check
(every schema-valid request must be accepted, every invalid one refused with a 4xx, no 5xx,
every response as documented), prints its summary and exits with its status. The test suite
runs the same command with a few examples per operation (test_openapi_fuzz.py).

    python tests/fuzz.py [--max-examples N] [--seed S]
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stack  # noqa: E402
from svc.admin import migrate  # noqa: E402
from svc.config import Config  # noqa: E402

CHECKS = "all"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def st_env():
    """The environment st runs in: our hooks module importable, and svc with it."""
    tests = Path(__file__).resolve().parent
    path = os.pathsep.join(filter(None, [str(tests), str(tests.parent),
                                         os.environ.get("PYTHONPATH")]))
    return {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": path}


def st_command(base_url, max_examples, seed=None, token=None):
    """The schemathesis command line for the app at `base_url` (run it with st_env()); with
    `token`, every request carries it (the app's API_TOKENS), and ignored_auth checks that
    writes without it fail."""
    st = Path(sys.executable).with_name("st")
    cmd = [str(st), "--config-file", str(CONFIG), "run", f"{base_url}/api/openapi.json",
           "--checks", CHECKS,
           "--max-examples", str(max_examples), "--workers", "1", "--no-color",
           "--generation-database", "none", "--suppress-health-check", "all",
           "--request-timeout", "10"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if token is not None:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return cmd


def main():
    """Start the throwaway app, fuzz it, stop it."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES",
                                                                             "300")))
    args.add_argument("--seed", type=int)
    opts = args.parse_args()
    state = Path(tempfile.mkdtemp(prefix="tasks-svc-fuzz-"))
    state.chmod(0o755)
    pg_dir, pids = state / "postgres", []
    try:
        database_url = stack.start_postgres(pg_dir, stack.free_port())
        redis_url, redis_pid = stack.start_redis(state, stack.free_port())
        pids.append(redis_pid)
        migrate(Config.from_env({}, DATABASE_URL=database_url, REDIS_URL=redis_url), "apply",
                out=io.StringIO())
        port = stack.free_port()
        pids.append(stack.start_app(state, port, {"DATABASE_URL": database_url,
                                                  "REDIS_URL": redis_url,
                                                  "GUNICORN_ACCESS_LOG": "/dev/null"}))
        return subprocess.run(st_command(f"http://127.0.0.1:{port}", opts.max_examples,
                                         opts.seed), env=st_env()).returncode
    finally:
        for pid in reversed(pids):
            stack.stop_pid(pid)
        stack.stop_postgres(pg_dir)


if __name__ == "__main__":
    sys.exit(main())

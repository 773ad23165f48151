"""The topology without Docker: throwaway PostgreSQL, Redis, gunicorn and nginx on loopback.

`make up` / `make down` drive it through `python -m svc stack up|down`; the tests start the
same servers through the same functions. Every process is stopped by the PID it was started
with.
"""

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .admin import migrate, seed
from .config import Config

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = ROOT / ".stack"
NGINX_TEMPLATE = ROOT / "conf" / "nginx" / "nginx.conf"
NGINX_USER = "nobody"  # nginx workers' user when the master runs as root
SHM = Path("/dev/shm")  # memory: nginx's micro-cache goes there when it can


class StackError(RuntimeError):
    """A server did not start."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=30.0):
    """Poll `check()` until it is true, or raise naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise StackError(f"{what} did not come up within {timeout:.0f} s")


def _port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def pid_alive(pid):
    """True if `pid` runs (a child that exited is reaped here, so it does not count)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_pid(pid, sig=signal.SIGTERM, timeout=15.0):
    """Signal `pid`, wait for it to exit, SIGKILL it if it will not."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)


def _owned_by(path, user):
    """Make the directory `path` belong to `user` when we are root; else leave it.

    Not recursive: nginx creates and chowns its own cache and temp directories, and a cache
    can hold many files.
    """
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _spawn(cmd, log, env=None):
    """Start a long-running server detached from our session, logging to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)


# PostgreSQL ------------------------------------------------------------------------------

def pg_bin(tool):
    """Path of a PostgreSQL server tool (PG_BIN, else the newest Debian install)."""
    dirs = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if os.access(os.path.join(d, tool), os.X_OK):
            return os.path.join(d, tool)
    raise StackError(f"{tool} not found: install postgresql or set PG_BIN")


def _as_postgres(cmd):
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(data_dir, port):
    """Init (once) and start a cluster in `data_dir` on 127.0.0.1:`port`; returns its URL."""
    data_dir = Path(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        _owned_by(data_dir, "postgres")
        subprocess.run(_as_postgres([pg_bin("initdb"), "-D", str(data_dir), "-U", "postgres",
                                     "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, capture_output=True)
    # Throwaway data: durability settings off for speed.
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {data_dir} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    result = subprocess.run(_as_postgres([pg_bin("pg_ctl"), "-D", str(data_dir), "-o", options,
                                          "-l", str(data_dir / "server.log"), "-w", "start"]),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"PostgreSQL did not start: {result.stderr or result.stdout}"
                         f"(see {data_dir / 'server.log'})")
    subprocess.run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-qc",
                    "create database tasks"], capture_output=True)  # fails harmlessly if it exists
    return f"postgresql://postgres@127.0.0.1:{port}/tasks"


def postgres_pid(data_dir):
    """The postmaster's PID from its pid file, or None."""
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_postgres(data_dir):
    """Stop the cluster in `data_dir` by its postmaster PID (fast shutdown)."""
    pid = postgres_pid(data_dir)
    if pid:
        stop_pid(pid, signal.SIGINT)


# Redis -----------------------------------------------------------------------------------

def start_redis(state_dir, port, persistent=False):
    """Start redis-server on 127.0.0.1:`port`, memory-only unless `persistent` (then every
    write goes to an fsynced append-only file in `state_dir`, and a restart brings it all
    back); returns (URL, PID)."""
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else [
        "--appendonly", "no"]
    proc = _spawn([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   *persistence, "--dir", str(state_dir)], Path(state_dir) / "redis.log")
    wait_for(lambda: proc.poll() is None and _port_open(port), f"redis-server on port {port}")
    return f"redis://127.0.0.1:{port}/0", proc.pid


# gunicorn and nginx ----------------------------------------------------------------------

def start_app(state_dir, port, env):
    """Start gunicorn with conf/gunicorn.conf.py on 127.0.0.1:`port`; returns its master PID."""
    # Two workers unless the caller's WEB_CONCURRENCY says otherwise: enough on a laptop.
    env = {"WEB_CONCURRENCY": "2", **os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}", **env}
    proc = _spawn([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "conf" / "gunicorn.conf.py"),
                   "svc.wsgi:app"], Path(state_dir) / "gunicorn.log", env)
    wait_for(lambda: proc.poll() is None and _http_ok(f"http://127.0.0.1:{port}/api/health"),
             f"gunicorn on port {port} (see {Path(state_dir) / 'gunicorn.log'})")
    return proc.pid


def render_nginx(state_dir, values):
    """Write conf/nginx/nginx.conf with `values` filled in to `state_dir`; returns its path."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    defaults = {"STATE_DIR": str(state_dir), "CONF_DIR": str(NGINX_TEMPLATE.parent),
                "RESOLVER": "127.0.0.1", "EDGE_TTL": "60"}
    text = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute({**defaults, **values})
    conf = state_dir / "nginx.conf"
    conf.write_text(text)
    _owned_by(state_dir, NGINX_USER)
    return conf


def nginx_binary():
    """The nginx executable."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


def micro_cache_in_memory(state_dir):
    """Make STATE_DIR/microcache a link to a new directory in /dev/shm, if it is writable:
    every edge hit writes a micro-cache file, and a file system on disk makes that the edge's
    main cost. free_micro_cache removes it."""
    link = Path(state_dir) / "microcache"
    if link.is_symlink() and link.resolve().is_dir():
        return  # nginx restarted: keep its cache
    free_micro_cache(state_dir)
    if link.exists() or not os.access(SHM, os.W_OK):
        return  # a directory from before, or no /dev/shm: the cache stays in STATE_DIR
    target = tempfile.mkdtemp(prefix="tasks-svc-micro-", dir=SHM)
    _owned_by(target, NGINX_USER)
    link.symlink_to(target)


def free_micro_cache(state_dir):
    """Delete the micro-cache that micro_cache_in_memory put in /dev/shm, and its link."""
    link = Path(state_dir) / "microcache"
    if link.is_symlink():
        shutil.rmtree(os.readlink(link), ignore_errors=True)
        link.unlink()


def start_nginx(state_dir, port, app_port, redis_port):
    """Start nginx in the foreground of a detached process; returns its master PID."""
    conf = render_nginx(state_dir, {"LISTEN": f"127.0.0.1:{port}",
                                    "APP_UPSTREAM": f"127.0.0.1:{app_port}",
                                    "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port)})
    micro_cache_in_memory(state_dir)
    # A killed nginx leaves its socket behind, and then cannot bind it again.
    (Path(state_dir) / "edge.sock").unlink(missing_ok=True)
    proc = _spawn([nginx_binary(), "-p", str(state_dir), "-c", str(conf), "-g", "daemon off;"],
                  Path(state_dir) / "nginx.out")
    wait_for(lambda: proc.poll() is None and _http_ok(f"http://127.0.0.1:{port}/api/health"),
             f"nginx on port {port} (see {Path(state_dir)})")
    return proc.pid


def _http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# The whole stack -------------------------------------------------------------------------

class Stack:
    """PostgreSQL, Redis, gunicorn and nginx with their state (and pid files) in one folder."""

    ORDER = ("postgres", "redis", "gunicorn", "nginx")  # start order; stopped in reverse

    def __init__(self, state_dir=STACK_DIR, http_port=8080, persistent_redis=False):
        self.dir = Path(state_dir)
        self.persistent_redis = persistent_redis  # the fault tests restart Redis with its data
        self.ports_file = self.dir / "ports.json"
        if self.ports_file.exists():  # a stack that is up keeps the ports it started with
            self.ports = json.loads(self.ports_file.read_text())
        else:
            self.ports = {"http": http_port}
        self.base_url = f"http://127.0.0.1:{self.ports['http']}"

    @property
    def database_url(self):
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/tasks"

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    def pid(self, name):
        """The PID recorded for `name`, or None."""
        if name == "postgres":
            return postgres_pid(self.dir / "postgres")
        try:
            return int((self.dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def running(self):
        """True if every process of the stack is alive."""
        return all(p and pid_alive(p) for p in map(self.pid, self.ORDER))

    def up(self):
        """Start everything, migrate, seed an empty table, wait for health through nginx."""
        if self.running():
            return self.base_url
        self.down()  # a half-started stack from before: clear it
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # postgres and nginx workers run as other users
        self.ports.update(postgres=free_port(), redis=free_port(), app=free_port())
        self.ports_file.write_text(json.dumps(self.ports))
        self.start("postgres")
        self.start("redis")
        config = Config.from_env({}, DATABASE_URL=self.database_url, REDIS_URL=self.redis_url)
        with open(os.devnull, "w") as quiet:
            migrate(config, "apply", out=quiet)
            seed(config, 20, if_empty=True, out=quiet)
        self.start("gunicorn")
        self.start("nginx")
        return self.base_url

    def start(self, name):
        """Start one server of the stack on its recorded port."""
        if name == "postgres":
            start_postgres(self.dir / "postgres", self.ports["postgres"])
            return
        if name == "redis":
            pid = start_redis(self.dir, self.ports["redis"], self.persistent_redis)[1]
        elif name == "gunicorn":
            pid = start_app(self.dir, self.ports["app"],
                            {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url})
        else:
            pid = start_nginx(self.dir / "nginx", self.ports["http"], self.ports["app"],
                              self.ports["redis"])
        (self.dir / f"{name}.pid").write_text(str(pid))

    def stop(self, name):
        """Stop one server of the stack by its PID."""
        if name == "postgres":
            stop_postgres(self.dir / "postgres")
            return
        pid = self.pid(name)
        if pid:
            stop_pid(pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        (self.dir / f"{name}.pid").unlink(missing_ok=True)
        if name == "nginx":
            free_micro_cache(self.dir / "nginx")

    def down(self):
        """Stop every process this stack started, by PID."""
        for name in reversed(self.ORDER):
            self.stop(name)
        self.ports_file.unlink(missing_ok=True)


def main(action):
    """python -m svc stack up|down|status."""
    stack = Stack(http_port=int(os.environ.get("HTTP_PORT", "8080")))
    if action == "up":
        was_running = stack.running()
        try:
            url = stack.up()
        except (StackError, OSError, subprocess.CalledProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            stack.down()
            return 1
        print(f"{'already up' if was_running else 'up'}: {url}  (try: curl -s {url}/api/tasks)")
    elif action == "down":
        stack.down()
        print("down")
    else:
        print(f"up: {stack.base_url}" if stack.running() else "down")
        return 0 if stack.running() else 1
    return 0

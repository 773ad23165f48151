"""The topology without Docker: throwaway PostgreSQL, Redis, gunicorn and nginx on loopback.

`make up` / `make down` run this file (`python tests/stack.py up|down|status`); the tests start
the same servers through the same functions. It is tooling for a checkout, not part of the app:
the image holds svc/ alone. Every process is stopped by the PID it was started
with.
"""

import glob
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (make up): the checkout's svc/
    sys.path.insert(0, str(ROOT))

from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from svc.admin import migrate, seed  # noqa: E402
from svc.config import Config, ConfigError  # noqa: E402

STACK_DIR = ROOT / ".stack"
NGINX_TEMPLATE = ROOT / "conf" / "nginx" / "nginx.conf"
NGINX_USER = "nobody"  # nginx workers' user when the master runs as root
APP_ROLE = "tasks_app"  # the app's PostgreSQL login, as in compose and conf/k8s
ROLE_SCRIPT = ROOT / "conf" / "db-app-role.sh"  # compose's init script, run here too
# Passwords of the stack: from the environment if set there, else new ones for each `up`.
SECRETS = ("APP_DB_PASSWORD", "REDIS_PASSWORD")


class StackError(RuntimeError):
    """A server did not start."""


def _ephemeral_floor():
    """The lowest port the kernel gives outgoing connections (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(taken=()):
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one of `taken`.

    Chosen below the kernel's range for outgoing connections: a server is started some seconds
    after its port is chosen, and in between any client's connection (to PostgreSQL, Redis,
    ...) could take a port from that range, so that the server could not bind it.
    """
    floor = _ephemeral_floor()
    while True:
        port = random.randrange(10_000, floor) if floor > 11_000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in taken:
            return port


def wait_for(check, what, timeout=30.0, proc=None, log=None):
    """Poll `check()` until it is true, or raise naming `what`; if the process `proc` exits
    first, raise at once with the reason its `log` gives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited: {exit_reason(log)}"
                             + (f" (log: {log})" if log else ""))
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise StackError(f"{what} did not come up within {timeout:.0f} s")


# What a server that exited says about why, most telling first: our configuration message,
# nginx's fatal error, a socket already taken, any other error line.
REASONS = (r"ConfigError: (.+)", r"\[emerg\] (.+)", r"((?:Connection in use|Address already in "
           r"use).*)", r"\b\w*Error: (.+)")


def exit_reason(log):
    """The line of `log` that says why its server exited, without the traceback around it."""
    try:
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines()]
    except (OSError, TypeError):
        return "no log"
    for pattern in REASONS:
        for line in lines:  # the first such line: later ones follow from it
            if found := re.search(pattern, line):
                return found[1]
    return next((line for line in reversed(lines) if line), "no output")


def check_free(port, setting):
    """Raise naming `setting` if something listens on 127.0.0.1:`port` already."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise StackError(f"port {port} ({setting}) is taken; stop what listens there "
                             f"or choose another {setting}")


def _port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def pid_alive(pid):
    """True if `pid` runs. A child that exited is reaped here; another process's zombie (a
    server whose starter, `make up`, has exited waits for init to reap it) does not count."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # the state follows the parenthesized command name: "pid (comm) Z ..."
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc here: kill(0) is all we know


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


def create_app_role(owner_url, role, password):
    """Create (or re-password) the login `role` with conf/db-app-role.sh, connecting as the
    owner in `owner_url`; returns the conninfo string that logs in as `role`."""
    params = conninfo_to_dict(owner_url)
    env = {**os.environ, "PATH": f"{Path(pg_bin('psql')).parent}:{os.environ.get('PATH', '')}",
           "POSTGRES_USER": params.get("user", ""), "POSTGRES_DB": params.get("dbname", ""),
           "APP_DB_USER": role, "APP_DB_PASSWORD": password}
    for key, name in (("host", "PGHOST"), ("port", "PGPORT"), ("password", "PGPASSWORD")):
        if params.get(key):
            env[name] = str(params[key])
    result = subprocess.run(["sh", str(ROLE_SCRIPT)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"{ROLE_SCRIPT.name} failed: {result.stderr.strip()}")
    return make_conninfo(owner_url, user=role, password=password)


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

def start_redis(state_dir, port, password=None, persistent=False):
    """Start redis-server on 127.0.0.1:`port`, asking clients for `password` if given, and
    memory-only unless `persistent` (then every write goes to an fsynced append-only file in
    `state_dir`, and a restart brings it all back); returns (URL, PID), the URL carrying the
    password."""
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    auth = ["--requirepass", password] if password else []
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else [
        "--appendonly", "no"]
    proc = _spawn([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   *persistence, "--dir", str(state_dir), *auth],
                  Path(state_dir) / "redis.log")
    wait_for(lambda: _port_open(port), f"redis-server on port {port}", proc=proc,
             log=Path(state_dir) / "redis.log")
    return f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0", proc.pid


# gunicorn and nginx ----------------------------------------------------------------------

def start_app(state_dir, port, env):
    """Start gunicorn with conf/gunicorn.conf.py on 127.0.0.1:`port`; returns its master PID."""
    # Two workers unless the caller's WEB_CONCURRENCY says otherwise: enough on a laptop.
    # The caller's environment passes through (API_TOKENS, GUNICORN_THREADS, ...).
    # Metrics files of its own (conf/gunicorn.conf.py empties the folder at start).
    env = {"WEB_CONCURRENCY": "2", **os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}",
           "PROMETHEUS_MULTIPROC_DIR": str(Path(state_dir) / "prometheus"), **env}
    log = Path(state_dir) / "gunicorn.log"
    proc = _spawn([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "conf" / "gunicorn.conf.py"),
                   "svc.wsgi:app"], log, env)
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/api/health"), f"gunicorn on port {port}",
             proc=proc, log=log)
    return proc.pid


def render_nginx(state_dir, values):
    """Write conf/nginx/nginx.conf with `values` filled in to `state_dir`; returns its path."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    defaults = {"STATE_DIR": str(state_dir), "CONF_DIR": str(NGINX_TEMPLATE.parent),
                "RESOLVER": "127.0.0.1", "CORS_ORIGINS": ""}
    text = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute({**defaults, **values})
    conf = state_dir / "nginx.conf"
    conf.write_text(text)
    _owned_by(state_dir, NGINX_USER)
    return conf


def nginx_binary():
    """The nginx executable."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


def app_servers(addresses):
    """APP_SERVERS for the nginx template: an upstream line per gunicorn node ("host:port"); a
    node that fails is left alone for 2 s, then tried again."""
    return " ".join(f"server {address} max_fails=1 fail_timeout=2s;" for address in addresses)


def start_nginx(state_dir, port, app_ports, redis_port, metrics_port, redis_password=None,
                cors_origins=""):
    """Start nginx in the foreground of a detached process, balancing over the gunicorn nodes
    on `app_ports`, letting browsers on `cors_origins` (CORS_ORIGINS) call it; returns its
    master PID. Its metrics listener (METRICS_LISTEN) is on loopback, like everything here.

    The Redis password reaches the Lua client through the environment (`env REDIS_PASSWORD;`),
    never through the rendered file.
    """
    conf = render_nginx(state_dir, {"LISTEN": f"127.0.0.1:{port}",
                                    "METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                                    "APP_SERVERS": app_servers(f"127.0.0.1:{p}" for p in app_ports),
                                    "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port),
                                    "CORS_ORIGINS": cors_origins})
    env = {**os.environ, "REDIS_PASSWORD": redis_password or ""}
    proc = _spawn([nginx_binary(), "-p", str(state_dir), "-c", str(conf), "-g", "daemon off;"],
                  Path(state_dir) / "nginx.out", env)
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/api/health"), f"nginx on port {port}",
             proc=proc, log=Path(state_dir) / "nginx.out")
    return proc.pid


def _http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# The whole stack -------------------------------------------------------------------------

class Stack:
    """PostgreSQL, Redis, and `nodes` gunicorn and nginx nodes, with their state (and pid files)
    in one folder. Node 0 is "gunicorn" and "nginx", node i "gunicorn-i" and "nginx-i"; every
    nginx front (on http_port + i) balances over every gunicorn node. `cors_origins`: nginx's
    CORS_ORIGINS."""

    def __init__(self, state_dir=STACK_DIR, http_port=8080, persistent_redis=False, nodes=1,
                 cors_origins=""):
        self.dir = Path(state_dir)
        self.cors_origins = cors_origins
        self.persistent_redis = persistent_redis  # the fault tests restart Redis with its data
        self.ports_file = self.dir / "ports.json"
        self.secrets_file = self.dir / "secrets.json"
        if self.ports_file.exists():  # a stack that is up keeps the ports (and nodes) it has
            self.ports = json.loads(self.ports_file.read_text())
        else:
            self.ports = {"http": http_port, "nodes": nodes}
        self.secrets = (json.loads(self.secrets_file.read_text())
                        if self.secrets_file.exists() else {})
        self.base_url = f"http://127.0.0.1:{self.ports['http']}"

    @property
    def owner_url(self):
        """The schema owner (the cluster's superuser here): migrations, tests' cleanup."""
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/tasks"

    @property
    def database_url(self):
        """The app's least-privilege role."""
        return (f"postgresql://{APP_ROLE}:{self.secrets['APP_DB_PASSWORD']}"
                f"@127.0.0.1:{self.ports['postgres']}/tasks")

    @property
    def redis_url(self):
        """Redis, with the password it asks for."""
        return f"redis://:{self.secrets['REDIS_PASSWORD']}@127.0.0.1:{self.ports['redis']}/0"

    @property
    def order(self):
        """The servers in start order (stopped in reverse)."""
        nodes = range(self.ports.get("nodes", 1))
        return ("postgres", "redis", *map(_node("gunicorn"), nodes), *map(_node("nginx"), nodes))

    def front(self, node):
        """The HTTP port of nginx node `node`."""
        return self.ports["http"] + node

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
        return all(p and pid_alive(p) for p in map(self.pid, self.order))

    def up(self):
        """Start everything, migrate, seed an empty table, wait for health through nginx."""
        if self.running():
            return self.base_url
        self.down()  # a half-started stack from before: clear it
        nodes = self.ports["nodes"]
        # The fronts' ports (http_port + i) are only bound later: keep the others off them.
        taken = {self.front(i) for i in range(nodes)}
        for front in taken:
            check_free(front, "HTTP_PORT")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # postgres and nginx workers run as other users

        def port():
            chosen = free_port(taken)
            taken.add(chosen)
            return chosen

        self.ports.update(postgres=port(), redis=port(), apps=[port() for _ in range(nodes)],
                          metrics=[port() for _ in range(nodes)])
        self.ports_file.write_text(json.dumps(self.ports))
        self.secrets = {name: os.environ.get(name) or secrets.token_hex(16) for name in SECRETS}
        self.secrets_file.touch(mode=0o600)
        self.secrets_file.write_text(json.dumps(self.secrets))
        # The app's settings from this environment, checked before anything starts: a bad one
        # stops `up` at once with its message, not a worker that fails to boot.
        config = Config.from_env(None, DATABASE_URL=self.database_url,
                                 MIGRATE_DATABASE_URL=self.owner_url, REDIS_URL=self.redis_url)
        self.start("postgres")
        self.start("redis")
        create_app_role(self.owner_url, APP_ROLE, self.secrets["APP_DB_PASSWORD"])
        with open(os.devnull, "w") as quiet:
            migrate(config, "apply", out=quiet)
            seed(config, 20, if_empty=True, out=quiet)
        for name in self.order[2:]:
            self.start(name)
        return self.base_url

    def start(self, name):
        """Start one server of the stack on its recorded port."""
        if name == "postgres":
            start_postgres(self.dir / "postgres", self.ports["postgres"])
            return
        if name == "redis":
            pid = start_redis(self.dir, self.ports["redis"], self.secrets["REDIS_PASSWORD"],
                              self.persistent_redis)[1]
        elif name.startswith("gunicorn"):
            state = self.dir / name
            state.mkdir(exist_ok=True)
            pid = start_app(state, self.ports["apps"][_index(name)],
                            {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url})
        else:
            node = _index(name)
            pid = start_nginx(self.dir / name, self.front(node), self.ports["apps"],
                              self.ports["redis"], self.ports["metrics"][node],
                              self.secrets["REDIS_PASSWORD"], self.cors_origins)
        (self.dir / f"{name}.pid").write_text(str(pid))

    def stop(self, name):
        """Stop one server of the stack by its PID."""
        if name == "postgres":
            stop_postgres(self.dir / "postgres")
            return
        pid = self.pid(name)
        if pid:
            stop_pid(pid, signal.SIGQUIT if name.startswith("nginx") else signal.SIGTERM)
        (self.dir / f"{name}.pid").unlink(missing_ok=True)

    def down(self):
        """Stop every process this stack started, by PID; True if any was running."""
        ran = False
        for name in reversed(self.order):
            pid = self.pid(name)
            ran = ran or bool(pid and pid_alive(pid))
            self.stop(name)
        self.ports_file.unlink(missing_ok=True)
        self.secrets_file.unlink(missing_ok=True)
        return ran



def _node(kind):
    """Name of node i of `kind`: "gunicorn", "gunicorn-1", ..."""
    return lambda i: kind if i == 0 else f"{kind}-{i}"


def _index(name):
    """The node number in a name made by _node."""
    return int(name.rpartition("-")[2]) if "-" in name else 0


def main(action, state_dir=STACK_DIR):
    """make up / make down / tests/stack.py status."""
    stack = Stack(state_dir, http_port=int(os.environ.get("HTTP_PORT", "8080")),
                  nodes=int(os.environ.get("NODES", "1")),
                  cors_origins=os.environ.get("CORS_ORIGINS", ""))
    if action == "up":
        was_running = stack.running()
        try:
            url = stack.up()
        except (StackError, ConfigError, OSError, subprocess.CalledProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            stack.down()
            return 1
        print(f"{'already up' if was_running else 'up'}: {url}  (try: curl -s {url}/api/tasks)")
        for node in range(1, stack.ports["nodes"]):
            print(f"front {node}: http://127.0.0.1:{stack.front(node)}")
        print("metrics: " + ", ".join(
            [f"http://127.0.0.1:{p}/metrics (app {i})" for i, p in enumerate(stack.ports["apps"])]
            + [f"http://127.0.0.1:{p}/metrics (nginx {i})"
               for i, p in enumerate(stack.ports["metrics"])]))
    elif action == "down":
        print("down" if stack.down() else "nothing to stop")
    else:
        print(f"up: {stack.base_url}" if stack.running() else "down")
        return 0 if stack.running() else 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("up", "down", "status"):
        sys.exit("usage: python tests/stack.py up|down|status")
    sys.exit(main(sys.argv[1]))

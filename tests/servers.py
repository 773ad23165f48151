"""Real PostgreSQL and Redis servers for the tests: from the environment, Docker, or local binaries."""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import stack


@dataclass
class Server:
    """A running server: its URL and how to stop it (None: not ours to stop)."""

    url: str
    stop: Callable[[], None] | None = None


def docker_answers():
    """True if a Docker engine responds (the CLI alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return client.ping()
        finally:
            client.close()
    except Exception:  # no socket, no permission, no daemon: all mean "no Docker here"
        return False


class LocalServers:
    """Throwaway servers from the machine's binaries, on free loopback ports."""

    kind = "local processes"

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="tasks-svc-tests-"))
        self.root.chmod(0o755)  # the postgres user must reach its data directory
        self.count = 0

    def _dir(self, name):
        self.count += 1
        path = self.root / f"{name}-{self.count}"
        path.mkdir()
        return path

    def postgres(self):
        data_dir = self._dir("postgres")
        url = stack.start_postgres(data_dir, stack.free_port())
        return Server(url, lambda: stack.stop_postgres(data_dir))

    def redis(self):
        url, pid = stack.start_redis(self._dir("redis"), stack.free_port())
        return Server(url, lambda: stack.stop_pid(pid))

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


class DockerServers:
    """Servers in containers (testcontainers) while Docker can start them; from the first one
    it cannot start (an engine that answers but cannot pull, its registry blocked), local
    processes instead."""

    def __init__(self):
        self.local = None  # the fallback, once Docker has failed
        self.why = ""

    @property
    def kind(self):
        """What the servers come from, for the test report."""
        return f"local processes ({self.why})" if self.local else "testcontainers"

    def postgres(self):
        def start():
            from testcontainers.community.postgres import PostgresContainer

            container = PostgresContainer("postgres:16-alpine", driver=None).start()
            return Server(container.get_connection_url(), container.stop)
        return self._start(start, "postgres")

    def redis(self):
        def start():
            from testcontainers.community.redis import RedisContainer

            container = RedisContainer("redis:7-alpine").start()
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            return Server(f"redis://{host}:{port}/0", container.stop)
        return self._start(start, "redis")

    def _start(self, start, name):
        """start() in Docker, or the local server `name` once Docker has failed."""
        if self.local is None:
            try:
                return start()
            except Exception as exc:  # any failure to pull or run: the local binaries will do
                self.why = f"Docker answered but could not start a container: {exc}"[:300]
                self.local = LocalServers()
        return getattr(self.local, name)()

    def close(self):
        if self.local:
            self.local.close()


def choose():
    """Docker when it answers (falling back to local processes if it cannot start a
    container), else local processes."""
    return DockerServers() if docker_answers() else LocalServers()


def from_env_or(env_name, start):
    """The server named by `env_name` if set (never stopped by us), else `start()` one."""
    url = os.environ.get(env_name)
    return Server(url) if url else start()

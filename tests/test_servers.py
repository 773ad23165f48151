"""Where the tests' servers come from: Docker when it can start containers, local processes
when it answers but cannot (its registry blocked), the environment over both."""

import pytest
import redis

from servers import DockerServers

pytestmark = pytest.mark.app


def test_docker_that_cannot_start_a_container_falls_back_to_a_local_server():
    def cannot_pull():
        raise RuntimeError("pull access denied for testcontainers/ryuk: no such host")

    servers = DockerServers()
    server = servers._start(cannot_pull, "redis")
    try:
        assert redis.Redis.from_url(server.url).ping()
        assert servers.kind.startswith("local processes (Docker answered but could not start")
        assert "no such host" in servers.kind
    finally:
        server.stop()
        servers.close()

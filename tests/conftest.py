"""Fixtures (session-scoped real servers, a migrated database, the app, per-test cleanup) and
hooks (exactly one kind marker per test; in CI, no skipped test)."""

import io
import os
import secrets

import psycopg
from psycopg import sql
import pytest
import redis

from helpers import close_app, gunicorn_for, make_app
from servers import choose, from_env_or
import stack
from svc.admin import migrate
from svc.config import Config
from svc.db import pool

# The kinds of test declared in pytest.ini; each test has exactly one.
KINDS = ("app", "gunicorn", "stack", "static")


# Where this session's servers came from, for the summary at its end.
USED = {}


@pytest.fixture(scope="session")
def provider():
    """Where servers come from: testcontainers if Docker answers, else local processes."""
    chosen = choose()
    yield chosen
    chosen.close()


def _server(env_name, start, provider):
    """The server `env_name` names, else one `start` makes; noted in USED for the summary."""
    server = from_env_or(env_name, start)
    USED[start.__name__] = f"{env_name}" if server.stop is None else provider.kind
    yield server
    if server.stop:
        server.stop()


@pytest.fixture(scope="session")
def postgres(provider):
    """The session's PostgreSQL (TEST_DATABASE_URL overrides)."""
    yield from _server("TEST_DATABASE_URL", provider.postgres, provider)


@pytest.fixture(scope="session")
def redis_server(provider):
    """The session's Redis (TEST_REDIS_URL overrides)."""
    yield from _server("TEST_REDIS_URL", provider.redis, provider)


def pytest_terminal_summary(terminalreporter):
    """Say which PostgreSQL and Redis the tests ran against."""
    for name, source in USED.items():
        terminalreporter.write_line(f"test servers: {name} from {source}")



@pytest.fixture(scope="session")
def config(postgres, redis_server):
    """A Config for the test servers, schema migrated. The app logs in as its least-privilege
    role, so every test proves those privileges suffice; the server's own user is the schema
    owner (MIGRATE_DATABASE_URL), as in compose."""
    app_url = stack.create_app_role(postgres.url, stack.APP_ROLE, secrets.token_hex(16))
    cfg = Config.from_env({}, DATABASE_URL=app_url, MIGRATE_DATABASE_URL=postgres.url,
                          REDIS_URL=redis_server.url)
    migrate(cfg, "apply", out=io.StringIO())
    return cfg


@pytest.fixture(scope="session")
def app(config):
    """The app under test, shared by the session."""
    application = make_app(config)
    pool(application).wait(timeout=10)
    yield application
    close_app(application)


@pytest.fixture(scope="session")
def gunicorn(config):
    """A real gunicorn with conf/gunicorn.conf.py on a free port: (base URL, its log file)."""
    with gunicorn_for(config) as served:
        yield served


@pytest.fixture
def db(config):
    """A connection to the test database as the schema owner, for checks behind the API's back;
    every table the migrations made emptied (TRUNCATE: the owner's privilege, not the app's;
    yoyo's own tables kept)."""
    with psycopg.connect(config.MIGRATE_DATABASE_URL, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'public' "
            "and tablename not like '%%yoyo%%'")]
        conn.execute(sql.SQL("truncate {} restart identity").format(
            sql.SQL(", ").join(map(sql.Identifier, tables))))
        yield conn


@pytest.fixture
def rds(config):
    """A client of the test Redis, flushed."""
    client = redis.Redis.from_url(config.REDIS_URL)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def client(app, db, rds):
    """A test client on a clean database and cache."""
    return app.test_client()


def pytest_collection_modifyitems(items):
    """Refuse a test without exactly one kind marker, or a static one that starts servers."""
    wrong = []
    for item in items:
        kinds = [mark.name for mark in item.iter_markers() if mark.name in KINDS]
        if len(kinds) != 1:
            wrong.append(f"{item.nodeid}: kind markers {kinds}, want exactly one of {KINDS}")
        elif kinds == ["static"] and "provider" in item.fixturenames:
            wrong.append(f"{item.nodeid}: marked static but uses the test servers")
    if wrong:
        raise pytest.UsageError("every test needs one kind marker (pytest.ini), set per module as "
                                "pytestmark = pytest.mark.<kind>\n" + "\n".join(wrong))


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failure: every integration test must run there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""compose.yaml, the Dockerfile and the nginx template, checked without a Docker engine."""

import fnmatch
import re
import runpy
import subprocess
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml

import stack
from svc import transport
from svc.admin import MIGRATIONS_DIR
from svc.config import Config
from svc.db import SQL_DIR
from svc.invalidation import GENERATIONS
from svc.resource import MAX_BODY, MAX_DRAIN

pytestmark = pytest.mark.static

ROOT = stack.ROOT
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
TEMPLATE = stack.NGINX_TEMPLATE.read_text()
TEMPLATE_VARS = set(re.findall(r"\$\{([A-Z_]+)\}", TEMPLATE))
# Variables nginx passes from its environment to Lua (`env NAME;`): set, never rendered.
NGINX_ENV = set(re.findall(r"^env ([A-Z_]+);", TEMPLATE, re.M))
# Files the template includes from CONF_DIR: used as they are, never rendered.
INCLUDED = re.findall(r"^\s*include \$\{CONF_DIR\}/(\S+);", TEMPLATE, re.M)
MAPS = (stack.NGINX_TEMPLATE.parent / "maps.conf").read_text()
GUNICORN_ENV = set(re.findall(r'os\.environ\.get\("([A-Z_]+)"',
                              (ROOT / "conf" / "gunicorn.conf.py").read_text()))


def compose_value(value):
    """A compose value with each ${NAME...} interpolation shown as its variable's name: URLs
    parse, and two values that take the same variable compare equal."""
    return re.sub(r"\$\{([A-Z_]+)[^}]*\}", r"\1", value)


def stage(name):
    """The Dockerfile lines of build stage `name`."""
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert match, f"no stage {name}"
    return match.group(1)


def test_compose_has_the_five_services_with_healthchecks_and_start_order():
    assert set(SERVICES) == {"db", "redis", "migrate", "app", "nginx"}
    for name, service in SERVICES.items():  # all but the one-shot migrate
        assert service["restart"] == "no" or service["healthcheck"]["test"], name
    assert [n for n, s in SERVICES.items() if "healthcheck" not in s] == ["migrate"]
    assert SERVICES["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(SERVICES["db"]["healthcheck"]["test"])
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert SERVICES["app"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"
    assert SERVICES["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["command"][-1] == \
        "python -m svc migrate apply && python -m svc seed --if-empty"
    assert any(v.startswith("pgdata:") for v in SERVICES["db"]["volumes"])
    assert "pgdata" in COMPOSE["volumes"]


def test_only_nginx_publishes_a_port_and_it_is_the_one_nginx_listens_on():
    published = {name for name, s in SERVICES.items() if s.get("ports")}
    assert published == {"nginx"}
    (mapping,) = SERVICES["nginx"]["ports"]
    host, container = mapping.rsplit(":", 1)
    assert host == "${HTTP_PORT:-80}"
    assert SERVICES["nginx"]["environment"]["LISTEN"] == container
    assert SERVICES["nginx"]["environment"]["METRICS_LISTEN"] != container  # internal only
    assert f"EXPOSE {container}" in stage("edge")
    assert COMPOSE["networks"]["backend"]["internal"] is True


def test_app_address_agrees_across_compose_gunicorn_and_nginx():
    app = SERVICES["app"]
    bind_port = app["environment"]["GUNICORN_BIND"].rsplit(":", 1)[1]
    assert app["expose"] == [bind_port]
    servers = SERVICES["nginx"]["environment"]["APP_SERVERS"]
    assert re.findall(r"server (\S+?)[ ;]", servers) == [f"app:{bind_port}"]
    assert f"EXPOSE {bind_port}" in stage("app")
    health = " ".join(app["healthcheck"]["test"])
    assert f"http://127.0.0.1:{bind_port}/api/health" in health
    redis_url = urlsplit(compose_value(app["environment"]["REDIS_URL"]))
    nginx = SERVICES["nginx"]["environment"]
    assert (redis_url.hostname, redis_url.port) == (nginx["REDIS_HOST"], int(nginx["REDIS_PORT"]))


def test_nginx_healthcheck_asks_nginx_alone_with_a_tool_of_the_edge_image():
    program, *args = SERVICES["nginx"]["healthcheck"]["test"][1:]  # after "CMD"
    assert re.search(rf"apt-get install [^\n]*\b{program}\b", stage("edge"))
    url = urlsplit(args[-1])
    assert url.hostname == "127.0.0.1"
    assert str(url.port) == SERVICES["nginx"]["environment"]["LISTEN"]
    location = re.search(rf"^( +)location = {re.escape(url.path)} \{{\n(.*?)^\1\}}", TEMPLATE,
                         re.M | re.S)
    assert location, url.path
    body = location.group(2)
    assert re.search(r"allow 127\.0\.0\.1;\s+deny\s+all;", body)
    assert "proxy_pass" not in body  # answered by nginx itself


def test_compose_env_names_are_ones_the_code_reads():
    config_names = {f.name for f in fields(Config)}
    for name in ("migrate", "app"):
        env = SERVICES[name]["environment"]
        assert set(env) <= config_names | GUNICORN_ENV, set(env) - config_names - GUNICORN_ENV
        assert "DATABASE_URL" in env
    assert set(SERVICES["nginx"]["environment"]) <= TEMPLATE_VARS | NGINX_ENV


def test_redis_asks_everyone_for_the_one_password_which_nginx_never_renders():
    redis = SERVICES["redis"]
    command = redis["command"]
    password = compose_value(command[command.index("--requirepass") + 1])
    assert password == "REDIS_PASSWORD"
    assert compose_value(redis["environment"]["REDISCLI_AUTH"]) == password
    assert "PONG" in " ".join(redis["healthcheck"]["test"])  # redis-cli exits 0 on NOAUTH too
    for name in ("migrate", "app"):
        url = urlsplit(compose_value(SERVICES[name]["environment"]["REDIS_URL"]))
        assert url.password == password and not url.username
    assert compose_value(SERVICES["nginx"]["environment"]["REDIS_PASSWORD"]) == password
    assert "REDIS_PASSWORD" in NGINX_ENV and "REDIS_PASSWORD" not in TEMPLATE_VARS
    lua = (stack.NGINX_TEMPLATE.parent / "redis_client.lua").read_text()
    assert 'os.getenv("REDIS_PASSWORD")' in lua


def test_compose_creates_the_app_role_and_only_migrate_holds_the_owners_url():
    db = SERVICES["db"]
    (mount,) = [v for v in db["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    script = ROOT / mount.split(":")[0]
    assert script == stack.ROLE_SCRIPT and script.stat().st_mode & 0o111  # run, not sourced
    assert {"POSTGRES_USER", "POSTGRES_DB", "APP_DB_USER", "APP_DB_PASSWORD"} <= set(
        re.findall(r"\$([A-Z_]+)", script.read_text()))
    env = {k: compose_value(v) for k, v in db["environment"].items()}
    app_url = urlsplit(compose_value(SERVICES["app"]["environment"]["DATABASE_URL"]))
    assert app_url.username == env["APP_DB_USER"] == stack.APP_ROLE
    assert app_url.password == env["APP_DB_PASSWORD"] == "APP_DB_PASSWORD"
    owner_url = urlsplit(compose_value(SERVICES["migrate"]["environment"]["MIGRATE_DATABASE_URL"]))
    assert owner_url.username == env["POSTGRES_USER"]
    assert owner_url.password == env["POSTGRES_PASSWORD"] == "POSTGRES_PASSWORD"
    assert "MIGRATE_DATABASE_URL" not in SERVICES["app"]["environment"]


def test_every_required_compose_variable_is_in_env_example():
    text = (ROOT / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)(?::?[-?][^}]*)?\}", text))
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert used <= example, used - example
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_dockerfile_copies_only_files_that_exist_and_ignores_local_state():
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) \S+$", DOCKERFILE, re.M):
        assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".stack", ".env"} <= set(ignored)


def test_the_image_holds_every_module_of_the_checkouts_package():
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    modules = [path.relative_to(ROOT).as_posix() for path in (ROOT / "svc").glob("*.py")]
    left_out = [module for module in modules
                if any(fnmatch.fnmatch(module, pattern.lstrip("*/")) or module.startswith(pattern)
                       for pattern in patterns)]
    assert modules and left_out == []
    assert "COPY svc/ svc/" in stage("app")


def test_both_images_run_as_a_non_root_user():
    for name in ("app", "edge"):
        users = re.findall(r"^USER (\S+)$", stage(name), re.M)
        assert users and users[-1] not in ("root", "0"), name


def test_app_image_runs_gunicorn_with_the_repo_config_and_runtime_packages_only():
    app = stage("app")
    assert 'CMD ["gunicorn", "-c", "conf/gunicorn.conf.py", "svc.wsgi:app"]' in app
    assert "sed '/^# Tests/,$d' requirements.txt" in app
    requirements = (ROOT / "requirements.txt").read_text()
    runtime = requirements.split("# Tests")[0]
    assert "pytest" not in runtime and "testcontainers" not in runtime and "flask" in runtime


def test_app_image_holds_every_file_the_app_reads_outside_svc():
    app = stage("app")
    for path in (GENERATIONS, SQL_DIR, MIGRATIONS_DIR):
        relative = path.relative_to(ROOT).as_posix()
        assert re.search(rf"^COPY {re.escape(relative)}/? ", app, re.M), relative


def test_edge_image_fills_exactly_the_template_variables():
    edge = stage("edge")
    assert "nginx libnginx-mod-http-lua" in edge
    (cmd,) = re.findall(r"envsubst '([^']+)'", edge)
    assert set(re.findall(r"\$\{([A-Z_]+)\}", cmd)) == TEMPLATE_VARS
    env_line = re.search(r"^ENV LISTEN=.*?(?<!\\)$", edge, re.M | re.S).group(0)
    assert set(re.findall(r"([A-Z_]+)=", env_line)) == TEMPLATE_VARS


def test_included_nginx_files_need_no_rendering_and_ship_in_the_edge_image():
    assert {"maps.conf", "problem.conf"} <= set(INCLUDED)
    (copied_to,) = re.findall(r"^COPY conf/nginx/ (\S+)$", stage("edge"), re.M)
    assert re.search(rf"\bCONF_DIR={copied_to.rstrip('/')}\b", stage("edge"))
    for name in INCLUDED:
        path = stack.NGINX_TEMPLATE.parent / name
        assert path.is_file(), name
        assert not re.search(r"\$\{", path.read_text()), f"{name} would need rendering"


def test_local_stack_fills_every_template_variable(tmp_path):
    conf = stack.render_nginx(tmp_path, {"LISTEN": "127.0.0.1:1",
                                         "APP_SERVERS": stack.app_servers(["127.0.0.1:2"]),
                                         "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "3",
                                         "METRICS_LISTEN": "127.0.0.1:4"})
    text = conf.read_text()
    includes = re.findall(r"^\s*include (\S+);", text, re.M)
    assert len(includes) == len(INCLUDED)
    for path in [conf, *map(Path, includes)]:  # every file nginx reads for this config
        assert not re.search(r"\$\{[A-Z_]+\}", path.read_text()), path


def nginx_size(directive):
    """The bytes of a size directive in the template (`128k`, `1m` or plain bytes)."""
    value = re.search(rf"^\s*{directive}\s+(\d+)([km]?);", TEMPLATE, re.M | re.I)
    assert value, directive
    return int(value.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[value.group(2).lower()]


def test_nginx_body_limit_is_the_apps_and_its_413_says_so():
    assert nginx_size("client_max_body_size") == MAX_BODY
    assert nginx_size("client_body_buffer_size") == MAX_BODY  # a body never spills to disk
    details = re.search(r"map \$status \$problem_detail \{(.*?)\}", MAPS, re.S).group(1)
    (detail,) = re.findall(r'^\s*413\s+"([^"]*)";', details, re.M)
    assert detail == f"Request body exceeds {MAX_BODY // 1024} KiB."


def test_rendered_config_passes_nginx_t_with_the_compose_values(tmp_path):
    # Each ${NAME:-default} as compose fills it in without a .env.
    env = {name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
           for name, value in SERVICES["nginx"]["environment"].items()}
    # nginx -t resolves upstream host names; the compose names exist only inside compose.
    env["APP_SERVERS"] = env["APP_SERVERS"].replace("app:", "127.0.0.1:")
    conf = stack.render_nginx(tmp_path, env)
    result = subprocess.run([stack.nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.mark.parametrize("service", ["migrate", "app"])
def test_app_services_build_the_app_target(service):
    assert SERVICES[service]["build"]["target"] == "app"
    assert SERVICES["nginx"]["build"]["target"] == "edge"


def test_gunicorn_closes_exactly_the_connections_whose_rejected_body_the_app_will_not_drain():
    conf = runpy.run_path(str(ROOT / "conf" / "gunicorn.conf.py"))

    def closes(length):
        request = SimpleNamespace(headers=[("CONTENT-LENGTH", str(length))])
        conf["pre_request"](None, request)
        return getattr(request, "must_close", False)

    assert not closes(MAX_DRAIN) and closes(MAX_DRAIN + 1)


def test_the_app_scales_no_fixed_name_nor_host_port_and_nginx_names_its_service():
    for name in ("app", "migrate"):
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]
    servers = re.findall(r"server (\S+?)[ ;]", SERVICES["nginx"]["environment"]["APP_SERVERS"])
    assert [server.split(":")[0] for server in servers] == ["app"]  # every replica, by name


def test_nginx_compresses_what_the_app_does_with_the_same_types_threshold_and_level():
    """Through nginx, reads reach the app uncompressed and nginx compresses them: one rule."""
    types = re.search(r"^\s*gzip_types\s+([^;]+);", TEMPLATE, re.M).group(1).split()
    assert set(types) | {"text/html"} == set(transport.COMPRESSIBLE)  # nginx: html always
    assert re.search(rf"^\s*gzip_min_length\s+{transport.MIN_LENGTH};", TEMPLATE, re.M)
    assert re.search(rf"^\s*gzip_comp_level\s+{transport.LEVEL};", TEMPLATE, re.M)
    # The caches keep identity copies: their fetch from the app asks for no coding.
    app_fetch = re.search(r"location = /_app \{(.*?)\}", TEMPLATE, re.S).group(1)
    assert re.search(r'proxy_set_header Accept-Encoding\s+"";', app_fetch)


def test_nginx_waits_for_the_app_longer_than_the_app_lets_a_request_take():
    # The longest the app takes to answer: a wait for a pooled connection, then two statements
    # at their bound (a page and its count; an idempotent write's claim and write). Past it
    # the app answers itself (503), so nginx never gives up first with a 504.
    defaults = {f.name: f.default for f in fields(Config)}
    slowest = defaults["DB_POOL_TIMEOUT"] + 2 * max(defaults["READ_TIMEOUT"],
                                                    defaults["WRITE_TIMEOUT"])
    (read_timeout,) = re.findall(r"^\s*proxy_read_timeout\s+(\d+)s;", TEMPLATE, re.M)
    assert int(read_timeout) > slowest
    gunicorn = runpy.run_path(str(ROOT / "conf" / "gunicorn.conf.py"))
    assert gunicorn["timeout"] > int(read_timeout)  # and gunicorn never kills it first

"""tasks-svc: a raw-SQL CRUD service on Flask, psycopg, Redis and nginx."""

import atexit
from dataclasses import asdict

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (budget, cursor, db, docs, errors, health, logs, metrics, openapi, represent, tasks,
               transport)
from .cache import Cache, make_redis
from .config import Config
from .janitor import Janitor


def create_app(test_config=None):
    """Build the app: config from the environment (`test_config` overrides), pool, cache, routes."""
    config = Config.from_env(**(test_config or {}))
    logs.configure(config.LOG_LEVEL)
    app = Flask(__name__)
    app.config.from_mapping(asdict(config))
    # nginx is the one trusted hop in front of the app.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    queries = db.load_queries()  # a missing or malformed SQL file stops start-up here
    # Made here, in the worker after gunicorn forks: a pool must not cross a fork.
    pool = db.make_pool(config)
    redis_client = make_redis(config.REDIS_URL)
    app_metrics = metrics.Metrics(config.PROMETHEUS_MULTIPROC_DIR)
    app.extensions.update(
        config=config,
        queries=queries,
        pool=pool,
        redis=redis_client,
        metrics=app_metrics,
        cache=Cache(redis_client, config.CACHE_TTL, observer=app_metrics),
        api_tokens=tuple(token.encode() for token in config.api_tokens),
        cursor_key=cursor.key(config),
    )
    atexit.register(pool.close)
    budget.init_app(app, config)

    metrics.init_app(app, app_metrics)  # first: its clock starts before the other hooks run
    app.before_request(logs.assign_request_id)
    app.after_request(logs.echo_request_id)
    errors.init_app(app)
    transport.init_app(app)  # after the hooks above: its work is timed and counted too
    for blueprint in (tasks.bp, health.bp, openapi.bp, docs.bp, metrics.bp):
        app.register_blueprint(blueprint)
    app.extensions["openapi"] = represent.dumps(openapi.build(app))
    app.extensions["janitor"] = janitor = Janitor(app)
    janitor.start()
    atexit.register(janitor.stop)  # atexit runs it before pool.close
    return app

"""tasks-svc: a raw-SQL CRUD service on Flask, psycopg, Redis and nginx."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (budget, cache, config, cursor, db, docs, errors, health, idempotency, invalidation,
               logs, metrics, openapi, tasks, tokens, transport)


def create_app(test_config=None):
    """Build the app: its settings from the environment (`test_config` overrides), then each
    feature, in this order (each reads only what the ones above it made)."""
    app = Flask(__name__)
    config.init_app(app, test_config)  # a missing or malformed setting stops start-up here
    # nginx is the one trusted hop in front of the app.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    db.init_app(app)  # sql/ and the pool; a bad SQL file stops start-up here
    cache.init_app(app)
    metrics.init_app(app)  # before the other hooks: its clock starts before theirs run
    logs.init_app(app)
    invalidation.init_app(app)  # starts the janitor
    idempotency.init_app(app)
    tokens.init_app(app)
    cursor.init_app(app)
    budget.init_app(app)
    errors.init_app(app)
    transport.init_app(app)  # after the hooks above: its work is timed and counted too
    tasks.init_app(app)
    health.init_app(app)
    docs.init_app(app)
    openapi.init_app(app)  # last: it documents the routes registered above
    return app

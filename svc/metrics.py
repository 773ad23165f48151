"""GET /metrics: Prometheus figures of requests, the app cache, Redis errors and the pool.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR puts prometheus-client in multiprocess mode (the
library reads the variable when it is imported): each worker writes its figures to files
there, and a scrape, answered by any worker, adds up every worker's files in a fresh registry.
conf/gunicorn.conf.py empties the folder at start and drops a dead worker's live gauges.
Without the variable (the in-process test app) the app's own registry answers.
"""

import struct
import threading
import time

from flask import Blueprint, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder

from . import cache, db
from .config import ConfigError, settings

bp = Blueprint("metrics", __name__)

UNMATCHED = "unmatched"  # the route label when no route matched (404, 405): never the raw path
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # else "other"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
POOL_EVERY_S = 1.0  # how often a worker writes its pool's figures (multiprocess mode)
SCRAPE_TRIES = 5  # a scrape that meets a worker file being created tries again


class Metrics(cache.Observer):
    """The app's metrics in a registry of their own. Also what the Cache reports to."""

    def __init__(self, multiproc_dir=""):
        _check_mode(multiproc_dir)
        self.multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        own = {"registry": self.registry}
        self.requests = Counter("tasks_http_requests_total", "HTTP requests answered.",
                                labels, **own)
        self.latency = Histogram("tasks_http_request_duration_seconds",
                                 "Seconds from routing to the response.", labels,
                                 buckets=BUCKETS, **own)
        self.cache = Counter("tasks_cache_lookups_total",
                             "App cache (read_through) lookups by result: hit or miss.",
                             ("result",), **own)
        self.redis_errors = Counter("tasks_redis_errors_total",
                                    "Redis commands that failed; the request went on without "
                                    "Redis.", **own)
        # Each worker writes its own pool's figures; a scrape adds up the live workers'.
        per_worker = {"multiprocess_mode": "livesum", **own}
        self.pool_size = Gauge("tasks_db_pool_connections",
                               "PostgreSQL connections the pools hold.", **per_worker)
        self.pool_in_use = Gauge("tasks_db_pool_connections_in_use",
                                 "Pooled connections lent to a request.", **per_worker)
        self.pool_waiting = Gauge("tasks_db_pool_requests_waiting",
                                  "Requests waiting for a pooled connection.", **per_worker)
        # Both series exist from the start, at 0; a lookup skips labels()'s lock and search.
        self._lookups = {True: self.cache.labels("hit"), False: self.cache.labels("miss")}

    def lookup(self, hit):
        """A read_through answered from Redis (hit) or by its loader (miss)."""
        self._lookups[hit].inc()

    def redis_error(self):
        """A Redis command failed."""
        self.redis_errors.inc()

    def observe_pool(self, pool):
        """Write `pool`'s current figures to the gauges."""
        stats = pool.get_stats()
        self.pool_size.set(stats["pool_size"])
        self.pool_in_use.set(stats["pool_size"] - stats["pool_available"])
        self.pool_waiting.set(stats["requests_waiting"])

    def watch_pool(self, pool):
        """In multiprocess mode, write the pool's figures every POOL_EVERY_S from a thread:
        an idle worker's figures stay current although no scrape reaches it."""
        if not self.multiproc_dir:
            return  # one process: the scrape itself reads the pool

        def loop():
            """Until the pool closes with the worker."""
            while not pool.closed:
                self.observe_pool(pool)
                time.sleep(POOL_EVERY_S)

        threading.Thread(target=loop, name="pool-metrics", daemon=True).start()

    def exposition(self, accept):
        """(body, content type) of a scrape: every worker's files, or this registry."""
        registry = self.registry
        if self.multiproc_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
        encode, content_type = choose_encoder(accept)
        for attempt in range(SCRAPE_TRIES):
            try:
                return encode(registry), content_type
            except struct.error:
                # A worker's file read in the instant between its creation and its first
                # write is empty; a moment later it is whole.
                if attempt == SCRAPE_TRIES - 1:
                    raise
                time.sleep(0.01)


def _check_mode(multiproc_dir):
    """Stop unless the library's mode (fixed when it was imported) is the configured one."""
    in_files = getattr(values.ValueClass, "_multiprocess", False)
    if in_files and not multiproc_dir:  # it would write its files to the working directory
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR is set but empty: unset it or name a folder")
    if multiproc_dir and not in_files:  # the scrape would find no file of this process
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR must be in the environment before the "
                          "process starts")


def init_app(app):
    """Time and count every request by method, route template and status; count the cache's
    lookups and Redis errors; watch the pool; serve GET /metrics."""
    app.extensions["metrics"] = metrics = Metrics(settings(app).PROMETHEUS_MULTIPROC_DIR)
    app.before_request(_start)
    app.after_request(_record)
    metrics.watch_pool(db.pool(app))
    cache.current(app).watch(metrics)
    app.register_blueprint(bp)


def _start():
    """Note when the request started (before_request)."""
    g.metrics_started = time.perf_counter()


def _record(response):
    """Count and time the request under its route template, never its path (after_request)."""
    metrics = current_app.extensions["metrics"]
    rule = request.url_rule
    labels = (request.method if request.method in METHODS else "other",
              rule.rule if rule else UNMATCHED, str(response.status_code))
    metrics.requests.labels(*labels).inc()
    started = g.pop("metrics_started", None)
    if started is not None:
        metrics.latency.labels(*labels).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
def get_metrics():
    """Prometheus metrics of every worker (for the backend network: nginx does not serve it)."""
    metrics = current_app.extensions["metrics"]
    metrics.observe_pool(db.pool())
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return current_app.response_class(body, content_type=content_type,
                                      headers={"Cache-Control": "no-store"})

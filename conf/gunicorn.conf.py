"""gunicorn settings, driven by the environment (gunicorn -c conf/gunicorn.conf.py svc.wsgi:app)."""

import glob
import multiprocessing
import os

from prometheus_client import multiprocess

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 20))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))  # longer than nginx's idle upstream close
# The pool is made in create_app, in each worker: never preload, a pool must not cross a fork.
preload_app = False
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 0))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = "svc.logs.AccessLogger"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Metrics (svc/metrics.py): with PROMETHEUS_MULTIPROC_DIR set in the environment before gunicorn
# starts, every worker writes its figures to files there and a scrape adds them up.
_METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def on_starting(server):
    """Empty the metrics folder before the first worker starts: an earlier run's files would
    be added in."""
    if _METRICS_DIR:
        os.makedirs(_METRICS_DIR, exist_ok=True)
        for path in glob.glob(os.path.join(_METRICS_DIR, "*.db")):
            os.remove(path)


def child_exit(server, worker):
    """A worker is gone: drop its live gauges (pool figures); its counts stay in the totals."""
    if _METRICS_DIR:
        multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)

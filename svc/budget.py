"""Costly requests (a search, a count) get a bounded share of each worker: COSTLY_SHARE of its
threads, and so of its pooled connections, at a time; the rest of the worker stays free for
cheap reads."""

import contextlib
import threading

from flask import current_app

from .config import settings
from .errors import ApiError

RETRY_AFTER_S = 1


def init_app(app):
    """Give the worker its costly slots (one app per worker process)."""
    app.extensions["costly"] = threading.BoundedSemaphore(settings(app).COSTLY_SHARE)


@contextlib.contextmanager
def costly():
    """Hold one of the worker's costly slots for the block, or 503 at once if all are taken:
    a request that waited would hold its thread meanwhile."""
    slots = current_app.extensions["costly"]
    if not slots.acquire(blocking=False):
        raise ApiError(503, "The server is busy with searches and counts; retry after "
                            "Retry-After seconds.", headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        yield
    finally:
        slots.release()

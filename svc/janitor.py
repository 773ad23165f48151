"""Background upkeep in each worker, never in a request's way: one thread per app that runs the
jobs features give it (invalidation.py: pay cache debts; idempotency.py: delete expired keys),
each when it is due, every TICK_S."""

import atexit
import logging
import threading

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)
TICK_S = 0.1  # how soon a debt this worker ran up is paid once Redis answers again


class Janitor(threading.Thread):
    """A daemon thread of one app; stop() ends it."""

    def __init__(self, app):
        super().__init__(name="tasks-janitor", daemon=True)
        self.app = app
        self.jobs = []  # (due(ticks) -> bool, job())
        self._stopped = threading.Event()

    def run(self):
        """Every tick, in the app's context: each job that is due."""
        ticks = 0
        while not self._stopped.wait(TICK_S):
            ticks += 1
            due = [job for is_due, job in tuple(self.jobs) if is_due(ticks)]
            if not due:
                continue
            with self.app.app_context():
                try:
                    for job in due:
                        job()
                except (PoolTimeout, psycopg.Error) as exc:  # PostgreSQL down: next tick
                    log.debug("janitor: %s", exc)

    def stop(self):
        """End the thread after its current pass."""
        self._stopped.set()


def every(app, due, job):
    """Run job() in `app`'s janitor on each tick for which due(ticks) is true; the first job
    starts the thread, which stops at exit."""
    if "janitor" not in app.extensions:
        app.extensions["janitor"] = thread = Janitor(app)
        thread.start()
        atexit.register(thread.stop)  # registered after the pool's close: atexit runs it first
    app.extensions["janitor"].jobs.append((due, job))


def stop(app):
    """Stop `app`'s janitor and wait for its pass to end (tests close apps this way)."""
    thread = app.extensions.get("janitor")
    if thread is not None:
        thread.stop()
        thread.join(5)

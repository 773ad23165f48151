"""Background upkeep in each worker: pays cache debts as soon as Redis takes them again, and
deletes expired Idempotency-Keys in small batches (never in a request's way)."""

import logging
import threading

import psycopg
from psycopg_pool import PoolTimeout

from . import store

log = logging.getLogger(__name__)
TICK_S = 0.1  # how soon a debt this worker ran up is paid once Redis answers again
SCAN_EVERY = 10  # ticks between looks for debts other workers left (a killed one, say)
EXPIRE_EVERY = 600  # ticks between deletions of expired Idempotency-Keys


class Janitor(threading.Thread):
    """A daemon thread of one app; stop() ends it."""

    def __init__(self, app):
        super().__init__(name="tasks-janitor", daemon=True)
        self.app = app
        self._stopped = threading.Event()

    def run(self):
        """Every tick: pay this worker's debts; every SCAN_EVERY ticks, anyone's; now and then,
        delete expired keys."""
        ticks = 0
        cache = self.app.extensions["cache"]
        while not self._stopped.wait(TICK_S):
            ticks += 1
            debts = cache.suspect or ticks % SCAN_EVERY == 0
            keys = ticks % EXPIRE_EVERY == 1
            if not (debts or keys):
                continue
            with self.app.app_context():
                try:
                    if debts:
                        store.pay_cache_debts()
                    if keys:
                        store.delete_expired_idempotency_keys(self.app.config["IDEMPOTENCY_TTL"])
                except (PoolTimeout, psycopg.Error) as exc:  # PostgreSQL down: next tick
                    log.debug("janitor: %s", exc)

    def stop(self):
        """End the thread after its current pass."""
        self._stopped.set()

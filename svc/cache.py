"""The read-through cache in Redis: bytes under generation-stamped keys, stampede-safe, never
fatal. What a cached value means is the caller's (svc/represent.py packs responses); when a
scope's generation changes is svc/invalidation.py's."""

import contextlib
import logging
import re
import secrets
import threading
import time

import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import settings

log = logging.getLogger(__name__)

LOCK_TTL_MS = 2000  # a filler that died frees the key after this
FILL_WAIT_S = 0.2  # how long a reader waits for another's fill before loading itself
RETRY_AFTER_S = 1.0  # after a Redis error, skip Redis this long instead of paying a timeout per request
RUN_ID = re.compile(rb"^run_id:(\w+)", re.M)
# Deletes the fill lock only if it is still ours (it may have expired and been taken).
UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def init_app(app):
    """Give `app` its Cache on REDIS_URL, entries kept for CACHE_TTL."""
    config = settings(app)
    app.extensions["cache"] = Cache(make_redis(config.REDIS_URL), config.CACHE_TTL)


def current(app=None):
    """The Cache of `app` (default: the current app)."""
    return (app or current_app).extensions["cache"]


def make_redis(url):
    """A client with short timeouts and no retries: a slow Redis must not slow requests. Each
    connection knows the run_id of the Redis process it reaches (`learn_run_id`)."""
    return redis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0),
        health_check_interval=30, redis_connect_func=learn_run_id,
    )


def learn_run_id(conn):
    """redis-py's connect hook: log in and select the database as usual, then note the run_id of
    the process this connection reaches, which generations.lua names every key after."""
    conn.on_connect()
    conn.send_command("INFO", "server")
    conn.run_id = RUN_ID.search(conn.read_response())[1].decode()


class Observer:
    """What a Cache reports, and asks before it reads; this one ignores the reports and lets it
    read. The app's metrics (svc/metrics.py) count the reports; invalidation.py's Generations
    forbids reads while Redis may hold entries a write has not invalidated."""

    def lookup(self, hit):
        """A read_through answered from Redis (hit) or by its loader (miss)."""

    def redis_error(self):
        """A Redis command failed."""

    def may_read(self):
        """False: answer from the loader, read nothing from Redis."""
        return True


class Cache:
    """Read-through caching of bytes; any Redis error degrades to a cache miss."""

    def __init__(self, client, ttl):
        self.client = client
        self.ttl = ttl
        self.observers = []  # `watch`
        self._skip_until = 0.0
        self._unlock = client.register_script(UNLOCK)
        self._own = threading.local()  # each thread's connection (on_connection)

    def watch(self, observer):
        """Report to `observer` too, and ask it before each read."""
        self.observers.append(observer)

    def read_through(self, scope, what, ttl, loader):
        """Return (bytes, hit): the cached value of `what` in `scope` (a name whose generation
        invalidation.py bumps: a task id, or the list), else
        loader()'s, stored for `ttl` s. A loader returning None is not cached.

        One round trip (MGET) reads the scope's generation and the entry, which holds the
        generation it was loaded under: it answers only while the two are equal. On a miss the
        value is stamped with the generation read before loading, so a value loaded before a
        write never answers after it.
        """
        value, hit = self._read_through(scope, what, ttl, loader)
        for observer in self.observers:
            observer.lookup(hit)
        return value, hit

    def _read_through(self, scope, what, ttl, loader):
        """read_through's work, unreported."""
        try:
            if self.available() and all(o.may_read() for o in self.observers):
                key, gen, stamped = self._read(scope, what)
                value = _current(stamped, gen)
                if value is not None:
                    return value, True
                result = self._fill(key, gen, ttl, loader)
                self.recovered()
                return result
        except redis.RedisError as exc:
            self.failed(exc)
        return loader(), False

    def _read(self, scope, what):
        """(entry key, generation, stamped entry or None), read on one connection whose run_id
        names the keys: the process that answers is the one the names are for."""
        def mget(conn):
            ns = f"tasks:{conn.run_id}:"
            key = f"{ns}{scope}:{what}"
            conn.send_command("MGET", f"{ns}gen:{scope}", key)
            gen, stamped = conn.read_response()
            return key, gen or b"0", stamped

        return self.on_connection(mget)

    def _fill(self, key, gen, ttl, loader):
        """Load and store under a short lock, so one loader runs per key at a time."""
        token = secrets.token_hex(8)
        lock_key = key + ":lock"
        if not self.client.set(lock_key, token, nx=True, px=LOCK_TTL_MS):
            deadline = time.monotonic() + FILL_WAIT_S
            while time.monotonic() < deadline:
                time.sleep(0.01)
                value = _current(self.client.get(key), gen)
                if value is not None:
                    return value, True
            return loader(), False  # the other filler is slow: don't queue behind it
        try:
            value = loader()
        except BaseException:
            with contextlib.suppress(redis.RedisError):  # the loader's error is the one to report
                self._unlock(keys=[lock_key], args=[token])
            raise
        try:  # the value is loaded: a Redis error from here on must not load it again
            if value is not None:
                self.client.set(key, gen + b"\n" + value, ex=ttl)
            self._unlock(keys=[lock_key], args=[token])
        except redis.RedisError as exc:
            self.failed(exc)
        return value, False

    def on_connection(self, work):
        """work(conn)'s result on this thread's own connection, which knows the run_id of the
        process it reaches (learn_run_id): key names built from it always name the answering
        process, even across a reconnect.

        Its own, not one from the client's pool: a hit is one MGET, and a pool's checkout and
        return (a lock, a poll for stray bytes, redis-py's metrics) cost three quarters as much
        CPU again (68 µs per MGET here, not 39). A thread's calls never overlap, and a
        connection that may be out of step is dropped, so nothing is ever left on one to check
        for. `work` runs again on a new connection if the old one was closed: it must be safe
        to repeat (a read, a bump).
        """
        conn = getattr(self._own, "conn", None)
        if conn is not None:
            try:
                return self._work_on(conn, work)
            except redis.ConnectionError:
                pass  # closed since its last use (a Redis restart, say): once more, on a new one
        pool = self.client.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        conn.connect()
        self._own.conn = conn
        return self._work_on(conn, work)

    def _work_on(self, conn, work):
        """work(conn)'s result; drops the thread's connection if it may be out of step."""
        try:
            return work(conn)
        except redis.ResponseError:
            raise  # an error reply: the connection is in step
        except BaseException:
            self._own.conn = None  # it may hold half a reply
            conn.disconnect()
            raise

    def ping(self):
        """True if Redis answers now; ignores the back-off so health reports the truth."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self.failed(exc)
            return False
        self.recovered()
        return True

    def available(self):
        """False while backing off after an error."""
        return time.monotonic() >= self._skip_until

    def failed(self, exc):
        """A Redis command failed: back off for RETRY_AFTER_S, and report it."""
        for observer in self.observers:
            observer.redis_error()
        if self._skip_until == 0.0:  # log the first error of an outage, not one per request
            log.warning("redis unavailable, serving from PostgreSQL: %s", exc)
        self._skip_until = time.monotonic() + RETRY_AFTER_S

    def recovered(self):
        """A Redis command succeeded: stop backing off."""
        if self._skip_until:
            log.info("redis is back")
            self._skip_until = 0.0


def _current(stamped, gen):
    """The value of a stamped entry ("<generation>\\n<value>") if it was stored under `gen`,
    else None (no entry, or one from before a write)."""
    if stamped is None:
        return None
    stamp, _, value = stamped.partition(b"\n")
    return value if stamp == gen else None

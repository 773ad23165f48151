"""The read-through cache in Redis: per-task generations, stampede-safe, never fatal."""

import contextlib
import hashlib
import logging
import re
import secrets
import time
from pathlib import Path
from typing import NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# The Redis-side half of the cache, shared with the nginx edge: key names and generations.
GENERATIONS = Path(__file__).resolve().parent.parent / "conf" / "nginx" / "generations.lua"
LIST = "list"  # the scope of list pages; a task's scope is its id
GEN_TTL_S = 86_400  # a task's generation must outlive every entry (CACHE_TTL, nginx's EDGE_TTL)
LOCK_TTL_MS = 2000  # a filler that died frees the key after this
FILL_WAIT_S = 0.2  # how long a reader waits for another's fill before loading itself
RETRY_AFTER_S = 1.0  # after a Redis error, skip Redis this long instead of paying a timeout per request
RUN_ID = re.compile(rb"^run_id:(\w+)", re.M)
# Deletes the fill lock only if it is still ours (it may have expired and been taken).
UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Entry(NamedTuple):
    """What the cache holds for one response: its ETag, its body and, for a page, the next URL
    and the total of matching tasks (when counted)."""

    etag: str
    body: bytes
    next: str | None = None
    total: int | None = None

    def pack(self):
        """The bytes stored in Redis: three header lines, then the body (ETags and URLs hold no
        newline)."""
        total = b"" if self.total is None else str(self.total).encode()
        return b"\n".join((self.etag.encode(), (self.next or "").encode(), total, self.body))

    @classmethod
    def unpack(cls, value):
        """The Entry that `pack` stored."""
        etag, next_url, total, body = value.split(b"\n", 3)
        return cls(etag.decode(), body, next_url.decode() or None,
                   int(total) if total else None)


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
    """What a Cache reports; this one ignores it. The app's metrics (svc/metrics.py) have the
    same two methods and count."""

    def lookup(self, hit):
        """A read_through answered from Redis (hit) or by its loader (miss)."""

    def redis_error(self):
        """A Redis command failed."""


class Cache:
    """Read-through caching of response bytes; any Redis error degrades to a cache miss."""

    def __init__(self, client, ttl, observer=None):
        self.client = client
        self.ttl = ttl
        self.observer = observer or Observer()
        self._skip_until = 0.0
        # After a Redis error or a bump Redis did not take, this worker cannot vouch for what
        # Redis holds: it reads nothing from it until the janitor has found no unpaid bump.
        self.suspect = False
        self._unlock = client.register_script(UNLOCK)
        self._script = GENERATIONS.read_text()
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()

    def read_through(self, scope, what, ttl, loader):
        """Return (bytes, hit): the cached value of `what` in `scope` (a task id or LIST), else
        loader()'s, stored for `ttl` s. A loader returning None is not cached.

        One round trip finds the scope's generation and the entry under it. On a miss the value
        is stored under the generation read before loading, so a value loaded before a write is
        stored where no reader looks after it.
        """
        value, hit = self._read_through(scope, what, ttl, loader)
        self.observer.lookup(hit)
        return value, hit

    def _read_through(self, scope, what, ttl, loader):
        """read_through's work, unreported."""
        try:
            if self.available() and not self.suspect:
                key, value = self._generations("read", "app", scope, what)
                if value is not None:
                    return value, True
                result = self._fill(key.decode(), ttl, loader)
                self._recovered()
                return result
        except redis.RedisError as exc:
            self._failed(exc)
        return loader(), False

    def entry(self, scope, what, loader):
        """(Entry or None, hit): read_through for a response that loader() builds as an Entry."""
        loaded = []  # on a miss, the Entry itself: no need to parse back what was just packed

        def load():
            loaded.append(loader())
            return None if loaded[0] is None else loaded[0].pack()

        value, hit = self.read_through(scope, what, self.ttl, load)
        if loaded:
            return loaded[0], hit
        return (None if value is None else Entry.unpack(value)), hit

    def _fill(self, full_key, ttl, loader):
        """Load and store under a short lock, so one loader runs per key at a time."""
        token = secrets.token_hex(8)
        lock_key = full_key + ":lock"
        if not self.client.set(lock_key, token, nx=True, px=LOCK_TTL_MS):
            deadline = time.monotonic() + FILL_WAIT_S
            while time.monotonic() < deadline:
                time.sleep(0.01)
                value = self.client.get(full_key)
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
                self.client.set(full_key, value, ex=ttl)
            self._unlock(keys=[lock_key], args=[token])
        except redis.RedisError as exc:
            self._failed(exc)
        return value, False

    def bump(self, task_id=None, version=None, force=False):
        """After a committed write: a new generation for the task (its version) and for the list.

        Returns False if Redis did not take it; the caller must remember that (store.py records
        it in PostgreSQL) until a later bump succeeds, or older entries would be served.
        `force` tries even while backing off after an error.
        """
        if not (force or self.available()):
            self.suspect = True
            return False
        try:
            self._generations("bump", "" if task_id is None else task_id, version or 0,
                              GEN_TTL_S)
        except redis.RedisError as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _generations(self, *args):
        """generations.lua's reply, run on one connection with the run_id that connection
        learned: the argument always names the process that answers, even across a reconnect."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            try:
                conn.send_command("EVALSHA", self._sha, 0, conn.run_id, *args)
                return conn.read_response()
            except redis.exceptions.NoScriptError:  # flushed, or a Redis we have not used yet
                conn.send_command("EVAL", self._script, 0, conn.run_id, *args)
                return conn.read_response()
        except redis.ResponseError:
            raise  # an error reply: the connection is in step
        except BaseException:
            conn.disconnect()  # it may hold half a reply
            raise
        finally:
            pool.release(conn)

    def ping(self):
        """True if Redis answers now; ignores the back-off so health reports the truth."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def available(self):
        """False while backing off after an error."""
        return time.monotonic() >= self._skip_until

    def _failed(self, exc):
        self.suspect = True
        self.observer.redis_error()
        if self._skip_until == 0.0:  # log the first error of an outage, not one per request
            log.warning("redis unavailable, serving from PostgreSQL: %s", exc)
        self._skip_until = time.monotonic() + RETRY_AFTER_S

    def _recovered(self):
        if self._skip_until:
            log.info("redis is back")
            self._skip_until = 0.0

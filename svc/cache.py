"""The read-through cache in Redis: per-task generations, stampede-safe, never fatal."""

import contextlib
import hashlib
import logging
import re
import secrets
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# The Redis-side script that bumps generations; its header documents the key names, which the
# nginx edge (conf/nginx/edge_cache.lua) builds the same way to read the entries stored here.
GENERATIONS = Path(__file__).resolve().parent.parent / "conf" / "nginx" / "generations.lua"
LIST = "list"  # the scope of list pages; a task's scope is its id
GEN_TTL_S = 86_400  # a task's generation must outlive every entry (CACHE_TTL)
LOCK_TTL_MS = 2000  # a filler that died frees the key after this
FILL_WAIT_S = 0.2  # how long a reader waits for another's fill before loading itself
RETRY_AFTER_S = 1.0  # after a Redis error, skip Redis this long instead of paying a timeout per request
RUN_ID = re.compile(rb"^run_id:(\w+)", re.M)
# Deletes the fill lock only if it is still ours (it may have expired and been taken).
UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


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

        One round trip (MGET) reads the scope's generation and the entry, which holds the
        generation it was loaded under: it answers only while the two are equal. On a miss the
        value is stamped with the generation read before loading, so a value loaded before a
        write never answers after it.
        """
        value, hit = self._read_through(scope, what, ttl, loader)
        self.observer.lookup(hit)
        return value, hit

    def _read_through(self, scope, what, ttl, loader):
        """read_through's work, unreported."""
        try:
            if self.available() and not self.suspect:
                key, gen, stamped = self._read(scope, what)
                value = _current(stamped, gen)
                if value is not None:
                    return value, True
                result = self._fill(key, gen, ttl, loader)
                self._recovered()
                return result
        except redis.RedisError as exc:
            self._failed(exc)
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

        return self._on_connection(mget)

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
        """generations.lua's reply, run with the run_id of the connection it goes out on."""
        def run(conn):
            try:
                conn.send_command("EVALSHA", self._sha, 0, conn.run_id, *args)
                return conn.read_response()
            except redis.exceptions.NoScriptError:  # flushed, or a Redis we have not used yet
                conn.send_command("EVAL", self._script, 0, conn.run_id, *args)
                return conn.read_response()

        return self._on_connection(run)

    def _on_connection(self, work):
        """work(conn)'s result on one pooled connection, which knows the run_id of the process
        it reaches (learn_run_id): key names built from it always name the answering process,
        even across a reconnect."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            return work(conn)
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


def _current(stamped, gen):
    """The value of a stamped entry ("<generation>\\n<value>") if it was stored under `gen`,
    else None (no entry, or one from before a write)."""
    if stamped is None:
        return None
    stamp, _, value = stamped.partition(b"\n")
    return value if stamp == gen else None

"""The read-through cache in Redis: generation-keyed, stampede-safe, never fatal."""

import contextlib
import logging
import secrets
import time
from typing import NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

GEN_KEY = "tasks:gen"  # bumped after every committed write; nginx's edge cache reads it too
KEY_PREFIX = "tasks:app"
LOCK_TTL_MS = 2000  # a filler that died frees the key after this
FILL_WAIT_S = 0.2  # how long a reader waits for another's fill before loading itself
RETRY_AFTER_S = 1.0  # after a Redis error, skip Redis this long instead of paying a timeout per request
# Deletes the fill lock only if it is still ours (it may have expired and been taken).
UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Entry(NamedTuple):
    """What the cache holds for one response: its ETag, its body and, for a page, the next URL."""

    etag: str
    body: bytes
    next: str | None = None

    def pack(self):
        """The bytes stored in Redis: two header lines, then the body (ETags and URLs hold no
        newline)."""
        return b"\n".join((self.etag.encode(), (self.next or "").encode(), self.body))

    @classmethod
    def unpack(cls, value):
        """The Entry that `pack` stored."""
        etag, next_url, body = value.split(b"\n", 2)
        return cls(etag.decode(), body, next_url.decode() or None)


def make_redis(url):
    """A client with short timeouts and no retries: a slow Redis must not slow requests."""
    return redis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


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
        self._unlock = client.register_script(UNLOCK)

    def read_through(self, key, ttl, loader):
        """Return (bytes, hit): the cached value for `key`, else loader()'s, stored for `ttl` s.

        The key embeds the write generation, so a value loaded before a write is stored under
        a generation no reader asks for after it. A loader returning None is not cached.
        """
        value, hit = self._read_through(key, ttl, loader)
        self.observer.lookup(hit)
        return value, hit

    def _read_through(self, key, ttl, loader):
        """read_through's work, unreported."""
        try:
            if self.available():
                gen = self.client.get(GEN_KEY) or b"0"
                full_key = f"{KEY_PREFIX}:{gen.decode()}:{key}"
                value = self.client.get(full_key)
                if value is not None:
                    return value, True
                result = self._fill(full_key, ttl, loader)
                self._recovered()
                return result
        except redis.RedisError as exc:
            self._failed(exc)
        return loader(), False

    def entry(self, key, loader):
        """(Entry or None, hit): read_through for a response that loader() builds as an Entry."""
        value, hit = self.read_through(key, self.ttl, lambda: _pack(loader()))
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

    def bump(self):
        """Start a new generation after a committed write; older entries are never read again."""
        try:
            self.client.incr(GEN_KEY)
            self._recovered()
        except redis.RedisError as exc:
            # Entries of the old generation may be served until they expire (CACHE_TTL).
            self._failed(exc)

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
        self.observer.redis_error()
        if self._skip_until == 0.0:  # log the first error of an outage, not one per request
            log.warning("redis unavailable, serving from PostgreSQL: %s", exc)
        self._skip_until = time.monotonic() + RETRY_AFTER_S

    def _recovered(self):
        if self._skip_until:
            log.info("redis is back")
            self._skip_until = 0.0


def _pack(entry):
    return None if entry is None else entry.pack()

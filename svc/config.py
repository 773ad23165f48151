"""Configuration, read once from the environment."""

import os
import re
from dataclasses import MISSING, asdict, dataclass, fields

from flask import current_app

# RFC 6750's b64token: what `Authorization: Bearer <token>` can carry.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
MIN_TOKEN_LENGTH = 16


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Config:
    """Settings for the app and the CLI; names match the environment variables."""

    DATABASE_URL: str  # the app's role: reads and writes rows, owns nothing
    # The schema owner that `python -m svc migrate` connects as; empty: DATABASE_URL.
    MIGRATE_DATABASE_URL: str = ""
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    CACHE_TTL: int = 60
    DB_POOL_MIN: int = 2
    DB_POOL_MAX: int = 10
    DB_POOL_TIMEOUT: float = 2.0
    # Seconds a statement may run before PostgreSQL cancels it (statement_timeout), by kind:
    # reads (every pooled connection's default), writes (set in their transaction), and
    # migrations and seeding (python -m svc migrate|seed). nginx's proxy_read_timeout must
    # exceed what a request can take: tests/test_deploy_static.py checks it against these.
    READ_TIMEOUT: float = 0.5
    WRITE_TIMEOUT: float = 5.0
    MIGRATE_TIMEOUT: float = 900.0
    # How many costly requests (a search, a count) one worker runs at once; the others get 503
    # at once, so they never hold every thread or pooled connection.
    COSTLY_SHARE: int = 1
    LOG_LEVEL: str = "INFO"
    IDEMPOTENCY_TTL: int = 86_400  # seconds an Idempotency-Key's response is kept
    # Signs list cursors; the same on every app node. Empty: derived from DATABASE_URL.
    CURSOR_SECRET: str = ""
    # Comma-separated bearer tokens, any of which lets a request write (several: to rotate);
    # empty: writes are open.
    API_TOKENS: str = ""
    # A folder for prometheus-client's multiprocess mode (gunicorn: one file set per worker).
    # The library reads the variable itself, when imported: set it in the environment before
    # the process starts. Empty: the app's own registry, for one process.
    PROMETHEUS_MULTIPROC_DIR: str = ""

    def __post_init__(self):
        """MIGRATE_DATABASE_URL defaults to DATABASE_URL: one role for both."""
        if not self.MIGRATE_DATABASE_URL:
            object.__setattr__(self, "MIGRATE_DATABASE_URL", self.DATABASE_URL)

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Build a Config from `environ` (default os.environ); `overrides` win."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = overrides.get(f.name, environ.get(f.name))
            if raw is None or raw == "":
                if f.default is MISSING:
                    raise ConfigError(f"{f.name} is not set; export it, e.g. "
                                      f"{f.name}=postgresql://user@127.0.0.1:5432/tasks")
                continue
            try:
                values[f.name] = f.type(raw)
            except ValueError:
                raise ConfigError(f"{f.name}={raw!r} is not a valid {f.type.__name__}") from None
        config = cls(**values)
        config.check()
        return config

    @property
    def api_tokens(self):
        """The tokens in API_TOKENS, in order; () when writes are open."""
        return tuple(t for t in (t.strip() for t in self.API_TOKENS.split(",")) if t)

    def check(self):
        """Reject values that would only fail later, and less clearly."""
        if self.API_TOKENS and not self.api_tokens:  # set, yet only commas or spaces
            raise ConfigError("API_TOKENS holds no token")
        for number, token in enumerate(self.api_tokens, 1):  # never echo a token
            if not BEARER_TOKEN.fullmatch(token) or len(token) < MIN_TOKEN_LENGTH:
                raise ConfigError(f"API_TOKENS: token {number} must be at least "
                                  f"{MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / - "
                                  "(then optional =)")
        if self.CACHE_TTL < 1:
            raise ConfigError("CACHE_TTL must be at least 1 second")
        if not 1 <= self.DB_POOL_MIN <= self.DB_POOL_MAX:
            raise ConfigError("need 1 <= DB_POOL_MIN <= DB_POOL_MAX")
        if self.IDEMPOTENCY_TTL < 1:
            raise ConfigError("IDEMPOTENCY_TTL must be at least 1 second")
        if self.DB_POOL_TIMEOUT <= 0:
            raise ConfigError("DB_POOL_TIMEOUT must be positive")
        for name in ("READ_TIMEOUT", "WRITE_TIMEOUT", "MIGRATE_TIMEOUT"):
            if not 0.001 <= getattr(self, name) <= 86_400:
                raise ConfigError(f"{name} must be from 0.001 to 86400 seconds")
        if not 1 <= self.COSTLY_SHARE <= self.DB_POOL_MAX:
            raise ConfigError("need 1 <= COSTLY_SHARE <= DB_POOL_MAX")


def init_app(app, test_config=None):
    """Read `app`'s settings from the environment (`test_config` overrides): typed in
    `settings`, and as Flask's app.config."""
    config = Config.from_env(**(test_config or {}))
    app.config.from_mapping(asdict(config))
    app.extensions["config"] = config


def settings(app=None):
    """The Config of `app` (default: the current app)."""
    return (app or current_app).extensions["config"]

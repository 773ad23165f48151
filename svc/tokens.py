"""Bearer tokens: with API_TOKENS configured, a write needs `Authorization: Bearer <token>`."""

import hmac
from functools import wraps

from flask import current_app, request

from .config import settings
from .errors import ApiError

CHALLENGE = 'Bearer realm="tasks-svc"'


def init_app(app):
    """Keep API_TOKENS as bytes, for constant-time comparison."""
    app.extensions["tokens"] = tuple(token.encode() for token in settings(app).api_tokens)


def configured(app=None):
    """The tokens of `app` (default: the current app), as bytes; () when writes are open."""
    return (app or current_app).extensions["tokens"]


def requires_token(view):
    """Run `view` only for a request that carries a configured token (none configured: open).

    The mark it leaves, `requires_token`, is what openapi.py documents as the bearer scheme
    and the 401 answer.
    """
    @wraps(view)
    def guarded(*args, **kwargs):
        """`view`, behind the token check."""
        tokens = configured()
        if tokens:
            _check(tokens)
        return view(*args, **kwargs)

    guarded.requires_token = True
    return guarded


def _check(tokens):
    """Raise 401 unless the Authorization header holds one of `tokens` (bytes)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "Writes need a token: send Authorization: Bearer <token>.",
                       headers={"WWW-Authenticate": CHALLENGE})
    given = given.encode()
    # Compare with every token, in constant time each: no early exit tells which one was close.
    if not any([hmac.compare_digest(given, token) for token in tokens]):
        raise ApiError(401, "The bearer token is not valid.",
                       headers={"WWW-Authenticate": CHALLENGE + ', error="invalid_token"'})

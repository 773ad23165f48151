"""Opaque list cursors: where a page ended, and everything the next page needs, signed.

A cursor is base64url(JSON [the listing's order, done, q and limit, the last row's sort value,
its id] + a truncated HMAC-SHA256), so a request with the cursor alone continues the listing.
The key must be the same on every app node, so it comes from the configuration (CURSOR_SECRET,
else derived from DATABASE_URL, which every node of one deployment shares), never from a
per-process random value.
"""

import base64
import binascii
import hashlib
import hmac
import json

from flask import current_app

from .config import settings
from .resource import LIST_PARAMS

TAG_BYTES = 16
# The list parameters a cursor carries: every one but the positions (after, cursor).
QUERY = tuple(p.name for p in LIST_PARAMS if not p.position)


class BadCursor(ValueError):
    """A cursor this service did not issue (or one of an earlier version of it)."""


def init_app(app):
    """Give `app` its cursor key (`secret`)."""
    app.extensions["cursor"] = key(settings(app))


def secret(app=None):
    """The HMAC key of `app` (default: the current app)."""
    return (app or current_app).extensions["cursor"]


def key(config):
    """The HMAC key for `config`: its CURSOR_SECRET, else one derived from its DATABASE_URL."""
    secret = config.CURSOR_SECRET or config.DATABASE_URL
    return hashlib.sha256(b"tasks-svc list cursor\0" + secret.encode()).digest()


def _tag(secret, payload):
    return hmac.digest(secret, payload, "sha256")[:TAG_BYTES]


def encode(secret, query, value, row_id):
    """The cursor for the position just after (value, row_id) in the listing `query` (a dict
    holding every name of QUERY)."""
    payload = json.dumps([*(query[name] for name in QUERY), value, row_id], ensure_ascii=False,
                         separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _tag(secret, payload)).rstrip(b"=").decode()


def decode(secret, token):
    """(query, value, id) of a cursor that `encode` made; BadCursor otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadCursor("is not a cursor this service issued") from None
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if not payload or not hmac.compare_digest(tag, _tag(secret, payload)):
        raise BadCursor("is not a cursor this service issued (or it was altered)")
    fields = json.loads(payload)
    if len(fields) != len(QUERY) + 2:  # signed by an earlier version: [order, value, id]
        raise BadCursor("comes from an earlier version of the service")
    return dict(zip(QUERY, fields)), fields[-2], fields[-1]

"""Opaque list cursors: where a page in an order other than id ended, signed by the service.

A cursor is base64url(JSON [order, the last row's sort value, its id] + a truncated
HMAC-SHA256). The key must be the same on every app node, so it comes from the configuration
(CURSOR_SECRET, else derived from DATABASE_URL, which every node of one deployment shares),
never from a per-process random value.
"""

import base64
import binascii
import hashlib
import hmac
import json

TAG_BYTES = 16


class BadCursor(ValueError):
    """A cursor this service did not issue, or issued for another order."""


def key(config):
    """The HMAC key for `config`: its CURSOR_SECRET, else one derived from its DATABASE_URL."""
    secret = config.CURSOR_SECRET or config.DATABASE_URL
    return hashlib.sha256(b"tasks-svc list cursor\0" + secret.encode()).digest()


def _tag(secret, payload):
    return hmac.digest(secret, payload, "sha256")[:TAG_BYTES]


def encode(secret, order, value, row_id):
    """The cursor for the position just after (value, row_id) in `order`."""
    payload = json.dumps([order, value, row_id], ensure_ascii=False,
                         separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _tag(secret, payload)).rstrip(b"=").decode()


def decode(secret, token, order):
    """(value, id) of a cursor that `encode` made for `order`; BadCursor otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadCursor("is not a cursor this service issued") from None
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if not payload or not hmac.compare_digest(tag, _tag(secret, payload)):
        raise BadCursor("is not a cursor this service issued (or it was altered)")
    signed_order, value, row_id = json.loads(payload)
    if signed_order != order:
        raise BadCursor(f"belongs to order={signed_order}, not order={order}")
    return value, row_id

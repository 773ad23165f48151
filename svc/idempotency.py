"""Idempotency-Key on POST and PATCH (IETF httpapi draft): a retry is answered once, from
PostgreSQL, and never writes twice."""

import functools
import hashlib

from flask import current_app, request
from psycopg.types.json import Jsonb

from . import db, janitor, validation
from .config import settings
from .errors import ApiError

KEPT_HEADERS = ("Content-Type", "Location", "ETag")  # what a replay must repeat
EXPIRE_EVERY = 600  # janitor ticks between deletions of expired keys
EXPIRE_BATCH = 1000  # keys deleted per statement: small batches hold no long locks


def init_app(app):
    """Give the janitor the deletion of expired keys (soon after start, then every minute)."""
    ttl = settings(app).IDEMPOTENCY_TTL
    janitor.every(app, lambda ticks: ticks % EXPIRE_EVERY == 1,
                  lambda: delete_expired_keys(ttl))


def claim_key(key, ttl):
    """In the request's transaction: False if another request holds `key` right now, else its
    stored response (a row) or None (it is this request's to answer and store)."""
    if not db.run("lock_idempotency_key", key=key)["locked"]:
        return False
    return db.run("get_idempotency_key", key=key, ttl=ttl)


def save_response(key, fingerprint, status, headers, body):
    """Store the response to `key` in the request's transaction, beside its write."""
    db.run("create_idempotency_key", key=key, fingerprint=fingerprint, status=status,
           headers=Jsonb(headers), body=body)


def delete_expired_keys(ttl, limit=EXPIRE_BATCH):
    """Delete up to `limit` keys older than `ttl` seconds; how many went."""
    return db.write("delete_expired_idempotency_keys", ttl=ttl, limit=limit)


def _fingerprint():
    """What makes two requests the same request: method, path and body."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(validation.raw_body())
    return digest.digest()


def idempotent(view):
    """Run `view` at most once per Idempotency-Key: store its 2xx response in the transaction
    of its write, replay it to a retry; 409 while the first is in flight, 422 for the same key
    on another request."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = validation.idempotency_key()
        if key is None:
            return view(*args, **kwargs)
        fingerprint = _fingerprint()
        with db.transaction():
            stored = claim_key(key, settings().IDEMPOTENCY_TTL)
            if stored is False:
                raise ApiError(409, "A request with this Idempotency-Key is still in progress; "
                                    "retry it in a moment.", headers={"Retry-After": "1"})
            if stored is not None:
                if bytes(stored["fingerprint"]) != fingerprint:
                    raise ApiError(422, "This Idempotency-Key was used for another request; "
                                        "use a new key for a new request.")
                return _replay(stored)
            response = current_app.make_response(view(*args, **kwargs))
            if 200 <= response.status_code < 300:
                headers = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
                save_response(key, fingerprint, response.status_code, headers,
                              response.get_data())
        return response

    wrapper.idempotent = True  # openapi.py documents the header
    return wrapper


def _replay(stored):
    """The stored response again, marked as a replay."""
    response = current_app.response_class(bytes(stored["body"]), status=stored["status"],
                                          headers=stored["headers"])
    response.headers["Idempotent-Replayed"] = "true"
    return response

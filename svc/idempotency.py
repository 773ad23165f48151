"""Idempotency-Key on POST and PATCH (IETF httpapi draft): a retry is answered once, from
PostgreSQL, and never writes twice."""

import functools
import hashlib

from flask import current_app, request

from . import store, validation
from .errors import ApiError

KEPT_HEADERS = ("Content-Type", "Location", "ETag")  # what a replay must repeat


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
        with store.transaction():
            stored = store.claim_idempotency_key(key, current_app.config["IDEMPOTENCY_TTL"])
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
                store.save_idempotent_response(key, fingerprint, response.status_code, headers,
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

"""Turn request bodies, ids and query strings into clean values, or raise a 4xx."""

import json
import re

from flask import g, request

from .errors import ApiError, Invalid
from .resource import (DEFAULTS, IDEMPOTENCY_KEY, INT64_MAX, LIST_PARAMS, MAX_BODY, TASK,
                       WHITESPACE, WRITABLE)

ID = re.compile(r"[1-9][0-9]{0,18}")
BLANK = re.compile(f"[{WHITESPACE}]*")
KEY = re.compile(IDEMPOTENCY_KEY)
MAX_DRAIN = 1024 * 1024  # the most of a rejected body read to keep its connection usable
FIELDS = {f.name: f for f in TASK}
WRITABLE_NAMES = ", ".join(f.name for f in WRITABLE)


def no_such_task():
    """The 404 for an id that names no task."""
    return ApiError(404, "No task has this id.")


def _too_large():
    """The 413, once what is left of the body is read and dropped (up to MAX_DRAIN bytes), so
    that the connection can carry the client's next request. gunicorn closes a connection
    whose Content-Length is larger, and says so (conf/gunicorn.conf.py pre_request)."""
    if request.content_length is None or request.content_length <= MAX_DRAIN:
        left = MAX_DRAIN
        while left > 0 and (chunk := request.stream.read(min(left, 64 * 1024))):
            left -= len(chunk)
    return ApiError(413, f"The body is larger than {MAX_BODY} bytes.")


def task_id(raw):
    """A path segment as a positive int64, or 404 (it cannot name a task)."""
    if not ID.fullmatch(raw) or int(raw) > INT64_MAX:
        raise no_such_task()
    return int(raw)


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate keys")
    return dict(pairs)


def idempotency_key():
    """The request's Idempotency-Key, None without one, or 400 when it is malformed."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not KEY.fullmatch(key):
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return key


def json_body():
    """The request body as a JSON object; 413, 415 or 400 when it is not one."""
    if request.mimetype != "application/json":
        raise ApiError(415, "Send the body as Content-Type: application/json.")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "The body must be UTF-8 encoded.")
    raw = raw_body()
    if not raw.strip():
        raise ApiError(400, "The body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "The body is not valid UTF-8.") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"The body is not valid JSON: {_short(exc)}.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.")
    return data


def raw_body():
    """The body's bytes, read once (at most MAX_BODY of them), or 413."""
    if "raw_body" not in g:
        g.raw_body = _read_body()
    return g.raw_body


def _read_body():
    """Read at most MAX_BODY bytes, or 413: a chunked body has no Content-Length to check."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    chunks, size = [], 0
    while size <= MAX_BODY:
        chunk = request.stream.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY:
        raise _too_large()
    return b"".join(chunks)


def _short(exc):
    return str(exc).split(":")[0][:80] if not isinstance(exc, RecursionError) else "nested too deep"


def task_fields(data, partial):
    """Validated writable fields; a full body gets defaults, a partial one needs a field."""
    errors = []
    for name in data:
        field = FIELDS.get(name)
        if field is None:
            errors.append((name, f"is not a field of a task (expected {WRITABLE_NAMES})"))
        elif not field.writable:
            errors.append((name, "is read-only; leave it out"))
    if partial and not data:
        errors.append(("body", f"give at least one of {WRITABLE_NAMES}"))
    clean = {} if partial else dict(DEFAULTS)
    for field in WRITABLE:
        if field.name not in data:
            if field.required and not partial:
                errors.append((field.name, "is required"))
            continue
        value = data[field.name]
        message = _check(field, value)
        if message:
            errors.append((field.name, message))
        else:
            clean[field.name] = value
    if errors:
        raise Invalid(errors)
    return clean


def _check(field, value):
    """Why `value` is not valid for `field`, or None."""
    if value is None:
        return "must not be null"
    if field.type == "boolean":
        return None if isinstance(value, bool) else "must be true or false (a JSON boolean)"
    if not isinstance(value, str):
        return "must be a string"
    if "\x00" in value:
        return "must not contain NUL characters"
    if re.search("[\ud800-\udfff]", value):
        return "must not contain unpaired surrogates"
    if field.max_length is not None and len(value) > field.max_length:
        return f"must be at most {field.max_length} characters"
    if field.not_blank and BLANK.fullmatch(value):
        return "must not be blank"
    return None


def list_params(args):
    """The list's query parameters (resource.LIST_PARAMS) as a dict of clean values, or 400."""
    known = [p.name for p in LIST_PARAMS]
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ApiError(400, f"Unknown query parameter(s): {', '.join(unknown)}; "
                            f"use {', '.join(known)}.")
    repeated = [name for name in args if len(args.getlist(name)) > 1]
    if repeated:
        raise ApiError(400, f"Give each query parameter once: {', '.join(repeated)}.")
    return {p.name: _param(p, args.get(p.name)) for p in LIST_PARAMS}


def _param(param, raw):
    """One query parameter's value: its default when absent, else parsed and range-checked."""
    if raw is None:
        return param.default
    if param.type == "boolean":
        if raw not in ("true", "false"):
            raise ApiError(400, f"{param.name} must be true or false.")
        return raw == "true"
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not param.minimum <= int(raw) <= param.maximum:
        raise ApiError(400, f"{param.name} must be an integer from {param.minimum} "
                            f"to {param.maximum}.")
    return int(raw)


def query_args(params):
    """Clean list parameters back into query-string values (the inverse of list_params)."""
    return {name: ("true" if value else "false") if isinstance(value, bool) else value
            for name, value in params.items() if value is not None}

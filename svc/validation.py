"""Turn request bodies, ids and query strings into clean values, or raise a 4xx."""

import json
import re

from flask import request

from .errors import ApiError, Invalid

MAX_BODY = 128 * 1024
INT64_MAX = 2**63 - 1
ID = re.compile(r"[1-9][0-9]{0,18}")
LIMITS = {"title": 200, "description": 10_000}
WRITABLE = ("title", "description", "done")
READ_ONLY = ("id", "created_at", "updated_at", "version")
DEFAULTS = {"description": "", "done": False}
LIST_PARAMS = ("limit", "after", "done")


def no_such_task():
    """The 404 for an id that names no task."""
    return ApiError(404, "No task has this id.")


def _too_large():
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


def json_body():
    """The request body as a JSON object; 413, 415 or 400 when it is not one."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    if request.mimetype != "application/json":
        raise ApiError(415, "Send the body as Content-Type: application/json.")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "The body must be UTF-8 encoded.")
    raw = _read_body()
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


def _read_body():
    """Read at most MAX_BODY bytes, or 413: a chunked body has no Content-Length to check."""
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
    """Validated title/description/done; a full body gets defaults, a partial one needs a field."""
    errors = []
    for name in data:
        if name in READ_ONLY:
            errors.append((name, "is read-only; leave it out"))
        elif name not in WRITABLE:
            errors.append((name, "is not a field of a task (expected title, description, done)"))
    if not partial and "title" not in data:
        errors.append(("title", "is required"))
    if partial and not data:
        errors.append(("body", "give at least one of title, description, done"))
    clean = {} if partial else dict(DEFAULTS)
    for name in WRITABLE:
        if name not in data:
            continue
        value = data[name]
        message = _check(name, value)
        if message:
            errors.append((name, message))
        else:
            clean[name] = value
    if errors:
        raise Invalid(errors)
    return clean


def _check(name, value):
    """Why `value` is not valid for field `name`, or None."""
    if value is None:
        return "must not be null"
    if name == "done":
        return None if isinstance(value, bool) else "must be true or false (a JSON boolean)"
    if not isinstance(value, str):
        return "must be a string"
    if "\x00" in value:
        return "must not contain NUL characters"
    if re.search("[\ud800-\udfff]", value):
        return "must not contain unpaired surrogates"
    if len(value) > LIMITS[name]:
        return f"must be at most {LIMITS[name]} characters"
    if name == "title" and not value.strip():
        return "must not be blank"
    return None


def list_params(args):
    """limit (1..500, default 50), after (an id, default 0) and done (true|false) or 400."""
    unknown = sorted(set(args) - set(LIST_PARAMS))
    if unknown:
        raise ApiError(400, f"Unknown query parameter(s): {', '.join(unknown)}; "
                            f"use {', '.join(LIST_PARAMS)}.")
    repeated = [name for name in args if len(args.getlist(name)) > 1]
    if repeated:
        raise ApiError(400, f"Give each query parameter once: {', '.join(repeated)}.")
    limit = _int_param(args, "limit", 50, 1, 500)
    after = _int_param(args, "after", 0, 0, INT64_MAX)
    done = args.get("done")
    if done not in (None, "true", "false"):
        raise ApiError(400, "done must be true or false.")
    return limit, after, None if done is None else done == "true"


def _int_param(args, name, default, low, high):
    raw = args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}.")
    return int(raw)

"""Turn request bodies, ids and query strings into clean values, or raise a 4xx."""

import json
import re

from flask import current_app, g, request

from . import cursor
from .errors import ApiError, Invalid
from .resource import (BULK_MAX, DEFAULTS, DIRECTIONS, IDEMPOTENCY_KEY, INT64_MAX, LIST_PARAMS,
                       MAX_BODY, NOT_BLANK, PREFER_COUNTS, SEARCH_MAX_WORDS, SEARCH_TRIGRAM, TASK,
                       WHITESPACE, WRITABLE)

ID = re.compile(r"[1-9][0-9]{0,18}")
BLANK = re.compile(f"[{WHITESPACE}]*")
KEY = re.compile(IDEMPOTENCY_KEY)
TRIGRAM = re.compile(SEARCH_TRIGRAM)
MAX_DRAIN = 2 * MAX_BODY  # the most of a rejected body read to keep its connection usable
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


def json_body(array=False):
    """The request body as a JSON object (or, with `array`, an array); 413, 415 or 400 when it
    is not one."""
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
    if not isinstance(data, (dict, list) if array else dict):
        raise ApiError(400, "The body must be a JSON object" + (" or an array of them." if array
                                                                 else "."))
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


def new_tasks(data):
    """A create body's tasks: [fields] for one object, a list of them for an array of 1..BULK_MAX
    objects; 422 naming each bad element's index and field ("[3].title")."""
    if isinstance(data, dict):
        return [task_fields(data, partial=False)]
    if not 1 <= len(data) <= BULK_MAX:
        raise Invalid([("body", f"give 1 to {BULK_MAX} tasks, not {len(data)}")],
                      f"A bulk create holds 1 to {BULK_MAX} tasks; this one has {len(data)}.")
    tasks, errors = [], []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            errors.append((f"[{index}]", "must be a JSON object (a task)"))
            continue
        try:
            tasks.append(task_fields(item, partial=False))
        except Invalid as exc:
            errors += [(f"[{index}].{e['field']}", e["message"]) for e in exc.errors]
    if errors:
        raise Invalid(errors, "Some tasks have invalid fields; none was created.")
    return tasks


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
    params = {p.name: _param(p, args.get(p.name)) for p in LIST_PARAMS}
    by_id = params["order"].startswith("id.")
    if params["after"] is not None and not by_id:
        raise ApiError(400, "after pages id order only; for other orders follow the next URL "
                            "(its cursor parameter).")
    if params["after"] is not None and params["cursor"] is not None:
        raise ApiError(400, "Give after or cursor, not both.")
    if params["q"] is not None:
        _search(params["q"])
    return params


def _search(q):
    """400 unless the index can serve `q` (resource.SEARCH_TRIGRAM, SEARCH_MAX_WORDS)."""
    words = q.split()
    if len(words) > SEARCH_MAX_WORDS:
        raise ApiError(400, f"q holds {len(words)} words; give at most {SEARCH_MAX_WORDS}.")
    if not any(TRIGRAM.search(word) for word in words):
        raise ApiError(400, "q needs a word with at least three letters or digits in a row: "
                            "the search index cannot find shorter words, which would mean "
                            "reading every task. Shorter words may go beside such a word.")


def position(params):
    """(sort value, id) the page starts past, from `after` or the signed `cursor`; None: the
    first page. 400 if the cursor is not one this service issued for this order."""
    if params["after"] is not None:
        return params["after"], params["after"]
    if params["cursor"] is None:
        return None
    try:
        return cursor.decode(current_app.extensions["cursor_key"], params["cursor"],
                             params["order"])
    except cursor.BadCursor as exc:
        raise ApiError(400, f"cursor {exc}; start again from the first page.") from None


def _param(param, raw):
    """One query parameter's value: its default when absent, else parsed and range-checked."""
    if raw is None:
        return param.default
    if param.type == "boolean":
        if raw not in ("true", "false"):
            raise ApiError(400, f"{param.name} must be true or false.")
        return raw == "true"
    if param.type == "order":
        return _order(param, raw)
    if param.type == "string":
        if len(raw) > param.max_length or not re.search(param.pattern, raw):
            raise ApiError(400, f"{param.name} must be 1 to {param.max_length} characters"
                                + (", not blank, without NUL characters."
                                   if param.pattern == NOT_BLANK else " of A-Z a-z 0-9 _ -."))
        return raw
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not param.minimum <= int(raw) <= param.maximum:
        raise ApiError(400, f"{param.name} must be an integer from {param.minimum} "
                            f"to {param.maximum}.")
    return int(raw)


def _order(param, raw):
    """`<field>.<asc|desc>` checked against the parameter's fields, or a 400 that says which
    part is wrong."""
    field, dot, way = raw.partition(".")
    if field not in param.choices:
        raise ApiError(400, f"{param.name}: unknown field {field!r}; sort by one of "
                            f"{', '.join(param.choices)}, e.g. {param.name}=title.asc.")
    if not dot or way not in DIRECTIONS:
        raise ApiError(400, f"{param.name}: give the direction after the field, "
                            f"{param.name}={field}.asc or {param.name}={field}.desc.")
    return raw


def query_args(params):
    """Clean list parameters back into query-string values (the inverse of list_params);
    defaults are left out, but the limit."""
    defaults = {p.name: p.default for p in LIST_PARAMS if p.name != "limit"}
    return {name: ("true" if value else "false") if isinstance(value, bool) else value
            for name, value in params.items()
            if value is not None and value != defaults.get(name)}


def count_preference():
    """The count the request's Prefer asks for (one of resource.PREFER_COUNTS), or None."""
    return next((p for p in preferences() if p in PREFER_COUNTS), None)


def preferences():
    """The request's Prefer preferences (RFC 7240) as "name=value" strings, names and values
    lower-cased; of a preference given twice, the first counts."""
    found = {}
    for header in request.headers.getlist("Prefer"):
        for item in header.split(","):
            name, _, value = item.split(";", 1)[0].partition("=")
            name = name.strip().lower()
            if name:
                found.setdefault(name, value.strip().strip('"').lower())
    return {f"{name}={value}" if value else name for name, value in found.items()}

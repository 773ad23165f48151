"""Turn request bodies, ids and query strings into clean values, or raise a 4xx."""

import json
import re

from flask import g, request

from . import cursor
from .errors import ApiError, Invalid, no_such_task
from .resource import (BULK_MAX, DEFAULTS, DIRECTIONS, IDEMPOTENCY_KEY, INT64_MAX, LIST_PARAMS,
                       MAX_BODY, MAX_DRAIN, NOT_BLANK, PREFER_COUNTS, SEARCH_MAX_WORDS,
                       SEARCH_TRIGRAM, TASK, WHITESPACE, WRITABLE)

ID = re.compile(r"[1-9][0-9]{0,18}")
BLANK = re.compile(f"[{WHITESPACE}]*")
KEY = re.compile(IDEMPOTENCY_KEY)
TRIGRAM = re.compile(SEARCH_TRIGRAM)
FIELDS = {f.name: f for f in TASK}
WRITABLE_NAMES = ", ".join(f.name for f in WRITABLE)
PARAMS = {p.name: p for p in LIST_PARAMS}


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


class BadValue(ValueError):
    """Why a query parameter's value is refused: its message in the 400's `errors`."""


def list_params(args):
    """The list's query parameters (resource.LIST_PARAMS) as a dict of clean values, a cursor's
    listing in place of the absent ones, and the page's `position`; 400 naming every bad
    parameter in `errors`."""
    errors = [(name, f"is not a query parameter of the list (use {', '.join(PARAMS)})")
              for name in sorted(set(args) - set(PARAMS))]
    given = {}
    for name, param in PARAMS.items():
        values = args.getlist(name)
        if len(values) > 1:
            errors.append((name, "is given more than once"))
        elif values:
            try:
                given[name] = _param(param, values[0])
            except BadValue as exc:
                errors.append((name, str(exc)))
    params = {name: given.get(name, param.default) for name, param in PARAMS.items()}
    params["position"] = None  # the first page
    if given.get("q") is not None:  # a cursor's q was checked when its first page was asked for
        try:
            _search(given["q"])
        except BadValue as exc:
            errors.append(("q", str(exc)))
    if "cursor" in given:
        errors += _continue(params, given)
    elif params["after"] is not None:
        if not params["order"].startswith("id."):
            errors.append(("after", "pages id order only; in other orders send the page's "
                                    "cursor"))
        params["position"] = params["after"], params["after"]
    if errors:
        raise ApiError(400, f"Invalid query parameter{'s' if len(errors) > 1 else ''}: "
                            + "; ".join(f"{name} {message}" for name, message in errors) + ".",
                       errors=[{"field": name, "message": message} for name, message in errors])
    return params


def _continue(params, given):
    """Take the listing and position of the signed cursor in `given` into `params`; the errors
    of a cursor this service did not issue, or of parameters that differ from its own."""
    if params["after"] is not None:
        return [("after", "give after or cursor, not both")]
    try:
        query, value, row_id = cursor.decode(cursor.secret(), given["cursor"])
    except cursor.BadCursor as exc:
        return [("cursor", f"{exc}; start again from the first page")]
    params.update(query, position=(value, row_id))
    return [(name, f"differs from the cursor's ({_spelled(query[name])}); leave it out to "
                   "continue the listing, or start again from the first page")
            for name in query if name in given and given[name] != query[name]]


def _search(q):
    """BadValue unless the index can serve `q` (resource.SEARCH_TRIGRAM, SEARCH_MAX_WORDS)."""
    words = q.split()
    if len(words) > SEARCH_MAX_WORDS:
        raise BadValue(f"holds {len(words)} words; give at most {SEARCH_MAX_WORDS}")
    if not any(TRIGRAM.search(word) for word in words):
        raise BadValue("needs a word with at least three letters or digits in a row: the search "
                       "index cannot find shorter words, which would mean reading every task "
                       "(shorter words may go beside such a word)")


def position(params):
    """(sort value, id) the page starts past, from `after` or the signed `cursor`; None: the
    first page."""
    return params["position"]


def next_cursor(params, value, row_id):
    """The signed cursor of the page after the one `params` asked for, which ended at the row
    (value, row_id)."""
    return cursor.encode(cursor.secret(), params, value, row_id)


def _param(param, raw):
    """One query parameter's value, parsed and range-checked; BadValue says why not."""
    if param.type == "boolean":
        if raw not in ("true", "false"):
            raise BadValue("must be true or false")
        return raw == "true"
    if param.type == "order":
        return _order(param, raw)
    if param.type == "string":
        if len(raw) > param.max_length or not re.search(param.pattern, raw):
            raise BadValue(f"must be 1 to {param.max_length} characters"
                           + (", not blank, without NUL characters" if param.pattern == NOT_BLANK
                              else " of A-Z a-z 0-9 _ -"))
        return raw
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not param.minimum <= int(raw) <= param.maximum:
        raise BadValue(f"must be an integer from {param.minimum} to {param.maximum}")
    return int(raw)


def _order(param, raw):
    """`<field>.<asc|desc>` checked against the parameter's fields, or BadValue saying which
    part is wrong."""
    field, dot, way = raw.partition(".")
    if field not in param.choices:
        raise BadValue(f"names no field to sort by ({field!r}); use one of "
                       f"{', '.join(param.choices)}, e.g. {param.name}=title.asc")
    if not dot or way not in DIRECTIONS:
        raise BadValue(f"needs a direction after the field: {param.name}={field}.asc or "
                       f"{param.name}={field}.desc")
    return raw


def _spelled(value):
    """A clean parameter value as a query string spells it ("none": absent)."""
    if value is None:
        return "none"
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def count_preference():
    """The count the request's Prefer asks for (one of resource.PREFER_COUNTS), or None."""
    return next((p for p in preferences() if p in PREFER_COUNTS), None)


def preferences():
    """The request's Prefer preferences (RFC 7240) as "name=value" strings, names and values
    lower-cased; of a preference given twice, the first counts."""
    if "HTTP_PREFER" not in request.environ:  # most requests: skip a scan of every header
        return set()
    found = {}
    for header in request.headers.getlist("Prefer"):
        for item in header.split(","):
            name, _, value = item.split(";", 1)[0].partition("=")
            name = name.strip().lower()
            if name:
                found.setdefault(name, value.strip().strip('"').lower())
    return {f"{name}={value}" if value else name for name, value in found.items()}

"""How tasks look on the wire: compact JSON bytes, RFC 3339 timestamps, ETags, list pages, and
whole responses as the one packed form every cache layer stores and answers from."""

import hashlib
import json
from datetime import timezone

from .resource import MINIMAL_FIELDS, TASK

JSON = "application/json"


def dumps(obj):
    """Compact UTF-8 JSON bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def timestamp(value):
    """A datetime as RFC 3339 in UTC with microseconds: 2026-11-24T10:00:00.123456Z."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def task(row):
    """A row of the tasks table as the API's task object, field by field from resource.TASK."""
    return {f.name: timestamp(row[f.name]) if f.format == "date-time" else row[f.name]
            for f in TASK}


def minimal(row):
    """What a create with Prefer: return=minimal answers for one task: {"id": 42}."""
    return {name: row[name] for name in MINIMAL_FIELDS}


def etag(row):
    """The strong entity tag of a task: it changes with every version."""
    return f'"{row["id"]}-{row["version"]}"'


def pack(status, headers, body):
    """A response as the caches hold it, in the app's Redis entry and nginx's micro-cache alike
    (conf/nginx/packed_response.lua reads it): "<status>\\n<Name>: <value>\\n...\\n\\n<body>". Only
    representation headers belong here; per-request and layer headers (X-Request-ID,
    X-App-Cache, ...) are added by whoever answers."""
    head = "".join(f"\n{name}: {value}" for name, value in headers)
    return f"{status}{head}\n\n".encode() + body


def unpack(packed):
    """(status, [(name, value), ...], body) of a packed response."""
    head, _, body = packed.partition(b"\n\n")
    status, *lines = head.decode().split("\n")
    return int(status), [tuple(line.split(": ", 1)) for line in lines], body


def task_response(row):
    """A task row as a packed 200, or None for no row (not cached)."""
    if row is None:
        return None
    return pack(200, (("Content-Type", JSON), ("ETag", etag(row))), dumps(task(row)))


def page_response(rows, next_url, total=None, applied=None):
    """A list page as a packed 200: the items, the next URL (also in Link) and the cursor in it, a
    weak ETag over them and the total (None: not counted; else X-Total-Count, and `applied` as
    Preference-Applied). Vary: Prefer, since a preference changes the page."""
    # next is /api/tasks?cursor=<cursor> (tasks._page), and a cursor needs no URL escaping.
    cursor = next_url.rpartition("cursor=")[2] if next_url else None
    body = (b'{"items":' + dumps([task(r) for r in rows]) + b',"next":' + dumps(next_url)
            + b',"cursor":' + dumps(cursor) + b"}")
    digest = hashlib.blake2b(body + b"\n" + str(total).encode(), digest_size=12).hexdigest()
    headers = [("Content-Type", JSON), ("ETag", f'W/"{digest}"'), ("Vary", "Prefer")]
    if next_url:
        headers.append(("Link", f'<{next_url}>; rel="next"'))
    if total is not None:
        headers += [("X-Total-Count", str(total)), ("Preference-Applied", applied)]
    return pack(200, headers, body)

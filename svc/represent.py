"""How tasks look on the wire: compact JSON bytes, RFC 3339 timestamps, ETags, list pages."""

import hashlib
import json
from datetime import timezone

from .cache import Entry
from .resource import MINIMAL_FIELDS, TASK


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


def task_entry(row):
    """A task row as a cacheable response, or None for no row (not cached)."""
    return None if row is None else Entry(etag(row), dumps(task(row)))


def page_entry(rows, next_url, total=None):
    """A list page as a cacheable response: the items array, its weak ETag, the next URL and
    the total (None: not counted), which the ETag covers too."""
    items = dumps([task(r) for r in rows])
    digest = hashlib.blake2b(b"\n".join((items, (next_url or "").encode(), str(total).encode())),
                             digest_size=12).hexdigest()
    return Entry(f'W/"{digest}"', items, next_url, total)


def page_body(entry, source):
    """The list response body: the cached items, the next URL and the cursor in it, and where
    they came from."""
    # next is /api/tasks?cursor=<cursor> (tasks._page), and a cursor needs no URL escaping.
    cursor = entry.next.rpartition("cursor=")[2] if entry.next else None
    return (b'{"items":' + entry.body + b',"next":' + dumps(entry.next)
            + b',"cursor":' + dumps(cursor) + b',"source":' + dumps(source) + b"}")

"""The task resource, declared once: its fields, the list's query parameters, the body limit.

validation.py checks requests against these tables, represent.py serializes rows with them and
openapi.py describes them; no other module names a field, a parameter or a limit.
"""

from dataclasses import dataclass

INT64_MAX = 2**63 - 1
# Every character Python's str.isspace() knows, spelled out as a regex class so that the
# OpenAPI pattern (ECMA-262) and validation (Python's re) agree on what "blank" means.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK = rf"^[^\u0000]*[^\u0000{WHITESPACE}][^\u0000]*$"


@dataclass(frozen=True)
class Field:
    """One field of a task as the API shows it; `writable` ones may be sent in a body."""

    name: str
    type: str  # JSON Schema type
    doc: str
    writable: bool = True
    required: bool = False  # in a create or replace body
    default: object = None  # what a create or replace body gets when the field is absent
    max_length: int | None = None
    not_blank: bool = False
    minimum: int | None = None
    format: str | None = None  # "date-time": a timestamptz column, sent as RFC 3339 UTC

    @property
    def pattern(self):
        """The regex a text field matches: no NUL characters, and not blank where required."""
        if self.type != "string" or self.format:
            return None
        return NOT_BLANK if self.not_blank else NO_NUL


TASK = (
    Field("id", "integer", "Assigned by the server.", writable=False, minimum=1),
    Field("title", "string", "What to do. Not blank; no NUL characters.", required=True,
          max_length=200, not_blank=True),
    Field("description", "string", "Details; no NUL characters.", default="", max_length=10_000),
    Field("done", "boolean", "Whether the task is finished.", default=False),
    Field("created_at", "string", "When the task was created.", writable=False,
          format="date-time"),
    Field("updated_at", "string", "When the task last changed.", writable=False,
          format="date-time"),
    Field("version", "integer", "Starts at 1, grows by one with every write; part of the ETag.",
          writable=False, minimum=1),
)
WRITABLE = tuple(f for f in TASK if f.writable)
DEFAULTS = {f.name: f.default for f in WRITABLE if not f.required}


@dataclass(frozen=True)
class Param:
    """One query parameter of the list: an integer in a range, true|false, a string, or an order
    (`<field>.<asc|desc>`, a field of `choices`)."""

    name: str
    type: str  # "integer", "boolean", "string" or "order"
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    default: object = None  # None: the parameter filters nothing when absent
    max_length: int | None = None  # string: at most this many characters
    pattern: str | None = None  # string: a regex it matches (ECMA-262 and Python's re alike)
    choices: tuple = ()  # order: the fields it may name
    position: bool = False  # where a page starts (after, cursor), not what the listing holds

    @property
    def values(self):
        """Every value an order parameter takes, in the order of its choices."""
        return tuple(f"{field}.{way}" for field in self.choices for way in DIRECTIONS)


DIRECTIONS = ("asc", "desc")
# q is served by the pg_trgm GIN index (migrations/0005) or refused. The index finds a word's
# tasks by its trigrams, three letters or digits in a row (pg_trgm skips other characters); a
# word without one would make PostgreSQL read every task. So one word must have a trigram (the
# longest such run is the anchor the index serves; the other words, short ones too, filter its
# rows), and each word is one more ILIKE per row found: at most SEARCH_MAX_WORDS of them.
SEARCH_LETTER = r"[^\W_]"  # Python re: a Unicode letter or digit
SEARCH_TRIGRAM = SEARCH_LETTER + "{3}"
SEARCH_MAX_WORDS = 8
ORDER = Param("order", "order", "Sort by a field, ascending or descending; ties are broken by id "
              "in the same direction. Pages of any order are keyset pages: send the page's "
              "`cursor`.",
              default="id.asc", choices=("id", "title", "created_at", "updated_at", "done"))
# A cursor (svc/cursor.py) is base64url. The longest one the service issues, a title and a q of
# 200 characters that JSON escapes to 6 bytes each, is about 3,300 characters
# (tests/test_list_query.py builds it); a request line of it stays under gunicorn's limit.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
CURSOR_MAX = 3500

LIST_PARAMS = (
    Param("after", "integer", "id order (asc or desc) only: the last id of the previous page. "
          "A page's `cursor` does this in every order, and keeps its filters.",
          minimum=0, maximum=INT64_MAX, position=True),
    Param("limit", "integer", "Page size.", minimum=1, maximum=500, default=50),
    Param("done", "boolean", "Only tasks that are done (true) or not (false)."),
    ORDER,
    Param("q", "string", "Only tasks whose title or description contains every word of q "
          "(split at whitespace), in any order, case-insensitively; a word may be in the "
          "title and another in the description. At least one word must hold three letters "
          "or digits in a row (the trigram index finds its tasks; shorter words filter "
          f"them), and q holds at most {SEARCH_MAX_WORDS} words: else 400.", max_length=200,
          pattern=NOT_BLANK),
    Param("cursor", "string", "Where the previous page ended, with everything that page was "
          "asked for (order, done, q, limit): send it alone, as the page's `cursor` (or `next`) "
          "gives it, to get the next page. Any of those parameters sent beside it must have the "
          "value the cursor holds (else 400). Opaque and signed: an altered cursor is refused "
          "with 400.", max_length=CURSOR_MAX, pattern=CURSOR_PATTERN, position=True),
)
# The preferences (RFC 7240 Prefer header) the service applies, by the requests they change.
# GET /api/tasks: X-Total-Count, the matching tasks on all pages (Preference-Applied says which
# count it is): exact (counted within the read bound; past it, planned), planned (the planner's
# estimate: one EXPLAIN), estimated (exact up to COUNT_EXACT_UPTO tasks, planned beyond).
PREFER_COUNT = "count=exact"
PREFER_COUNT_PLANNED = "count=planned"
PREFER_COUNT_ESTIMATED = "count=estimated"
PREFER_COUNTS = (PREFER_COUNT, PREFER_COUNT_PLANNED, PREFER_COUNT_ESTIMATED)
COUNT_EXACT_UPTO = 1_000
PREFER_MINIMAL = "return=minimal"  # POST, PUT, PATCH: little or no body, Location and ETag
# What a create with return=minimal answers per task (201 with {"id": 42}, or an array of
# them): a body a generated client can parse, that still tells the new ids.
MINIMAL_FIELDS = ("id",)
# nginx limits the rate of these methods per client address (429 with Retry-After): the map
# $write_limit_key in conf/nginx/maps.conf names the same ones.
RATE_LIMITED_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# Idempotency-Key (POST, PATCH): 1..255 printable ASCII characters; no space at either end,
# since HTTP strips it from a header value.
IDEMPOTENCY_KEY = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"

# A bulk create (a JSON array body) holds 1..BULK_MAX tasks.
BULK_MAX = 1000
# The largest schema-valid single task is every text field at its maximum length in characters
# that JSON escapes as a surrogate pair (12 bytes, \\uXXXX\\uXXXX): about 122,500 bytes. A bulk
# body of BULK_MAX tasks may be larger still: the limit is 1 MiB whatever the body holds (a test
# proves the largest single task fits). nginx spells the same number (client_max_body_size and
# client_body_buffer_size in conf/nginx/nginx.conf, the 413 detail in maps.conf), since the edge
# image has no Python to render it from here; tests/test_deploy_static.py checks each.
MAX_BODY = 1024 * 1024
# A rejected body (413) is read and dropped up to this many bytes, so that its connection can
# carry the client's next request (validation.py); gunicorn closes a connection whose
# Content-Length is larger (conf/gunicorn.conf.py takes this value).
MAX_DRAIN = 2 * MAX_BODY

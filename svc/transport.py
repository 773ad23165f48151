"""What every response of the app gets on its way out, whatever made it (a handler, an error
handler, Flask's automatic OPTIONS, a static file): no Content-Type without a body, and gzip
when the client asks for it.

Through nginx, reads of tasks reach the app without Accept-Encoding (nginx.conf's /_app keeps
its caches' copies uncompressed) and nginx compresses them on the way out, with these same
types, threshold and level (tests/test_deploy_static.py checks that the two agree). The app
compresses the rest itself, notably what nginx's gzip filter never takes: any status but 200,
403 and 404 (a bulk create's 201, a 422 listing a thousand bad tasks).
"""

import gzip

from flask import request

# Types worth compressing: the API's JSON, its problems, Swagger UI's page and assets.
COMPRESSIBLE = ("application/json", "application/problem+json", "text/html", "text/css",
                "application/javascript", "text/javascript")
# Below this, gzip saves a few dozen bytes (a 216-byte task becomes 146) for a deflate set-up
# per response.
MIN_LENGTH = 1024
# zlib's fastest: nginx compresses every cache hit anew, and level 1 answered 1.4x the gzipped
# micro-cache hits of level 5 for 4 % more bytes (a page of 50 tasks: 9.2 KB -> 1.18 KB, not
# 1.13; the Swagger UI bundle 1.68 MB -> 531 KB in 25 ms, not 454 KB in 43 ms).
LEVEL = 1
BODILESS = (204, 304)


def init_app(app):
    """Finish every response (after_request)."""
    app.after_request(finish)


def finish(response):
    """Drop the Content-Type of an answer without a body; compress one the client takes gzip
    for."""
    if response.status_code in BODILESS or (response.is_sequence
                                            and response.calculate_content_length() == 0):
        response.headers.pop("Content-Type", None)
        return response
    if (response.status_code >= 200 and response.status_code != 206
            and response.mimetype in COMPRESSIBLE and "Content-Encoding" not in response.headers
            and "Accept-Encoding" in request.headers):
        _compress(response)
    return response


def _compress(response):
    """gzip the body if it is long enough and the client accepts gzip.

    Only a request that states its codings gets Vary: Accept-Encoding from here: one without
    (nginx's fetch for its caches, which adds Vary itself on the way out) takes the identity
    body, which every client accepts.
    """
    response.direct_passthrough = False  # a static file: read it into memory
    body = response.get_data()
    if len(body) < MIN_LENGTH:
        return
    response.vary.add("Accept-Encoding")
    if request.accept_encodings["gzip"] <= 0:
        return
    response.set_data(gzip.compress(body, LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    response.headers.pop("Accept-Ranges", None)  # ranges of a static file count identity bytes
    # Other bytes than the identity body: a strong tag would claim they are the same. nginx
    # weakens a tag when it compresses too; If-Match takes the weak form of a task's tag
    # (svc/tasks.py _if_match_versions).
    tag = response.headers.get("ETag")
    if tag and not tag.startswith("W/"):
        response.headers["ETag"] = "W/" + tag

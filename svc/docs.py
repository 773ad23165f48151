"""GET /api/docs: Swagger UI for /api/openapi.json, from the app's own files (no CDN).

The assets are flask-swagger-ui's copy of Swagger UI's dist/ folder, served at
/api/docs/<file>. The page's Content-Security-Policy lets it reach nothing but this origin, and
Swagger UI's validator badge (a request to validator.swagger.io) is off.
"""

import base64
import hashlib
import json
from importlib.resources import files

from flask import Blueprint, current_app, url_for

ASSETS = files("flask_swagger_ui") / "dist"

bp = Blueprint("docs", __name__, url_prefix="/api/docs", static_folder=str(ASSETS),
               static_url_path="")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tasks-svc API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{bundle}"></script>
<script>{init}</script>
</body>
</html>
"""
INIT = ("window.ui = SwaggerUIBundle(Object.assign({config}, "
        "{{presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'}}));")


def init_app(app):
    """Serve Swagger UI and its assets."""
    app.register_blueprint(bp)


def _sha256(text):
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@bp.get("")
def docs():
    """Interactive API docs (Swagger UI)."""
    config = {"url": url_for("openapi.openapi"), "dom_id": "#swagger-ui", "deepLinking": True,
              "validatorUrl": None}
    init = INIT.format(config=json.dumps(config))
    page = PAGE.format(css=url_for(".static", filename="swagger-ui.css"),
                       icon=url_for(".static", filename="favicon-32x32.png"),
                       bundle=url_for(".static", filename="swagger-ui-bundle.js"), init=init)
    csp = (f"default-src 'self'; script-src 'self' 'sha256-{_sha256(init)}'; "
           "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
    return current_app.response_class(page, mimetype="text/html",
                                      headers={"Content-Security-Policy": csp})

"""WSGI entry point for gunicorn: svc.wsgi:app."""

from . import create_app

app = create_app()

"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""
from smart_support import create_app

app = create_app()

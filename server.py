"""The WSGI entry point: ``app`` for a WSGI server (gunicorn server:app), and
``python server.py`` to migrate the database and serve on HOST:PORT."""

from specstore import create_app
from specstore.cli import serve_development

app = create_app()

if __name__ == "__main__":
    serve_development(app)

"""The web layer: the API (:mod:`.api`), the dashboard's pages (:mod:`.dashboard`), what
operators look at (:mod:`.operations`), and the bodies they answer with
(:mod:`.representations`). Views parse a request, call the service, serialize."""

from __future__ import annotations

from flask import Flask

from . import api, dashboard, data, operations


def init_app(app: Flask) -> None:
    api.init_app(app)
    operations.init_app(app)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(data.bp)

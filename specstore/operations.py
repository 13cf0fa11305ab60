"""What operators look at: liveness, readiness, and one JSON log line per request.

``/healthz`` says the process answers and checks nothing else. ``/readyz``
checks the database (503 when it cannot be reached) and reports the auth key
and DPP as ``ok``/``degraded`` without failing on them: specstore still serves
reads without either.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from . import metrics
from .errors import ServiceUnavailable

bp = Blueprint("operations", __name__)
access_log = logging.getLogger("specstore.access")
REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128


@bp.get("/metrics")
def prometheus() -> Response:
    database = current_app.extensions["specstore.components"].database
    return Response(metrics.exposition(database), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    components = current_app.extensions["specstore.components"]
    checks = {
        "database": _database_check(components),
        "auth": "ok" if components.keys.has_key() else "degraded",
        "dpp": components.dpp_check(),
    }
    ready = checks["database"] == "ok"
    body = {"status": "ok" if ready else "unavailable", **checks}
    return jsonify(body), 200 if ready else 503


def _database_check(components: Any) -> str:
    try:
        with components.database.transaction() as session:
            session.execute(text("SELECT 1"))
    except ServiceUnavailable:
        return "unavailable"
    return "ok"


def _start_request() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    valid = 0 < len(given) <= MAX_REQUEST_ID_LENGTH and given.isprintable()
    g.request_id = given if valid else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    seconds = None if started is None else time.perf_counter() - started
    route = request.url_rule.rule if request.url_rule else None
    metrics.count_request(request.method, route or "(unknown)", response.status_code, seconds)
    if access_log.isEnabledFor(logging.INFO):
        line = {
            "request_id": g.get("request_id"),
            "method": request.method,
            # The route pattern, never the query string: tokens travel there.
            "route": route,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((seconds or 0.0) * 1000, 2),
        }
        access_log.info(json.dumps(line))
    return response


def configure_logging() -> None:
    """specstore's own log lines (the access log among them) to standard error, unless
    the host process already routes them somewhere."""
    logger = logging.getLogger("specstore")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_start_request)
    app.after_request(_log_request)

"""What operators look at: liveness, readiness, and one JSON log line per request.

``/healthz`` says the process answers and checks nothing else. ``/readyz``
checks the database (503 when it cannot be reached) and reports the auth key,
DPP and the announcements as ``ok``/``degraded`` (or ``off``) without failing on
them: specstore still serves reads without any of them.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from .. import metrics
from ..errors import ServiceUnavailable
from ..store import statements

bp = Blueprint("operations", __name__)
access_log = logging.getLogger("specstore.access")
REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128


@bp.get("/metrics")
def prometheus() -> Response:
    store = current_app.extensions["specstore.components"].store
    text = metrics.exposition(
        store.revisions.count_by_state, lambda: store.announcements.waiting()[0]
    )
    return Response(text, mimetype=CONTENT_TYPE_LATEST)


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
        "announcements": components.announcements_check(),
    }
    ready = checks["database"] == "ok"
    body = {"status": "ok" if ready else "unavailable", **checks}
    return jsonify(body), 200 if ready else 503


def _database_check(components: Any) -> str:
    try:
        components.store.database.read(lambda reader: reader.scalar(statements.ping()))
    except ServiceUnavailable:
        return "unavailable"
    return "ok"


def _start_request() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    valid = 0 < len(given) <= MAX_REQUEST_ID_LENGTH and given.isprintable()
    g.request_id = given if valid else new_request_id()
    g.request_started = time.perf_counter()


def new_request_id() -> str:
    """32 hex digits, as random as a UUID4's but with no system call per request (uuid4
    reads os.urandom): Python's random module, which each forked worker reseeds. An id
    only tells requests apart; nothing is kept secret with it."""
    return f"{random.getrandbits(128):032x}"


def _log_request(response: Response) -> Response:
    # The request and g looked up once each, rather than once per attribute read.
    current, context = request._get_current_object(), g._get_current_object()
    request_id = getattr(context, "request_id", "")
    started = getattr(context, "request_started", None)
    seconds = None if started is None else time.perf_counter() - started
    response.headers[REQUEST_ID_HEADER] = request_id
    rule = current.url_rule
    route = rule.rule if rule else None
    method, status = current.method, response.status_code
    metrics.count_request(method, route or "(unknown)", status, seconds)
    if access_log.isEnabledFor(logging.INFO):
        line = {
            "request_id": request_id,
            "method": method,
            # The route pattern, never the query string: tokens travel there.
            "route": route,
            "path": current.path,
            "status": status,
            "duration_ms": round((seconds or 0.0) * 1000, 2),
        }
        # The record made and handled as Logger.info would, less its walk up the stack for
        # the caller's file and line: every line comes from here.
        access_log.handle(
            access_log.makeRecord(
                access_log.name, logging.INFO, __file__, 0, orjson.dumps(line).decode(), None, None
            )
        )
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
